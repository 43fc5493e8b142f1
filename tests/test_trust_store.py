"""Issue 22, the store's part: a full or read-only disk is never taken for a damaged collection, and
``funnel collections copy`` never mixes two collections, never copies into thin air, never onto itself.

The collections are real Qdrant Edge shards in ``tmp_path``. A full disk cannot be made here (no
tmpfs without root and CAP_SYS_ADMIN), so the tests that need one make the engine's open raise the
message the engine itself gives on ENOSPC (``... No space left on device (os error 28)``) or EROFS
through a monkeypatch of ``EdgeShard.load``: the only simulated part; everything after it is real.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import assert_cli_error as one_error_line

from cli import main
from retriever.errors import CopyConflictError, StorageUnavailableError
from retriever.store.base import PointBatch
from retriever.store.config import EngineConfig
from retriever.store.copy import copy_collection
from retriever.store.edge import catalog as edge_catalog
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.edge.disk import storage_condition
from retriever.store.factory import open_catalog
from retriever.store.spec import CollectionSpec

pytestmark = pytest.mark.timeout(120)

ENOSPC_MESSAGE = "Service internal error: failed to open the write-ahead log: No space left on device (os error 28)"
EROFS_MESSAGE = "Service internal error: failed to open the write-ahead log: Read-only file system (os error 30)"


# --- helpers ----------------------------------------------------------------------------------


def invoke(data_dir: Path, *args: object) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *map(str, args)])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def spec(name: str) -> CollectionSpec:
    return CollectionSpec(name=name, model="m", model_fingerprint="f" * 16, model_dim=32, dims=(8, 32),
                          chunk_size=64, chunk_overlap=8)


def batch(ids: list[int], seed: int, tag: str) -> PointBatch:
    rng = np.random.default_rng(seed)
    vectors = {}
    for dim in (8, 32):
        m = rng.normal(size=(len(ids), dim)).astype(np.float32)
        vectors[dim] = m / np.linalg.norm(m, axis=1, keepdims=True)
    payloads = [{"doc_id": f"{tag}{i}", "chunk": 0, "text": f"{tag} text {i}"} for i in ids]
    return PointBatch([str(i) for i in ids], vectors, payloads)


def make(data: Path, name: str, ids: list[int], seed: int = 0, tag: str = "doc") -> None:
    with EdgeCatalog(data).create(spec(name)) as coll:
        if ids:
            coll.upsert(batch(ids, seed, tag))
        coll.finish_indexing()


def contents(data: Path, name: str) -> dict[str, dict]:
    with EdgeCatalog(data).open(name) as coll:
        return {pid: payload for b in coll.points(batch_size=256) for pid, payload in zip(b.ids, b.payloads)}


def engine_cannot_open(monkeypatch: pytest.MonkeyPatch, message: str, only: str | None = None) -> None:
    """Make the engine's open of a shard (of collection ``only``, else of any) raise ``message``, as
    the engine does when its write-ahead log cannot be opened on a full or read-only disk."""
    real = edge_catalog.EdgeShard.load

    def load(path: str, *args: object, **kwargs: object) -> object:
        if only is None or Path(path).parent.name == only:
            raise Exception(message)  # noqa: TRY002 - the engine raises a bare Exception
        return real(path, *args, **kwargs)

    monkeypatch.setattr(edge_catalog.EdgeShard, "load", staticmethod(load))


# --- 1. a full disk is not a damaged collection -------------------------------------------------


def test_storage_condition_is_told_apart_from_corruption():
    assert storage_condition(Exception(ENOSPC_MESSAGE)) == 28
    assert storage_condition(Exception(EROFS_MESSAGE)) == 30
    assert storage_condition(Exception("cannot open: Permission denied (os error 13)")) == 13
    assert storage_condition(OSError(28, "No space left on device")) == 28
    assert storage_condition(Exception("Service internal error: No such file or directory (os error 2)")) is None
    assert storage_condition(Exception("Service runtime error: wal replay failed: invalid payload")) is None


@pytest.mark.parametrize(("message", "what"), [(ENOSPC_MESSAGE, "the disk is full"),
                                               (EROFS_MESSAGE, "the file system is read-only")],
                         ids=["enospc", "erofs"])
def test_full_disk_open_says_so_and_never_suggests_drop(tmp_path, monkeypatch, message, what):
    """ENOSPC/EROFS simulated: the engine's open raises its real message (see the module docstring)."""
    data = tmp_path / "data"
    make(data, "base", list(range(1, 9)))
    engine_cannot_open(monkeypatch, message)
    for args in (["info", "base"], ["search", "volcano", "-c", "base"]):
        line = one_error_line(invoke(data, *args), "collection 'base'", what, "do not drop it")
        assert "deletes it" not in line and "funnel drop" not in line, line
    with pytest.raises(StorageUnavailableError, match=what):
        EdgeCatalog(data).open("base")


