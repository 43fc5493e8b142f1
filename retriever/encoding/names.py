"""The encoder backends by name, which of them are installed here, and the default choice."""

from __future__ import annotations

import functools
import importlib.util

from retriever.errors import BadInputError, EncoderError

AUTO = "auto"
TORCH = "torch"
FAST_ENCODERS = ("openvino", "onnx", "openvino-bf16", "openvino-int8", "onnx-int8")
BF16 = "openvino-bf16"
ENCODERS = (TORCH, *FAST_ENCODERS)
# The CPU default when nothing was calibrated: fp32 all through, no loss (see the encoders benchmark);
# bf16 and int8 are chosen only where their loss was measured first (`funnel calibrate`, and `funnel
# index` on a sample of the corpus it indexes).
CPU_DEFAULTS = ("openvino", "onnx", TORCH)

# module needed -> the package that installs it
_NEEDS = {
    "onnx": {"onnxruntime": "onnxruntime", "onnx": "onnx"},
    "onnx-int8": {"onnxruntime": "onnxruntime", "onnx": "onnx"},
    "openvino": {"openvino": "openvino", "onnx": "onnx"},
    "openvino-bf16": {"openvino": "openvino", "onnx": "onnx"},
    "openvino-int8": {"openvino": "openvino", "onnx": "onnx", "nncf": "nncf"},
}


def parse_encoder(name: str | None) -> str:
    """``name`` checked against :data:`ENCODERS` (``None`` and ``auto`` mean :data:`AUTO`)."""
    if name is None or name == AUTO:
        return AUTO
    if name not in ENCODERS:
        raise BadInputError(f"unknown encoder {name!r}: choose from {AUTO}, {', '.join(ENCODERS)}")
    return name


def parse_encoders(text: str) -> list[str]:
    """A comma-separated list of encoder names (``all``: every one installed here)."""
    if text.strip() == "all":
        return [e for e in ENCODERS if available(e)]
    names = [parse_encoder(part.strip()) for part in text.split(",") if part.strip()]
    if not names or AUTO in names:
        raise BadInputError(f"invalid encoder list {text!r}: give names from {', '.join(ENCODERS)}, or all")
    return list(dict.fromkeys(names))


def missing(encoder: str) -> list[str]:
    """The packages ``encoder`` needs that are not installed (torch's are the base install's)."""
    return [pkg for module, pkg in _NEEDS.get(encoder, {}).items() if importlib.util.find_spec(module) is None]


def available(encoder: str) -> bool:
    """Whether ``encoder`` can run here (its packages installed; bf16: a CPU that computes it)."""
    return not missing(encoder) and (encoder != BF16 or cpu_has_bf16())


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), as OpenVINO reports it."""
    if importlib.util.find_spec("openvino") is None:
        return False
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def require(encoder: str) -> None:
    """Raise :class:`EncoderError` naming what to install when ``encoder`` cannot run here."""
    if encoder == BF16 and not missing(encoder) and not cpu_has_bf16():
        raise EncoderError(f"encoder {BF16!r} needs a CPU with bf16 instructions (AVX-512 BF16 or AMX), "
                           "which this one lacks: use --encoder openvino")
    lacking = missing(encoder)
    if lacking:
        raise EncoderError(f"encoder {encoder!r} needs {', '.join(lacking)}, which is not installed: "
                           f"pip install {' '.join(lacking)} (or use --encoder torch)")


def cpu_default() -> str:
    """The fastest full-precision encoder installed here."""
    return next(e for e in CPU_DEFAULTS if available(e))
