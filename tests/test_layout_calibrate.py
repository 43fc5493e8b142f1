"""Binary quantization as a storage layout, and layout calibration (``funnel calibrate --layouts/--apply``).

Real engines, no mocks: a model-free collection of 3,000 clustered Matryoshka-like points (variance
decays along the dims; each point near one of 150 centres, so a query's exact top-10 are its cluster
mates, as with real embeddings, not noise), with the engine's thresholds lowered so that every graph
is built and walked (see tests/test_hnsw_funnel.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_cli_error

import retriever.calibration.layouts as layout_calibrate
import retriever.calibration.plans as calibrate
import retriever.store.edge.collection as edge_store
import retriever.store.spec as store_spec
from cli import main
from retriever.calibration.layouts import apply_layout, calibrate_layouts, choose
from retriever.calibration.plans import recall_against
from retriever.errors import CollectionLockedError, InPlaceUnsupportedError, InvalidLayoutError
from retriever.query.ladder import vector_name
from retriever.query.plan import parse_plan
from retriever.store.base import PointBatch
from retriever.store.config import EngineConfig
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.edge.collection import SCRATCH_PREFIX
from retriever.store.edge.requests import EdgeRequests
from retriever.store.factory import open_catalog
from retriever.store.layout import LayoutChoice, parse_layouts
from retriever.store.server.requests import ServerRequests
from retriever.store.spec import CollectionSpec

LADDER = (64, 128, 384)
N_POINTS = 3_000
K = 10
BINARY = ("binary", "binary1.5", "binary2")
TARGET = 0.95


def _prefixes(full: np.ndarray) -> dict[int, np.ndarray]:
    return {d: full[:, :d] / np.linalg.norm(full[:, :d], axis=1, keepdims=True) for d in LADDER}


def _data(seed: int = 5) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    scale = np.exp(-np.arange(384, dtype=np.float32) / 200)
    centres = rng.standard_normal((150, 384)).astype(np.float32) * scale
    full = centres[rng.integers(0, 150, N_POINTS)] + 0.5 * rng.standard_normal((N_POINTS, 384)).astype(np.float32) * scale
    near = full[rng.integers(0, N_POINTS, 40)]
    queries = _prefixes(near + 0.5 * rng.standard_normal((40, 384)).astype(np.float32) * scale)
    return full, queries


IDS = [f"00000000-0000-0000-0000-{i:012x}" for i in range(N_POINTS)]


def _spec(name: str = "lay", **layout: object) -> CollectionSpec:
    return CollectionSpec(name=name, model="synthetic", model_fingerprint="0", model_dim=384, dims=LADDER,
                          chunk_size=16, chunk_overlap=0, **layout)  # type: ignore[arg-type]


def _fill(coll, full: np.ndarray) -> None:  # noqa: ANN001 - a Collection
    ids = IDS[: len(full)]
    coll.upsert(PointBatch(ids, _prefixes(full), [{"doc_id": i, "chunk": 0} for i in ids]))
    coll.finish_indexing()


@pytest.fixture(autouse=True)
def graph_thresholds(monkeypatch):
    """Build a graph however small the collection, and search it instead of scanning; and leave the
    top-dim scan out of the candidate plans, which would win on 3,000 points whatever the layout."""
    monkeypatch.setattr(edge_store, "INDEXING_THRESHOLD_KB", 1)
    monkeypatch.setattr(edge_store, "FULL_SCAN_THRESHOLD_KB", 1)
    monkeypatch.setattr(calibrate, "SCAN_CANDIDATE_MAX_POINTS", 0)


@pytest.fixture(scope="module")
def data():
    return _data()


def _graph_files(path: Path, dim: int) -> list[Path]:
    """The HNSW graphs (``m > 0``) built for ``dim``'s vector, one per indexed segment."""
    configs = (path / "shard" / "segments").glob(f"*/vector_index-{vector_name(dim)}/hnsw_config.json")
    return [c for c in configs if json.loads(c.read_text())["m"] > 0 and json.loads(c.read_text())["indexed_vector_count"]]


def _quantized_configs(path: Path, dim: int) -> list[dict]:
    return [json.loads(p.read_text()) for p in (path / "shard" / "segments").glob(
        f"*/vector_storage-{vector_name(dim)}/quantized.config.json")]


# -- binary quantization as a layout ---------------------------------------------------------------

