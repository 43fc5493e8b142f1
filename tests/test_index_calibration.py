"""``funnel index`` calibrates the plan of the collection it wrote at its end (enough points), through the
real CLI, the real engine and the real model; ``--no-calibrate`` skips it, a user's calibration is kept."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import TOPICS, topic_records, write_jsonl

from retriever.calibration.after_index import BY, MIN_POINTS
from retriever.cli.app import main
from retriever.ingest.indexer import index_corpus
from retriever.store.edge.catalog import EdgeCatalog


def index(data, corpus, *extra: str) -> dict:
    result = CliRunner().invoke(main, ["--data-dir", str(data), "index", str(corpus), "-c", "big", "--json",
                                       "--no-progress", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1])


def test_index_calibrates_a_large_collection_at_its_end(tmp_path, embedder):
    data = tmp_path / "data"
    catalog = EdgeCatalog(data)
    small = index(data, write_jsonl(tmp_path / "few.jsonl", topic_records()[:3]))
    assert small["calibration"]["calibrated"] is False and "under 2,000" in small["calibration"]["reason"]
    with catalog.open("big") as coll:
        assert coll.calibration() is None
    many = [{"_id": f"p{i}", "text": f"Note {i} on {TOPICS[i % 12]}, detail {i * 7}."} for i in range(MIN_POINTS)]
    index_corpus(catalog, "big", [write_jsonl(tmp_path / "many.jsonl", many)], embedder)

    one_more = write_jsonl(tmp_path / "more.jsonl", [{"_id": "extra", "text": "A note on glaciers and ice."}])
    first = index(data, one_more)
    calibration = first["calibration"]
    assert calibration["calibrated"] is True and calibration["queries"] == 200, calibration
    assert calibration["recall_vs_exact"] >= 0.98 and 0 < calibration["seconds"] < 120
    with catalog.open("big") as coll:
        record = coll.calibration()
    assert record is not None and record["source"].startswith(f"{BY}: 200 stored chunks")
    assert record["plan"] == calibration["plan"] and "adaptive" in record

    again = index(data, one_more)  # nothing changed: the calibration stays
    assert again["calibration"] == {"calibrated": False, "reason": "unchanged collection: its calibration is kept"}

    skipped = index(data, write_jsonl(tmp_path / "other.jsonl", [{"_id": "x2", "text": "Volcanoes erupt."}]),
                    "--no-calibrate")
    assert skipped["calibration"] is None
    with catalog.open("big") as coll:
        assert coll.calibration() == record  # untouched
        coll.save_calibration(record | {"source": "200 stored chunks used as queries"})  # as funnel calibrate saves it
    kept = index(data, write_jsonl(tmp_path / "third.jsonl", [{"_id": "x3", "text": "Mars is red."}]))
    assert kept["calibration"]["calibrated"] is False and "funnel calibrate" in kept["calibration"]["reason"]
