"""Query files for ``funnel search --queries`` and ``funnel calibrate --queries``.

A query file is read like a corpus (BEIR ``queries.jsonl``, or any JSONL/CSV/TSV/Parquet with a text
field): empty queries are skipped and counted; a malformed record, or a query the search would refuse
(longer than the query limit, not valid Unicode), stops the read with ``file: why`` unless
``skip_bad`` is set, in which case it is skipped and counted too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from retriever.errors import BadInputError, CorpusError
from retriever.ingest.corpus import ReadReport, read_corpus
from retriever.ingest.intake import STDIN, STDIN_LABEL, CorpusPath, needs_spool, spooled
from retriever.query.validation import validate_query


@dataclass(frozen=True)
class QueryFile:
    """The usable queries of a file (ids and texts, in file order) and what was skipped."""

    ids: list[str]
    texts: list[str]
    skipped_empty: int
    skipped_bad: int
    first_bad: str | None


def read_queries(path: str | os.PathLike[str], skip_bad: bool = False, limit: int | None = None) -> QueryFile:
    """Read up to ``limit`` usable queries from ``path`` (``-``: standard input; a pipe or FIFO works
    too), raising :class:`BadInputError` if none is usable."""
    # ``-`` and pipes (``<(…)``) are read once, from a spool copy; JSONL unless the name says otherwise
    fmt = "jsonl" if needs_spool(path) and not Path(path).suffix else None
    with spooled([path], None, fmt) as items:
        return _read(items[0], STDIN_LABEL if str(path) == STDIN else str(path), skip_bad, limit)


def _read(item: CorpusPath, path: str, skip_bad: bool, limit: int | None) -> QueryFile:
    report = ReadReport()
    ids: list[str] = []
    texts: list[str] = []
    bad, first_bad = 0, None
    for doc in read_corpus([item], skip_bad=skip_bad, report=report):
        try:
            validate_query(doc.text)
        except BadInputError as exc:
            why = f"{path}: query {doc.id!r}: {exc}"
            if not skip_bad:
                raise CorpusError(f"{why} (use --skip-bad to skip such queries)") from None
            bad, first_bad = bad + 1, first_bad or why
            continue
        ids.append(doc.id)
        texts.append(doc.text)
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise BadInputError(f"{path}: no usable queries ({report.skipped_empty} empty, "
                            f"{report.skipped_bad + bad} bad skipped)")
    return QueryFile(ids, texts, report.skipped_empty, report.skipped_bad + bad, report.first_bad or first_bad)
