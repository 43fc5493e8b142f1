"""Issue 22, case 8: a hand-edited or damaged calibration record never breaks a search, and is never
used silently.

A record that is not one (``[]``, a number, 100,000-deep nesting, not JSON) and a record with a damaged
part (a plan that is a number, a plan that does not fit the ladder, an adaptive threshold of NaN with
``adaptive_pays: true``, an invalid fusion) are read through the record's checks: the damaged parts are
not used (searches run with the uncalibrated defaults), a ``CalibrationWarning`` names the file and what
is wrong (one ``Warning:`` line on the CLI, ``calibration_warning`` in the service's answers), ``funnel
info`` shows the record as damaged, and ``funnel calibrate`` replaces it. Real Qdrant Edge collections,
the real model, a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import topic_records, write_jsonl

from cli import main
from retriever.calibration import record as record_module
from retriever.calibration.defaults import (
    adaptive_by_default,
    adaptive_rule_for,
    calibration_warning,
    default_mode_for,
    default_plan_for,
    fusion_for,
)
from retriever.calibration.plans import search_ladder
from retriever.calibration.record import CalibrationRecord, read_record
from retriever.errors import CalibrationWarning, DamagedCalibrationError
from retriever.ingest.indexer import index_corpus
from retriever.query.fusion import Fusion
from retriever.query.plan import default_plan
from retriever.service import BackgroundServer, ServiceConfig
from retriever.store.base import PointBatch
from retriever.store.config import EngineConfig
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.factory import open_catalog
from retriever.store.spec import CollectionSpec

pytestmark = pytest.mark.timeout(180)

LADDER = (64, 128, 256, 384)
GOOD_ADAPTIVE = {"k": 10, "first_plan": "64:40,384:20", "probe": 10, "signal": "gap", "threshold": 0.01,
                 "first_ef": None, "adaptive_pays": True}
GOOD = {"plan": "64:200,128:100,384:10", "k": 10, "hnsw_ef": 200, "adaptive": GOOD_ADAPTIVE,
        "hybrid": {"fusion": Fusion("rrf").to_dict(), "default_mode": "dense"}}

# Records that are not records at all: (file text, what the warning says).
NOT_RECORDS = {
    "array": ("[]", "a JSON array, not an object"),
    "number": ("5", "a JSON number, not an object"),
    "deep": ("[" * 100_000 + "]" * 100_000, "JSON nested more than 16 levels deep"),
    "deep object": ('{"a": ' * 20 + "1" + "}" * 20, "JSON nested more than 16 levels deep"),
    "not JSON": ('{"plan": "64:40,384:10"', "not JSON (Expecting ',' delimiter"),
}

# Records with a damaged part: (record, the part no longer used, what the warning says).
DAMAGED_PARTS = {
    "plan a number": (GOOD | {"plan": 5}, "plan", "plan: 5 is not a string"),
    "k a string": (GOOD | {"k": "ten"}, "plan", 'k: "ten" is not an integer'),
    "plan off the ladder": (GOOD | {"plan": "32:100,384:10"}, "plan", "dim 32 is not in the collection's dims"),
    "plan without k": ({key: v for key, v in GOOD.items() if key != "k"}, "plan", "k: missing"),
    "NaN threshold": (GOOD | {"adaptive": GOOD_ADAPTIVE | {"threshold": float("nan")}}, "adaptive",
                      "adaptive.threshold: NaN is not a finite number"),
    "unknown signal": (GOOD | {"adaptive": GOOD_ADAPTIVE | {"signal": "entropy"}}, "adaptive",
                       'adaptive.signal: "entropy" is not one of'),
    "adaptive an array": (GOOD | {"adaptive": []}, "adaptive", "adaptive: a JSON array, not an object"),
    "first plan off the ladder": (GOOD | {"adaptive": GOOD_ADAPTIVE | {"first_plan": "50:40,384:20"}}, "adaptive",
                                  "adaptive.first_plan"),
    "invalid fusion": (GOOD | {"hybrid": {"fusion": {"method": "nope"}, "default_mode": "dense"}}, "hybrid",
                       'hybrid.fusion: {"method": "nope"} is not a fusion'),
    "fusion weights NaN": (GOOD | {"hybrid": {"fusion": Fusion("rrf").to_dict() | {"dense_weight": float("nan")}}},
                           "hybrid", "fusion dense_weight must be a number"),
    "unknown mode": (GOOD | {"hybrid": {"default_mode": "fast"}}, "hybrid",
                     'hybrid.default_mode: "fast" is not one of dense, lexical, hybrid'),
}


@pytest.fixture(autouse=True)
def _fresh_warnings():
    """Each test sees each damage warned again (a process warns once per damage)."""
    record_module._warned.clear()
    yield
    record_module._warned.clear()


# --- the record's checks ------------------------------------------------------------------------


def test_case8_a_good_record_has_no_damage():
    record = CalibrationRecord.from_dict(GOOD).checked(LADDER)
    assert record.damage == () and record.warning("c", "here") is None
    assert str(record.plan_for(LADDER, 10)) == "64:200,128:100,384:10" and record.adaptive_pays()


@pytest.mark.parametrize("case", list(DAMAGED_PARTS))
def test_case8_a_damaged_part_is_named_and_not_used(case):
    stored, part, what = DAMAGED_PARTS[case]
    read = CalibrationRecord.from_dict(stored)
    record = read.checked(LADDER)
    assert [p for p, _ in record.damage] == [part] * len(record.damage) and record.damage
    assert getattr(record, part) is None  # its readers give the uncalibrated default
    assert all(getattr(record, other) is not None for other in ("plan", "adaptive", "hybrid") if other != part)
    line = record.warning("fin", "/data/fin/calibration.json")
    assert line is not None and "\n" not in line and what in line, line
    assert line.startswith("collection 'fin': damaged calibration record /data/fin/calibration.json: ")
    assert line.endswith("(the uncalibrated defaults instead); funnel calibrate fin writes a new one")
    assert part not in record.to_dict() and read.to_dict()[part] == stored[part] if part != "plan" else True
    if part == "adaptive":
        assert not record.adaptive_pays() and record.adaptive_rule(LADDER, 10) is None
    if part == "plan":
        assert record.plan_for(LADDER, 10) == default_plan(LADDER, 10) and record.ef_for(default_plan(LADDER, 10)) is None
    if part == "hybrid":
        assert record.fusion() is None and record.mode() is None


def test_case8_the_adaptive_nan_threshold_no_longer_runs_searches_adaptively():
    stored = GOOD | {"adaptive": GOOD_ADAPTIVE | {"threshold": float("nan")}}
    assert CalibrationRecord.from_dict(stored).adaptive_pays()  # as read: adaptive would be the default
    assert not CalibrationRecord.from_dict(stored).checked(LADDER).adaptive_pays()


# --- a real collection: every reader goes through the checks ------------------------------------


def _spec(name: str) -> CollectionSpec:
    return CollectionSpec(name=name, model="m", model_fingerprint="f" * 16, model_dim=384, dims=LADDER,
                          chunk_size=64, chunk_overlap=8)


def _points(n: int = 20) -> PointBatch:
    rng = np.random.default_rng(0)
    vectors = {}
    for dim in LADDER:
        m = rng.normal(size=(n, dim)).astype(np.float32)
        vectors[dim] = m / np.linalg.norm(m, axis=1, keepdims=True)
    return PointBatch([str(i) for i in range(n)], vectors,
                      [{"doc_id": f"d{i}", "chunk": 0, "text": f"text {i}"} for i in range(n)])


@pytest.fixture
def edge(tmp_path):
    catalog = EdgeCatalog(tmp_path / "data")
    with catalog.create(_spec("fin")) as coll:
        coll.upsert(_points())
        coll.finish_indexing()
    with catalog.open("fin") as coll:
        yield coll


def _uncalibrated(coll) -> tuple:  # noqa: ANN001 - a Collection
    return default_plan(search_ladder(coll.spec), 10), False, "dense", Fusion()


def _defaults(coll) -> tuple:  # noqa: ANN001 - a Collection
    return default_plan_for(coll, 10), adaptive_by_default(coll), default_mode_for(coll), fusion_for(coll, None)


@pytest.mark.parametrize("case", list(NOT_RECORDS))
def test_case8_a_record_that_is_not_one_falls_back_and_says_so(edge, case):
    text, what = NOT_RECORDS[case]
    path = Path(edge.calibration_location)
    path.write_text(text)
    with pytest.raises(DamagedCalibrationError) as raised:
        edge.calibration()
    assert str(raised.value).startswith(f"collection 'fin': damaged calibration record {path}: {what}")
    with pytest.warns(CalibrationWarning) as caught:
        assert _defaults(edge) == _uncalibrated(edge)
    assert len(caught) == 1  # once per damage, however many readers read it
    line = str(caught[0].message)
    assert line.startswith(f"collection 'fin': damaged calibration record {path}: {what}")
    assert line.endswith("searching with the uncalibrated defaults; funnel calibrate fin writes a new one")
    assert calibration_warning(edge) == line and adaptive_rule_for(edge, 10) is None


def test_case8_a_record_over_the_size_limit_is_damaged_not_read(edge, monkeypatch):
    from retriever.store.edge import collection as edge_collection

    monkeypatch.setattr(edge_collection, "MAX_CALIBRATION_BYTES", 1000)
    Path(edge.calibration_location).write_text(json.dumps(GOOD | {"notes": "x" * 2000}))
    with pytest.warns(CalibrationWarning, match=r"calibration\.json: 2,\d\d\d bytes \(a record is at most 1,000\)"):
        assert _defaults(edge) == _uncalibrated(edge)


def test_case8_a_damaged_part_falls_back_alone_and_the_rest_is_used(edge):
    Path(edge.calibration_location).write_text(json.dumps(DAMAGED_PARTS["NaN threshold"][0]))
    with pytest.warns(CalibrationWarning, match="adaptive.threshold: NaN is not a finite number; not using its "
                                                "adaptive rule"):
        assert str(default_plan_for(edge, 10)) == "64:200,128:100,384:10"  # the plan is fine: used
    assert not adaptive_by_default(edge) and adaptive_rule_for(edge, 10) is None
    Path(edge.calibration_location).write_text(json.dumps(GOOD))  # repaired: used again, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert adaptive_by_default(edge) and calibration_warning(edge) is None


def test_case8_a_server_collection_record_that_is_not_one(tmp_path):
    with open_catalog(EngineConfig(data_dir=tmp_path, url=":memory:")) as catalog:
        with catalog.create(_spec("srv")) as coll:
            coll.upsert(_points())
            coll.save_calibration([])  # type: ignore[arg-type]  # what a hand-edited metadata key can hold
        warned = pytest.warns(CalibrationWarning, match=r"collection 'srv': damaged calibration record \(metadata "
                                                       r"'funnel_calibration' of .*\): a JSON array, not an object")
        with catalog.open("srv") as coll, warned:
            assert read_record(coll) == CalibrationRecord.unreadable("a JSON array, not an object")
        catalog.drop("srv")


# --- the CLI and the service -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def topics(tmp_path_factory, embedder) -> Path:
    """A real collection of the topic corpus, built once; each test writes its own record into a copy."""
    root = tmp_path_factory.mktemp("case8")
    index_corpus(EdgeCatalog(root / "data"), "topics", [write_jsonl(root / "c.jsonl", topic_records())], embedder)
    return root / "data"


def invoke(data: Path, *args: object) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data), *map(str, args)])


def test_case8_cli_search_warns_in_one_line_and_info_shows_the_record_damaged(topics):
    path = topics / "collections" / "topics" / "calibration.json"
    path.write_text("[]")
    try:
        result = invoke(topics, "search", "How does a volcano erupt?", "-c", "topics", "-k", "3")
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output and "volcano" in result.stdout
        assert result.stderr.splitlines() == [
            f"Warning: collection 'topics': damaged calibration record {path}: a JSON array, not an object; "
            "searching with the uncalibrated defaults; funnel calibrate topics writes a new one"]
        path.write_text(json.dumps({"plan": 5, "k": 10}))
        info = invoke(topics, "info", "topics")
        assert info.exit_code == 0 and "Traceback" not in info.output
        assert "DAMAGED: plan: 5 is not a string" in " ".join(info.stdout.split())
        assert "(calibrated)" not in info.stdout
        shown = json.loads(invoke(topics, "info", "topics", "--json").stdout)
        assert shown["calibration_damaged"] == ["plan: 5 is not a string"] and shown["plan_calibrated"] is False
    finally:
        path.unlink(missing_ok=True)


def test_case8_calibrate_replaces_a_damaged_record(topics):
    path = topics / "collections" / "topics" / "calibration.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    try:
        result = invoke(topics, "calibrate", "topics", "--sample", "12")
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        assert CalibrationRecord.from_dict(json.loads(path.read_text())).checked(LADDER).damage == ()
    finally:
        path.unlink(missing_ok=True)


def test_case8_copy_leaves_a_damaged_record_behind_and_says_so(topics, tmp_path):
    path = topics / "collections" / "topics" / "calibration.json"
    path.write_text("5")
    try:
        result = invoke(topics, "collections", "copy", "topics", "copied")
        assert result.exit_code == 0, result.output
        assert "calibration not copied (collection 'topics': damaged calibration record" in result.stderr
        assert not (topics / "collections" / "copied" / "calibration.json").exists()
    finally:
        path.unlink(missing_ok=True)
        invoke(topics, "drop", "copied", "--yes")


def test_case8_served_default_plan_search_answers_200_with_the_warning(topics, embedder):
    path = topics / "collections" / "topics" / "calibration.json"
    catalog = EdgeCatalog(topics)
    collection = catalog.open("topics")
    try:
        with BackgroundServer(collection, lambda: embedder, ServiceConfig()) as server:
            for text in ("[]", json.dumps({"plan": 5, "k": 10}), "[" * 100_000 + "]" * 100_000):
                path.write_text(text)
                answer = httpx.post(f"{server.url}/search", json={"collection": "topics", "query": "volcano lava",
                                                                  "k": 3}, timeout=60)
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["results"][0]["hits"] and body["plan"] == str(default_plan(LADDER, 3))
                assert body["calibration_warning"].startswith(
                    f"collection 'topics': damaged calibration record {path}: ")
                about = httpx.get(f"{server.url}/collections/topics", timeout=60).json()
                assert about["calibration_warning"] == body["calibration_warning"]
            path.unlink()
            answer = httpx.post(f"{server.url}/search", json={"collection": "topics", "query": "volcano"}, timeout=60)
            assert answer.status_code == 200 and answer.json()["calibration_warning"] is None
    finally:
        collection.close()
        path.unlink(missing_ok=True)
