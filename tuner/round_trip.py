"""Round-trip consistency: keep a generated question only if the base model finds its source chunk.

A question is kept when, among all the distinct chunk texts of the corpus, the base model ranks its
source chunk in the top ``k`` (chunks with the very same text count as one: a duplicate of the source
is not a competitor). A question another passage answers better, or one too vague to point anywhere,
is dropped; such pairs teach the model to pull a question towards the wrong passage. The source chunk
is the text ``funnel index`` stores for it, also for ICT pairs whose positive leaves a sentence out.

``k`` trades the two errors: 1 drops a good question whose chunk has a near-twin (overlapping
windows, repeated boilerplate), a large ``k`` keeps what a retriever would never return (in a
416-chunk corpus, the top 10 is 2.4 % of it). The default, 3, allows two near-twins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_K = 3


class RoundTrip:
    """The corpus's distinct chunk texts encoded once by the base model; :meth:`keep` ranks questions."""

    def __init__(self, embedder: Any, chunk_texts: Sequence[str], k: int = DEFAULT_K, batch_size: int = 64) -> None:
        self.embedder, self.k, self.batch_size = embedder, k, batch_size
        self.row: dict[str, int] = {}
        for text in chunk_texts:
            self.row.setdefault(text, len(self.row))
        self.chunks = self._encode(list(self.row))

    def _encode(self, texts: list[str]) -> np.ndarray:
        full = self.embedder.encode_full(texts, batch_size=self.batch_size) if texts else np.zeros((0, 1), np.float32)
        return full / np.maximum(np.linalg.norm(full, axis=1, keepdims=True), 1e-12)

    def ranks(self, questions: Sequence[str], source: str) -> list[int]:
        """How many distinct chunks score above ``source`` (a text of the corpus) for each question: 0 is first."""
        if not questions:
            return []
        row = self.row.get(source)
        if row is None:
            raise ValueError("the source chunk is not one of the corpus's chunks")
        scores = self._encode(list(questions)) @ self.chunks.T
        return [int((s > s[row]).sum()) for s in scores]

    def keep(self, questions: Sequence[str], source: str) -> list[bool]:
        """For each question: is its source chunk in the base model's top ``k``?"""
        return [rank < self.k for rank in self.ranks(questions, source)]
