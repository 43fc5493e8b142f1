"""Run ``funnel bench``: index a BEIR corpus, then measure every dim, plan and quantization.

For each model: the corpus is indexed (or a matching bench collection is reused: re-indexing an
unchanged corpus re-encodes nothing) into a collection with an HNSW graph on *every* dim, so each
dim can be searched alone both exactly and through its graph. Each extra quantization is a copy of
that collection's points with another storage layout. Query vectors are encoded once; latency is
measured on the engine, one query at a time after a warm-up, and the query encode is measured
separately. IR metrics come from sentence-transformers' ``InformationRetrievalEvaluator``, with
chunk hits folded into documents by their best chunk.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever.bench.baseline import bm25s_baseline
from retriever.bench.memory import measure_collection_memory, save_queries
from retriever.calibration.adaptive import calibrate_adaptive
from retriever.calibration.fusion import calibrate_fusion
from retriever.calibration.judge import Judge
from retriever.calibration.plans import DEFAULT_SAMPLE, DEFAULT_TARGET, calibrate, recall_against
from retriever.calibration.record import PlanPart
from retriever.calibration.timing import DEFAULT_WARMUP, Latency, time_each
from retriever.encoding.embedder import DEFAULT_MODEL, Embedder
from retriever.errors import BadInputError
from retriever.ingest.beir import corpus_ids, load_split
from retriever.ingest.indexer import IndexProgress, build_spec, index_corpus
from retriever.query.adaptive import AdaptiveSpec
from retriever.query.fusion import Fusion
from retriever.query.plan import FunnelPlan, default_plan, parse_plan, validate_k
from retriever.query.result import Depth, SearchResult
from retriever.query.spec import Hit, QuerySpec
from retriever.search import search_each as adaptive_search_each
from retriever.store.base import Catalog, Collection
from retriever.store.paths import BENCH_PREFIX
from retriever.store.spec import QUANTIZATIONS, CollectionSpec, Layout

SCHEMA_VERSION = 1
AUTO = "auto"
ADAPTIVE = "adaptive"
DEFAULT = "default"
ENCODE_SAMPLE = 200
# Search modes ``--modes`` adds rows for (see :mod:`retriever.query.fusion`); each hybrid row uses its
# fusion's documented defaults, ``hybrid-calibrated`` the fusion calibrated on ``--fusion-split``.
MODE_ROWS = ("lexical", "hybrid-union", "hybrid-rrf", "hybrid-dbsf")
FUSION_SAMPLE = 300


@dataclass(frozen=True)
class BenchConfig:
    """What ``funnel bench`` measures (see the README for the meaning of every field)."""

    data: Path
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    dims: str | None = None
    plans: tuple[str, ...] = (DEFAULT, AUTO, ADAPTIVE)
    k: int = 10
    quantizations: tuple[str, ...] = ("none",)
    split: str = "test"
    max_queries: int | None = None
    warmup: int = DEFAULT_WARMUP
    target: float = DEFAULT_TARGET
    device: str | None = None
    memory: bool = True
    modes: tuple[str, ...] = ()
    fusion_split: str | None = None


class BenchProgress:
    """Receives progress (the CLI draws rich bars). The default does nothing."""

    def index(self) -> IndexProgress | None:
        return None

    def step(self, label: str, total: int) -> Callable[[], None]:
        """Start a step of ``total`` queries; returns the callback to call after each one."""
        return lambda: None

    def note(self, text: str) -> None:
        """A line of news (a reused collection, an unmet calibration target, …)."""


def validate_config(config: BenchConfig) -> None:
    """Reject bad options before anything is read or indexed."""
    validate_k(config.k)
    if not config.models:
        raise BadInputError("give at least one model")
    if not config.plans:
        raise BadInputError("give at least one plan (or 'default' / 'auto')")
    for q in config.quantizations:
        if q not in QUANTIZATIONS:
            raise BadInputError(f"unknown quantization {q!r} (choose from {', '.join(QUANTIZATIONS)})")
    if len(set(config.quantizations)) != len(config.quantizations):
        raise BadInputError("each quantization may be given once")
    if config.max_queries is not None and config.max_queries < 1:
        raise BadInputError(f"invalid --max-queries {config.max_queries}: use 1 or more")
    if not 0 < config.target <= 1:
        raise BadInputError(f"invalid recall target {config.target}: use a number in (0, 1]")
    for mode in config.modes:
        if mode not in MODE_ROWS:
            raise BadInputError(f"unknown search mode row {mode!r} (choose from {', '.join(MODE_ROWS)})")
    if config.fusion_split is not None and not config.modes:
        raise BadInputError("--fusion-split calibrates hybrid search: give --modes too")
    if config.fusion_split is not None and config.fusion_split == config.split:
        raise BadInputError(f"--fusion-split {config.fusion_split} is the measured split: calibrate fusion on "
                            "another one (e.g. train), or the hybrid-calibrated row is tuned on its own test")


def bench_collection_name(spec: CollectionSpec, quantization: str, data: Path) -> str:
    """A stable name per (data set, model weights, ladder, quantization, lexical index): a later run
    reuses it, and another data set never shares it (its chunks would join the measured corpus)."""
    dims = "_".join(str(d) for d in spec.dims)
    lexical = f"-{spec.lexical}" if spec.lexical else ""
    where = hashlib.sha256(str(data.expanduser().resolve()).encode()).hexdigest()[:8]
    return f"{BENCH_PREFIX}{where}-{spec.model_fingerprint[:12]}-{dims}-{quantization}{lexical}"


def _row(judge: Judge, hits: list[list[Hit]], latency: Latency, exact: list[list[Hit]], k: int) -> dict[str, Any]:
    return judge.metrics(hits) | {
        f"recall_vs_exact@{k}": recall_against(hits, exact, k),
        "latency_ms": {key: getattr(latency, key) for key in ("p50", "p95", "p99", "mean")},
        "qps": latency.qps,
    }


def bytes_per_vector(spec: CollectionSpec, dims: Sequence[int], exact: bool = False) -> int:
    """Bytes per point of the vectors a search scores: 4 per float32 component, 1 per int8 one.

    An exact search scores the float32 originals even where an int8 copy exists.
    """
    return sum(d if d in spec.quantized_dims and not exact else 4 * d for d in dims)


def stored_bytes_per_vector(spec: CollectionSpec, dim: int) -> int:
    """Bytes stored per point for one dim: the float32 vector, plus its int8 copy if any."""
    return 4 * dim + (dim if dim in spec.quantized_dims else 0)


def stored_bytes(spec: CollectionSpec, dims: Sequence[int]) -> int:
    """Bytes per point a collection holding just the vectors of ``dims`` stores (each dim once)."""
    return sum(stored_bytes_per_vector(spec, d) for d in dict.fromkeys(dims))


def _measure(
    rows: list[dict[int, np.ndarray]],
    search: Callable[[dict[int, np.ndarray]], Sequence[list[Hit]]],
    config: BenchConfig,
    progress: BenchProgress,
    label: str,
) -> tuple[list[list[Hit]], Latency]:
    done = progress.step(label, len(rows))
    results, latency = time_each(lambda q: search(q)[0], rows, warmup=config.warmup, on_done=done)
    return results, latency  # type: ignore[return-value]


def depth_distribution(depths: Sequence[Depth]) -> dict[str, Any]:
    """How deep adaptive search went: share widened, candidates scored (mean and percentiles), passes."""
    candidates = np.asarray([d.candidates for d in depths], dtype=np.float64)
    p50, p90, p99 = np.percentile(candidates, [50, 90, 99]) if len(depths) else (0.0, 0.0, 0.0)
    return {"widened_share": sum(d.passes == 2 for d in depths) / max(1, len(depths)),
            "mean_candidates": float(candidates.mean()) if len(depths) else 0.0,
            "candidates_p50": float(p50), "candidates_p90": float(p90), "candidates_p99": float(p99),
            "mean_stages": float(np.mean([d.stages for d in depths])) if depths else 0.0}


def _plans(config: BenchConfig, spec: CollectionSpec) -> list[tuple[str, FunnelPlan | None]]:
    """Parse the plan options for this ladder (``auto`` is resolved later, per collection)."""
    plans: list[tuple[str, FunnelPlan | None]] = []
    for spec_text in config.plans:
        if spec_text in (AUTO, ADAPTIVE):
            plans.append((spec_text, None))
        elif spec_text == DEFAULT:
            plans.append((DEFAULT, default_plan(spec.dims, config.k)))
        else:
            plans.append(("given", parse_plan(spec_text, spec.dims, config.k)))
    return plans


def bench_variant(
    collection: Collection,
    judge: Judge,
    queries: dict[int, np.ndarray],
    plans: list[tuple[str, FunnelPlan | None]],
    config: BenchConfig,
    progress: BenchProgress,
    texts: Sequence[str] = (),
    fusion_queries: JudgedQueries | None = None,
) -> dict[str, Any]:
    """Every dim alone (exact and HNSW), every plan, and every search mode row, on one collection."""
    spec, k = collection.spec, config.k
    n = len(next(iter(queries.values())))
    rows = [{dim: m[i : i + 1] for dim, m in queries.items()} for i in range(n)]
    exact, exact_latency = _measure(rows, lambda q: collection.search(q, None, k, with_text=False),
                                    config, progress, f"{spec.name}: exact {spec.top_dim}")
    n_points = collection.count()
    per_dim = _bench_dims(collection, judge, rows, (exact, exact_latency), config, progress)
    per_plan, calibrated = _bench_plans(collection, judge, queries, rows, plans, exact, config, progress)
    variant = {"quantization": spec.quantization, "collection": spec.name, "points": n_points,
               "disk_bytes": collection.disk_bytes(), "dims": per_dim, "plans": per_plan}
    if config.modes:
        saved = PlanPart(plan=str(calibrated["plan"]), k=k) if calibrated else None

        def plan_for(depth: int) -> FunnelPlan:
            return saved.scaled(spec.dims, depth) if saved else default_plan(spec.dims, depth)

        variant["modes"] = bench_modes(collection, judge, queries, texts, plan_for, exact, config, progress,
                                       fusion_queries)
    return variant


def _bench_dims(collection: Collection, judge: Judge, rows: list[dict[int, np.ndarray]],
                exact: tuple[list[list[Hit]], Latency], config: BenchConfig,
                progress: BenchProgress) -> list[dict[str, Any]]:
    """Each dim searched alone, exactly and through its graph (``exact``: the top dim's exact run, reused)."""
    spec, k = collection.spec, config.k
    per_dim = []
    vector_bytes = collection.vector_disk_bytes()
    for dim in spec.dims:  # disk bytes: None where the engine cannot say (a server)
        entry: dict[str, Any] = {"dim": dim, "stored_bytes_per_vector": stored_bytes_per_vector(spec, dim),
                                 "disk_bytes": vector_bytes.get(dim),
                                 "hnsw_is_full_scan": collection.hnsw_is_full_scan(dim)}
        for mode in ("exact", "hnsw"):
            if mode == "exact" and dim == spec.top_dim:
                hits, latency = exact
            else:
                def search_dim(q: dict[int, np.ndarray], dim: int = dim, mode: str = mode) -> list[list[Hit]]:
                    return collection.search_at(q[dim], dim, k, exact=mode == "exact")

                hits, latency = _measure(rows, search_dim, config, progress, f"{spec.name}: {mode} {dim}")
            scored = bytes_per_vector(spec, [dim], exact=mode == "exact")
            entry[mode] = {"bytes_per_vector": scored, "bytes_scored_per_vector": scored,
                           "bytes_stored_per_vector": stored_bytes(spec, [dim])} | _row(
                judge, hits, latency, exact[0], k)
        per_dim.append(entry)
    return per_dim


def _bench_plans(collection: Collection, judge: Judge, queries: dict[int, np.ndarray],
                 rows: list[dict[int, np.ndarray]], plans: list[tuple[str, FunnelPlan | None]],
                 exact: list[list[Hit]], config: BenchConfig,
                 progress: BenchProgress) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A row per plan (``auto`` and ``adaptive`` calibrated here, once, on a sample of the queries);
    returns the rows and that calibration (empty when neither was asked for)."""
    spec, k = collection.spec, config.k
    per_plan = []
    sample = {dim: m[:DEFAULT_SAMPLE] for dim, m in queries.items()}
    calibrated: dict[str, Any] = {}
    for label, given in plans:
        extra: dict[str, Any] = {}
        if given is None and not calibrated:  # auto and adaptive: calibrate on a sample of the queries
            calibrated = _calibrate_sample(collection, sample, exact, config, progress)
        plan: FunnelPlan = given or calibrated["plan"]
        ef = None if given is not None else calibrated["hnsw_ef"]
        query_spec = QuerySpec(plan, k, with_text=False, hnsw_ef=ef)
        if given is None:
            extra = {"calibration": calibrated["calibration"]}
        if label == ADAPTIVE:
            adaptive = calibrate_adaptive(collection, sample, plan, exact[:DEFAULT_SAMPLE], config.target, fixed_ef=ef)
            query_spec = AdaptiveSpec(plan, k, with_text=False, hnsw_ef=ef, rule=adaptive.rule)
            extra["adaptive"] = adaptive.record()

        def search_plan(q: dict[int, np.ndarray], spec: QuerySpec = query_spec) -> list[SearchResult]:
            return adaptive_search_each(collection, q, [spec])

        hits, latency = _measure(rows, search_plan, config, progress, f"{spec.name}: {label} {plan}")
        if label == ADAPTIVE:
            extra["depth"] = depth_distribution([h.depth for h in hits])  # type: ignore[attr-defined]
        dims = [s.dim for s in plan.stages]
        per_plan.append({"plan": str(plan), "label": label, "bytes_per_vector": bytes_per_vector(spec, dims),
                         "bytes_scored_per_vector": bytes_per_vector(spec, dims),
                         "bytes_stored_per_vector": stored_bytes(spec, dims)}
                        | _row(judge, hits, latency, exact, k) | extra)
    return per_plan, calibrated


def _calibrate_sample(collection: Collection, sample: dict[int, np.ndarray], exact: list[list[Hit]],
                      config: BenchConfig, progress: BenchProgress) -> dict[str, Any]:
    """The plan (and graph width) calibrated on the sample, and what a row reports of the calibration."""
    cal = calibrate(collection, sample, config.k, config.target, reference=exact[:DEFAULT_SAMPLE], timed=True)
    if not cal.met:
        progress.note(f"auto: no candidate plan reached recall {cal.target} on {collection.spec.name}; "
                      f"the best one ({cal.plan}) reached {cal.recall:.3f}")
    return {"plan": cal.plan, "hnsw_ef": cal.hnsw_ef, "calibration": {
        "target": cal.target, "met": cal.met, "queries": cal.queries, "recall_vs_exact": cal.recall,
        "hnsw_ef": cal.hnsw_ef, "plans_tried": len(cal.tried)}}


@dataclass(frozen=True)
class JudgedQueries:
    """Queries with relevance judgements (to calibrate fusion on): texts, vectors, relevant doc ids."""

    texts: list[str]
    vectors: dict[int, np.ndarray]
    relevant: list[set[str]]
    source: str


def bench_modes(
    collection: Collection,
    judge: Judge,
    queries: dict[int, np.ndarray],
    texts: Sequence[str],
    plan_for: Callable[[int], FunnelPlan],
    exact: list[list[Hit]],
    config: BenchConfig,
    progress: BenchProgress,
    fusion_queries: JudgedQueries | None,
) -> list[dict[str, Any]]:
    """Rows for the lexical mode and each hybrid fusion (``--modes``), on a collection with a lexical index.

    The dense side of a hybrid row is the variant's calibrated plan (``auto``) when one was
    calibrated, else the default plan, for the depth the fusion needs. Bytes scored per vector: the
    dense plan's; bytes stored: its vectors' plus the lexical index's bytes per point (where the engine
    reports them); ``bytes_per_vector`` (kept for older readers): scored plus the lexical index's.
    """
    spec, k = collection.spec, config.k
    points = max(1, collection.count())
    lexical_bytes = collection.lexical_disk_bytes()
    lexical_per_point = round(lexical_bytes / points) if lexical_bytes is not None else 0
    wanted: list[tuple[str, str, Fusion | None, dict[str, Any]]] = []
    for label in config.modes:
        if label == "lexical":
            wanted.append((label, "lexical", None, {}))
        else:
            wanted.append((label, "hybrid", Fusion(label.split("-", 1)[1]), {}))
    if fusion_queries is not None:
        calibration = calibrate_fusion(collection, fusion_queries.vectors, fusion_queries.texts,
                                       fusion_queries.relevant, k, plan_for)
        wanted.append(("hybrid-calibrated", "hybrid", calibration.fusion,
                       {"fusion_calibration": calibration.record(fusion_queries.source)}))
    out = []
    n = len(texts)
    for label, mode, fusion, extra in wanted:
        plan = None if mode == "lexical" else plan_for(k if fusion is None else fusion.plan_depth(k))
        rows = [(i, QuerySpec(plan, k, with_text=False, mode=mode, fusion=fusion, text=texts[i])) for i in range(n)]

        def search_mode(row: tuple[int, QuerySpec]) -> list[Hit]:
            i, query_spec = row
            return collection.search_each({dim: m[i : i + 1] for dim, m in queries.items()}, [query_spec])[0]

        done = progress.step(f"{spec.name}: {label}", n)
        hits, latency = time_each(search_mode, rows, warmup=config.warmup, on_done=done)
        dims = [] if plan is None else [s.dim for s in plan.stages]
        dense_bytes = bytes_per_vector(spec, dims)
        out.append({"label": label, "mode": mode, "fusion": None if fusion is None else str(fusion),
                    "plan": None if plan is None else str(plan), "bytes_per_vector": dense_bytes + lexical_per_point,
                    "bytes_scored_per_vector": dense_bytes,
                    "bytes_stored_per_vector": stored_bytes(spec, dims) + lexical_per_point,
                    "lexical_index_bytes": lexical_bytes}
                   | _row(judge, hits, latency, exact, k) | extra)  # type: ignore[arg-type]
    return out


def prepare_variant(catalog: Catalog, source: Collection, name: str, quantization: str, refresh: bool,
                    progress: BenchProgress) -> None:
    """Make collection ``name``: ``source``'s points with another quantization (kept when current)."""
    spec = dataclasses.replace(source.spec, name=name, quantization=quantization)
    if catalog.exists(name):
        with catalog.open(name) as existing:
            current = existing.spec == spec and existing.count() == source.count()
        if current and not refresh:
            progress.note(f"reusing {name}")
            return
        catalog.drop(name)
    with catalog.create(spec) as target:
        done = progress.step(f"copy into {name}", source.count())
        for batch in source.points():
            target.upsert(batch)
            for _ in batch.ids:
                done()
        target.finish_indexing()


