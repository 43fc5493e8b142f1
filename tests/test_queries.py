"""Query files (``search --queries``, ``calibrate --queries``): bad lines stop the run with one line that
names a real option, or are skipped and counted with ``--skip-bad``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import assert_cli_error

from cli import main
from retriever.errors import BadInputError, CorpusError
from retriever.ingest.queries import read_queries

QUERY_LINES = [
    json.dumps({"_id": "q1", "text": "How does a volcano erupt?"}),
    '{"_id": "q2", "text": "unterminated',
    json.dumps({"_id": "q3", "text": "x" * 5000}),
    json.dumps({"_id": "q4", "text": "   "}),
    json.dumps({"_id": "q5", "text": "How is bread baked?"}),
]


@pytest.fixture
def queries_file(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(QUERY_LINES) + "\n", encoding="utf-8")
    return path


def test_read_queries_stops_at_the_first_bad_line(queries_file):
    with pytest.raises(CorpusError, match=r"queries.jsonl:2: malformed JSON .*--skip-bad"):
        read_queries(queries_file)


def test_read_queries_skips_and_counts(queries_file):
    found = read_queries(queries_file, skip_bad=True)
    assert found.ids == ["q1", "q5"]
    assert (found.skipped_empty, found.skipped_bad) == (1, 2)  # the blank one; malformed and too long
    assert "queries.jsonl:2" in (found.first_bad or "")
    assert read_queries(queries_file, skip_bad=True, limit=1).ids == ["q1"]


def test_a_query_the_search_would_refuse_is_a_bad_query(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"_id": "long", "text": "y" * 5000}) + "\n")
    with pytest.raises(CorpusError, match=r"query 'long': query too long.*--skip-bad"):
        read_queries(path)
    with pytest.raises(BadInputError, match="no usable queries"):
        read_queries(path, skip_bad=True)


def test_search_and_calibrate_skip_bad_queries(topic_corpus, queries_file, tmp_path):
    data = tmp_path / "data"
    run = CliRunner()
    assert run.invoke(main, ["--data-dir", str(data), "index", str(topic_corpus), "-c", "t", "--no-progress"]).exit_code == 0

    stopped = run.invoke(main, ["--data-dir", str(data), "search", "--queries", str(queries_file), "-c", "t", "--json"])
    assert_cli_error(stopped, "queries.jsonl:2: malformed JSON", "--skip-bad")

    searched = run.invoke(main, ["--data-dir", str(data), "search", "--queries", str(queries_file), "-c", "t", "--json",
                                 "--skip-bad", "-k", "1"])
    assert searched.exit_code == 0, searched.output
    lines = [json.loads(line) for line in searched.stdout.splitlines()]
    assert [line["query_id"] for line in lines] == ["q1", "q5"]
    assert [line["hits"][0]["doc_id"] for line in lines] == ["volcano", "bread"]
    assert "skipped 2 bad queries" in searched.stderr and "skipped 1 empty" in searched.stderr

    stopped = run.invoke(main, ["--data-dir", str(data), "calibrate", "t", "--queries", str(queries_file)])
    assert_cli_error(stopped, "--skip-bad")
    calibrated = run.invoke(main, ["--data-dir", str(data), "calibrate", "t", "--queries", str(queries_file),
                                   "--skip-bad", "-k", "2", "--json"])
    assert calibrated.exit_code == 0, calibrated.output
    assert json.loads(calibrated.stdout)["source"].startswith("2 queries from")