@pytest.mark.parametrize("quantization", BINARY)
def test_binary_graph_on_a_higher_dim_is_built_walked_and_searches_well(tmp_path, data, quantization):
    full, queries = data
    catalog = EdgeCatalog(tmp_path / "data")
    with catalog.create(_spec(hnsw_dims=(128,), quantization=quantization)) as coll:
        _fill(coll, full)
        assert coll.spec.quantized_dims == (128,)
        assert _graph_files(coll.path, 128) and not _graph_files(coll.path, 64), "the graph is on dim 128 alone"
        configs = _quantized_configs(coll.path, 128)
        assert configs and not _quantized_configs(coll.path, 64), "dim 128 alone is quantized"
        encoding = {"binary": "one_bit", "binary1.5": "one_and_half_bits", "binary2": "two_bits"}[quantization]
        assert all(c["quantization_config"] == {"binary": {"memory": "pinned", "encoding": encoding}} for c in configs)
        exact = coll.search(queries, None, K, with_text=False)
        exact128 = coll.search_at(queries[128], 128, K, exact=True)
        # The graph stage alone: binary codes, oversampled and rescored with the float vectors.
        alone = recall_against(coll.search_at(queries[128], 128, K, exact=False), exact128, K)
        funnel = recall_against(coll.search(queries, parse_plan("128:100", LADDER, K), K, with_text=False), exact, K)
        assert alone >= 0.9, f"{quantization}: the rescored graph stage found {alone:.3f} of the exact top-{K}"
        assert funnel >= 0.97, f"{quantization}: the funnel 128:100 found {funnel:.3f} of the exact top-{K}"


def test_oversampling_is_what_makes_a_lone_binary_stage_good(tmp_path, data, monkeypatch):
    """Without oversampling the binary order decides which k get rescored: measured 0.67 against 0.98."""
    full, queries = data
    with EdgeCatalog(tmp_path / "data").create(_spec(hnsw_dims=(128,), quantization="binary")) as coll:
        _fill(coll, full)
        exact128 = coll.search_at(queries[128], 128, K, exact=True)
        oversampled = recall_against(coll.search_at(queries[128], 128, K, exact=False), exact128, K)
        monkeypatch.setitem(store_spec.QUANTIZED_OVERSAMPLING, "binary", None)
        plain = recall_against(coll.search_at(queries[128], 128, K, exact=False), exact128, K)
    assert oversampled >= 0.9 and plain < oversampled - 0.1, (oversampled, plain)


@pytest.mark.parametrize("builder", [EdgeRequests, lambda spec: ServerRequests(spec, 1)], ids=["edge", "server"])
def test_a_quantized_stage_is_rescored_only_when_nothing_later_rescores(builder):
    requests = builder(_spec(hnsw_dims=(128,), quantization="binary"))
    alone = requests.stage_params(128, K, exact=False, hnsw_ef=None, refined=False).quantization
    first = requests.stage_params(128, 200, exact=False, hnsw_ef=None, refined=True).quantization
    scan = requests.stage_params(384, K, exact=True, hnsw_ef=None, refined=False)
    assert (alone.rescore, alone.oversampling) == (True, 4.0)
    assert first.rescore is False and first.oversampling is None
    assert requests.stage_params(64, K, exact=False, hnsw_ef=None, refined=False).quantization is None
    assert scan.quantization is None  # the top dim is not quantized
    plain = builder(_spec()).stage_params(64, K, exact=False, hnsw_ef=None, refined=False)
    assert plain.quantization is None and plain.hnsw_ef == 128


@pytest.mark.parametrize("quantization", BINARY)
def test_server_store_takes_the_binary_encoding(tmp_path, data, quantization):
    """qdrant-client's local mode keeps the config (it searches by brute force, ignoring it)."""
    full, queries = data
    catalog = open_catalog(EngineConfig(data_dir=tmp_path / "data", url=":memory:"))
    with catalog, catalog.create(_spec(hnsw_dims=(128,), quantization=quantization)) as coll:
        _fill(coll, full[:500])
        params = catalog.conn.client.get_collection("lay").config.params.vectors
        binary = params[vector_name(128)].quantization_config.binary
        assert params[vector_name(64)].quantization_config is None
        assert binary.always_ram and binary.encoding.value == {"binary": "one_bit", "binary1.5": "one_and_half_bits",
                                                               "binary2": "two_bits"}[quantization]
        some = {d: m[:5] for d, m in queries.items()}
        found = coll.search(some, parse_plan("128:50", LADDER, K), K, with_text=False)
        assert recall_against(found, coll.search(some, None, K, with_text=False), K) >= 0.9
        catalog.drop("lay")


