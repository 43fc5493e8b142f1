"""Copy a collection between any two engines: vectors, payloads, spec and calibration.

Points go in batches, in the source's id order. A batch writes only the points the destination
lacks or holds with another payload (a chunk's vectors change only with its text), so a copy killed
mid-way resumes where it stopped when run again, and a finished one re-runs in a read-only pass.
Before anything is written the target is checked: it must be empty, or hold only points the source
holds (by id): what an interrupted copy of this source leaves; another collection's points are
refused, so a copy never mixes two collections. The calibration is copied last. Then the copy is verified: the same number of points, and the
same exact-search top-k (ids and scores) on both sides for a sample of stored points used as queries.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retriever.errors import BadInputError, CopyConflictError, DamagedCalibrationError, StoreError
from retriever.query.fusion import check_lexical
from retriever.query.spec import Hit
from retriever.store.base import Catalog, Collection, PointBatch
from retriever.store.layout import LayoutChoice
from retriever.store.paths import validate_collection_name

DEFAULT_BATCH = 512
DEFAULT_VERIFY_SAMPLE = 20
VERIFY_K = 10
SCORE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class CopyResult:
    """What ``funnel collections copy`` reports."""

    source: str
    target: str
    points: int
    written: int
    unchanged: int
    seconds: float
    verified_queries: int
    calibration: bool
    calibration_damaged: str | None = None  # why the source's record was not copied: it is not one


def _changed(batch: PointBatch, stored: dict[str, dict]) -> list[int]:
    return [i for i, (pid, payload) in enumerate(zip(batch.ids, batch.payloads)) if stored.get(pid) != payload]


def _rows(batch: PointBatch, rows: list[int]) -> PointBatch:
    return PointBatch([batch.ids[i] for i in rows], {d: m[rows] for d, m in batch.vectors.items()},
                      [batch.payloads[i] for i in rows])


def _same_ranking(a: list[Hit], b: list[Hit]) -> bool:
    """Same scores (to 1e-5) in the same order, and the same ids once ties (equal scores) are grouped."""
    if len(a) != len(b):
        return False
    if not np.allclose([h.score for h in a], [h.score for h in b], atol=SCORE_TOLERANCE, rtol=0):
        return False
    key = [(round(h.score, 5), h.id) for h in a]
    other = [(round(h.score, 5), h.id) for h in b]
    return sorted(key) == sorted(other) or [h.id for h in a] == [h.id for h in b]


def verify_copy(source: Collection, target: Collection, sample: int = DEFAULT_VERIFY_SAMPLE, k: int = VERIFY_K) -> int:
    """Raise :class:`StoreError` unless both hold as many points and answer ``sample`` exact searches
    (stored points as queries) alike; return the number of queries compared."""
    points, copied = source.count(), target.count()
    if points != copied:
        raise StoreError(f"copy check failed: {source.spec.name!r} holds {points:,} points, {target.spec.name!r} "
                         f"{copied:,} (did the target hold other points before?)")
    if sample <= 0 or points == 0:
        return 0
    batch = next(iter(source.points(batch_size=sample)))
    mine = source.search(batch.vectors, None, k, with_text=False)
    theirs = target.search(batch.vectors, None, k, with_text=False)
    for query_id, a, b in zip(batch.ids, mine, theirs):
        if not _same_ranking(a, b):
            raise StoreError(f"copy check failed: exact search with point {query_id} as the query differs: "
                             f"{[h.id for h in a][:3]}… against {[h.id for h in b][:3]}…")
    return len(batch.ids)


def check_target(source: Collection, target: Collection, batch_size: int = DEFAULT_BATCH) -> None:
    """Raise :class:`CopyConflictError` unless ``target`` is empty or holds only points whose ids the
    source holds: an interrupted copy of this source (a point the source has since re-indexed, with
    another payload, is rewritten by the copy). Anything else would end as a mix of two collections.

    Point ids are the same on every run for the same document and chunk (see
    :func:`retriever.ingest.chunking.chunk_id`), so a target whose ids are all the source's ends, once
    copied, as exactly the source; no record of the copy's provenance is needed. It reads the target
    once (a finished copy re-run reads it twice: here and in the copy's read-only pass)."""
    held = target.count()
    if held == 0:
        return
    points = source.count()
    where = f"collection {target.spec.name!r} ({target.location})"
    refuse = (f"; nothing was written: copy into a new name, or drop {target.spec.name!r} first if its points "
              "may be replaced")
    if held > points:
        raise CopyConflictError(f"{where} already holds {held:,} points, more than the {points:,} of "
                                f"{source.spec.name!r}: it is not a copy of it being resumed{refuse}")
    for batch in target.points(batch_size=batch_size):
        known = source.payloads(batch.ids)
        foreign = [pid for pid in batch.ids if pid not in known]
        if foreign:
            raise CopyConflictError(f"{where} already holds points that {source.spec.name!r} does not (point "
                                    f"{foreign[0]}, {len(foreign):,} of the first {len(batch.ids):,} checked): it is "
                                    f"not a copy of it being resumed{refuse}")


def check_target_place(location: str, data_dirs: Iterable[Path]) -> None:
    """Refuse a ``path:DIR`` target (qdrant-client's local mode) inside an embedded collection's
    directory or inside one of ``data_dirs``' ``collections/`` folders: a later ``funnel drop`` of
    that collection would delete the copy with it, and the catalog would list the store as a
    collection. Check it before the target catalog is opened (opening makes the directory)."""
    if not location.startswith("path:"):
        return
    place = Path(location[len("path:"):]).expanduser().resolve()
    roots = {Path(d).expanduser().resolve() / "collections" for d in data_dirs}
    for folder in (place, *place.parents):
        if (folder / "collection.json").is_file() or folder in roots:
            what = f"the collections folder {folder}" if folder in roots else f"the collection directory {folder}"
            raise BadInputError(f"cannot copy into {location}: it lies inside {what} (a funnel drop there would "
                                "delete the copy); give a directory outside funnel's data directory")


def same_store(a: Catalog, b: Catalog) -> bool:
    """Whether two catalogs are one store: the same data directory (or ``path:DIR``) once relative
    parts, ``..`` and symlinks are resolved, else the same location."""
    def place(catalog: Catalog) -> str:
        if catalog.local_dir is not None:
            return f"embedded:{catalog.local_dir.expanduser().resolve()}"
        if catalog.location.startswith("path:"):
            return f"path:{Path(catalog.location[len('path:'):]).expanduser().resolve()}"
        return catalog.location

    return place(a) == place(b)


def copy_points(source: Collection, target: Collection, batch_size: int = DEFAULT_BATCH,
                on_batch: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Write the source's points the target lacks or holds with another payload, in batches:
    (written, unchanged)."""
    total = source.count() if on_batch is not None else 0
    written = unchanged = 0
    for batch in source.points(batch_size=batch_size):
        rows = _changed(batch, target.payloads(batch.ids))
        if rows:
            target.upsert(_rows(batch, rows))
        written += len(rows)
        unchanged += len(batch.ids) - len(rows)
        if on_batch is not None:
            on_batch(written + unchanged, total)
    return written, unchanged


def copy_collection(
    source_catalog: Catalog,
    source_name: str,
    target_catalog: Catalog,
    target_name: str,
    batch_size: int = DEFAULT_BATCH,
    verify_sample: int = DEFAULT_VERIFY_SAMPLE,
    on_batch: Callable[[int, int], None] | None = None,
    layout: LayoutChoice | None = None,
    lexical: tuple[str | None, str] | None = None,
) -> CopyResult:
    """Copy ``source_name`` into ``target_name`` (created with the source's spec, or an existing one
    built the same way: another model, ladder, chunking or layout is refused), then verify it.

    ``layout``: give the target this storage layout (graph dim, quantization, on-disk) instead of the
    source's; the vectors are copied as they are (exact search is the same on both). ``lexical``:
    give the target this lexical index, (``"bm25"``, analyzer) or (``None``, analyzer) for none,
    instead of the source's: the engine builds it from the chunk text every point carries, so
    adding BM25 to a collection re-embeds nothing (the source is left as it is)."""
    validate_collection_name(target_name)
    if batch_size < 1:
        raise BadInputError(f"invalid batch size {batch_size}: use 1 or more")
    check_target_place(target_catalog.location,
                       [c.local_dir for c in (source_catalog, target_catalog) if c.local_dir is not None])
    if source_name == target_name and same_store(source_catalog, target_catalog):
        raise BadInputError(f"cannot copy collection {source_name!r} onto itself ({source_catalog.location} and "
                            f"{target_catalog.location} are the same store): give another name or engine")
    started = time.perf_counter()
    with source_catalog.open(source_name) as source:
        spec = dataclasses.replace(source.spec, name=target_name)
        if layout is not None:
            spec = layout.apply_to(spec)
        if lexical is not None:
            check_lexical(*lexical)
            spec = dataclasses.replace(spec, lexical=lexical[0], lexical_analyzer=lexical[1])
        total = source.count()
        with target_catalog.open_or_create(spec) as target:
            check_target(source, target, batch_size)
            written, unchanged = copy_points(source, target, batch_size, on_batch)
            target.finish_indexing()
            record, damaged = None, None
            try:
                record = source.calibration() if layout is None else None  # another layout needs its own plan
            except DamagedCalibrationError as exc:
                damaged = str(exc)  # nothing to copy: the target is searched with the uncalibrated defaults
            if record is not None:
                target.save_calibration(record)
            verified = verify_copy(source, target, verify_sample)
    return CopyResult(source_name, target_name, total, written, unchanged, time.perf_counter() - started, verified,
                      record is not None, damaged)
