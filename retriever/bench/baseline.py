"""An independent BM25 baseline for ``funnel bench``: ``bm25s`` over the same chunks.

It checks the engine's lexical stage against a known implementation: same chunks, the same BM25
variant (Lucene's IDF ``ln(1 + (N − df + 0.5)/(df + 0.5))``, k1 = 1.2, b = 0.75) and the same
analysis as the ``english`` analyzer as far as bm25s offers it (lower-case, English stop words,
Snowball English stemmer via PyStemmer). Tokenizers differ in details (bm25s keeps tokens of two
or more word characters; the engine's word tokenizer splits on non-word characters and keeps
one-character tokens), so small score differences are expected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from retriever.calibration.timing import Latency, time_each
from retriever.errors import BadInputError
from retriever.query.spec import Hit
from retriever.store.base import Collection

K1 = 1.2
B = 0.75


def _bm25s() -> tuple[Any, Any]:
    try:
        import bm25s
        import Stemmer
    except ImportError:
        raise BadInputError("the bm25s baseline needs the bench extra: pip install 'funnel-retriever[bench]' "
                            "(bm25s and PyStemmer)") from None
    return bm25s, Stemmer.Stemmer("english")


def bm25s_baseline(collection: Collection, texts: Sequence[str], k: int, warmup: int,
                   on_done: Callable[[], None] | None = None) -> tuple[list[list[Hit]], Latency, dict[str, Any]]:
    """BM25 with bm25s over every chunk of ``collection``: the hits per query, the latency of one
    query at a time (tokenizing included), and the build facts."""
    bm25s, stemmer = _bm25s()
    ids: list[str] = []
    docs: list[tuple[str, int]] = []
    chunks: list[str] = []
    for batch in collection.points():
        for point_id, payload in zip(batch.ids, batch.payloads):
            ids.append(point_id)
            docs.append((str(payload.get("doc_id", "")), int(payload.get("chunk", 0))))
            chunks.append(str(payload.get("text") or ""))
    started = time.perf_counter()
    model = bm25s.BM25(method="lucene", k1=K1, b=B)
    model.index(bm25s.tokenize(chunks, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    build_seconds = time.perf_counter() - started
    limit = min(k, len(chunks))

    def search(text: str) -> list[Hit]:
        tokens = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        if not tokens.vocab:  # nothing left after analysis (only stop words)
            return []
        found, scores = model.retrieve(tokens, k=limit, show_progress=False)
        return [Hit(id=ids[j], doc_id=docs[j][0], chunk=docs[j][1], score=float(s), text=None)
                for j, s in zip(found[0], scores[0]) if s > 0]

    results, latency = time_each(search, list(texts), warmup=warmup, on_done=on_done)
    return results, latency, {"library": f"bm25s {bm25s.__version__}", "k1": K1, "b": B, "method": "lucene",
                              "analysis": "lower-case, English stop words, Snowball English (PyStemmer)",
                              "build_seconds": build_seconds, "chunks": len(chunks)}  # type: ignore[return-value]