# -- layouts: parsing, choosing ----------------------------------------------------------------------

def test_layouts_parse_and_refuse_what_does_not_fit():
    spec = _spec()
    assert [str(x) for x in parse_layouts("auto", spec)] == [f"{d}:{q}" for d in (64, 128, 384)
                                                            for q in ("none", "int8", "binary")]
    assert parse_layouts(" 128:binary1.5, 64:int8:disk,128:binary1.5", spec) == [
        LayoutChoice(128, "binary1.5"), LayoutChoice(64, "int8", True)]
    for bad, fragment in (("100:int8", "not a dim"), ("128:int4", "unknown quantization"), ("fast", "DIM:QUANT"),
                          ("128:int8:ssd", "'disk' or 'ram'"), (",", "no layout")):
        with pytest.raises(InvalidLayoutError, match=fragment):
            parse_layouts(bad, spec)


def _trial(layout: str, p50: float, met: bool = True, current: bool = False, size: int = 0):
    return layout_calibrate.LayoutTrial(layout, current, "p", 1.0 if met else 0.5, met, p50, None, size)


def test_choice_is_the_fastest_meeting_the_target_and_the_current_unless_clearly_beaten():
    now = _trial("64:none", 1.0, current=True)
    assert choose([now, _trial("128:int8", 0.5), _trial("128:binary", 0.4, met=False)]).layout == "128:int8"
    assert choose([now, _trial("128:int8", 0.92)]).layout == "64:none"  # < 10 % faster: keep
    assert choose([now, _trial("a", 0.5, size=2), _trial("b", 0.5, size=1)]).layout == "b"  # tie: fewer bytes
    missed = _trial("64:none", 0.1, met=False, current=True)
    assert choose([missed, _trial("128:int8", 3.0)]).layout == "128:int8"  # the current misses the target
    assert choose([missed, _trial("x", 3.0, met=False)]).layout == "64:none"  # none meets it: keep


# -- layout calibration on a real collection ---------------------------------------------------------

@pytest.fixture
def source(tmp_path, data):
    full, queries = data
    catalog = EdgeCatalog(tmp_path / "data")
    with catalog.create(_spec()) as coll:
        _fill(coll, full)
    return catalog, queries


def _no_scratch(catalog: EdgeCatalog) -> list[str]:
    return [p.name for p in catalog.root.iterdir() if p.name.startswith((SCRATCH_PREFIX, ".tmp~", ".drop~"))]


def test_layout_calibration_measures_each_layout_and_chooses_the_fastest_meeting_the_target(source):
    catalog, queries = source
    layouts = parse_layouts("128:int8,128:binary,64:binary2", _spec())
    seen = []
    with catalog.open("lay") as coll:
        before = coll.spec
        result = calibrate_layouts(catalog, coll, layouts, queries, K, TARGET, on_trial=seen.append)
        assert coll.spec == before
    assert [t.layout for t in result.trials] == ["64:none", "128:int8", "128:binary", "64:binary2"] == [
        t.layout for t in seen]
    assert result.current.build_s is None and all(t.build_s and t.build_s > 0 for t in result.trials[1:])
    assert all(t.disk_bytes and t.p50_ms > 0 for t in result.trials)
    for t in result.trials:  # each plan starts at the dim with the graph, and its recall is what was measured
        assert t.plan.startswith(t.layout.split(":")[0] + ":"), t
    met = [t for t in result.trials if t.met]
    assert result.chosen.met and result.chosen in met
    others = [t for t in met if not t.current]
    if result.changed:
        assert result.chosen.p50_ms == min(t.p50_ms for t in others)
        assert result.chosen.p50_ms <= result.current.p50_ms * (1 - layout_calibrate.MIN_GAIN)
    else:
        assert all(t.p50_ms > result.current.p50_ms * (1 - layout_calibrate.MIN_GAIN) for t in others)
    record = result.record()
    assert record["chosen"] == result.chosen.layout and len(record["trials"]) == 4 and not record["applied"]
    assert _no_scratch(catalog) == [] and catalog.names() == ["lay"]


