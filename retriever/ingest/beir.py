"""BEIR directories: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Used by ``funnel bench`` (and the tuner's evaluation) to read judged queries. Judgements that name
an id missing from the queries or the corpus are dropped and counted, not fatal.
"""

from __future__ import annotations

import csv
import stat
from dataclasses import dataclass
from pathlib import Path

from retriever.errors import CorpusError
from retriever.ingest.corpus import read_corpus

QREL_COLUMNS = ("query-id", "corpus-id", "score")
MAX_QREL_FIELD_CHARS = 131_072  # an id or score longer than this is not a judgement (the csv module's default limit)


@dataclass(frozen=True)
class BeirSplit:
    """The judged queries of one split, restricted to ids that exist."""

    path: Path
    split: str
    queries: dict[str, str]
    relevant: dict[str, set[str]]
    unknown_query_ids: int
    unknown_corpus_ids: int

    @property
    def corpus_file(self) -> Path:
        return self.path / "corpus.jsonl"


def check_layout(path: str | Path, split: str) -> Path:
    """Return ``path`` as a Path if it is a BEIR directory with ``split``, else say what is missing."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CorpusError(f"{path}: not a directory (expected a BEIR directory)")
    missing = [p for p in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv") if not (path / p).is_file()]
    if missing:
        raise CorpusError(f"{path}: not a BEIR directory with a {split!r} split (missing {', '.join(missing)})")
    return path


def read_qrels(file: Path) -> dict[str, set[str]]:
    """Positive judgements (score > 0) of a BEIR qrels TSV with a header.

    Only a regular file is read (a device such as /dev/zero would be read without end); a field longer
    than :data:`MAX_QREL_FIELD_CHARS` is a malformed line, named with its number (checked here, not left
    to the csv module's limit, which is process-wide and raised by the corpus reader).
    """
    relevant: dict[str, set[str]] = {}
    try:
        mode = file.stat().st_mode
        if not stat.S_ISREG(mode):
            raise CorpusError(f"{file}: not a regular file ({file_kind(mode)}); give a qrels TSV file")
        with file.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            rows = iter(reader)
            try:
                fieldnames = reader.fieldnames
            except csv.Error as exc:
                raise CorpusError(f"{file}:1: malformed qrels header ({exc})") from None
            if fieldnames is None or not set(QREL_COLUMNS) <= set(fieldnames):
                raise CorpusError(f"{file}: a qrels file needs a header with {', '.join(QREL_COLUMNS)} (tab-separated)")
            while True:
                try:
                    row = next(rows, None)
                except csv.Error as exc:  # the line being read: TSV without quoting is one line a record
                    raise CorpusError(f"{file}:{reader.line_num + 1}: malformed qrels line ({exc})") from None
                if row is None:
                    break
                line = reader.line_num
                if None in row or any(row.get(c) is None for c in QREL_COLUMNS):
                    raise CorpusError(f"{file}:{line}: expected {len(fieldnames)} tab-separated values")
                longest = max(len(value) for value in row.values())
                if longest > MAX_QREL_FIELD_CHARS:
                    raise CorpusError(f"{file}:{line}: malformed qrels line (a field of {longest:,} characters; "
                                      f"at most {MAX_QREL_FIELD_CHARS:,})")
                try:
                    score = float(row["score"] or 0)
                except (TypeError, ValueError):
                    raise CorpusError(f"{file}:{line}: score {row['score']!r} is not a number") from None
                if score > 0:
                    relevant.setdefault(row["query-id"], set()).add(row["corpus-id"])
    except UnicodeDecodeError:
        raise CorpusError(f"{file}:{first_non_utf8_line(file)}: not valid UTF-8") from None
    except OSError as exc:
        raise CorpusError(f"{file}: cannot read ({exc.strerror or exc})") from None
    return relevant


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words (for a path that should be a regular file)."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a plain file"


def first_non_utf8_line(file: Path) -> int:
    """The 1-based number of the first line of ``file`` that is not valid UTF-8 (0 if none)."""
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def corpus_ids(corpus_file: Path) -> set[str]:
    """Ids of the corpus's documents (documents with an empty text included)."""
    ids: set[str] = set()
    for doc in read_corpus([corpus_file], skip_bad=True):
        ids.add(doc.id)
    return ids


def load_split(path: str | Path, split: str = "test", known_corpus_ids: set[str] | None = None) -> BeirSplit:
    """Read a BEIR split's judged queries; judgements naming unknown ids are dropped and counted.

    Raises :class:`CorpusError` when the layout is wrong or no judged query is left.
    """
    path = check_layout(path, split)
    qrels = read_qrels(path / "qrels" / f"{split}.tsv")
    known_docs = known_corpus_ids if known_corpus_ids is not None else corpus_ids(path / "corpus.jsonl")
    all_queries = {d.id: d.text for d in read_corpus([path / "queries.jsonl"], skip_bad=True)}
    unknown_queries = sum(len(docs) for q, docs in qrels.items() if q not in all_queries)
    unknown_docs = sum(1 for q, docs in qrels.items() if q in all_queries for d in docs if d not in known_docs)
    relevant = {
        q: {d for d in docs if d in known_docs} for q, docs in qrels.items() if q in all_queries
    }
    relevant = {q: docs for q, docs in relevant.items() if docs}
    if not relevant:
        raise CorpusError(
            f"{path}: no usable judged query in qrels/{split}.tsv ({len(qrels)} judged query ids; "
            f"{unknown_queries} judgements name unknown queries, {unknown_docs} unknown documents)"
        )
    return BeirSplit(path, split, {q: all_queries[q] for q in relevant}, relevant, unknown_queries, unknown_docs)
