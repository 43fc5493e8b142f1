"""funnel bench: BEIR reading, calibration, timing, storage layouts, and the real command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_beir

from cli import main
from retriever.calibration.plans import calibrate, candidate_plans, plan_cost
from retriever.calibration.record import calibrated_plan
from retriever.calibration.timing import Latency, time_each
from retriever.errors import CorpusError, ModelMismatchError
from retriever.ingest.beir import check_layout, load_split
from retriever.query.ladder import truncate_normalize
from retriever.query.plan import FunnelPlan, Stage, default_plan, parse_plan
from retriever.store.base import PointBatch
from retriever.store.edge.catalog import EdgeCatalog
from retriever.store.spec import CollectionSpec
from tuner.evaluation import MatryoshkaIREvaluator, beir_ir_data

N_QUERIES = 50


# --- pure logic -------------------------------------------------------------------------------


def test_latency_percentiles_and_qps():
    lat = Latency.of([0.001] * 98 + [0.010, 0.020])
    assert lat.p50 == pytest.approx(1.0)
    assert 1.0 < lat.p99 <= 20.0
    assert lat.qps == pytest.approx(100 / (0.098 + 0.030))
    assert lat.queries == 100


def test_time_each_keeps_order_and_warms_up():
    calls: list[int] = []
    results, lat = time_each(lambda x: calls.append(x) or x * 2, [1, 2, 3], warmup=2)
    assert results == [2, 4, 6]
    assert calls == [1, 2, 1, 2, 3]  # two warm-up calls, then every item once
    assert lat.queries == 3


@pytest.mark.parametrize("ladder", [(64, 128, 256, 384), (256, 384), (128, 256, 384)])
def test_candidate_plans_are_valid_and_sorted_by_cost(ladder):
    plans = candidate_plans(ladder, 10)
    costs = [plan_cost(p) for p in plans]
    assert costs == sorted(costs)
    for plan in plans:
        assert parse_plan(str(plan), ladder, 10) == plan  # every candidate is a plan users could write
    if ladder != (64, 128, 256, 384):
        return
    assert default_plan(ladder, 10) in plans
    assert FunnelPlan((Stage(64, 20), Stage(384, 10))) in plans  # a two-stage candidate


def test_plan_cost_counts_scored_components():
    plan = FunnelPlan((Stage(64, 400), Stage(128, 200), Stage(384, 10)))
    assert plan_cost(plan) == 400 * 64 + 400 * 128 + 200 * 384


# --- BEIR reading -----------------------------------------------------------------------------


def test_not_a_beir_directory_says_what_is_missing(tmp_path):
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d", "text": "t"}\n')
    with pytest.raises(CorpusError, match=r"missing queries.jsonl, qrels/test.tsv"):
        check_layout(tmp_path, "test")
    with pytest.raises(CorpusError, match="not a directory"):
        check_layout(tmp_path / "corpus.jsonl", "test")


def test_unknown_ids_in_qrels_are_counted_and_dropped(tmp_path):
    beir = make_beir(tmp_path / "b", n_test=10, n_train=0)
    with (beir / "qrels" / "test.tsv").open("a") as f:
        f.write("q-unknown\td0\t1\nq1\td-unknown\t1\nq2\td-gone\t1\n")
    split = load_split(beir, "test")
    assert (split.unknown_query_ids, split.unknown_corpus_ids) == (1, 2)
    assert len(split.queries) == 10
    assert split.relevant["q1"] == {"d1"}


def test_no_usable_query_is_an_error(tmp_path):
    beir = make_beir(tmp_path / "b", n_test=3, n_train=0)
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nqx\td0\t1\nq0\tdx\t1\n")
    with pytest.raises(CorpusError, match="no usable judged query"):
        load_split(beir, "test")
    (beir / "qrels" / "test.tsv").write_text("q0\td0\t1\n")
    with pytest.raises(CorpusError, match="needs a header"):
        load_split(beir, "test")


# --- storage layouts --------------------------------------------------------------------------


def _spec(**changes) -> CollectionSpec:
    base = dict(name="s", model="m", model_fingerprint="f", model_dim=32, dims=(8, 16, 32), chunk_size=0,
                chunk_overlap=0)
    return CollectionSpec(**(base | changes))


def _fill(collection, n: int = 600, seed: int = 0) -> np.ndarray:
    decay = (1 + np.arange(32) / 4) ** -1.0  # Matryoshka-like: the leading dims carry most of the similarity
    full = (np.random.default_rng(seed).standard_normal((n, 32)) * decay).astype(np.float32)
    ids = [f"00000000-0000-0000-0000-{i + 1:012d}" for i in range(n)]
    collection.upsert(PointBatch(ids, {d: truncate_normalize(full, d) for d in collection.spec.dims},
                                 [{"doc_id": str(i), "chunk": 0} for i in range(n)]))
    collection.finish_indexing()
    return full


def test_old_spec_json_loads_with_default_layout():
    old = json.loads(_spec().to_json())
    for key in ("hnsw_dims", "quantization", "on_disk"):
        old.pop(key)
    spec = CollectionSpec.from_json(json.dumps(old))
    assert (spec.hnsw_dims, spec.quantization, spec.on_disk) == ((8,), "none", False)


def test_another_layout_is_refused():
    with pytest.raises(ModelMismatchError, match="storage layout"):
        _spec().check_compatible(_spec(quantization="int8"))


@pytest.mark.parametrize("layout", [dict(quantization="int8", on_disk=True), dict(hnsw_dims=(8, 16, 32)),
                                    dict(hnsw_dims=())])
def test_layouts_search_like_the_plain_collection(data_dir, layout):
    catalog = EdgeCatalog(data_dir)
    with catalog.create(_spec(name="plain")) as plain, catalog.create(_spec(name="other", **layout)) as other:
        full = _fill(plain)
        _fill(other)
        queries = {d: truncate_normalize(full[:20] + 0.1, d) for d in (8, 16, 32)}
        exact_plain = plain.search(queries, None, 5, with_text=False)
        exact_other = other.search(queries, None, 5, with_text=False)
        assert [[h.id for h in r] for r in exact_plain] == [[h.id for h in r] for r in exact_other]
        plan = parse_plan("8:200,16:100", (8, 16, 32), 5)
        def overlap(collection) -> float:
            found = collection.search(queries, plan, 5, with_text=False)
            return float(np.mean([len({h.id for h in f} & {h.id for h in e}) / 5 for f, e in zip(found, exact_plain)]))

        assert overlap(other) >= 0.9 and overlap(other) >= overlap(plain) - 0.05
        alone = other.search_at(queries[16], 16, 5, exact=True)
        assert [h.id for h in alone[0]] == [h.id for h in plain.search_at(queries[16], 16, 5, exact=True)[0]]
        assert set(other.vector_disk_bytes()) == {8, 16, 32} and all(v > 0 for v in other.vector_disk_bytes().values())


def test_points_round_trip_into_a_copy(data_dir):
    catalog = EdgeCatalog(data_dir)
    with catalog.create(_spec(name="a")) as a, catalog.create(_spec(name="b", quantization="int8")) as b:
        _fill(a, n=1500)
        for batch in a.points(batch_size=400):
            b.upsert(batch)
        b.finish_indexing()
        assert b.count() == 1500
        some = [f"00000000-0000-0000-0000-{i:012d}" for i in (1, 777, 1500)]
        assert a.payloads(some) == b.payloads(some)


def test_calibrate_reaches_its_target(data_dir):
    with EdgeCatalog(data_dir).create(_spec(name="c")) as collection:
        full = _fill(collection, n=2000)
        queries = {d: truncate_normalize(full[:40] + 0.05, d) for d in (8, 16, 32)}
        cal = calibrate(collection, queries, k=5, target=0.95)
        assert cal.met and cal.recall >= 0.95
        assert cal.tried[-1]["plan"] == str(cal.plan)
        assert all(t["recall_vs_exact"] < 0.95 for t in cal.tried[:-1])  # every cheaper plan missed it


def test_a_small_collection_may_calibrate_to_a_top_dim_scan(data_dir, monkeypatch):
    import retriever.calibration.plans as calibration

    with EdgeCatalog(data_dir).create(_spec(name="c")) as collection:
        full = _fill(collection, n=2000)
        queries = {d: truncate_normalize(full[:20] + 0.05, d) for d in (8, 16, 32)}
        cal = calibrate(collection, queries, k=5, target=1.0, timed=True)
        scan = next(t for t in cal.tried if t["plan"] == "32:5")  # a scan of every point's top-dim vector
        assert scan["cost"] == 2000 * 32 and scan["recall_vs_exact"] == 1.0 and "p50_ms" in scan
        monkeypatch.setattr(calibration, "SCAN_CANDIDATE_MAX_POINTS", 1999)
        bigger = calibrate(collection, queries, k=5, target=1.0, timed=True)
        assert all(len(t["plan"].split(",")) > 1 for t in bigger.tried)  # too many points: no scan candidate


# --- the command, end to end on the real model ------------------------------------------------


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    beir = make_beir(root / "beir", n_test=N_QUERIES, n_train=14)
    home, out = root / "home", root / "out"
    args = ["--data-dir", str(home), "bench", "--data", str(beir), "--out", str(out), "--quantization", "none,int8",
            "--plans", "default", "--plans", "auto", "--plans", "64:60,384:10", "--plans", "adaptive", "--no-progress",
            "--json"]
    first = CliRunner().invoke(main, args)
    second = CliRunner().invoke(main, args)
    return beir, home, out, first, second


def test_bench_writes_results_plots_and_json(bench_run):
    beir, home, out, first, second = bench_run
    assert first.exit_code == 0, first.output
    results = json.loads(first.stdout.strip().splitlines()[-1])
    assert json.loads((out / "results.json").read_text()) == json.loads(second.stdout.strip().splitlines()[-1])
    for name in ("results.md", "ndcg_vs_bytes.png", "ndcg_vs_latency.png"):
        assert (out / name).stat().st_size > 0
    assert "Adaptive search depth" in (out / "results.md").read_text()
    assert results["queries"] == N_QUERIES and results["machine"]["cpu_count"] >= 1
    (model,) = results["models"]
    assert model["dims"] == [64, 128, 256, 384] and model["points"] == N_QUERIES + 14
    assert [v["quantization"] for v in model["variants"]] == ["none", "int8"]
    for variant in model["variants"]:
        assert [d["dim"] for d in variant["dims"]] == [64, 128, 256, 384]
        rows = [d[mode] for d in variant["dims"] for mode in ("exact", "hnsw")] + variant["plans"]
        for row in rows:
            for key in ("ndcg@10", "recall@10", "mrr@10", "recall_vs_exact@10", "qps"):
                assert 0 <= row[key] <= (1 if key != "qps" else 1e9)
            lat = row["latency_ms"]
            assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
        assert variant["dims"][-1]["exact"]["recall_vs_exact@10"] == 1.0
        assert [p["label"] for p in variant["plans"]] == ["default", "auto", "given", "adaptive"]
        assert variant["plans"][2]["plan"] == "64:60,384:10"
        assert variant["plans"][1]["calibration"]["target"] == 0.98
        auto, adaptive = variant["plans"][1], variant["plans"][3]
        assert adaptive["plan"] == auto["plan"] and adaptive["calibration"] == auto["calibration"]
        depth = adaptive["depth"]
        assert 0 <= depth["widened_share"] <= 1 and 0 < depth["candidates_p50"] <= depth["mean_candidates"] * 2
        assert adaptive["adaptive"]["mean_ms_fixed"] > 0 and isinstance(adaptive["adaptive"]["adaptive_pays"], bool)
        assert variant["memory"]["collection_rss"] > 0
        assert variant["disk_bytes"] > 0
    none, int8 = model["variants"]
    assert none["dims"][0]["hnsw"]["bytes_per_vector"] == 256 and int8["dims"][0]["hnsw"]["bytes_per_vector"] == 64
    assert int8["dims"][0]["exact"]["bytes_per_vector"] == 256  # exact search scores the float originals
    assert (none["dims"][0]["stored_bytes_per_vector"], int8["dims"][0]["stored_bytes_per_vector"]) == (256, 320)
    assert none["plans"][0]["bytes_per_vector"] == 4 * (64 + 128 + 256 + 384)
    # bytes stored and bytes scored per vector, apart: an int8 graph dim stores its float32 vector and the
    # int8 copy (320), a search through it scores the copy (64), an exact one the originals (256)
    assert (int8["dims"][0]["hnsw"]["bytes_stored_per_vector"], int8["dims"][0]["hnsw"]["bytes_scored_per_vector"],
            int8["dims"][0]["exact"]["bytes_scored_per_vector"]) == (320, 64, 256)
    given = none["plans"][2]  # 64:60,384:10
    assert (given["bytes_stored_per_vector"], given["bytes_scored_per_vector"]) == (4 * 448, 4 * 448)
    table = (out / "results.md").read_text()
    assert "| bytes stored/vector | bytes scored/vector |" in table and "| 320 | 64 |" in table


def test_bench_per_dim_ndcg_matches_the_tuners_evaluator(bench_run, embedder):
    beir, _, _, first, _ = bench_run
    results = json.loads(first.stdout.strip().splitlines()[-1])
    evaluator = MatryoshkaIREvaluator(beir_ir_data(beir), [64, 128, 256, 384], primary_dim=64)
    tuner = evaluator.ndcg_by_dim(evaluator(embedder.model))
    bench = {d["dim"]: d["exact"]["ndcg@10"] for d in results["models"][0]["variants"][0]["dims"]}
    for dim in (64, 128, 256, 384):
        assert bench[dim] == pytest.approx(tuner[dim], abs=0.005)


def test_bench_reuses_its_collections(bench_run):
    _, home, _, first, second = bench_run
    assert second.exit_code == 0, second.output
    assert "reused collection" in second.stderr and "reusing" in second.stderr
    results = json.loads(second.stdout.strip().splitlines()[-1])
    assert results["models"][0]["reused_index"] is True
    assert len(EdgeCatalog(home).names()) == 2  # one per quantization, not one per run


@pytest.mark.parametrize("args, fragment", [
    (["--plans", "64:400,100:50"], "dim 100 is not in the collection's dims"),
    (["--quantization", "int4"], "unknown quantization 'int4'"),
    (["-k", "0"], "k must be between"),
    (["--max-queries", "0"], "invalid --max-queries"),
])
def test_bench_bad_options_fail_before_indexing(tmp_path, args, fragment):
    beir = make_beir(tmp_path / "beir", n_test=5, n_train=0)
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["--data-dir", str(home), "bench", "--data", str(beir), "--out",
                                       str(tmp_path / "out"), "--no-progress", *args])
    assert result.exit_code == 1
    assert fragment in result.stderr and "Traceback" not in result.output
    assert EdgeCatalog(home).names() == []  # nothing indexed
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("breakage, fragment", [
    (lambda b: (b / "queries.jsonl").unlink(), "missing queries.jsonl"),
    (lambda b: (b / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nnope\td0\t1\n"),
     "no usable judged query"),
    (lambda b: (b / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\nq0\td0\t1\nq\xe9\td1\t1\n"),
     "qrels/test.tsv:3: not valid UTF-8"),
    (lambda b: (b / "qrels" / "test.tsv").write_text('query-id\tcorpus-id\tscore\nq0\td0\n'), "test.tsv:2: expected 3"),
])
def test_bench_bad_data_is_one_line(tmp_path, breakage, fragment):
    beir = make_beir(tmp_path / "beir", n_test=5, n_train=0)
    breakage(beir)
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "home"), "bench", "--data", str(beir), "--out",
                                       str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1
    assert fragment in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_tune_eval_with_non_utf8_qrels_is_a_clear_error(tmp_path):
    from retriever.errors import TuneError

    beir = make_beir(tmp_path / "beir")
    (beir / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\n\xff\td0\t1\n")
    with pytest.raises(TuneError, match=r"test.tsv:2: not valid UTF-8"):
        beir_ir_data(beir)


def test_bench_table_fits_80_columns():
    from rich.console import Console

    from retriever.bench.report import rich_tables

    row = {"ndcg@10": 0.7475, "recall@10": 0.9, "mrr@10": 0.7, "recall_vs_exact@10": 0.972, "qps": 480,
           "latency_ms": {"p50": 2.01, "p95": 3.1, "p99": 3.93}, "bytes_per_vector": 3328,
           "bytes_stored_per_vector": 4160, "bytes_scored_per_vector": 3328}
    results = {"k": 10, "queries": 700, "split": "test", "models": [{"model": "m", "variants": [{
        "quantization": "none", "dims": [{"dim": 64, "exact": row, "hnsw": row}],
        "plans": [row | {"plan": "64:400,128:200,256:100,384:10", "label": "default"}]}]}]}
    console = Console(width=80, record=True)
    for table in rich_tables(results, width=80):
        console.print(table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "stored" in text and "scored" in text and "stored, scored: bytes per vector" in text
    for cell in ("0.7475", "0.972", "2.01", "3.93", "4,160", "3,328", "64:400,128:200,"):
        assert cell in text  # the numbers are shown, not cut to '…'
    wide = Console(width=200, record=True)
    for table in rich_tables(results, width=200):
        wide.print(table)
    assert "MRR@10" in wide.export_text() and "MRR@10" not in text


# --- funnel calibrate: the saved default plan ---------------------------------------------------


def test_calibrated_plan_scales_to_any_k():
    record = {"plan": "64:200,256:60,384:10", "k": 10}
    ladder = (64, 128, 256, 384)
    assert str(calibrated_plan(record, ladder, 10)) == "64:200,256:60,384:10"
    assert str(calibrated_plan(record, ladder, 5)) == "64:100,256:30,384:5"
    assert str(calibrated_plan(record, ladder, 100)) == "64:2000,256:600,384:100"
    assert calibrated_plan({"plan": "32:10"}, ladder, 10) == default_plan(ladder, 10)  # unusable → the rule


def info_adaptive(data) -> bool:
    info = CliRunner().invoke(main, ["--data-dir", str(data), "info", "t", "--json"])
    return json.loads(info.stdout)["adaptive_default"]


def test_calibrate_command_saves_the_default_plan(topic_corpus, tmp_path):
    data = tmp_path / "data"
    run = CliRunner()
    index = run.invoke(main, ["--data-dir", str(data), "index", str(topic_corpus), "-c", "t", "--no-progress"])
    assert index.exit_code == 0, index.output
    info = json.loads(run.invoke(main, ["--data-dir", str(data), "info", "t", "--json"]).stdout)
    assert info["plan_calibrated"] is False and info["default_plan_k10"] == "64:400,128:200,256:100,384:10"

    result = run.invoke(main, ["--data-dir", str(data), "calibrate", "t", "--encoders", "none", "-k", "3", "--target", "0.9", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["met"] and record["recall_vs_exact"] >= 0.9 and record["k"] == 3
    assert "stored chunks" in record["source"] and record["tried"]
    adaptive = record["adaptive"]  # 12 chunks: any first pass already finds the exact top 3, none widens
    assert adaptive["widened_share"] == 0.0 and adaptive["recall_vs_exact"] == 1.0 and record["adaptive_tried"]
    assert isinstance(adaptive["adaptive_pays"], bool) and info_adaptive(data) is adaptive["adaptive_pays"]

    info = json.loads(run.invoke(main, ["--data-dir", str(data), "info", "t", "--json"]).stdout)
    assert info["plan_calibrated"] is True
    ladder = tuple(info["dims"])
    assert info["default_plan_k10"] == str(calibrated_plan(record, ladder, 10))
    search = run.invoke(main, ["--data-dir", str(data), "search", "volcano", "-c", "t", "-k", "3", "--json"])
    assert json.loads(search.stdout)["plan"] == record["plan"]  # searches without --plan use it

    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"_id": str(i), "text": t}) + "\n"
                               for i, t in enumerate(["volcano lava", "bread yeast", "stars"] * 5)))
    again = run.invoke(main, ["--data-dir", str(data), "calibrate", "t", "--encoders", "none", "--queries", str(queries), "--sample", "10",
                              "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["source"].startswith("10 queries from")


def test_calibrate_on_fewer_points_than_k_reaches_full_recall(topic_corpus, tmp_path):
    """12 chunks, k=20: every plan returns all 12, so recall is 1, not 12/20 or less."""
    data = tmp_path / "data"
    run = CliRunner()
    assert run.invoke(main, ["--data-dir", str(data), "index", str(topic_corpus), "-c", "t", "--no-progress"]).exit_code == 0
    result = run.invoke(main, ["--data-dir", str(data), "calibrate", "t", "--encoders", "none", "-k", "20", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["met"] is True and record["recall_vs_exact"] == 1.0
