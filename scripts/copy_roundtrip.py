"""Move a collection from the embedded engine to the server store and back, and compare searches.

    python scripts/copy_roundtrip.py DATA_DIR COLLECTION SERVER_URL BEIR_DIR [--split test]

COLLECTION must exist in DATA_DIR (embedded). It is copied to SERVER_URL (e.g. path:DIR for
qdrant-client's local mode, or http://localhost:6333) and back into DATA_DIR as COLLECTION-back.
Every query of the split is then searched on all three (exact top-10, and the default funnel plan)
and the results compared: one JSON object with counts and timings on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retriever.calibration.defaults import default_plan_for  # noqa: E402
from retriever.encoding.embedder import Embedder  # noqa: E402
from retriever.ingest.beir import corpus_ids, load_split  # noqa: E402
from retriever.store.config import EngineConfig
from retriever.store.copy import copy_collection  # noqa: E402
from retriever.store.factory import open_catalog  # noqa: E402


def same(a, b) -> bool:  # noqa: ANN001
    return [h.id for h in a] == [h.id for h in b] and np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("collection")
    parser.add_argument("url")
    parser.add_argument("beir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--compare-only", action="store_true", help="skip the copies (already made)")
    args = parser.parse_args()
    embedded = open_catalog(EngineConfig(data_dir=args.data_dir))
    server = open_catalog(EngineConfig(data_dir=args.data_dir, url=args.url))
    back_name = f"{args.collection}-back"
    report: dict = {}
    if not args.compare_only:
        t0 = time.perf_counter()
        there = copy_collection(embedded, args.collection, server, args.collection)
        t1 = time.perf_counter()
        back = copy_collection(server, args.collection, embedded, back_name)
        report = {"copy_there_s": t1 - t0, "copy_back_s": time.perf_counter() - t1,
                  "there": there.__dict__, "back": back.__dict__}
    split = load_split(args.beir, args.split, known_corpus_ids=corpus_ids(args.beir / "corpus.jsonl"))
    texts = list(split.queries.values())
    report["queries"] = len(texts)
    with embedded.open(args.collection) as a, server.open(args.collection) as b, embedded.open(back_name) as c:
        embedder = Embedder(a.spec.model)
        vectors = embedder.encode(texts, a.spec.dims)
        plan = default_plan_for(a, 10)
        report["plan"] = str(plan)
        for label, p in (("exact", None), ("funnel", plan)):
            ra, rb, rc = (coll.search(vectors, p, 10, with_text=False) for coll in (a, b, c))
            report[label] = {"identical_server": sum(same(x, y) for x, y in zip(ra, rb)),
                             "identical_back": sum(same(x, y) for x, y in zip(ra, rc))}
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
