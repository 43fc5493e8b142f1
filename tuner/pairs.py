"""Training pairs: (anchor, positive[, negative]) from files, a BEIR directory or a Hugging Face dataset.

Columns are taken by name, never by position (a pair file with passages in the first column must
not train passages as anchors). Rows with an empty anchor or positive are dropped and exact
duplicate rows removed; both are counted.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from retriever.errors import CorpusError, MissingExtraError, TuneError
from retriever.ingest.beir import first_non_utf8_line, read_qrels
from retriever.ingest.corpus import read_corpus
from tuner.evaluation import beir_passages

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv", ".tsv": "csv",
                 ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class PairColumns:
    """Which source columns are the anchor, the positive and the (optional) negative."""

    anchor: str = "anchor"
    positive: str = "positive"
    negative: str = "negative"


@dataclass(frozen=True)
class PairReport:
    """What loading saw: rows kept, empty rows dropped, duplicates removed, negatives present."""

    source: str
    rows: int
    empty: int
    duplicates: int
    has_negative: bool


def _beir_pairs(path: Path) -> list[dict[str, str]]:
    qrels = path / "qrels" / "train.tsv"
    if not qrels.is_file():
        raise TuneError(f"{path}: a BEIR directory for training needs qrels/train.tsv (not found)")
    for name in ("queries.jsonl", "corpus.jsonl"):
        if not (path / name).is_file():
            raise TuneError(f"{path}: BEIR directory without {name}")
    queries = {d.id: d.text for d in read_corpus([path / "queries.jsonl"])}
    corpus = beir_passages(path / "corpus.jsonl")
    try:
        relevant = read_qrels(qrels)
    except CorpusError as exc:
        raise TuneError(str(exc)) from None
    pairs = [
        {"anchor": queries[qid], "positive": corpus[cid]}
        for qid, docs in relevant.items() if qid in queries
        for cid in sorted(docs) if cid in corpus
    ]
    return pairs


def require_tune_extra() -> None:
    """Raise :class:`MissingExtraError` unless the tune extra (datasets, accelerate) is installed."""
    for package in ("datasets", "accelerate"):
        if importlib.util.find_spec(package) is None:
            raise MissingExtraError("funnel tune", package, "tune")


def _load_table(source: str):  # noqa: ANN202 - a datasets.Dataset
    import datasets

    datasets.disable_progress_bars()
    path = Path(source).expanduser()
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise TuneError(f"{path}: unknown pairs format; use .jsonl, .csv, .tsv or .parquet")
        kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        if builder in ("json", "csv") and (bad := first_non_utf8_line(path)):
            raise TuneError(f"{path}:{bad}: not valid UTF-8")  # pyarrow would fail later, with a traceback
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
        except Exception as exc:  # noqa: BLE001 - datasets raises many types for a bad file
            raise TuneError(f"{path}: cannot read pairs ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if path.suffix.lower() in FILE_BUILDERS or source.startswith((".", "/", "~")):
        raise TuneError(f"{source}: no such file or directory")
    try:
        return datasets.load_dataset(source, split="train")
    except Exception as exc:  # noqa: BLE001
        raise TuneError(
            f"cannot load Hugging Face dataset {source!r} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "the hub is not reachable offline: give a local file or BEIR directory"
        ) from None


def load_pairs(source: str | Path, columns: PairColumns = PairColumns()):  # noqa: ANN201 - (Dataset, PairReport)
    """Load pairs as a ``datasets.Dataset`` with columns anchor, positive (and negative if present)."""
    require_tune_extra()
    from datasets import Dataset

    path = Path(source).expanduser()
    if path.is_dir():
        rows = _beir_pairs(path)
        names = {"anchor": "anchor", "positive": "positive"}
    else:
        table = _load_table(str(source))
        present = table.column_names
        missing = [c for c in (columns.anchor, columns.positive) if c not in present]
        if missing:
            raise TuneError(
                f"{source}: no {' or '.join(repr(m) for m in missing)} column (columns: {', '.join(present)}); "
                "name the columns with --anchor-column / --positive-column"
            )
        names = {"anchor": columns.anchor, "positive": columns.positive}
        if columns.negative in present:
            names["negative"] = columns.negative
        try:
            rows = table.select_columns(list(names.values())).to_list()
        except UnicodeDecodeError:  # e.g. a Parquet string column holding bytes that are not UTF-8
            raise TuneError(f"{source}: not valid UTF-8 text in the pair columns") from None
    seen: set[tuple[str, ...]] = set()
    kept: list[dict[str, str]] = []
    empty = duplicates = 0
    for row in rows:
        pair = {key: "" if row.get(col) is None else str(row[col]) for key, col in names.items()}
        if not pair["anchor"].strip() or not pair["positive"].strip() or ("negative" in pair and not pair["negative"].strip()):
            empty += 1
            continue
        key = tuple(pair.values())
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        kept.append(pair)
    if not kept:
        raise TuneError(f"{source}: no usable pairs ({empty} with an empty anchor or positive)")
    report = PairReport(str(source), len(kept), empty, duplicates, "negative" in names)
    return Dataset.from_list(kept), report
