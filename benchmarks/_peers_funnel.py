"""funnel's own collections for ``peers.py``: built by funnel's store as ``scale.py`` does, the plan
from ``retriever.calibration.plans`` (timed) on the tuning queries, adaptive search when the product has it."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from retriever.bench.memory import measure_collection_memory, save_queries
from retriever.calibration.plans import calibrate
from retriever.query.ladder import truncate_normalize
from retriever.query.plan import parse_plan
from retriever.query.spec import Hit
from retriever.store.base import PointBatch
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.edge.collection import SHARD_DIR, EdgeCollection, edge_config
from retriever.store.spec import CollectionSpec

BATCH = 5000
THREADS = ("search 1: funnel's store creates the shard with max_search_threads unset (= all cores); this "
           "benchmark re-opens it once with EdgeConfig(max_search_threads=1), which the shard persists; "
           "build: all cores")


def point_id(i: int) -> str:
    """Row ``i``'s point id: an integer id, as funnel's indexer makes since integer ids."""
    return str(i + 1)


def row_of(point: str) -> int:
    """The row of a point id (integer ids; UUIDs in collections cached before them)."""
    return int(point) - 1 if point.isdecimal() else uuid.UUID(point).int - 1


def ladder_queries(q: np.ndarray, ladder: tuple[int, ...]) -> dict[int, np.ndarray]:
    return {d: truncate_normalize(q, d) for d in ladder}


def cold_payload_indexes(collection: EdgeCollection) -> None:
    """Re-create the (empty) collection's payload indexes with ``Memory.Cold`` (memory-mapped, read on
    demand) instead of the store's in-RAM default: what funnel's store would need for its on-disk
    layout to leave the ~114 MiB of doc_id/chunk indexes of 1M points out of RAM (measured, ram_budget.py)."""
    from qdrant_edge import IntegerIndexParams, KeywordIndexParams, Memory, UpdateOperation

    from retriever.store.edge.collection import INDEXED_FIELDS

    params = {"doc_id": KeywordIndexParams(memory=Memory.Cold),
              "chunk": IntegerIndexParams(lookup=True, range=True, memory=Memory.Cold)}
    for field in INDEXED_FIELDS:
        collection.shard.update(UpdateOperation.delete_field_index(field))
        collection.shard.update(UpdateOperation.create_field_index(field, params[field]))


class FunnelBench:
    def __init__(self, run: Any, quantization: str, on_disk: bool = True, graph_dim: int | None = None,
                 payload_index_on_disk: bool = False) -> None:
        self.run = run
        graph_dim = graph_dim or run.ladder[0]
        self.ladder: tuple[int, ...] = tuple(d for d in run.ladder if d >= graph_dim)
        self.quantization = quantization
        short = {"none": "", "int8": "-int8", "binary": "-bin", "binary1.5": "-bin1.5", "binary2": "-bin2"}
        self.name = ("funnel" + short[quantization] + ("" if on_disk else "-ram")
                     + ("" if graph_dim == run.ladder[0] else f"-g{graph_dim}")
                     + ("-pdisk" if payload_index_on_disk else ""))
        self.payload_index_on_disk = payload_index_on_disk
        self.data_dir: Path = run.cache / "funnel"
        self.catalog = EdgeCatalog(self.data_dir)
        self.spec = CollectionSpec(
            name=self.name, model=f"peers-{run.tag}", model_fingerprint="peers", model_dim=run.dim,
            dims=self.ladder, chunk_size=0, chunk_overlap=0, hnsw_dims=(self.ladder[0],),
            quantization=quantization, on_disk=on_disk)
        self.threads = THREADS
        self.queries_file = run.cache / f"{self.name}-measure.npz"

    def build(self) -> dict:
        if self.catalog.exists(self.name):  # a build that did not finish
            shutil.rmtree(self.catalog.root / self.name)
        collection = self.catalog.create(self.spec)
        if self.payload_index_on_disk:
            cold_payload_indexes(collection)
        corpus = self.run.corpus
        upsert = 0.0
        for start in range(0, len(corpus), BATCH):
            stop = min(len(corpus), start + BATCH)
            vectors = ladder_queries(np.asarray(corpus[start:stop]), self.ladder)
            ids = [point_id(i) for i in range(start, stop)]
            payloads = [{"doc_id": str(i), "chunk": 0} for i in range(start, stop)]
            t0 = time.perf_counter()
            collection.upsert(PointBatch(ids, vectors, payloads))
            upsert += time.perf_counter() - t0
        t0 = time.perf_counter()
        collection.finish_indexing()
        optimize = time.perf_counter() - t0
        collection.close()
        self.open().close()  # persist max_search_threads=1
        return {"upsert_s": upsert, "optimize_s": optimize, "build_s": upsert + optimize}

    def open(self) -> EdgeCollection:
        from qdrant_edge import EdgeConfig, EdgeShard

        path = self.catalog.root / self.name
        base = edge_config(self.spec)
        config = EdgeConfig(vectors=base.vectors, optimizers=base.optimizers, max_search_threads=1)
        shard = EdgeShard.load(str(path / SHARD_DIR), config)
        return EdgeCollection(path, self.catalog.read_spec(self.name), shard)

    def calibrate(self, collection: EdgeCollection) -> tuple[dict, list[dict]]:
        queries = ladder_queries(self.run.tune_q, self.ladder)
        reference = [[Hit(id=point_id(int(i)), doc_id="", chunk=0, score=0.0, text=None) for i in row]
                     for row in self.run.tune_truth]
        cal = calibrate(collection, queries, 10, self.run.args.target, reference=reference, timed=True)
        points = [{"setting": {"plan": t["plan"], "hnsw_ef": t.get("hnsw_ef")}, "recall": t["recall_vs_exact"],
                   "p50_ms": t["p50_ms"]} for t in cal.tried if "p50_ms" in t]
        return {"plan": str(cal.plan), "hnsw_ef": cal.hnsw_ef, "calibration_met": cal.met,
                "plans_tried": len(cal.tried)}, points

    def searcher(self, collection: EdgeCollection, setting: dict, **extra: Any) -> Callable[[np.ndarray], np.ndarray]:
        plan = parse_plan(setting["plan"], self.ladder, 10)
        ladder = self.ladder
        extra = {"hnsw_ef": setting.get("hnsw_ef")} | extra

        def run(q: np.ndarray) -> np.ndarray:
            one = {d: (q[:d] / np.linalg.norm(q[:d]))[None, :] for d in ladder}
            hits = collection.search(one, plan, 10, with_text=False, **extra)[0]
            return np.fromiter((row_of(h.id) for h in hits), dtype=np.int64, count=len(hits))

        return run

    def memory(self, setting: dict) -> dict:
        save_queries(self.queries_file, ladder_queries(self.run.meas_q, self.ladder))
        m = measure_collection_memory(self.data_dir, self.name, self.queries_file,
                                      f"plan:{setting['plan']}:{setting.get('hnsw_ef') or 'auto'}")
        return {"rss_open": m["collection_rss_open"], "rss_after": m["collection_rss"],
                "rss_anon_after": m["collection_rss_anon"], "rss_file_after": m["collection_rss_file"]}

    def adaptive_searcher(self, collection: EdgeCollection,
                          setting: dict) -> tuple[Callable[[np.ndarray], np.ndarray] | None, str, dict | None]:
        """funnel's adaptive mode (``retriever.query.adaptive`` and ``retriever.calibration.adaptive``):
        its rule calibrated on the tuning queries for the calibrated fixed plan, then
        ``retriever.search.search_each`` one query at a time."""
        from retriever.calibration.adaptive import calibrate_adaptive
        from retriever.query.adaptive import AdaptiveSpec
        from retriever.search import search_each

        plan = parse_plan(setting["plan"], self.ladder, 10)
        queries = ladder_queries(self.run.tune_q, self.ladder)
        reference = [[Hit(id=point_id(int(i)), doc_id="", chunk=0, score=0.0, text=None) for i in row]
                     for row in self.run.tune_truth]
        ef = setting.get("hnsw_ef")
        cal = calibrate_adaptive(collection, queries, plan, reference, self.run.args.target, fixed_ef=ef)
        spec = AdaptiveSpec(plan, 10, with_text=False, hnsw_ef=ef, rule=cal.rule)
        ladder = self.ladder

        def run(q: np.ndarray) -> np.ndarray:
            one = {d: (q[:d] / np.linalg.norm(q[:d]))[None, :] for d in ladder}
            hits = search_each(collection, one, [spec])[0]
            return np.fromiter((row_of(h.id) for h in hits), dtype=np.int64, count=len(hits))

        run(self.run.tune_q[0])
        return run, "adaptive (retriever.search.search_each, rule from calibrate_adaptive on the tuning queries)", {
            "plan": setting["plan"], **cal.rule.to_dict(), "tuning_recall": cal.recall,
            "tuning_widened_share": cal.widened_share}