def test_apply_relays_the_collection_in_place_and_it_answers_as_before(source, monkeypatch):
    catalog, queries = source
    monkeypatch.setattr(layout_calibrate, "MIN_GAIN", -100.0)  # any other layout that meets the target wins
    with catalog.open("lay") as coll:
        exact_before = coll.search(queries, None, K, with_text=False)
        result = calibrate_layouts(catalog, coll, [LayoutChoice(128, "binary"), LayoutChoice(128, "int8")],
                                   queries, K, TARGET, keep_chosen=True)
    assert result.changed and result.built is not None and result.adaptive is not None
    fastest = min((t for t in result.trials if t.met and not t.current), key=lambda t: t.p50_ms)
    assert result.chosen is fastest
    assert result.calibration is not None
    saved = apply_layout(catalog, "lay", result, "40 test queries")
    assert result.applied and _no_scratch(catalog) == [] and catalog.names() == ["lay"]
    spec = catalog.read_spec("lay")
    chosen = LayoutChoice(128, result.chosen.layout.split(":")[1])
    assert (spec.hnsw_dims, spec.quantization) == ((128,), chosen.quantization)
    with catalog.open("lay") as coll:
        assert _graph_files(coll.path, 128) and not _graph_files(coll.path, 64)
        assert _quantized_configs(coll.path, 128) and coll.count() == N_POINTS
        record = coll.calibration()
        assert record == saved and record["plan"] == result.chosen.plan and record["layouts"]["applied"]
        assert record["layouts"]["chosen"] == str(chosen) and "adaptive" in record
        exact_after = coll.search(queries, None, K, with_text=False)
        default = coll.search(queries, parse_plan(record["plan"], LADDER, K), K, with_text=False)
    assert [[h.id for h in hits] for hits in exact_after] == [[h.id for h in hits] for hits in exact_before]
    assert recall_against(default, exact_before, K) >= TARGET


def test_an_interrupted_calibration_leaves_the_collection_untouched_and_no_scratch(source):
    catalog, queries = source
    spec_file = (catalog.root / "lay" / edge_store.SPEC_FILE).read_text()

    def stop_after_first_new(trial):  # noqa: ANN001
        if not trial.current:
            raise KeyboardInterrupt

    with catalog.open("lay") as coll, pytest.raises(KeyboardInterrupt):
        calibrate_layouts(catalog, coll, [LayoutChoice(128, "int8"), LayoutChoice(128, "binary")], queries, K,
                          TARGET, keep_chosen=True, on_trial=stop_after_first_new)
    assert _no_scratch(catalog) == [] and catalog.names() == ["lay"]
    assert (catalog.root / "lay" / edge_store.SPEC_FILE).read_text() == spec_file
    assert not (catalog.root / "lay" / edge_store.CALIBRATION_FILE).exists()


def test_apply_refuses_a_collection_in_use_and_changes_nothing(source, monkeypatch):
    catalog, queries = source
    monkeypatch.setattr(layout_calibrate, "MIN_GAIN", -100.0)
    with catalog.open("lay") as coll:
        result = calibrate_layouts(catalog, coll, [LayoutChoice(128, "int8")], queries, K, TARGET, keep_chosen=True)
        assert result.built is not None and result.calibration is not None
        with pytest.raises(CollectionLockedError):  # still open here: as if another process served it
            apply_layout(catalog, "lay", result, "test")
    assert _no_scratch(catalog) == [] and catalog.read_spec("lay") == _spec()


def test_a_server_refuses_apply_before_any_work(tmp_path, data):
    full, queries = data
    catalog = open_catalog(EngineConfig(data_dir=tmp_path / "data", url=":memory:"))
    with catalog, catalog.create(_spec()) as coll:
        _fill(coll, full[:200])
        with pytest.raises(InPlaceUnsupportedError, match="funnel collections copy lay NEW --layout"):
            calibrate_layouts(catalog, coll, [LayoutChoice(128, "int8")], queries, K, keep_chosen=True)
        assert catalog.names() == ["lay"]
        catalog.drop("lay")


# -- the CLI -----------------------------------------------------------------------------------------

