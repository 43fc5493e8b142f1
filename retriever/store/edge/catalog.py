"""The embedded engine's catalog: a data directory of Qdrant Edge collections (see :mod:`retriever.store.edge.collection`).

``<data dir>/collections/<name>/`` holds one collection. A collection is created in a hidden
temporary directory and renamed into place, so a crash never leaves a half-made collection under
its name; a dropped one is renamed aside before it is deleted. Layout calibration builds in hidden
scratch catalogs (``collections/.scratch~NAME~XXXXXXXX/``) and swaps the winner into place.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import uuid
from pathlib import Path

from qdrant_edge import EdgeShard, UpdateOperation

from retriever.errors import (
    CollectionLockedError,
    CollectionNotFoundError,
    FunnelError,
    StorageUnavailableError,
    StoreError,
)
from retriever.query.fusion import TEXT_FIELD
from retriever.store.base import Catalog, CollectionExistsError
from retriever.store.edge.collection import (
    INDEXED_FIELDS,
    SCRATCH_PREFIX,
    SHARD_DIR,
    SPEC_FILE,
    EdgeCollection,
    edge_config,
    engine_error,
    open_here,
    release_freed_memory,
    text_index,
)
from retriever.store.edge.disk import check_writable, storage_error
from retriever.store.edge.locks import creation_lock, hold
from retriever.store.limits import ENGINE_FILE_BYTES, NEW_SHARD_FILES
from retriever.store.paths import validate_collection_name
from retriever.store.spec import CollectionSpec


class EdgeCatalog(Catalog):
    """The collections under ``<data_dir>/collections``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir).expanduser() / "collections"

    @property
    def location(self) -> str:
        return str(self.root.parent)

    @property
    def local_dir(self) -> Path:
        return self.root.parent

    def _path(self, name: str) -> Path:
        return self.root / validate_collection_name(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / SPEC_FILE).is_file())

    def exists(self, name: str) -> bool:
        return (self._path(name) / SPEC_FILE).is_file()

    def read_spec(self, name: str) -> CollectionSpec:
        path = self._path(name)
        if not (path / SPEC_FILE).is_file():
            known = ", ".join(self.names()) or "none yet"
            raise CollectionNotFoundError(f"no collection {name!r} in {self.root.parent} (collections: {known})")
        try:
            return CollectionSpec.from_json((path / SPEC_FILE).read_text())
        except OSError as exc:  # a full, read-only or forbidden disk is not a broken spec
            subject = f"collection {name!r}: unreadable {path / SPEC_FILE}"
            raise storage_error(exc, subject) or StoreError(f"{subject} ({exc})") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"collection {name!r}: unreadable {path / SPEC_FILE} ({exc})") from None

    def check_writable(self, name: str | None = None, dims: int = 1) -> None:
        """Raise :class:`StoreError` unless collection ``name`` (or a new one with ``dims`` named
        vectors) can be written here (see :func:`~retriever.store.edge.disk.check_writable`)."""
        path = self._path(name) if name is not None else None
        check_writable(self.root, path, (NEW_SHARD_FILES + dims) * ENGINE_FILE_BYTES)

    def create(self, spec: CollectionSpec) -> EdgeCollection:
        final = self._path(spec.name)
        if final.exists():
            raise CollectionExistsError(f"collection {spec.name!r} already exists")
        self.check_writable(spec.name, len(spec.dims))
        with creation_lock(self.root, spec.name):
            if final.exists():  # made by another process while this one waited for the lock
                raise CollectionExistsError(f"collection {spec.name!r} already exists")
            for stale in self.root.glob(f".tmp~{spec.name}~*"):  # '~' is never part of a name
                shutil.rmtree(stale, ignore_errors=True)
            tmp = self.root / f".tmp~{spec.name}~{uuid.uuid4().hex[:8]}"
            try:
                tmp.mkdir()
                (tmp / SPEC_FILE).write_text(spec.to_json())
                shard = EdgeShard.create(str(tmp / SHARD_DIR), edge_config(spec))
                for field_name, schema in INDEXED_FIELDS.items():
                    shard.update(UpdateOperation.create_field_index(field_name, schema))
                if spec.lexical:
                    shard.update(UpdateOperation.create_field_index(TEXT_FIELD, text_index(spec)))
                shard.close()
                os.rename(tmp, final)
            except Exception as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(exc, FunnelError):
                    raise
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
                raise StoreError(f"cannot create collection {spec.name!r} in {self.root}: {reason}") from exc
            return self.open(spec.name)

    def open(self, name: str) -> EdgeCollection:
        spec = self.read_spec(name)
        path = self._path(name)
        if open_here(path):  # the engine's lock would refuse it, after touching the files (see locks.Holder)
            raise CollectionLockedError(
                f"collection {name!r} is already open in this process ({path}): close it first "
                "(Retriever.close(), or leave its with block); one process opens a collection once")
        holder = hold(path, name)  # another funnel process holds it: refused before the engine touches a file
        try:
            shard = EdgeShard.load(str(path / SHARD_DIR))
        except Exception as exc:  # noqa: BLE001
            if holder is not None:
                holder.release()
            error = engine_error(exc, name)
            if isinstance(error, CollectionLockedError) and open_here(path):
                raise CollectionLockedError(
                    f"collection {name!r} is already open in this process ({path}): close it first "
                    "(Retriever.close(), or leave its with block); one process opens a collection once") from exc
            if isinstance(error, (CollectionLockedError, StorageUnavailableError)):
                raise error from exc  # in use, or the disk's fault: never "delete it"
            raise StoreError(f"{error} (the collection cannot be opened; 'funnel drop {name}' deletes it)") from exc
        release_freed_memory()
        collection = EdgeCollection(path, spec, shard, holder)
        if collection.replacing:  # a document replacement was killed: finish or undo it before any use
            try:
                collection.recover_pending()
            except Exception:
                collection.close()
                raise
        return collection

    def drop(self, name: str) -> None:
        """Delete a collection; refuses a missing or locked one, and one that cannot be opened because
        the disk is full, read-only or forbidden (it is not damaged: it opens again once the disk is
        fixed), but drops one whose spec or write-ahead log cannot be read (nothing else can recover it)."""
        path = self._path(name)
        if not path.is_dir():
            self.read_spec(name)  # CollectionNotFoundError with the known names
        try:
            self.open(name).close()
        except CollectionLockedError:
            raise
        except StorageUnavailableError as exc:
            reason = str(exc).removeprefix(f"collection {name!r}: ")
            raise StorageUnavailableError(f"not dropping collection {name!r}: {reason}") from None
        except StoreError:
            pass
        trash = self.root / f".drop~{name}~{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except OSError as exc:
            subject = f"cannot drop collection {name!r}"
            raise storage_error(exc, subject) or StoreError(f"{subject}: {exc.strerror or exc}") from None
        shutil.rmtree(trash, ignore_errors=True)
        self.clear_stale_scratch(name)  # a killed calibrate --layouts --apply's copy: nobody holds it (opened above)

    # -- scratch collections and in-place replacement (``funnel calibrate --layouts/--apply``) ---------

    def scratch(self, name: str) -> tuple[EdgeCatalog, str]:
        """A hidden catalog of its own, ``collections/.scratch~NAME~XXXXXXXX/`` (never listed), holding a
        collection of the same name: :meth:`swap_in` then moves it into place as it is."""
        return EdgeCatalog(self.root / f"{SCRATCH_PREFIX}{validate_collection_name(name)}~{uuid.uuid4().hex[:8]}"), name

    def _own_scratch(self, scratch: Catalog) -> Path:
        where = scratch.root.parent if isinstance(scratch, EdgeCatalog) else None
        if where is None or where.parent != self.root or not where.name.startswith(SCRATCH_PREFIX):
            raise StoreError(f"{scratch.location} is not a scratch catalog of {self.root}")
        return where

    def discard_scratch(self, scratch: Catalog, name: str) -> None:
        shutil.rmtree(self._own_scratch(scratch), ignore_errors=True)

    def clear_stale_scratch(self, name: str) -> None:
        for stale in self.root.glob(f"{SCRATCH_PREFIX}{validate_collection_name(name)}~*"):  # '~' is never in a name
            shutil.rmtree(stale, ignore_errors=True)

    @property
    def can_swap_in(self) -> bool:
        return True

    def swap_in(self, name: str, scratch: Catalog, scratch_name: str) -> None:
        """Exchange the two directories in one ``renameat2(RENAME_EXCHANGE)`` (Linux), so that ``name``
        is never missing; elsewhere two renames (the old one is put back if the second fails). The old
        collection then lies in the scratch catalog, and is deleted with it. Refused while another
        process holds ``name``."""
        where = self._own_scratch(scratch)
        built, final = where / "collections" / validate_collection_name(scratch_name), self._path(name)
        if scratch_name != name or not (built / SPEC_FILE).is_file():
            raise StoreError(f"no collection {name!r} built in {where}")
        self.open(name).close()  # CollectionLockedError while another process uses it
        if not _exchange(built, final):
            trash = where / f".old~{uuid.uuid4().hex[:8]}"
            os.rename(final, trash)
            try:
                os.rename(built, final)
            except OSError:
                os.rename(trash, final)
                raise
        shutil.rmtree(where, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system or kernel cannot
        return False
    raise OSError(errno, os.strerror(errno), str(b))
