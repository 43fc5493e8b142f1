"""Which int8 variant of the model keeps NDCG@10 within 0.002 of fp32 at every ladder dim, on both sides
and for queries only?

Each variant is made from funnel's cached OpenVINO fp32 export of the default model (NNCF, as
funnel's ``openvino-int8`` export does, or weight-only compression), compiled with the float
precision named, and encodes the whole corpus and its judged test queries. Per ladder dim: NDCG@10
of exact cosine search (the variant on both sides), its difference to fp32 (``delta``), and the
difference when only the *queries* use the variant against fp32 documents (``queries_only_delta``).

Variants: ``fp32``; ``int8`` (NNCF ``quantize``, transformer preset, 300 calibration passages, the
rest fp32), ``int8-bf16`` (the same, the rest bf16: what ``--encoder openvino-int8`` runs on a bf16
CPU); ``sq`` (int8 with SmoothQuant alpha 0.5); ``w8`` / ``w8-bf16`` (int8 weights only,
``compress_weights`` INT8_ASYM, activations fp32 / bf16).

    python benchmarks/int8_variants.py                         # financial-qa-10k, every variant
    python benchmarks/int8_variants.py --data ../shared/data/msmarco-sample --variants fp32,int8-bf16

Speed columns are single runs of a batch encode, for orientation only (``encoders_peers.py`` measures
speed). Results: ``int8_variants-<data>.json`` / ``.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import SHARED_DATA, commit_line, machine

HERE = Path(__file__).resolve().parent
VARIANTS = ("fp32", "int8", "int8-bf16", "sq", "w8", "w8-bf16")
DIMS = (64, 128, 256, 384)
CALIBRATION_TEXTS = 300


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=SHARED_DATA / "financial-qa-10k")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if variants[0] != "fp32" or set(variants) - set(VARIANTS):
        p.error(f"variants: fp32 first, then any of {', '.join(VARIANTS)}")

    import nncf
    import openvino as ov
    from encoders_peers import exact_ndcg, load_data

    from retriever.calibration.judge import Judge
    from retriever.encoding.embedder import Embedder
    from retriever.encoding.runtime import Tokens

    data = load_data(args.data, None, None, Path("/tmp"))
    judge = Judge(data.split, data.query_ids, 10)
    embedder = Embedder(encoder="openvino")
    embedder.encode_full(["export it if it is not cached"])
    folder = Path(embedder._runtime.folder)  # noqa: SLF001 - the cached export this experiment starts from
    tokens = Tokens(folder / "tokenizer.json", embedder._known)  # noqa: SLF001
    step = max(1, len(data.passages) // CALIBRATION_TEXTS)
    calibration = [t for t in data.passages[::step] if t.strip()][:CALIBRATION_TEXTS]
    core = ov.Core()
    logging.getLogger("nncf").setLevel(logging.ERROR)

    def encode(compiled: Any, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), embedder.dim), dtype=np.float32)
        request = compiled.create_infer_request()
        for rows, feeds in tokens.batches(texts, 32):
            out[rows] = request.infer(feeds)[0]
        return out

    def per_dim(docs: np.ndarray, queries: np.ndarray) -> dict[int, float]:
        return {d: exact_ndcg(judge, data.passage_ids, docs[:, :d], queries[:, :d])["ndcg@10"] for d in DIMS}

    def make(name: str) -> Any:
        model = core.read_model(str(folder / "model.xml"))
        if name == "fp32":
            return model
        dataset = nncf.Dataset([tokens.feeds([t]) for t in calibration])
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if name.startswith("int8"):
                return nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration))
            if name == "sq":
                from nncf.quantization.advanced_parameters import (
                    AdvancedQuantizationParameters,
                    AdvancedSmoothQuantParameters,
                )

                advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=0.5))
                return nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER,
                                     subset_size=len(calibration), advanced_parameters=advanced)
            return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)

    rows: list[dict[str, Any]] = []
    reference: tuple[np.ndarray, np.ndarray, dict[int, float]] | None = None
    for name in variants:
        t0 = time.perf_counter()
        model = make(name)
        hint = "bf16" if name.endswith("-bf16") else "f32"
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "THROUGHPUT"})
        t1 = time.perf_counter()
        docs = encode(compiled, data.passages)
        t2 = time.perf_counter()
        queries = encode(compiled, data.queries)
        ndcg = per_dim(docs, queries)
        row: dict[str, Any] = {"variant": name, "precision_hint": hint, "make_s": round(t1 - t0, 1),
                               "passages_per_s": round(len(data.passages) / (t2 - t1), 1),
                               "ndcg": {d: round(v, 4) for d, v in ndcg.items()}}
        if reference is None:
            reference = (docs, queries, ndcg)
        else:
            row["delta"] = {d: round(ndcg[d] - reference[2][d], 4) for d in DIMS}
            mixed = per_dim(reference[0], queries)
            row["queries_only_delta"] = {d: round(mixed[d] - reference[2][d], 4) for d in DIMS}
        rows.append(row)
        print(json.dumps(row), flush=True)

    m = machine("benchmarks/int8_variants.py")
    stem = f"int8_variants-{args.data.name}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"data": str(args.data), "passages": len(data.passages),
                                                       "queries": len(data.queries), "machine": m, "rows": rows},
                                                      indent=2) + "\n")
    lines = [f"# int8 variants on {args.data.name}", "", f"{len(data.passages):,} passages, {len(data.queries)} "
             "judged test queries, exact cosine, NDCG@10 per dim; delta = variant − fp32 (both sides); "
             "queries only = variant queries against fp32 documents.", "",
             "| variant | " + " | ".join(f"NDCG@10 {d}" for d in DIMS) + " | worst delta | worst queries-only delta |"
             " passages/s (one run) |", "|---" * (len(DIMS) + 4) + "|"]
    for r in rows:
        worst = min(r["delta"].values()) if "delta" in r else 0.0
        worst_q = min(r["queries_only_delta"].values()) if "queries_only_delta" in r else 0.0
        lines.append(f"| {r['variant']} | " + " | ".join(f"{r['ndcg'][d]:.4f}" for d in DIMS)
                     + f" | {worst:+.4f} | {worst_q:+.4f} | {r['passages_per_s']:.1f} |")
    lines += ["", f"Machine: {m.get('cpu')}, {m.get('cpu_count')} cores; command: `{m.get('command')}`",
              commit_line(m), ""]
    (args.out / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