def run_bench(config: BenchConfig, catalog: Catalog, progress: BenchProgress | None = None) -> dict[str, Any]:
    """Run the whole benchmark and return the results object (the README documents its schema)."""
    progress = progress or BenchProgress()
    validate_config(config)
    split = load_split(config.data, config.split, known_corpus_ids=corpus_ids(config.data / "corpus.jsonl"))
    if split.unknown_query_ids or split.unknown_corpus_ids:
        progress.note(f"qrels: ignored {split.unknown_query_ids} judgements of unknown queries and "
                      f"{split.unknown_corpus_ids} of unknown documents")
    query_ids = list(split.queries)[: config.max_queries]
    texts = [split.queries[q] for q in query_ids]
    judge = Judge(split, query_ids, config.k)
    results: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "data": str(config.data), "split": config.split, "queries": len(query_ids),
        "k": config.k, "recall_target": config.target,
        "unknown_ids": {"queries": split.unknown_query_ids, "documents": split.unknown_corpus_ids},
        "models": [],
    }
    for model in config.models:
        results["models"].append(_bench_model(model, config, catalog, progress, judge, texts, results))
    return results


def _bench_model(model: str, config: BenchConfig, catalog: Catalog, progress: BenchProgress, judge: Judge,
                 texts: list[str], results: dict[str, Any]) -> dict[str, Any]:
    """One model's entry: index the corpus (or reuse it), make each quantization's copy, and measure
    every variant; the first model with ``--modes`` adds the BM25 baseline to ``results``."""
    embedder = Embedder(model, device=config.device)
    lexical = "bm25" if config.modes else None
    base = build_spec("bench", embedder, config.dims, None, None, Layout(hnsw_all_dims=True, lexical=lexical))
    plans = _plans(config, base)  # bad plans fail here, before any indexing
    primary = bench_collection_name(base, config.quantizations[0], config.data)
    indexed = index_corpus(catalog, primary, [config.data], embedder, config.dims, progress=progress.index(),
                           layout=Layout(quantization=config.quantizations[0], hnsw_all_dims=True,
                                         lexical=lexical))
    changed = indexed.unchanged != indexed.chunks
    if not changed:
        progress.note(f"reused collection {primary} ({indexed.points:,} points, nothing re-encoded)")
    vectors = embedder.encode(texts, base.dims)
    _, encode_latency = time_each(lambda t: embedder.encode([t], base.dims), texts[:ENCODE_SAMPLE],
                                  warmup=min(config.warmup, 5), on_done=progress.step("encode queries", min(len(texts), ENCODE_SAMPLE)))
    fusion_queries = None
    if config.fusion_split is not None:
        fusion_queries = judged_queries(config, embedder, base.dims)
    names = [primary]
    with catalog.open(primary) as source:
        if config.modes and "baseline" not in results:
            results["baseline"] = baseline_row(source, judge, texts, config, progress)
        for quantization in config.quantizations[1:]:
            name = bench_collection_name(base, quantization, config.data)
            prepare_variant(catalog, source, name, quantization, changed, progress)
            names.append(name)
    entry: dict[str, Any] = {
        "model": embedder.name, "fingerprint": embedder.fingerprint, "model_dim": embedder.dim,
        "dims": list(base.dims), "device": embedder.device, "index_seconds": indexed.seconds,
        "reused_index": not changed, "points": indexed.points,
        "query_encode_ms": {key: getattr(encode_latency, key) for key in ("p50", "p95", "p99", "mean")},
        "variants": [],
    }
    for name in names:
        with catalog.open(name) as collection:
            variant = bench_variant(collection, judge, vectors, plans, config, progress, texts, fusion_queries)
        local_dir = catalog.local_dir  # None on a server: its memory is the server's, not measurable here
        if config.memory and local_dir is not None:
            variant["memory"] = _variant_memory(local_dir, name, variant, vectors)
        entry["variants"].append(variant)
    return entry


