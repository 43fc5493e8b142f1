"""Encoder backends (torch, ONNX Runtime, OpenVINO; fp32 and int8) on the real model: fidelity to torch,
mixing backends on one collection, the export cache (reuse, damage, partial), a tuned model's exports,
calibration's choice, and a missing backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TOPIC_QUERIES, assert_cli_error, topic_records, write_jsonl

from cli import main
from retriever.encoding import cache as export_cache
from retriever.encoding.embedder import Embedder, export_beside
from retriever.encoding.export import variant_key

pytestmark = pytest.mark.timeout(600)

TEXTS = [r["text"] for r in topic_records()] + [q for _, q, _ in TOPIC_QUERIES]
# least cosine to torch fp32 over TEXTS (measured here: onnx 1.0000, openvino bf16 ≥ 0.9999, int8 ≥ 0.97)
MIN_COSINE = {"onnx": 0.9999, "openvino": 0.999, "onnx-int8": 0.95, "openvino-int8": 0.95}


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return Embedder(device="cpu", encoder="torch").encode_full(TEXTS)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("encoder", ["onnx", "onnx-int8", "openvino", "openvino-int8"])
def test_each_backend_encodes_like_torch(encoder, torch_vectors):
    embedder = Embedder(encoder=encoder, calibration_texts=TEXTS * 3)
    vectors = embedder.encode_full(TEXTS)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    assert embedder.fingerprint == Embedder(device="cpu", encoder="torch").fingerprint  # one model, every backend
    assert _cosines(vectors, torch_vectors).min() >= MIN_COSINE[encoder]
    assert embedder.describe.startswith(encoder)


def test_default_on_a_cpu_is_a_fast_encoder():
    assert Embedder(device="cpu").encoder == "openvino"


def test_index_with_one_backend_search_with_another(tmp_path):
    corpus = write_jsonl(tmp_path / "topics.jsonl", topic_records())
    runner = CliRunner()
    ok = runner.invoke(main, ["index", str(corpus), "-c", "mix", "--no-progress", "--encoder", "openvino"])
    assert ok.exit_code == 0, ok.output
    info = json.loads(runner.invoke(main, ["info", "mix", "--json"]).stdout)
    assert info["encoder"] == "openvino"
    for encoder in ("torch", "onnx", "openvino"):
        for _, query, expected in TOPIC_QUERIES:
            result = runner.invoke(main, ["search", query, "-c", "mix", "-k", "1", "--json", "--encoder", encoder])
            assert result.exit_code == 0, result.output
            assert json.loads(result.stdout)["hits"][0]["doc_id"] == expected, (encoder, query)


def _only_export(cache: Path, encoder: str) -> Path:
    (folder,) = [p for p in (cache / "encoders").glob(f"*/{variant_key(encoder).replace('/', '-')}")]
    return folder


def test_export_is_cached_and_rebuilt_when_damaged(tmp_path, monkeypatch, capfd):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FUNNEL_CACHE", str(cache))
    Embedder(encoder="onnx").encode_full(["first"])
    assert "exporting" in capfd.readouterr().err
    folder = _only_export(cache, "onnx")
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    Embedder(encoder="onnx").encode_full(["second"])
    assert capfd.readouterr().err == ""  # the second start exports nothing
    assert (folder / "model.onnx").stat().st_mtime_ns == stamp

    # same size, damaged weights: the probe catches it, one line, rebuilt
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    start, end = int(len(data) * 0.6), int(len(data) * 0.9)  # past the embedding table: the layers' weights
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    model.write_bytes(bytes(data))
    vectors = Embedder(encoder="onnx").encode_full(TEXTS[:3])
    err = capfd.readouterr().err
    assert "Traceback" not in err and "exporting it again" in err and len(err.strip().splitlines()) == 2
    reference = Embedder(device="cpu", encoder="torch").encode_full(TEXTS[:3])
    assert _cosines(vectors, reference).min() > 0.9999

    # partial (a file cut short, or the manifest missing): not complete, so exported again
    folder = _only_export(cache, "onnx")
    with (folder / "model.onnx").open("r+b") as fh:
        fh.truncate(1000)
    assert export_cache.read_manifest(folder, Embedder(device="cpu", encoder="torch").fingerprint, "onnx") is None
    vectors = Embedder(encoder="onnx").encode_full(TEXTS[:3])
    assert _cosines(vectors, reference).min() > 0.9999
    assert not list(cache.rglob(".building-*"))  # nothing half-built left behind


def test_a_tuned_model_exports_beside_itself_and_serves(perturbed_model_dir, tmp_path, monkeypatch, capfd):
    model_dir = tmp_path / "tuned"
    shutil.copytree(perturbed_model_dir, model_dir)
    monkeypatch.setenv("FUNNEL_CACHE", str(tmp_path / "empty-cache"))
    (folder,) = export_beside(model_dir, ["onnx"])
    assert folder.parent == model_dir / "funnel-export" and (folder / "manifest.json").is_file()
    capfd.readouterr()
    embedder = Embedder(str(model_dir), encoder="onnx")
    vectors = embedder.encode_full(TEXTS[:4])
    assert "exporting" not in capfd.readouterr().err  # found beside the model
    reference = Embedder(str(model_dir), device="cpu", encoder="torch")
    assert embedder.fingerprint == reference.fingerprint != Embedder(device="cpu", encoder="torch").fingerprint
    assert _cosines(vectors, reference.encode_full(TEXTS[:4])).min() > 0.9999
    corpus = write_jsonl(tmp_path / "topics.jsonl", topic_records())
    runner = CliRunner()
    ok = runner.invoke(main, ["index", str(corpus), "-c", "tuned", "--model", str(model_dir), "--encoder", "onnx",
                              "--no-progress"])
    assert ok.exit_code == 0, ok.output
    _, query, expected = TOPIC_QUERIES[0]
    found = runner.invoke(main, ["search", query, "-c", "tuned", "-k", "1", "--json"])
    assert json.loads(found.stdout)["hits"][0]["doc_id"] == expected


def test_calibrate_measures_encoders_and_the_choice_is_used(tmp_path):
    records = topic_records() * 1  # 12 documents
    corpus = write_jsonl(tmp_path / "topics.jsonl", records)
    runner = CliRunner()
    assert runner.invoke(main, ["index", str(corpus), "-c", "cal", "--no-progress"]).exit_code == 0
    result = runner.invoke(main, ["calibrate", "cal", "--encoders", "onnx,openvino", "--sample", "10"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "funnel-home" / "collections" / "cal" / "calibration.json").read_text())
    section = record["encoder"]
    assert {t["encoder"] for t in section["trials"]} == {"torch", "onnx", "openvino"}
    assert all(t["error"] is None and t["query_p50_ms"] > 0 for t in section["trials"])
    torch_trial = next(t for t in section["trials"] if t["encoder"] == "torch")
    assert torch_trial["recall_vs_fp32"] == 1.0  # the reference finds itself
    assert section["query"] in ("torch", "onnx", "openvino")
    info = json.loads(runner.invoke(main, ["info", "cal", "--json"]).stdout)
    assert info["query_encoder"] == section["query"] and info["query_encoder_calibrated"]
    from retriever.retriever import Retriever

    with Retriever.open("cal") as opened:  # no flag: the calibrated choice runs the queries
        assert opened.embedder.encoder == section["query"]
    with Retriever.open("cal", encoder="onnx") as opened:  # a flag wins
        assert opened.embedder.encoder == "onnx"


def test_a_missing_backend_is_one_clear_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    corpus = write_jsonl(tmp_path / "topics.jsonl", topic_records())
    result = CliRunner().invoke(main, ["index", str(corpus), "-c", "x", "--no-progress", "--encoder", "openvino"])
    assert_cli_error(result, "openvino", "pip install openvino")
    assert not (tmp_path / "funnel-home" / "collections" / "x").exists()


def test_an_export_asked_for_on_a_gpu_device_is_refused():
    from retriever.errors import BadInputError

    with pytest.raises(BadInputError, match="runs on the CPU"):
        Embedder(device="cuda", encoder="onnx")
