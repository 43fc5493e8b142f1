"""OpenVINO's two float precisions (fp32 by default, bf16 only where measured) and the encoder
``funnel index`` chooses on a sample of the corpus, on the real model and the real engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TOPIC_QUERIES, TOPICS, assert_cli_error, topic_records, write_jsonl

from cli import main
from retriever.calibration import index_encoder
from retriever.encoding import names
from retriever.encoding.embedder import Embedder
from retriever.errors import EncoderError

pytestmark = pytest.mark.timeout(600)

needs_bf16 = pytest.mark.skipif(not names.available(names.BF16),
                                reason="this CPU computes no bf16 (AVX-512 BF16 or AMX), or openvino is missing")
TEXTS = [r["text"] for r in topic_records()] + [q for _, q, _ in TOPIC_QUERIES]


def _records() -> list[dict]:
    """The topic documents and 48 more passages: enough for a top 10 to be measured on."""
    return topic_records() + [{"_id": f"p{i}", "text": f"Passage {i} is about {TOPICS[i % 12]}, with detail {i * 7}."}
                              for i in range(48)]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_openvino_computes_in_fp32_like_torch():
    embedder = Embedder(encoder="openvino")
    assert embedder.encode_full(TEXTS[:2]).shape[0] == 2  # exported (first use) before its precision is known
    assert embedder.precision == "fp32"  # not OpenVINO's own default (bf16 wherever the CPU has it)
    torch = Embedder(device="cpu", encoder="torch").encode_full(TEXTS)
    assert _cosines(embedder.encode_full(TEXTS), torch).min() >= 0.9999


@needs_bf16
def test_bf16_runs_the_openvino_export_at_bf16():
    fp32 = Embedder(encoder="openvino")
    fp32.encode_full(TEXTS[:1])
    bf16 = Embedder(encoder="openvino-bf16")
    assert bf16.precision == "bf16"  # loaded from the openvino export: nothing exported again
    a, b = fp32.encode_full(TEXTS), bf16.encode_full(TEXTS)
    assert 0.999 <= _cosines(a, b).min() < 1.0  # close, but a different computation


def test_bf16_on_a_cpu_without_it_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(names, "cpu_has_bf16", lambda: False)
    with pytest.raises(EncoderError, match="bf16 instructions"):
        Embedder(encoder="openvino-bf16")
    corpus = write_jsonl(tmp_path / "topics.jsonl", topic_records())
    result = CliRunner().invoke(main, ["index", str(corpus), "-c", "x", "--no-progress", "--encoder", "openvino-bf16"])
    assert_cli_error(result, "bf16 instructions", "--encoder openvino")


@needs_bf16
def test_choice_keeps_fp32_unless_the_candidate_holds_every_dim(monkeypatch):
    reference = Embedder(encoder="openvino")
    texts = [r["text"] for r in _records()]
    choice, chosen = index_encoder.choose_index_encoder(reference, texts, (64, 128, 384), k=3)
    assert choice.candidate == "openvino-bf16" and set(choice.recall_by_dim) == {64, 128, 384}
    assert all(0.0 < r <= 1.0 for r in choice.recall_by_dim.values()) and choice.speedup is not None
    assert chosen.encoder == choice.encoder
    # a floor no encoder can meet keeps fp32 and says why
    monkeypatch.setattr(index_encoder, "RECALL_FLOOR", 1.01)
    strict, kept = index_encoder.choose_index_encoder(reference, texts, (64, 384), k=3)
    assert strict.encoder == "openvino" and kept is reference and "moves the top 3" in strict.reason
    # no speed-up asked for and any recall accepted: the candidate is taken
    monkeypatch.setattr(index_encoder, "RECALL_FLOOR", 0.0)
    monkeypatch.setattr(index_encoder, "MIN_SPEEDUP", 0.0)
    loose, taken = index_encoder.choose_index_encoder(reference, texts, (64, 384), k=3)
    assert loose.encoder == "openvino-bf16" and taken.encoder == "openvino-bf16"


@needs_bf16
def test_index_records_the_chosen_encoder_and_search_uses_it(tmp_path, monkeypatch):
    monkeypatch.setattr(index_encoder, "MIN_DOCUMENTS", 10)  # the topic corpus stands in for a large one
    monkeypatch.setattr(index_encoder, "RECALL_FLOOR", 0.0)
    monkeypatch.setattr(index_encoder, "MIN_SPEEDUP", 0.0)
    corpus = write_jsonl(tmp_path / "topics.jsonl", _records())
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(corpus), "-c", "auto", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["encoder"] == "openvino-bf16" and out["encoder_choice"]["candidate"] == "openvino-bf16"
    assert set(map(int, out["encoder_choice"]["recall_by_dim"])) == {64, 128, 256, 384}
    info = json.loads(runner.invoke(main, ["info", "auto", "--json"]).stdout)
    assert info["encoder"] == "openvino-bf16" and info["query_encoder"] == "openvino-bf16"
    assert info["query_encoder_measured_at_index"] and not info["query_encoder_calibrated"]
    _, query, expected = TOPIC_QUERIES[0]
    found = runner.invoke(main, ["search", query, "-c", "auto", "-k", "1", "--json"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert hits["hits"][0]["doc_id"] == expected


def test_small_corpus_is_indexed_in_fp32_without_a_measurement(tmp_path):
    corpus = write_jsonl(tmp_path / "topics.jsonl", topic_records())
    result = CliRunner().invoke(main, ["index", str(corpus), "-c", "small", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["encoder"] == "openvino" and out["encoder_choice"] is None
