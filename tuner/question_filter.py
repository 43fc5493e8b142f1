"""Questions out of a model's answer: parse a numbered or bulleted list, keep only real, new questions.

:func:`parse_questions` takes whatever a chat model returned (``1. …``, ``1) …``, ``- …``, ``* …``,
``Q1: …``, Markdown bold, one question per line or several on one line, a preamble such as "Here
are three questions:") and returns the candidate lines. :class:`QuestionFilter` then drops, and
counts, candidates that are empty, not questions, copied from the chunk, or duplicates (within the
chunk's answer or, when one filter is shared, across the run).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

MIN_QUESTION_WORDS = 3
MAX_QUESTION_CHARS = 512
COPY_NGRAM = 8  # a question that shares this many consecutive words with its chunk is a copy
QUESTION_WORDS = frozenset(
    ["what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "was", "were", "do", "does", "did", "can", "could", "should", "would", "will", "has", "have", "had", "may", "might", "shall"]
)
_MARKER = re.compile(
    r"^\s*(?:[-*•·–—>]+|\(?\d{1,3}[.):\]]|\(?[a-zA-Z][.)]\s|q(?:uestion)?\s*\d{0,3}\s*[:.)-])\s*", re.IGNORECASE
)
_EMPHASIS = re.compile(r"[*_`]{1,3}")
_SPLIT_QUESTIONS = re.compile(r"(?<=\?)\s+(?=(?:\d{1,3}[.)]\s*)?[A-Z])")
_PREAMBLE = re.compile(r"^(?:sure|here|okay|ok|certainly|the following|below)\b.*:\s*$", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)


def _clean(line: str) -> str:
    line = _EMPHASIS.sub("", line).strip()
    while True:  # "1. - Q: …" and similar stacked markers
        stripped = _MARKER.sub("", line, count=1).strip()
        if stripped == line:
            break
        line = stripped
    return line.strip().strip('"“”').strip()


def parse_questions(answer: str) -> list[str]:
    """Candidate questions of one model answer, in order (not yet filtered)."""
    found: list[str] = []
    for raw in (answer or "").splitlines():
        if not raw.strip() or _PREAMBLE.match(raw.strip()):
            continue
        for part in _SPLIT_QUESTIONS.split(raw):
            text = _clean(part)
            if text:
                found.append(text)
    return found


def words(text: str) -> list[str]:
    """Lower-case word tokens (for comparing questions and chunks)."""
    return _WORD.findall(text.lower())


def is_question(text: str) -> bool:
    """Ends with a question mark, or starts with an interrogative word (and has a few words)."""
    tokens = words(text)
    if len(tokens) < MIN_QUESTION_WORDS or len(text) > MAX_QUESTION_CHARS:
        return False
    return text.rstrip().endswith("?") or tokens[0] in QUESTION_WORDS


def is_copy(question: str, chunk: str, ngram: int = COPY_NGRAM) -> bool:
    """Whether the question is (a long run of words) copied from the chunk."""
    q, c = words(question), words(chunk)
    if not q:
        return False
    text = " " + " ".join(c) + " "
    if " " + " ".join(q) + " " in text:
        return True
    n = min(ngram, len(q))
    return n >= ngram and any(" " + " ".join(q[i : i + n]) + " " in text for i in range(len(q) - n + 1))


@dataclass
class QuestionFilter:
    """Keeps real, new questions; counts what it drops by reason.

    ``across_chunks=True`` also drops a question already kept for another chunk (one shared filter
    over a whole run); the default only drops duplicates within one chunk's answer.
    """

    across_chunks: bool = False
    dropped: Counter[str] = field(default_factory=Counter)
    kept: int = 0
    _seen: set[str] = field(default_factory=set, repr=False)

    def keep(self, candidates: list[str], chunk: str, limit: int | None = None) -> list[str]:
        """The usable questions among ``candidates`` (at most ``limit``), each with a final ``?``."""
        local: set[str] = set()
        out: list[str] = []
        for text in candidates:
            key = " ".join(words(text))
            if not key:
                self.dropped["empty"] += 1
            elif not is_question(text):
                self.dropped["not_question"] += 1
            elif is_copy(text, chunk):
                self.dropped["copied"] += 1
            elif key in local or (self.across_chunks and key in self._seen):
                self.dropped["duplicate"] += 1
            elif limit is not None and len(out) >= limit:
                self.dropped["extra"] += 1
            else:
                local.add(key)
                out.append(text if text.endswith("?") else text.rstrip(".!;: ") + "?")
        if self.across_chunks:
            self._seen |= local
        self.kept += len(out)
        return out
