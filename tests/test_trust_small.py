"""Issue 22, case 9: the small ones, each one clear line (or 4xx JSON) and nothing lost.

Real Qdrant Edge collections in ``tmp_path``, the real model and tokenizer, a real HTTP server on
127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import TOPIC_DOCS, topic_records, write_jsonl

from cli import main
from retriever import Retriever
from retriever.errors import BadInputError, CollectionLockedError, TuneError
from retriever.ingest.chunking import MAX_TOKEN_CHARS, TokenChunker
from retriever.ingest.corpus import Document
from retriever.ingest.indexer import index_corpus
from retriever.query.filters import Match, MatchAny, Range, parse_filter
from retriever.service import BackgroundServer, ServiceConfig
from retriever.store.edge.catalog import EdgeCatalog
from tuner.training import TuneConfig, tune

pytestmark = pytest.mark.timeout(180)


def invoke(data: Path, *args: object) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data), *map(str, args)])


@pytest.fixture(scope="module")
def topics(tmp_path_factory, embedder) -> Path:
    """The topic corpus indexed once (a data directory holding collection 'topics')."""
    root = tmp_path_factory.mktemp("case9")
    index_corpus(EdgeCatalog(root / "data"), "topics", [write_jsonl(root / "c.jsonl", topic_records())], embedder)
    return root / "data"


# --- tuning -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pairs, batch", [(1, 32), (40, 1)])
def test_case9_tuning_on_one_pair_per_batch_is_refused_before_loading_the_model(tmp_path, pairs, batch):
    train = write_jsonl(tmp_path / "p.jsonl", [{"anchor": f"question {i}", "positive": f"answer {i}"}
                                               for i in range(pairs)])
    beir = tmp_path / "unused-eval"
    from conftest import make_beir

    make_beir(beir)
    with pytest.raises(TuneError, match="one pair alone teaches nothing") as raised:
        tune(TuneConfig(train=str(train), output=tmp_path / "out", eval_dir=beir, batch_size=batch, device="cpu"),
             log=lambda line: None)
    assert f"in batches of {min(pairs, batch)}" in str(raised.value)
    assert not (tmp_path / "out").exists()  # nothing saved as "tuned"


# --- the HTTP service's unreadable bodies -------------------------------------------------------


def test_case9_served_json_errors_say_what_is_wrong(topics, embedder):
    with EdgeCatalog(topics).open("topics") as collection, \
            BackgroundServer(collection, lambda: embedder, ServiceConfig()) as server:
        def post(body: bytes) -> tuple[int, dict]:
            answer = httpx.post(f"{server.url}/search", content=body, headers={"Content-Type": "application/json"},
                                timeout=30)
            return answer.status_code, answer.json()["error"]

        deep = b'{"query": "x", "filter": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert post(deep) == (400, {"type": "malformed_json", "message": "the JSON body is nested too deeply to read"})
        assert post(b'{"query": "caf\xe9"}') == (
            400, {"type": "malformed_json", "message": "the JSON body is not valid UTF-8 (at byte offset 14)"})
        status, error = post(b'{"query": "x", "k": ' + b"9" * 5000 + b"}")
        assert (status, error["type"]) == (400, "malformed_json") and "number too long" in error["message"]


# --- the Python API -----------------------------------------------------------------------------


def test_case9_opening_a_collection_twice_in_one_process_says_so(topics):
    catalog = EdgeCatalog(topics)
    with catalog.open("topics"):
        with pytest.raises(CollectionLockedError, match="collection 'topics' is already open in this process") as raised:
            catalog.open("topics")
        assert "another process" not in str(raised.value)
    with catalog.open("topics"):  # closed: opens again
        pass


def test_case9_search_after_close_is_a_clear_error_before_encoding(topics, embedder, monkeypatch):
    retriever = Retriever(EdgeCatalog(topics).open("topics"), embedder)
    assert retriever.search("volcano", k=1)[0].doc_id == "volcano"
    retriever.close()
    monkeypatch.setattr(embedder, "encode", lambda *a, **k: pytest.fail("encoded a query for a closed Retriever"))
    for call in (lambda: retriever.search("volcano"), lambda: retriever.search_batch(["a", "b"]),
                 lambda: retriever.query_spec(k=3)):
        with pytest.raises(BadInputError, match="this Retriever of collection 'topics' is closed"):
            call()


def test_case9_numpy_numbers_are_taken_in_a_filter_as_k_takes_them(topics, embedder):
    assert parse_filter({"chunk": np.int64(0)}).conditions == (("chunk", Match(0)),)
    assert parse_filter({"chunk": [np.int32(0), np.int64(1)]}).conditions == (("chunk", MatchAny((0, 1))),)
    assert parse_filter({"chunk": {"gte": np.float32(0.5)}}).conditions == (("chunk", Range(gte=0.5)),)
    assert type(parse_filter({"chunk": np.int64(0)}).conditions[0][1].value) is int
    with Retriever(EdgeCatalog(topics).open("topics"), embedder) as r:
        hits = r.search("volcano", k=np.int64(2), filter={"chunk": np.int64(0)})
        assert len(hits) == 2 and all(h.chunk == 0 for h in hits)


# --- the CLI's collections ----------------------------------------------------------------------


def test_case9_drop_removes_the_scratch_copy_a_killed_calibrate_apply_left(topics, tmp_path):
    data = tmp_path / "data"
    assert invoke(topics, "collections", "copy", "topics", "gone", "--to-url", f"embedded:{data}").exit_code == 0
    scratch = data / "collections" / ".scratch~gone~1234abcd"  # what calibrate --layouts --apply builds
    (scratch / "collections" / "gone").mkdir(parents=True)
    (scratch / "collections" / "gone" / "collection.json").write_text("{}")
    other = data / "collections" / ".scratch~gone2~1234abcd"  # another collection's: kept
    other.mkdir()
    result = invoke(data, "drop", "gone", "--yes")
    assert result.exit_code == 0, result.output
    assert not scratch.exists() and not (data / "collections" / "gone").exists() and other.exists()


def test_case9_copy_into_a_path_inside_another_collection_is_refused(topics, tmp_path):
    inside = topics / "collections" / "topics" / "qdrant-local"
    result = invoke(topics, "collections", "copy", "topics", "t2", "--to-url", f"path:{inside}")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot copy into path:{inside}: it lies inside the "
                                                   f"collection directory {topics / 'collections' / 'topics'}")
    assert not inside.exists()
    loose = topics / "collections" / "not-a-collection"
    result = invoke(topics, "collections", "copy", "topics", "t2", "--to-url", f"path:{loose}")
    assert result.exit_code == 1 and "it lies inside the collections folder" in result.stderr
    assert not loose.exists()


# --- chunking -----------------------------------------------------------------------------------


def test_case9_a_text_without_whitespace_is_hard_split(tokenizer):
    chunker = TokenChunker(tokenizer, size=254, overlap=32, max_tokens=256)
    text = "x" * 5_000_000  # one "word" the tokenizer gives as [UNK] tokens of 65,536 characters each
    chunks = chunker.split(Document(id="blob", text=text))
    assert 600 < len(chunks) < 1000
    assert all(c.text == "x" * len(c.text) and len(c.text) <= 254 * MAX_TOKEN_CHARS for c in chunks)
    assert sum(len(c.text) for c in chunks) >= len(text)  # all of it, the windows overlapping
    mixed = "Lava flows from the volcano. " + "y" * 100_000 + " The end."
    parts = chunker.split(Document(id="mixed", text=mixed))
    assert parts[0].text.startswith("Lava flows") and parts[-1].text.endswith("The end.")
    assert max(len(c.text) for c in parts) <= 254 * MAX_TOKEN_CHARS
    prose = TOPIC_DOCS[5][2]
    assert [c.text for c in chunker.split(Document(id="prose", text=prose))] == [prose]  # ordinary text: as before
