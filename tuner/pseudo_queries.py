"""Model-free pseudo-queries: the Inverse Cloze Task (Lee et al., 2019), random cropping as a fallback.

ICT takes one sentence of a chunk as the query and the rest of the chunk as its positive; the
sentence is removed from the positive 90 % of the time (the paper's rate), so the model has to
match on meaning, not on the words it shares. A chunk of a single sentence gets a random crop
instead (Contriever, Izacard et al., 2021): a span of 10-50 % of its words as the query, the chunk
as the positive. Different sentences (or crops) give the ``n`` queries of a chunk.
"""

from __future__ import annotations

import random
import re

from tuner.question_filter import words

KEEP_SENTENCE = 0.1
MIN_QUERY_WORDS = 4
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(\[]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """Sentences of a text (a simple splitter: ., ! or ? followed by a capital or digit)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _crop(text: str, rng: random.Random) -> str:
    tokens = text.split()
    size = max(MIN_QUERY_WORDS, int(len(tokens) * rng.uniform(0.1, 0.5)))
    start = rng.randrange(0, max(1, len(tokens) - size + 1))
    return " ".join(tokens[start : start + size])


def ict_pairs(text: str, n: int, rng: random.Random) -> list[tuple[str, str]]:
    """Up to ``n`` (query, positive) pairs from one chunk; none for a chunk too short to split."""
    parts = sentences(text)
    usable = [i for i, s in enumerate(parts) if len(words(s)) >= MIN_QUERY_WORDS]
    if len(parts) >= 2 and usable:
        picked = rng.sample(usable, min(n, len(usable)))
        pairs = []
        for i in picked:
            keep = rng.random() < KEEP_SENTENCE
            context = " ".join(parts if keep else parts[:i] + parts[i + 1 :])
            pairs.append((parts[i], context))
        return pairs
    if len(words(text)) < 2 * MIN_QUERY_WORDS:
        return []
    seen: set[str] = set()
    out = []
    for _ in range(n):
        query = _crop(text, rng)
        if query not in seen:
            seen.add(query)
            out.append((query, text))
    return out
