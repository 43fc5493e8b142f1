"""What ``funnel index`` costs besides the model: the whole index pipeline with the encoder replaced by
random vectors (chunking, payload look-ups, upserts, crash-safe commits, the optimize at the end).

Run it once per tree to compare two versions side by side (the model's time is the same in both)::

    PYTHONPATH=/path/to/old/tree python benchmarks/index_write_overhead.py --label old
    python benchmarks/index_write_overhead.py --label new

Three runs on one collection of the msmarco sample's 5,000 passages (chunk size 64): a fresh index,
the same corpus again (nothing changed), and the corpus with every fifth passage edited (a sentence
appended). Prints one line per run: seconds, chunks, chunks stored unchanged (not encoded).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from _machine import SHARED_DATA

from retriever.encoding.embedder import Embedder
from retriever.ingest.chunking import TokenChunker
from retriever.ingest.corpus import Document
from retriever.ingest.indexer import index_chunks
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.spec import CollectionSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="this tree")
    args = parser.parse_args()
    embedder = Embedder(device="cpu", encoder="torch")
    rng = np.random.default_rng(0)

    def random_vectors(texts: list[str], dims: tuple[int, ...], batch_size: int = 32) -> dict[int, np.ndarray]:
        v = rng.standard_normal((len(texts), max(dims))).astype(np.float32)
        return {d: v[:, :d] / np.linalg.norm(v[:, :d], axis=1, keepdims=True) for d in dims}

    embedder.encode = random_vectors  # type: ignore[method-assign]
    with (SHARED_DATA / "msmarco-sample" / "corpus.jsonl").open(encoding="utf-8") as f:
        docs = [Document(r["_id"], r["text"], r.get("title", "")) for r in map(json.loads, f)]
    spec = CollectionSpec(name="p", model="MiniLM", model_fingerprint=embedder.fingerprint, model_dim=embedder.dim,
                          dims=(64, 128, 256, embedder.dim), chunk_size=64, chunk_overlap=8)
    chunker = TokenChunker(embedder.tokenizer, 64, 8, embedder.max_tokens)
    catalog = EdgeCatalog(tempfile.mkdtemp())
    runs = [("fresh", docs), ("unchanged", docs),
            ("edited", [Document(d.id, d.text + " Edited." if i % 5 == 0 else d.text, d.title)
                        for i, d in enumerate(docs)])]
    for label, corpus in runs:
        with catalog.create(spec) if label == "fresh" else catalog.open("p") as collection:
            started = time.perf_counter()
            counts = index_chunks(collection, embedder, chunker, corpus)
            print(f"{args.label} {label}: {time.perf_counter() - started:.2f} s, {counts.chunks:,} chunks, "
                  f"{counts.unchanged:,} unchanged, {collection.count():,} points", flush=True)


if __name__ == "__main__":
    main()
