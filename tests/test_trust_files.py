"""Issue 22, output paths and input files: `funnel pairs` never reads or replaces a device, FIFO or
directory given as --out; qrels, feedback logs and --train files that are hostile give one line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TOPIC_QUERIES, assert_cli_error, topic_records, write_jsonl

from cli import main
from retriever.errors import CorpusError, TuneError
from retriever.ingest.beir import read_qrels
from retriever.ingest.indexer import index_corpus
from retriever.store.edge.catalog import EdgeCatalog

QRELS_HEADER = "query-id\tcorpus-id\tscore\n"


def device_node(path: Path, minor: int = 3) -> Path:
    """A character device made with mknod (1, 3 is /dev/null: reading it ends at once, so a test that
    fails cannot take the machine's memory); skips when mknod is not allowed here."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot mknod a character device here ({exc})")
    return path


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder) -> Path:
    """The topic corpus indexed as 'topics'."""
    root = tmp_path_factory.mktemp("trust-files")
    corpus = write_jsonl(root / "corpus.jsonl", topic_records())
    catalog = EdgeCatalog(root / "data")
    index_corpus(catalog, "topics", [corpus], embedder)
    catalog.open("topics").close()
    return root


def run(home: Path, *args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(main, ["--data-dir", str(home / "data"), "pairs", *args])


@pytest.fixture
def queries(tmp_path) -> Path:
    return write_jsonl(tmp_path / "queries.jsonl", [{"_id": q, "text": t} for q, t, _ in TOPIC_QUERIES])


@pytest.fixture
def qrels(tmp_path) -> Path:
    path = tmp_path / "qrels.tsv"
    path.write_text(QRELS_HEADER + "".join(f"{q}\t{d}\t1\n" for q, _, d in TOPIC_QUERIES))
    return path


def generate(*args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(main, ["pairs", "generate", "--offline", "ict", *args])


def out_kinds(tmp_path: Path, kind: str) -> Path:
    if kind == "character-device":
        return device_node(tmp_path / "dev-null")
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo")
        return tmp_path / "fifo"
    link = tmp_path / "link-to-device"
    link.symlink_to(device_node(tmp_path / "dev-null"))
    return link


# --- case 1: an --out that is not a regular file is refused before anything is read -------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["character-device", "fifo", "symlink-to-device"])
def test_pairs_generate_refuses_an_out_that_is_not_a_regular_file_before_reading_it(tmp_path, kind):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", topic_records())
    out = out_kinds(tmp_path, kind)
    expected = "a FIFO" if kind == "fifo" else "a character device"
    assert_cli_error(generate(str(corpus), "--out", str(out)), str(out), expected, "not a regular file")
    assert not stat.S_ISREG(os.stat(out).st_mode)  # left as it was


@pytest.mark.timeout(120)
def test_pairs_generate_accepts_a_symlink_to_a_regular_file_and_resumes_through_it(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", topic_records())
    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    first = generate(str(corpus), "--out", str(link))
    assert first.exit_code == 0, first.output
    assert link.is_symlink() and target.is_file() and target.read_text()
    before = target.read_text()
    again = generate(str(corpus), "--out", str(link), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["generated"] == 0 and target.read_text() == before


# --- case 2: misses and feedback never replace a device node ----------------------------------------


@pytest.mark.timeout(300)
def test_pairs_misses_refuses_a_character_device_as_out_and_leaves_the_node(home, queries, qrels, tmp_path):
    node = device_node(tmp_path / "null-copy")
    assert_cli_error(run(home, "misses", "-c", "topics", "--queries", str(queries), "--qrels", str(qrels),
                         "--out", str(node)), str(node), "a character device")
    assert is_char_device(node)
    assert not (tmp_path / ".null-copy.tmp").exists()


@pytest.mark.timeout(300)
def test_pairs_feedback_refuses_a_character_device_as_out_and_leaves_the_node(home, tmp_path):
    log = write_jsonl(tmp_path / "log.jsonl", [{"query": "bowed string instruments", "doc_id": "violin"}])
    node = device_node(tmp_path / "null-copy")
    assert_cli_error(run(home, "feedback", "-c", "topics", "--feedback-file", str(log), "--out", str(node)),
                     str(node), "a character device")
    assert is_char_device(node)


@pytest.mark.timeout(300)
def test_pairs_feedback_through_a_symlink_replaces_its_target_and_keeps_the_link(home, tmp_path):
    log = write_jsonl(tmp_path / "log.jsonl", [{"query": "bowed string instruments", "doc_id": "violin"}])
    target = tmp_path / "real.jsonl"
    target.write_text("earlier pairs\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    result = run(home, "feedback", "-c", "topics", "--feedback-file", str(log), "--out", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    assert [json.loads(line)["doc_id"] for line in target.read_text().splitlines()] == ["violin"]


@pytest.mark.timeout(120)
def test_tune_refuses_an_output_that_is_a_character_device(tmp_path):
    pytest.importorskip("datasets")
    node = device_node(tmp_path / "null-copy")
    train = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": f"q{i}", "positive": f"p{i}"} for i in range(20)])
    result = CliRunner().invoke(main, ["tune", "--train", str(train), "--output", str(node)])
    assert_cli_error(result, str(node), "not a directory")
    assert is_char_device(node)


# --- case 3: qrels with a 10 MB field, and a qrels path that is a device ---------------------------


@pytest.mark.timeout(120)
def test_a_qrels_file_with_a_10_mb_field_is_one_line_naming_file_and_line(tmp_path):
    path = tmp_path / "qrels.tsv"
    path.write_text(QRELS_HEADER + "q1\td1\t1\n" + "q2\t" + "x" * 10_000_000 + "\t1\n")
    with pytest.raises(CorpusError, match=rf"{path}:3: malformed qrels line"):
        read_qrels(path)


@pytest.mark.timeout(300)
def test_pairs_misses_with_a_qrels_field_of_10_mb_is_one_line(home, queries, tmp_path):
    path = tmp_path / "qrels.tsv"
    path.write_text(QRELS_HEADER + "q-volcano\t" + "x" * 10_000_000 + "\t1\n")
    out = tmp_path / "m.jsonl"
    assert_cli_error(run(home, "misses", "-c", "topics", "--queries", str(queries), "--qrels", str(path),
                         "--out", str(out)), f"{path}:2: malformed qrels line")
    assert not out.exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["character-device", "fifo"])
def test_qrels_that_is_not_a_regular_file_is_refused_before_reading(tmp_path, kind):
    path = out_kinds(tmp_path, kind)
    with pytest.raises(CorpusError, match="not a regular file"):
        read_qrels(path)


# --- case 4: a feedback line nested 100,000 deep is a bad line --------------------------------------


@pytest.mark.timeout(300)
def test_a_feedback_line_nested_100000_deep_is_a_bad_line_that_skip_bad_skips(home, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"query": "bowed string instruments", "doc_id": "violin"}\n'
                   + "[" * 100_000 + "]" * 100_000 + "\n")
    out = tmp_path / "fb.jsonl"
    assert_cli_error(run(home, "feedback", "-c", "topics", "--feedback-file", str(log), "--out", str(out)),
                     f"{log}:2: JSON nested too deeply", "--skip-bad")
    assert not out.exists()
    result = run(home, "feedback", "-c", "topics", "--feedback-file", str(log), "--out", str(out), "--skip-bad",
                 "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["bad_lines"] == 1 and report["pairs"] == 1 and f"{log}:2" in report["first_bad"]


# --- case 5: a --train file with one latin-1 byte ------------------------------------------------


def latin1_pairs(path: Path, suffix: str) -> Path:
    with path.open("wb") as handle:
        if suffix == ".jsonl":
            for i in range(40):
                handle.write(b'{"anchor": "q%d", "positive": "p%d"}\n' % (i, i))
            handle.write(b'{"anchor": "caf\xe9", "positive": "x"}\n')
        else:
            handle.write(b"anchor,positive\n" + b"".join(b"q%d,p%d\n" % (i, i) for i in range(40)) + b"caf\xe9,x\n")
    return path


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("suffix", "line"), [(".jsonl", 41), (".csv", 42)])
def test_a_train_file_with_one_latin1_byte_is_file_line_not_utf8(tmp_path, suffix, line):
    pytest.importorskip("datasets")
    from tuner.pairs import load_pairs

    path = latin1_pairs(tmp_path / f"pairs{suffix}", suffix)
    with pytest.raises(TuneError, match=rf"{path}:{line}: not valid UTF-8"):
        load_pairs(path)


@pytest.mark.timeout(120)
def test_tune_with_a_latin1_train_file_is_one_line(tmp_path):
    pytest.importorskip("datasets")
    path = latin1_pairs(tmp_path / "pairs.jsonl", ".jsonl")
    result = CliRunner().invoke(main, ["tune", "--train", str(path), "--output", str(tmp_path / "model")])
    assert_cli_error(result, f"{path}:41: not valid UTF-8")
