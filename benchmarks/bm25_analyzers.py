"""Which analyzer for funnel's BM25 stage: `english` (stop words + Snowball stemmer) or `plain`?

Indexes each BEIR data set's corpus into a scratch Qdrant Edge shard with a BM25-scored text index
per analyzer (the same index `funnel index --lexical bm25 --lexical-analyzer …` creates), runs the
judged test queries through the engine's text query, and scores the rankings with the same
evaluator as `funnel bench` (sentence-transformers' InformationRetrievalEvaluator, binary
relevance, whole documents — these corpora have one chunk per document). bm25s (Lucene variant,
k1 = 1.2, b = 0.75) with the matching analysis is measured beside it.

    python benchmarks/bm25_analyzers.py ../shared/data/financial-qa-10k ../shared/data/msmarco-sample
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import bm25s
import Stemmer
from _machine import commit_line, machine
from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    Language,
    Point,
    QueryRequest,
    SnowballLanguage,
    SnowballParams,
    TextIndexParams,
    TextQuery,
    TokenizerType,
    UpdateOperation,
)

from retriever.calibration.judge import Judge
from retriever.ingest.beir import load_split
from retriever.query.spec import Hit

ANALYZERS = {
    "plain": ({}, {"stopwords": None, "stemmer": None}),
    "english": ({"stopwords": Language.English, "stemmer": SnowballParams(SnowballLanguage.English)},
                {"stopwords": "en", "stemmer": Stemmer.Stemmer("english")}),
}


def hits(doc_ids: list[str]) -> list[Hit]:
    return [Hit(id=d, doc_id=d, chunk=0, score=float(len(doc_ids) - i), text=None) for i, d in enumerate(doc_ids)]


def measure(data: Path) -> dict:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open(encoding="utf-8")]
    ids = [c["_id"] for c in corpus]
    texts = [(c.get("title") or "") + " " + c["text"] for c in corpus]
    split = load_split(data, "test")
    query_ids = list(split.queries)
    queries = [split.queries[q] for q in query_ids]
    judge = Judge(split, query_ids, 10)
    out: dict = {"data": str(data), "documents": len(ids), "queries": len(query_ids), "analyzers": {}}
    for name, (edge_options, bm25s_options) in ANALYZERS.items():
        scratch = Path(tempfile.mkdtemp())
        try:
            shard = EdgeShard.create(str(scratch / "shard"),
                                     EdgeConfig(vectors={"v": EdgeVectorParams(size=1, distance=Distance.Dot)}))
            shard.update(UpdateOperation.create_field_index("text", TextIndexParams(
                tokenizer=TokenizerType.Word, lowercase=True, scoring=True, **edge_options)))
            for start in range(0, len(texts), 1000):
                shard.update(UpdateOperation.upsert_points(
                    [Point(i, {"v": [1.0]}, {"text": texts[i]}) for i in range(start, min(start + 1000, len(texts)))]))
            shard.optimize()
            started = time.perf_counter()
            engine = [hits([ids[p.id] for p in shard.query(QueryRequest(limit=10, query=TextQuery("text", q)))])
                      for q in queries]
            engine_ms = (time.perf_counter() - started) / len(queries) * 1000
            shard.close()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        model = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
        model.index(bm25s.tokenize(texts, show_progress=False, **bm25s_options), show_progress=False)
        found, _ = model.retrieve(bm25s.tokenize(queries, show_progress=False, **bm25s_options), k=10,
                                  show_progress=False)
        reference = [hits([ids[j] for j in row]) for row in found]
        out["analyzers"][name] = {"engine": judge.metrics(engine) | {"mean_ms": engine_ms},
                                  "bm25s": judge.metrics(reference)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+", type=Path, help="BEIR directories (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    args = ap.parse_args()
    results = {"machine": machine("benchmarks/bm25_analyzers.py"), "runs": [measure(p) for p in args.data]}
    lines = ["| data | analyzer | engine NDCG@10 | engine Recall@10 | bm25s NDCG@10 | engine mean ms/query |",
             "|---|---|---|---|---|---|"]
    for run in results["runs"]:
        for name, r in run["analyzers"].items():
            lines.append(f"| {Path(run['data']).name} | {name} | {r['engine']['ndcg@10']:.4f} | "
                         f"{r['engine']['recall@10']:.4f} | {r['bm25s']['ndcg@10']:.4f} | {r['engine']['mean_ms']:.2f} |")
    print("\n".join(lines))
    out = Path(__file__).parent / "results" / "hybrid"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bm25_analyzers.json").write_text(json.dumps(results, indent=2))
    m = results["machine"]
    (out / "bm25_analyzers.md").write_text(
        f"# BM25 analyzers: english vs plain\n\nMachine: {m.get('cpu')} ({m.get('cpu_count')} cores), "
        f"{m.get('date')}: `{m.get('command')}`\n\n{commit_line(m)}\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
