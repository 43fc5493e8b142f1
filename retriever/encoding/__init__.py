"""Encoder backends: the same sentence-transformers model run by torch, ONNX Runtime or OpenVINO.

:mod:`.names` names the backends and picks one; :mod:`.cpu` tells what the CPU can run;
:mod:`.export` writes a model as ONNX / OpenVINO (fp32, int8); :mod:`.cache` keeps those exports,
keyed by the model's fingerprint; :mod:`.runtime` runs them; :mod:`.calibrate` measures them.
"""

from retriever.encoding.names import AUTO, ENCODERS, FAST_ENCODERS, parse_encoder

__all__ = ["AUTO", "ENCODERS", "FAST_ENCODERS", "parse_encoder"]
