"""Write a sentence-transformers model as a fast encoder: ONNX or OpenVINO, fp32 or int8.

The whole model — transformer, pooling, any dense and normalise layers — is traced into one ONNX
graph (token ids in, sentence embedding out) with PyTorch's own exporter; int8 ONNX comes from
ONNX Runtime's dynamic quantizer; OpenVINO converts that graph, and NNCF quantizes it statically
(int8 activations too) on calibration texts. Every export is checked against the torch model on
probe texts before it is kept: an export that encodes differently is an error, never a cache entry.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retriever.encoding.cache import ModelFacts, building_folder, finish_export
from retriever.encoding.cpu import int8_kernel, int8_reduce_range
from retriever.errors import EncoderError

OPSET = 17
CALIBRATION_TEXTS = 300  # NNCF's default subset size
# Texts of every length class, a long one past any model's window (truncation), accents, digits.
PROBE_TEXTS = (
    "hello",
    "What was the total revenue reported for fiscal year 2023?",
    "Les résultats trimestriels dépassent les prévisions; l'action progresse de 4,2 %.",
    "The company recognised an impairment charge of $1.2 billion on goodwill related to its cloud segment. " * 3,
    "Matryoshka embeddings keep most of their meaning in the first dimensions. " * 80,
)
# Least cosine to the torch model on the probe texts for an export to be kept.
MIN_COSINE = {"onnx": 0.9999, "openvino": 0.9999, "openvino-bf16": 0.999, "onnx-int8": 0.9, "openvino-int8": 0.9}


def model_inputs(model: Any) -> tuple[str, ...]:
    """The token inputs the model's tokenizer produces (``token_type_ids`` only for models that use it)."""
    names = set(getattr(model.tokenizer, "model_input_names", ()) or ())
    uses_types = "token_type_ids" in names
    return ("input_ids", "attention_mask", "token_type_ids") if uses_types else ("input_ids", "attention_mask")


def variant_key(encoder: str) -> str:
    """The cache key of ``encoder``'s export: int8 exports depend on this CPU's int8 kernel family;
    ``openvino-bf16`` runs the ``openvino`` export (the precision is chosen when it is compiled)."""
    if encoder == "openvino-bf16":
        return "openvino"
    return f"{encoder}/{int8_kernel()}" if encoder.endswith("int8") else encoder


def export(encoder: str, model: Any, facts: ModelFacts, target: Path,
           calibration_texts: Sequence[str] | None = None) -> Path:
    """Export the torch sentence-transformers ``model`` as ``encoder`` into folder ``target`` (atomically)."""
    if variant_key(encoder) == "openvino":
        encoder = "openvino"  # one export for both precisions, checked at fp32
    building = building_folder(target)
    try:
        _save_tokenizer(model, building)
        if encoder in ("onnx", "onnx-int8"):
            _torch_to_onnx(model, facts, building / ("model.onnx" if encoder == "onnx" else "fp32.onnx"))
            if encoder == "onnx-int8":
                _quantize_onnx(building / "fp32.onnx", building / "model.onnx")
        elif encoder in ("openvino", "openvino-bf16", "openvino-int8"):
            _torch_to_onnx(model, facts, building / "fp32.onnx")
            _onnx_to_openvino(building / "fp32.onnx", building / "model.xml", facts,
                              calibration_texts if encoder == "openvino-int8" else None, building)
        else:
            raise EncoderError(f"encoder {encoder!r} has no export")
        for leftover in building.glob("fp32.onnx*"):
            leftover.unlink()
        from retriever.encoding.runtime import load_runtime

        runtime = load_runtime(encoder, building, facts)
        cosine = check_against_torch(runtime, model, PROBE_TEXTS)
        if cosine < MIN_COSINE[encoder]:
            raise EncoderError(f"the {encoder} export of this model encodes differently from torch (least cosine "
                               f"{cosine:.4f} on probe texts, at least {MIN_COSINE[encoder]} needed): use --encoder torch")
        manifest = {"variant": variant_key(encoder), "fingerprint": facts.fingerprint, "dim": facts.dim,
                    "max_tokens": facts.max_tokens, "inputs": list(facts.inputs), "probe_cosine": round(cosine, 6),
                    "int8_kernel": int8_kernel() if encoder.endswith("int8") else None,
                    "calibration_texts": len(calibration_texts or ()) if encoder == "openvino-int8" else None,
                    "probe_text": PROBE_TEXTS[1],
                    "probe_vector": [round(float(x), 6) for x in runtime.encode_full([PROBE_TEXTS[1]])[0]]}
        return finish_export(building, target, manifest)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def check_against_torch(runtime: Any, model: Any, texts: Sequence[str]) -> float:
    """The least cosine between ``runtime``'s and the torch model's embeddings of ``texts``; the token ids
    must be the same too (else -1)."""
    features = model.tokenize(list(texts))
    for i, text in enumerate(texts):
        mine = runtime.token_ids(text)
        theirs = [int(t) for t, m in zip(features["input_ids"][i].tolist(), features["attention_mask"][i].tolist()) if m]
        if mine != theirs:
            return -1.0
    ours = runtime.encode_full(list(texts), batch_size=2)
    ref = model.encode(list(texts), batch_size=2, convert_to_numpy=True, normalize_embeddings=False)
    from retriever.query.ladder import truncate_normalize

    cos = np.sum(truncate_normalize(ours, ours.shape[1]) * truncate_normalize(ref, ref.shape[1]), axis=1)
    return float(cos.min())


