"""``funnel bench --encoders``: each encoder backend of one model on a BEIR split, side by side.

Per encoder: NDCG@10 per ladder dim (exact cosine search over the whole corpus, one vector per
document), recall@10 against the fp32 torch top-10, NDCG@10 of its queries against torch's
document vectors (mixing encoders), single-query p50/p99, passages/s, load time (first: with the
export made; cached: a second start) and the export's size on disk.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from retriever.calibration.encoders import exact_top_k
from retriever.calibration.judge import Judge
from retriever.calibration.timing import time_each
from retriever.encoding.embedder import Embedder
from retriever.errors import FunnelError
from retriever.ingest.beir import load_split
from retriever.query.ladder import parse_ladder, truncate_normalize
from retriever.query.spec import Hit


@contextmanager
def _cache_at(folder: str):  # noqa: ANN202 - a context manager
    before = os.environ.get("FUNNEL_CACHE")
    os.environ["FUNNEL_CACHE"] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FUNNEL_CACHE", None)
        else:
            os.environ["FUNNEL_CACHE"] = before


def _corpus(path: Path) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with (path / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                text = " ".join(p for p in (rec.get("title") or "", rec.get("text") or "") if p).strip()
                if text:
                    ids.append(str(rec["_id"]))
                    texts.append(text)
    return ids, texts


def _rankings(queries: np.ndarray, docs: np.ndarray, ids: Sequence[str], k: int) -> list[list[Hit]]:
    rows, scores = exact_top_k(queries, docs, k)
    return [[Hit(id=ids[i], doc_id=ids[i], chunk=0, score=float(s), text=None) for i, s in zip(r, sc)]
            for r, sc in zip(rows, scores)]


def _size(folder: Path | None) -> int | None:
    if folder is None:
        return None
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_encoder_bench(data: Path, model: str, encoders: Sequence[str], split: str = "test", dims: str | None = None,
                      k: int = 10, max_queries: int | None = None, batch_size: int = 32,
                      on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure ``encoders`` of ``model`` on the BEIR dir ``data`` (its ``split``); one dict per encoder."""
    doc_ids, texts = _corpus(data)
    judged = load_split(data, split, set(doc_ids))
    query_ids = [q for q in judged.queries if judged.relevant.get(q)][: max_queries or None]
    if not query_ids:
        raise FunnelError(f"{data}: no judged queries in split {split!r}")
    queries = [judged.queries[q] for q in query_ids]
    judge = Judge(judged, query_ids, k)
    rows: list[dict[str, Any]] = []
    reference: dict[str, Any] = {}
    for name in encoders:
        with tempfile.TemporaryDirectory(prefix="funnel-bench-cache-") as scratch, _cache_at(scratch):
            row = _measure(name, model, texts, queries, doc_ids, judge, dims, k, batch_size, reference)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return {"data": str(data), "split": split, "model": model, "k": k, "queries": len(queries),
            "passages": len(texts), "batch_size": batch_size, "rows": rows}


def _measure(name: str, model: str, texts: list[str], queries: list[str], doc_ids: list[str], judge: Judge,
             dims: str | None, k: int, batch_size: int, reference: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    embedder = Embedder(model, device="cpu", encoder=name, calibration_texts=texts[:300])
    embedder.encode_full(["warm up"])
    load_first = time.perf_counter() - started
    runtime = getattr(embedder, "_runtime", None)
    folder = Path(runtime.folder) if runtime is not None else None
    started = time.perf_counter()
    again = Embedder(model, device="cpu", encoder=name)
    again.encode_full(["warm up"])
    load_cached = time.perf_counter() - started
    del again
    _, latency = time_each(lambda q: embedder.encode_full([q]), queries[:200], warmup=20)
    t0 = time.perf_counter()
    docs = embedder.encode_full(texts, batch_size=batch_size)
    passages_s = len(texts) / (time.perf_counter() - t0)
    qvecs = embedder.encode_full(queries, batch_size=batch_size)
    ladder = parse_ladder(dims, embedder.dim)
    ndcg = {}
    for dim in ladder:
        ndcg[dim] = judge.metrics(_rankings(qvecs[:, :dim], docs[:, :dim], doc_ids, k))[f"ndcg@{k}"]
    full = _rankings(qvecs, docs, doc_ids, k)
    if not reference:  # the first encoder measured is the reference (torch fp32 when listed first)
        reference.update(encoder=name, docs=docs, top=[[h.id for h in hits] for hits in full])
    recall = float(np.mean([len({h.id for h in hits} & set(ref)) / k for hits, ref in zip(full, reference["top"])]))
    mixed = judge.metrics(_rankings(qvecs, reference["docs"], doc_ids, k))[f"ndcg@{k}"]
    cos = np.sum(truncate_normalize(docs, docs.shape[1]) * truncate_normalize(reference["docs"], docs.shape[1]), axis=1)
    return {"encoder": name, "precision": embedder.precision, "ndcg@10": {str(d): round(v, 4) for d, v in ndcg.items()},
            "recall_vs_reference@10": round(recall, 4), "reference": reference["encoder"],
            "ndcg@10_queries_vs_reference_docs": round(mixed, 4),
            "cosine_to_reference": {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 6)},
            "query_p50_ms": round(latency.p50, 3), "query_p99_ms": round(latency.p99, 3),
            "passages_per_s": round(passages_s, 1), "load_first_s": round(load_first, 2),
            "load_cached_s": round(load_cached, 2), "export_bytes": _size(folder)}


def markdown_table(result: dict[str, Any]) -> str:
    """The rows as a Markdown table."""
    dims = list(result["rows"][0]["ndcg@10"]) if result["rows"] else []
    head = ["encoder", "precision", *[f"NDCG@10 {d}" for d in dims], "recall vs ref", "NDCG mixed", "query p50 ms",
            "p99 ms", "passages/s", "load first s", "load cached s", "export MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        size = "—" if r["export_bytes"] is None else f"{r['export_bytes'] / 2**20:.0f}"
        cells = [r["encoder"], r["precision"], *[f"{r['ndcg@10'][d]:.4f}" for d in dims],
                 f"{r['recall_vs_reference@10']:.3f}", f"{r['ndcg@10_queries_vs_reference_docs']:.4f}",
                 f"{r['query_p50_ms']:.2f}", f"{r['query_p99_ms']:.2f}", f"{r['passages_per_s']:,.0f}",
                 f"{r['load_first_s']:.1f}", f"{r['load_cached_s']:.2f}", size]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