@pytest.fixture
def cli_collection(tmp_path, data, embedder):
    """The synthetic points under the real model's name and fingerprint, so the CLI opens them."""
    from retriever.ingest.indexer import model_id

    full, _ = data
    home = Path(tmp_path / "funnel-home")
    spec = dataclasses.replace(_spec("syn"), model=model_id(embedder.name), model_fingerprint=embedder.fingerprint)
    with EdgeCatalog(home).create(spec) as coll:
        _fill(coll, full)
    return EdgeCatalog(home)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--layouts", "100:int8"], "100 is not a dim"),
    (["--layouts", "128:int4"], "unknown quantization 'int4'"),
    (["--layouts", "fast"], "DIM:QUANTIZATION"),
    (["--apply"], "give --layouts too"),
])
def test_cli_bad_layout_options_are_one_line_and_change_nothing(cli_collection, args, fragment):
    result = CliRunner().invoke(main, ["calibrate", "syn", *args])
    assert_cli_error(result, fragment)
    assert not (cli_collection.root / "syn" / edge_store.CALIBRATION_FILE).exists()
    assert _no_scratch(cli_collection) == []


def test_cli_apply_on_a_server_is_refused_in_one_line(tmp_path):
    store = f"path:{tmp_path / 'local'}"
    with open_catalog(EngineConfig(data_dir=tmp_path / "d", url=store)) as catalog:
        catalog.create(_spec("srv")).close()
    result = CliRunner().invoke(main, ["--qdrant-url", store, "calibrate", "srv", "--layouts", "auto", "--apply"])
    assert_cli_error(result, "cannot replace collection 'srv' in place", "funnel collections copy srv NEW --layout")


def test_cli_layouts_apply_and_copy_layout(cli_collection, monkeypatch):
    monkeypatch.setattr(layout_calibrate, "MIN_GAIN", -100.0)
    result = CliRunner().invoke(main, ["calibrate", "syn", "--sample", "30", "--target", str(TARGET),
                                       "--layouts", "128:int8", "--apply"])
    assert result.exit_code == 0, result.output
    assert "re-laid syn into layout 128:int8; its default plan is now 128:" in " ".join(result.stderr.split())
    spec = cli_collection.read_spec("syn")
    assert (spec.hnsw_dims, spec.quantization) == ((128,), "int8")
    record = json.loads((cli_collection.root / "syn" / edge_store.CALIBRATION_FILE).read_text())
    assert record["layouts"]["chosen"] == "128:int8" and record["layouts"]["applied"]
    assert record["plan"].startswith("128:")
    # A plain re-calibration keeps the layout measurements and plans from the graph's dim.
    again = CliRunner().invoke(main, ["calibrate", "syn", "--sample", "30", "--json"])
    assert again.exit_code == 0, again.output
    out = json.loads(again.stdout)
    assert out["layouts"]["chosen"] == "128:int8" and not out["plan"].startswith("64:")
    # Indexing more into the re-laid collection keeps its layout (no "another layout" refusal).
    corpus = cli_collection.root.parent / "more.jsonl"
    corpus.write_text(json.dumps({"_id": "extra", "text": "One more passage about graphs."}) + "\n")
    more = CliRunner().invoke(main, ["index", str(corpus), "-c", "syn", "--no-progress"])
    assert more.exit_code == 0, more.output
    assert cli_collection.read_spec("syn") == spec
    # The layout a server user would copy into instead.
    copied = CliRunner().invoke(main, ["collections", "copy", "syn", "syn2", "--layout", "64:binary2"])
    assert copied.exit_code == 0, copied.output
    assert "not copied (new layout 64:binary2" in " ".join(copied.stderr.split())
    assert (cli_collection.read_spec("syn2").hnsw_dims, cli_collection.read_spec("syn2").quantization) == (
        (64,), "binary2")
    assert _no_scratch(cli_collection) == []


def test_layout_trials_on_a_server_use_scratch_collections_that_are_dropped(tmp_path, data):
    """qdrant-client's local mode: the same client calls as a server (it ignores the layout when searching)."""
    full, queries = data
    catalog = open_catalog(EngineConfig(data_dir=tmp_path / "data", url=":memory:"))
    few = {d: m[:8] for d, m in queries.items()}
    with catalog, catalog.create(_spec()) as coll:
        _fill(coll, full[:300])
        result = calibrate_layouts(catalog, coll, [LayoutChoice(128, "binary2")], few, K, TARGET)
        assert [t.layout for t in result.trials] == ["64:none", "128:binary2"] and result.trials[1].met
        assert result.trials[1].disk_bytes is None  # a server does not say
        assert catalog.names() == ["lay"]
        catalog.drop("lay")