def _save_tokenizer(model: Any, folder: Path) -> None:
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise EncoderError("this model's tokenizer has no fast (Rust) version, which fast encoders need: "
                           "use --encoder torch")
    backend.save(str(folder / "tokenizer.json"))


def _torch_to_onnx(model: Any, facts: ModelFacts, path: Path) -> None:
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, st: Any) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.st(dict(zip(facts.inputs, tensors)))["sentence_embedding"]

    wrapper = SentenceEmbedding(model).to("cpu").eval()
    sample = model.tokenize(["a short text", "a somewhat longer text to trace the padding with"])
    args = tuple(sample[name].to("cpu") for name in facts.inputs)
    axes = {name: {0: "batch", 1: "tokens"} for name in facts.inputs}
    kwargs: dict[str, Any] = {"input_names": list(facts.inputs), "output_names": ["sentence_embedding"],
                              "dynamic_axes": {**axes, "sentence_embedding": {0: "batch"}}, "opset_version": OPSET}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: one self-contained file, no onnxscript needed
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, args, str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001 - exporter failures vary by model: one clear line
        raise EncoderError(f"cannot export this model to ONNX ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}): use --encoder torch") from exc


def _quantize_onnx(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import logging

        logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns through the root logger
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=int8_reduce_range())


def _onnx_to_openvino(source: Path, target: Path, facts: ModelFacts, calibration_texts: Sequence[str] | None,
                      folder: Path) -> None:
    import openvino as ov

    model = ov.convert_model(str(source))
    if calibration_texts is not None:
        import logging

        import nncf

        logging.getLogger("nncf").setLevel(logging.ERROR)
        texts = [t for t in calibration_texts if t.strip()][:CALIBRATION_TEXTS]
        if len(texts) < 16:
            raise EncoderError(f"openvino-int8 is calibrated on the collection's chunks: {len(texts)} given, "
                               "at least 16 needed")
        from retriever.encoding.runtime import Tokens

        tokens = Tokens(folder / "tokenizer.json", facts)
        dataset = nncf.Dataset([tokens.feeds([t]) for t in texts])
        options: dict[str, Any] = {}
        if int8_reduce_range():  # no VNNI: u8×s8 products saturate in 16 bits unless the weights keep 7 bits
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

            options["advanced_parameters"] = AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress bars
            model = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(texts),
                                  **options)
    ov.save_model(model, str(target), compress_to_fp16=False)