def _variant_memory(local_dir: Path, name: str, variant: dict[str, Any],
                    vectors: dict[int, np.ndarray]) -> dict[str, Any]:
    """The memory of collection ``name`` searched with the variant's default plan (or its first one), in
    a process of its own (:func:`~retriever.bench.memory.measure_collection_memory`)."""
    default = next((p for p in variant["plans"] if p["label"] == DEFAULT), variant["plans"][0])
    queries_file = local_dir / "collections" / f".bench-queries-{name}.npz"
    save_queries(queries_file, vectors)
    try:
        return measure_collection_memory(local_dir, name, queries_file, f"plan:{default['plan']}:auto")
    finally:
        queries_file.unlink(missing_ok=True)


def judged_queries(config: BenchConfig, embedder: Embedder, dims: tuple[int, ...]) -> JudgedQueries:
    """Up to :data:`FUSION_SAMPLE` judged queries of ``config.fusion_split`` (not the measured split)."""
    assert config.fusion_split is not None
    split = load_split(config.data, config.fusion_split, known_corpus_ids=corpus_ids(config.data / "corpus.jsonl"))
    ids = [q for q in split.queries if split.relevant.get(q)][:FUSION_SAMPLE]
    texts = [split.queries[q] for q in ids]
    return JudgedQueries(texts, embedder.encode(texts, dims), [split.relevant[q] for q in ids],
                         f"{len(ids)} judged {config.fusion_split} queries of {config.data}")


