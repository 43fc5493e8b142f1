"""Run an exported encoder: the model's own tokenizer (Rust ``tokenizers``), then ONNX Runtime or OpenVINO.

Texts are encoded longest first in batches (as sentence-transformers does), so a batch pads to
the length of similar texts; OpenVINO keeps two batches in flight, so tokenising the next one
and copying the last one out never leave its cores idle.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retriever.encoding.cache import ModelFacts
from retriever.errors import EncoderError


class Tokens:
    """The model's tokenizer, truncating to its window, producing the graph's input arrays."""

    def __init__(self, tokenizer_file: Path, facts: ModelFacts) -> None:
        from tokenizers import Tokenizer

        self.inputs = facts.inputs
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=facts.max_tokens)

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text).ids)

    def feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """One padded batch of ``texts``."""
        return self._pad(self.tokenizer.encode_batch(list(texts)))

    def batches(self, texts: Sequence[str], batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(row indices, padded batch) pairs covering ``texts``, longest first."""
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield rows, self._pad([encodings[i] for i in rows])

    def _pad(self, encodings: list) -> dict[str, np.ndarray]:  # noqa: ANN401 - tokenizers.Encoding
        width = max((len(e.ids) for e in encodings), default=1) or 1
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = 1
            types[row, :n] = e.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in self.inputs}


class FastEncoder(ABC):
    """An exported model: ``encode_full`` as :class:`~retriever.encoding.embedder.Embedder` has it."""

    encoder: str
    precision: str

    def __init__(self, folder: Path, facts: ModelFacts) -> None:
        self.folder = folder
        self.facts = facts
        self.tokens = Tokens(folder / "tokenizer.json", facts)

    def token_ids(self, text: str) -> list[int]:
        return self.tokens.ids(text)

    @abstractmethod
    def encode_full(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """Full-dim float32 embeddings, one row per text (as the model outputs them)."""

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.facts.dim), dtype=np.float32)


def _progress(total: int, show: bool) -> Callable[[int], None]:
    if not show:
        return lambda n: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="Batches", leave=False)
    return bar.update


class OnnxEncoder(FastEncoder):
    """ONNX Runtime on the CPU (fp32, or int8 weights quantized dynamically)."""

    def __init__(self, folder: Path, facts: ModelFacts, encoder: str) -> None:
        super().__init__(folder, facts)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        threads = _threads()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.encoder = encoder
        self.precision = "int8" if encoder.endswith("int8") else "fp32"

    def encode_full(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return self._empty()
        out = np.empty((len(texts), self.facts.dim), dtype=np.float32)
        advance = _progress(-(-len(texts) // batch_size), show_progress)
        for rows, feeds in self.tokens.batches(texts, batch_size):
            out[rows] = self.session.run(None, feeds)[0]
            advance(1)
        return out


PRECISION_HINTS = {"openvino": "f32", "openvino-bf16": "bf16"}


class OpenVinoEncoder(FastEncoder):
    """OpenVINO on the CPU: ``openvino`` computes in fp32 (OpenVINO's own default is bf16 wherever the
    CPU has it, which moves rankings measurably), ``openvino-bf16`` in bf16, ``openvino-int8`` in int8
    where the export was quantized (the rest at the CPU's default precision)."""

    def __init__(self, folder: Path, facts: ModelFacts, encoder: str) -> None:
        super().__init__(folder, facts)
        import openvino as ov

        core = ov.Core()
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if encoder in PRECISION_HINTS:
            config["INFERENCE_PRECISION_HINT"] = PRECISION_HINTS[encoder]
        threads = _threads()
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.core, self.config = core, config
        self.compiled = core.compile_model(str(folder / "model.xml"), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.encoder = encoder
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        floats = {"f32": "fp32", "f16": "fp16"}.get(hint.get_type_name(), hint.get_type_name())
        self.precision = f"int8+{floats}" if encoder.endswith("int8") else floats
        self._queue: Any = None  # for many batches: compiled for throughput on first use
        self._lock = threading.Lock()

    def encode_full(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        with self._lock:  # an OpenVINO infer request (and the queue) serves one caller at a time
            return self._encode(texts, batch_size, show_progress)

    def _encode(self, texts: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
        if not texts:
            return self._empty()
        if len(texts) <= batch_size:
            return np.array(self.request.infer(self.tokens.feeds(texts))[0], dtype=np.float32)
        import openvino as ov

        out = np.empty((len(texts), self.facts.dim), dtype=np.float32)
        advance = _progress(-(-len(texts) // batch_size), show_progress)
        if self._queue is None:
            bulk = self.core.compile_model(str(self.folder / "model.xml"), "CPU",
                                           {**self.config, "PERFORMANCE_HINT": "THROUGHPUT"})
            self._queue = ov.AsyncInferQueue(bulk, max(2, int(bulk.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))))

        def done(request, rows) -> None:  # noqa: ANN001 - OpenVINO's callback signature
            out[rows] = request.get_output_tensor(0).data
            advance(1)

        self._queue.set_callback(done)
        for rows, feeds in self.tokens.batches(texts, batch_size):
            self._queue.start_async(feeds, rows)
        self._queue.wait_all()
        return out


def _threads() -> int | None:
    """``FUNNEL_ENCODER_THREADS``: threads an encoder may use (default: the runtime's own choice)."""
    value = os.environ.get("FUNNEL_ENCODER_THREADS")
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def load_runtime(encoder: str, folder: Path, facts: ModelFacts) -> FastEncoder:
    """The runtime for ``encoder``'s export in ``folder``; a file the runtime cannot read is an
    :class:`EncoderError` (the caller rebuilds the export)."""
    try:
        if encoder.startswith("onnx"):
            return OnnxEncoder(folder, facts, encoder)
        return OpenVinoEncoder(folder, facts, encoder)
    except EncoderError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways inside the runtimes
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise EncoderError(f"cannot load the {encoder} export in {folder}: {first}") from exc