def test_drop_refuses_a_collection_that_failed_to_open_for_lack_of_space(tmp_path, monkeypatch):
    """ENOSPC simulated: the engine's open raises its real message (see the module docstring). The
    collection is refused, kept, opens once "space is freed", and can then be dropped as usual."""
    data = tmp_path / "data"
    make(data, "base", list(range(1, 9)))
    before = contents(data, "base")
    engine_cannot_open(monkeypatch, ENOSPC_MESSAGE)
    one_error_line(invoke(data, "drop", "base", "--yes"), "not dropping collection 'base'", "the disk is full")
    with pytest.raises(StorageUnavailableError, match="not dropping"):
        EdgeCatalog(data).drop("base")
    monkeypatch.undo()  # space freed
    assert EdgeCatalog(data).names() == ["base"] and contents(data, "base") == before
    ok(invoke(data, "drop", "base", "--yes"))  # a real drop of a healthy collection still deletes it
    assert EdgeCatalog(data).names() == []


def test_copy_into_a_collection_on_a_full_disk_says_so(tmp_path, monkeypatch):
    """ENOSPC simulated on the target's open only (see the module docstring): one line, no drop advice."""
    data = tmp_path / "data"
    make(data, "src", list(range(1, 5)))
    make(data, "dst", [1, 2])
    engine_cannot_open(monkeypatch, ENOSPC_MESSAGE, only="dst")
    line = one_error_line(invoke(data, "collections", "copy", "src", "dst"), "collection 'dst'", "the disk is full")
    assert "deletes it" not in line
    monkeypatch.undo()
    assert sorted(contents(data, "dst")) == ["1", "2"]


# --- 2. copy checks its target before writing ---------------------------------------------------


def test_copy_onto_an_existing_unrelated_collection_is_refused_before_writing(tmp_path):
    """The issue's case, scaled: 4 source points into a bigger collection of the same model and ladder;
    and one smaller than the source, whose ids the source does not hold."""
    data = tmp_path / "data"
    make(data, "src", [1, 2, 3, 4], seed=1, tag="src")
    make(data, "big", list(range(100, 140)), seed=2, tag="big")
    make(data, "small", [1, 900], seed=3, tag="small")  # one id shared by chance, one not the source's
    big, small = contents(data, "big"), contents(data, "small")
    one_error_line(invoke(data, "collections", "copy", "src", "big"), "collection 'big'",
                   "already holds 40 points", "nothing was written")
    one_error_line(invoke(data, "collections", "copy", "src", "small"), "collection 'small'",
                   "points that 'src' does not", "nothing was written")
    with pytest.raises(CopyConflictError):
        copy_collection(EdgeCatalog(data), "src", EdgeCatalog(data), "small")
    assert contents(data, "big") == big and contents(data, "small") == small


def test_copy_resumes_into_an_interrupted_copy_of_the_same_source(tmp_path):
    """A target holding only the source's ids is what an interrupted copy leaves: resumed; one whose
    points the source has since re-indexed (same ids, another payload) is brought up to date."""
    data = tmp_path / "data"
    make(data, "src", list(range(1, 11)), seed=1)

    def killed(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt  # as a Ctrl-C mid-copy

    with pytest.raises(KeyboardInterrupt):
        copy_collection(EdgeCatalog(data), "src", EdgeCatalog(data), "dst", batch_size=4, on_batch=killed)
    assert len(contents(data, "dst")) == 4
    result = copy_collection(EdgeCatalog(data), "src", EdgeCatalog(data), "dst", batch_size=4)
    assert (result.written, result.unchanged, result.points) == (6, 4, 10)
    with EdgeCatalog(data).open("src") as src:  # the source re-indexes two of its points
        src.upsert(batch([1, 2], seed=5, tag="new"))
    again = copy_collection(EdgeCatalog(data), "src", EdgeCatalog(data), "dst")
    assert (again.written, again.unchanged) == (2, 8)
    assert contents(data, "dst") == contents(data, "src")


# --- 3. copies that would vanish or land on their source ----------------------------------------


def test_copy_to_memory_is_refused(tmp_path):
    data = tmp_path / "data"
    make(data, "src", [1, 2, 3])
    one_error_line(invoke(data, "collections", "copy", "src", "dst", "--to-url", ":memory:"),
                   "cannot copy 'src' into :memory:", "vanish")
    one_error_line(invoke(data, "--qdrant-url", ":memory:", "collections", "copy", "src", "dst",
                          "--from-url", "embedded"), "vanish")


def test_copy_onto_itself_through_another_path_is_refused(tmp_path, monkeypatch):
    data = tmp_path / "data"
    make(data, "src", [1, 2, 3])
    (tmp_path / "sub").mkdir()
    os.symlink(data, tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    for other in ("embedded:data", "embedded:sub/../data", f"embedded:{tmp_path / 'link'}", "embedded:./data/"):
        line = one_error_line(invoke(data, "collections", "copy", "src", "src", "--to-url", other),
                              "cannot copy collection 'src' onto itself", "the same store")
        assert "another process" not in line
    with pytest.raises(Exception, match="onto itself"):
        copy_collection(open_catalog(EngineConfig(data_dir=Path("data"))), "src",
                        open_catalog(EngineConfig(data_dir=tmp_path / "link")), "src")
    assert sorted(contents(data, "src")) == ["1", "2", "3"]