def baseline_row(collection: Collection, judge: Judge, texts: Sequence[str], config: BenchConfig,
                 progress: BenchProgress) -> dict[str, Any]:
    """The independent BM25 baseline (bm25s over the same chunks): metrics, latency, build facts."""
    hits, latency, facts = bm25s_baseline(collection, texts, config.k, config.warmup,
                                          progress.step("bm25s baseline", len(texts)))
    k = config.k
    zeros = {dim: np.zeros((len(texts), dim), dtype=np.float32) for dim in collection.spec.dims}
    engine = collection.search_each(zeros, [QuerySpec(None, k, with_text=False, mode="lexical", text=t) for t in texts])
    overlap = [len({h.doc_id for h in a} & {h.doc_id for h in b}) / max(1, min(k, len(b)))
               for a, b in zip(engine, hits)]
    return {"label": "bm25s", **facts, **judge.metrics(hits),
            "engine_overlap@k": float(np.mean(overlap)) if overlap else 1.0,
            "engine_top1_agreement": float(np.mean([bool(a) and bool(b) and a[0].doc_id == b[0].doc_id
                                                    for a, b in zip(engine, hits)])) if hits else 1.0,
            "latency_ms": {key: getattr(latency, key) for key in ("p50", "p95", "p99", "mean")}, "qps": latency.qps}
