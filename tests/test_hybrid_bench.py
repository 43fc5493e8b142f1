"""Hybrid search in `funnel bench` (mode rows, the bm25s baseline) and `funnel calibrate --qrels` (fusion).

The corpus (:func:`make_code_beir`): long passages on a few repeated topics, each told apart only by
one made-up reference code ("… reference kqz417 applies …"), and each query asks for its code
("What does reference kqz417 say?"). MiniLM's top-1 finds the right passage for about a quarter of
such queries, BM25 for all of them: lexical and hybrid search must beat the dense funnel here, so a
fusion that ignored the lexical side, or a calibration that picked a worse fusion, fails these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TOPICS, assert_cli_error, make_beir, write_jsonl

from cli import main
from retriever.calibration.fusion import MODE_MARGIN, TIE_TOLERANCE, calibrate_fusion, candidate_fusions
from retriever.encoding.embedder import Embedder
from retriever.ingest.indexer import index_corpus
from retriever.store.config import EngineConfig
from retriever.store.factory import open_catalog
from retriever.store.spec import Layout

pytest.importorskip("bm25s", reason="the bm25s baseline needs the bench/test extra (bm25s, PyStemmer)")

N_TEST, N_TRAIN = 50, 40


def reference_code(i: int) -> str:
    letters = "bcdfghjklmnpqrstvwxz"
    return letters[i % 20] + letters[(i * 7 + 3) % 20] + letters[(i * 13 + 5) % 20] + str(100 + (i * 37) % 900)


def make_code_beir(root: Path, n_test: int = N_TEST, n_train: int = N_TRAIN) -> Path:
    """A BEIR directory whose queries hinge on a rare token (see the module docstring)."""
    n = n_test + n_train
    docs = []
    for i in range(n):
        t = TOPICS[i % len(TOPICS)]
        docs.append({"_id": f"d{i}", "title": "", "text": (
            f"This section discusses {t} in depth, the {t} outlook, risks around {t}, and how {t} shaped results "
            f"of the year; reference {reference_code(i)} applies. Management expects {t} trends to continue.")})
    write_jsonl(root / "corpus.jsonl", docs)
    write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": f"What does reference {reference_code(i)} say?"}
                                         for i in range(n)])
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    for split, ids in (("test", range(n_test)), ("train", range(n_test, n))):
        rows = "".join(f"q{i}\td{i}\t1\n" for i in ids)
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return root


@pytest.fixture(scope="module")
def hybrid_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("hybrid-bench")
    beir = make_code_beir(root / "beir")
    args = ["--data-dir", str(root / "home"), "bench", "--data", str(beir), "--out", str(root / "out"),
            "--plans", "auto", "--modes", "lexical,hybrid-union,hybrid-rrf,hybrid-dbsf", "--fusion-split", "train",
            "--no-memory", "--no-progress", "--json"]
    result = CliRunner().invoke(main, args)
    return root, result


def test_bench_adds_a_row_per_mode_and_an_independent_bm25_baseline(hybrid_bench):
    root, result = hybrid_bench
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout.strip().splitlines()[-1])
    (variant,) = results["models"][0]["variants"]
    assert variant["collection"].endswith("-bm25")  # its own bench collection, with the BM25 index
    rows = {row["label"]: row for row in variant["modes"]}
    assert list(rows) == ["lexical", "hybrid-union", "hybrid-rrf", "hybrid-dbsf", "hybrid-calibrated"]
    dense = variant["plans"][0]["ndcg@10"]
    lexical = rows["lexical"]["ndcg@10"]
    assert lexical > dense + 0.1, (lexical, dense)  # the number token decides: BM25 must see it
    for label in ("hybrid-rrf", "hybrid-dbsf"):
        assert rows[label]["ndcg@10"] > dense + 0.05, (label, rows[label]["ndcg@10"], dense)
    assert rows["lexical"]["plan"] is None and rows["hybrid-rrf"]["plan"].endswith(":20")  # a 20-deep dense list
    assert rows["hybrid-union"]["plan"] == variant["plans"][0]["plan"]
    assert rows["lexical"]["lexical_index_bytes"] > 0 and rows["lexical"]["bytes_per_vector"] > 0
    calibration = rows["hybrid-calibrated"]["fusion_calibration"]
    assert calibration["queries"] == N_TRAIN and "train" in calibration["source"]
    # the calibrated fusion is the best of the candidates on train; on test it must not fall far below the best default
    best_default = max(rows[label]["ndcg@10"] for label in ("hybrid-union", "hybrid-rrf", "hybrid-dbsf"))
    assert rows["hybrid-calibrated"]["ndcg@10"] >= best_default - 0.05
    baseline = results["baseline"]
    assert baseline["library"].startswith("bm25s ") and baseline["chunks"] == N_TEST + N_TRAIN
    assert baseline["ndcg@10"] == pytest.approx(lexical, abs=0.05)  # same BM25, two implementations
    # every passage holds "reference", so below rank 1 most scores tie and the two libraries order ties
    # differently: the overlap of the whole top 10 is low here by construction, rank 1 must agree
    assert baseline["engine_top1_agreement"] >= 0.95 and 0 < baseline["engine_overlap@k"] <= 1
    md = (root / "out" / "results.md").read_text()
    assert "lexical bm25" in md and "bm25s BM25" in md and "hybrid rrf(k=60" in md


@pytest.mark.parametrize("args, fragment", [
    (["--modes", "hybrid-max"], "unknown search mode row 'hybrid-max'"),
    (["--fusion-split", "train"], "give --modes too"),
    (["--modes", "lexical", "--fusion-split", "test"], "is the measured split"),
    (["--modes", "lexical", "--fusion-split", "dev"], "dev"),
])
def test_bench_mode_options_fail_before_indexing(tmp_path, args, fragment):
    beir = make_beir(tmp_path / "beir", n_test=N_TEST, n_train=4)
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["--data-dir", str(home), "bench", "--data", str(beir), "--out",
                                       str(tmp_path / "out"), "--no-progress", *args])
    assert_cli_error(result, fragment)
    assert not (home / "collections").exists() or not any((home / "collections").iterdir())


@pytest.fixture(scope="module")
def lexical_collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("hybrid-cal")
    beir = make_code_beir(root / "beir")
    home = root / "home"
    with open_catalog(EngineConfig(data_dir=home)) as catalog:
        index_corpus(catalog, "fin", [beir / "corpus.jsonl"], Embedder(), layout=Layout(lexical="bm25"))
        index_corpus(catalog, "dense-only", [beir / "corpus.jsonl"], Embedder())
    return beir, home


def test_calibrate_with_qrels_chooses_a_fusion_and_the_default_mode(lexical_collection):
    beir, home = lexical_collection
    from retriever.query.fusion import Fusion
    from retriever.retriever import Retriever

    with Retriever.open("fin", data_dir=home) as r:  # never calibrated: a lexical collection searches hybrid
        assert r.query_spec().mode == "hybrid" and r.query_spec().fusion == Fusion()
    with Retriever.open("dense-only", data_dir=home) as r:
        assert r.query_spec().mode == "dense"
    run = CliRunner()
    result = run.invoke(main, ["--data-dir", str(home), "calibrate", "fin", "--encoders", "none", "--queries", str(beir / "queries.jsonl"),
                               "--qrels", str(beir / "qrels" / "train.tsv"), "--sample", "30", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    hybrid = record["hybrid"]
    assert hybrid["queries"] == 30 and len(record["fusion_tried"]) == len(candidate_fusions())
    ndcg = hybrid["ndcg"]
    best = max(t["ndcg@10"] for t in record["fusion_tried"])
    assert ndcg["best"] == best and best - TIE_TOLERANCE <= ndcg["hybrid"] <= best  # the best, or a cheaper near-tie
    assert ndcg["lexical"] > ndcg["dense"] and ndcg["hybrid"] >= ndcg["dense"] + MODE_MARGIN
    assert hybrid["default_mode"] == "hybrid"
    # saved with the collection: a search without --mode now runs the calibrated hybrid, and finds passage 7 first
    with Retriever.open("fin", data_dir=home) as r:
        assert r.query_spec().mode == "hybrid" and r.query_spec().fusion.to_dict() == hybrid["fusion"]
        hits = r.search(f"What does reference {reference_code(7)} say?", k=3)
        assert hits[0].doc_id == "d7"
        assert r.query_spec(mode="dense").mode == "dense"  # still available on request
    again = run.invoke(main, ["--data-dir", str(home), "calibrate", "fin", "--encoders", "none", "--sample", "20", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["hybrid"] == hybrid  # a plan-only re-calibration keeps the chosen fusion


def test_ties_go_to_the_fusion_that_fetches_fewer_candidates():
    from retriever.calibration.fusion import fetched
    from retriever.query.fusion import Fusion

    assert fetched(Fusion("union", lexical_limit=50), 10) == 50
    assert fetched(Fusion("rrf", lexical_limit=20, dense_limit=20), 10) == 40
    assert fetched(Fusion("dbsf", lexical_limit=5, dense_limit=5), 10) == 20  # each list at least k


def test_bench_collections_of_two_data_sets_never_mix(tmp_path):
    from retriever.bench.runner import bench_collection_name
    from retriever.store.spec import CollectionSpec

    spec = CollectionSpec("b", "m", "fp", 384, (64, 384), 256, 32, lexical="bm25")
    a, b = (bench_collection_name(spec, "none", tmp_path / d) for d in ("fin", "msmarco"))
    assert a != b and a.endswith("-none-bm25") and a == bench_collection_name(spec, "none", tmp_path / "fin")


def test_fusion_calibration_keeps_dense_when_the_lexical_side_does_not_help(lexical_collection):
    beir, home = lexical_collection
    embedder = Embedder()
    texts = ["This section discusses volcano lava magma in depth", "bread yeast flour outlook and risks"]
    with open_catalog(EngineConfig(data_dir=home)) as catalog, catalog.open("fin") as collection:
        vectors = embedder.encode(texts, collection.spec.dims)
        # judged so that the dense exact ranking is perfect: nothing can beat it by the margin
        exact = collection.search(vectors, None, 1, with_text=False)
        relevant = [{hits[0].doc_id} for hits in exact]
        result = calibrate_fusion(collection, vectors, texts, relevant, 10, lambda depth: None)
    assert result.ndcg["dense"] == pytest.approx(1.0)
    assert result.default_mode == "dense"


@pytest.mark.parametrize("extra, fragment", [
    (["--qrels", "QRELS"], "--qrels judges the --queries: give both"),
    (["--queries", "QUERIES", "--qrels", "EMPTY"], "judges none of the queries"),
])
def test_calibrate_qrels_bad_input_is_one_line(lexical_collection, tmp_path, extra, fragment):
    beir, home = lexical_collection
    empty = tmp_path / "empty.tsv"
    empty.write_text("query-id\tcorpus-id\tscore\nnope\td1\t1\n")
    paths = {"QRELS": str(beir / "qrels" / "train.tsv"), "QUERIES": str(beir / "queries.jsonl"), "EMPTY": str(empty)}
    args = [paths.get(a, a) for a in extra]
    result = CliRunner().invoke(main, ["--data-dir", str(home), "calibrate", "fin", *args])
    assert_cli_error(result, fragment)


def test_calibrate_qrels_on_a_collection_without_lexical_index(lexical_collection):
    beir, home = lexical_collection
    result = CliRunner().invoke(main, ["--data-dir", str(home), "calibrate", "dense-only", "--queries",
                                       str(beir / "queries.jsonl"), "--qrels", str(beir / "qrels" / "train.tsv")])
    assert_cli_error(result, "has no lexical index", "--lexical bm25")
