"""The `openai:` judge against a REAL `srlite serve`: one run's M0 (the embedded model, no training needed)
served on 127.0.0.1 (a free port) by `srlite serve` in a subprocess, and another run's judging stage
asking it through the real judging path. The server is bounded: it stops by itself after the requests
the test makes (--max-requests), or when left idle (--idle-exit), and the test waits for that."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from selfreward_lite.judging.judges import OpenAIJudge, round_judge
from selfreward_lite.loop import stages
from selfreward_lite.run.create import create_run
from selfreward_lite.run.files import read_jsonl, write_jsonl

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "sk-serve-test-5e1d9b-NEVER-WRITE-ME"
JUDGED = 3  # candidates
SAMPLES = 2
REQUESTS = JUDGED * SAMPLES + 1  # + one bad request


def start_server(run_dir, log, max_requests: int, idle_exit: float):
    """`srlite serve --round 0 --port 0` in a subprocess (its stderr to `log`); returns (process, base URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfreward_lite", "serve", "-d", str(run_dir), "--round", "0", "--port", "0",
         "--max-requests", str(max_requests), "--idle-exit", str(idle_exit)],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.extend(line for line in proc.stdout if "Serving" in line),
                              daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if not found:
        proc.kill()
        proc.wait()
        pytest.fail(f"srlite serve did not start: {log.name}")
    return proc, found[0].split(" at ")[1].split()[0]


def post(url, body):
    req = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_openai_judge_against_srlite_serve(tmp_path, embedded, monkeypatch):
    served = create_run(tmp_path / "served", preset="cpu", overrides={})
    log = open(tmp_path / "serve.log", "w")
    proc, url = start_server(served.dir, log, max_requests=REQUESTS, idle_exit=120)
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=30) as r:
            assert json.loads(r.read())["data"][0]["id"] == "m0"
        status, body = post(url, {"model": "m0", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 0})
        assert status == 400 and "'max_tokens' must be an integer >= 1" in body["error"]["message"]

        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        judging = create_run(tmp_path / "judging", preset="cpu", overrides={
            "judge": f"openai:{url}#m0", "judge_samples": SAMPLES, "judge_max_new_tokens": 16, "judge_concurrency": 2})
        cands = [{"id": f"r1-p0000-c{k}", "prompt_id": "r1-p0000", "prompt": "What is the capital of France?",
                  "response": r, "finished": True, "tokens": 5}
                 for k, r in enumerate(["The capital of France is Paris.", "Bananas are yellow.", "Paris."])]
        write_jsonl(judging.round_dir(1) / "candidates.jsonl", cands)
        judge = round_judge(judging, 1, models=None)
        assert isinstance(judge, OpenAIJudge)
        out = judging.round_dir(1) / "judgments.jsonl"
        stages.judge_candidates(judging, 1, judge, judging.round_dir(1) / "candidates.jsonl", out)

        rows = read_jsonl(out)
        assert [r["id"] for r in rows] == [f"r1-p0000-c{k}-j{j}" for k in range(JUDGED) for j in range(SAMPLES)]
        for r in rows:
            assert isinstance(r["text"], str) and r["text"]  # what M0 wrote, through the endpoint
            assert (r["score"] is None) == (r["parse"] != "ok")
            assert r["score"] is None or 0 <= r["score"] <= 5
            assert r["parse"] != "rejected by endpoint"
        leaked = [str(p) for p in judging.dir.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
        assert not leaked

        proc.wait(timeout=60)  # it answered REQUESTS chat completions: it stops by itself
        stderr = (tmp_path / "serve.log").read_text()
        assert proc.returncode == 0, stderr
        assert f"Stopped (answered {REQUESTS} request(s))" in stderr and "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
