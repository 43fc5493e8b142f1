"""Re-tuning a tuned model with replay: the mix, the recorded chain of training data, bad options."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import assert_cli_error, make_beir, write_jsonl

from cli import main
from retriever.errors import TuneError
from tuner.pairs import load_pairs
from tuner.replay import check_replay, mix_replay
from tuner.training import REPORT_FILE, TuneConfig, tune


def pairs_file(path, prefix: str, n: int):  # noqa: ANN001, ANN201
    return write_jsonl(path, [{"anchor": f"{prefix} question {i}?", "positive": f"{prefix} passage {i}"} for i in range(n)])


def test_mix_takes_a_seeded_share_of_the_old_pairs_without_repeats(tmp_path):
    new, _ = load_pairs(str(pairs_file(tmp_path / "new.jsonl", "new", 10)))
    old_rows = [{"anchor": f"old question {i}?", "positive": f"old passage {i}"} for i in range(20)]
    old_rows.append({"anchor": "new question 3?", "positive": "new passage 3"})  # also in the new pairs
    old, _ = load_pairs(str(write_jsonl(tmp_path / "old.jsonl", old_rows)))
    mixed, info = mix_replay(new, old, 0.5, seed=1)
    assert info == {"new": 10, "replayed": 5, "replay_available": 21, "replay_repeats_dropped": 1}
    assert len(mixed) == 15 and set(new["anchor"]) <= set(mixed["anchor"])
    assert sum(a.startswith("old") for a in mixed["anchor"]) == 5
    again, _ = mix_replay(new, old, 0.5, seed=1)
    other, _ = mix_replay(new, old, 0.5, seed=2)
    assert again.to_list() == mixed.to_list() and other.to_list() != mixed.to_list()
    capped, info = mix_replay(new, old, 100, seed=1)
    assert info["replayed"] == 20 and len(capped) == 30


@pytest.mark.parametrize("replay, ratio, fragment", [
    (None, 0.5, "--replay-ratio needs --replay"), ("old.jsonl", 0, "invalid --replay-ratio"),
    ("old.jsonl", -1, "invalid --replay-ratio"), ("old.jsonl", 1000, "invalid --replay-ratio"),
])
def test_bad_replay_options(replay, ratio, fragment):
    with pytest.raises(TuneError, match=fragment):
        check_replay(replay, ratio)


def test_cli_bad_replay_is_one_line(tmp_path):
    new = pairs_file(tmp_path / "new.jsonl", "new", 60)
    result = CliRunner().invoke(main, ["tune", "--train", str(new), "--output", str(tmp_path / "out"),
                                       "--replay-ratio", "0.5"])
    assert_cli_error(result, "--replay-ratio needs --replay")
    assert not (tmp_path / "out").exists()


def test_retune_a_tuned_model_with_replay_records_the_chain(tmp_path):
    beir = make_beir(tmp_path / "beir", n_train=32)
    first = tmp_path / "first"
    tune(TuneConfig(train=str(beir), output=first, eval_dir=beir, batch_size=16, device="cpu"), log=lambda line: None)
    new = pairs_file(tmp_path / "misses.jsonl", "missed", 16)
    second = tmp_path / "second"
    result = tune(TuneConfig(train=str(new), output=second, base_model=str(first), eval_dir=beir, batch_size=16,
                             device="cpu", replay=str(beir), replay_ratio=1.0), log=lambda line: None)
    assert result.replay is not None and result.replay["replayed"] == 16 and result.pairs["train"] == 32
    report = json.loads((second / REPORT_FILE).read_text())
    chain = report["lineage"]
    assert [step["train"] for step in chain] == [str(beir), str(new)]
    assert chain[0]["base_model"].endswith("all-MiniLM-L6-v2") and chain[1]["base_model"] == str(first)
    assert chain[1]["replay"] == str(beir) and chain[1]["replayed"] == 16
    card = (second / "README.md").read_text()
    assert "Training data, oldest first:" in card
    assert f"1. `{beir}`" in card and f"2. `{new}` (16 pairs, plus 16 replayed from `{beir}`)" in card
