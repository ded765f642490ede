"""The `openai:` judge against a stub OpenAI-compatible server in this process: retries with back-off on
connection errors, timeouts, 429 and 5xx, then a clear error; a refused request becomes an unparsed
judgment; requests in flight stay within `judge_concurrency`; a killed stage resumes without asking
again; the win rate sends the pairwise prompt in both orders; and the API key never appears in an
artifact, a message or an error, even when the server echoes it."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import invoke, write_lines

from selfreward_lite.errors import SrliteError
from selfreward_lite.judging import openai_client
from selfreward_lite.judging.judges import REJECTED, judge_all, round_judge
from selfreward_lite.judging.openai_client import ChatClient, EndpointError
from selfreward_lite.loop import stages
from selfreward_lite.run.files import read_jsonl, write_jsonl

KEY = "sk-test-3f9a7c1e5d-NEVER-WRITE-ME"


def ok(text, finish="stop"):
    return 200, {}, {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                     "usage": {"completion_tokens": 5}}


class Stub:
    """An OpenAI-compatible server: `script(n, body, auth)` -> (status, headers, payload, delay) for request n."""

    def __init__(self, script):
        self.script, self.requests, self.lock = script, [], threading.Lock()
        self.active = self.max_active = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    n = len(stub.requests)
                    stub.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                    stub.active += 1
                    stub.max_active = max(stub.max_active, stub.active)
                try:
                    status, headers, payload, delay = (*stub.script(n, body, self.headers.get("Authorization")), 0)[:4]
                    time.sleep(delay)
                    data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                finally:
                    # Before the answer goes out: once the client has it, it may send the next request
                    # while this thread has not run again (seen on a loaded machine: 4 "in flight" of 3).
                    with stub.lock:
                        stub.active -= 1
                try:
                    self.send_response(status)
                    for k, v in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    made = []

    def make(script):
        made.append(Stub(script))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(openai_client, "BACKOFF_BASE_S", 0.001)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def client(url, **kw):
    return ChatClient(url, "judge-model", **{"api_key_env": "OPENAI_API_KEY", "timeout": 5, "max_retries": 3,
                                             "concurrency": 2, **kw})


def ask(c):
    return c.chat("Judge this.", temperature=0.7, top_p=0.9, max_tokens=32, seed=7)


def test_retries_on_500_and_429_then_succeeds(stub):
    s = stub(lambda n, body, auth: [(500, {}, {"error": {"message": "overloaded"}}),
                                    (429, {"Retry-After": "0"}, {"error": "slow down"}), ok("Fine. Score: 4")][n])
    reply = ask(client(s.url))
    assert (reply.text, reply.finished, reply.n_tokens, reply.rejected) == ("Fine. Score: 4", True, 5, None)
    assert len(s.requests) == 3 and all(r["path"] == "/v1/chat/completions" for r in s.requests)
    assert s.requests[0]["auth"] == f"Bearer {KEY}"
    body = s.requests[0]["body"]
    assert body == {"model": "judge-model", "messages": [{"role": "user", "content": "Judge this."}], "temperature": 0.7,
                    "top_p": 0.9, "max_tokens": 32, "seed": 7}


def test_gives_up_after_the_retries_with_a_clear_error(stub):
    s = stub(lambda n, body, auth: (503, {}, "upstream down"))
    with pytest.raises(EndpointError, match=r"no answer after 3 attempts \(last: HTTP 503: upstream down\)"):
        ask(client(s.url, max_retries=2))
    assert len(s.requests) == 3


def test_timeout_and_connection_refused_are_retried_then_reported(stub):
    s = stub(lambda n, body, auth: (*ok("Score: 3"), 1.0))
    start = time.perf_counter()
    with pytest.raises(EndpointError, match=r"after 2 attempts \(last: ReadTimeout"):
        ask(client(s.url, timeout=0.2, max_retries=1))
    assert len(s.requests) == 2 and time.perf_counter() - start < 2
    s.close()  # nothing listens there any more
    with pytest.raises(EndpointError, match=r"after 2 attempts \(last: ConnectError"):
        ask(client(s.url, max_retries=1))


@pytest.mark.parametrize("status, message", [
    (401, r"refused the API key \(HTTP 401: bad key \*\*\*\); set the environment variable OPENAI_API_KEY"),
    (404, r"no such endpoint or model \(HTTP 404: .*\); check BASE_URL"),
])
def test_key_and_address_problems_stop_at_once_without_the_key(stub, status, message):
    s = stub(lambda n, body, auth: (status, {}, {"error": {"message": f"bad key {auth.split()[-1]}"}}))  # echoes it
    with pytest.raises(EndpointError, match=message) as e:
        ask(client(s.url))
    assert len(s.requests) == 1 and KEY not in str(e.value)


def test_refused_request_and_unfinished_answer(stub):
    s = stub(lambda n, body, auth: [(400, {}, {"error": {"message": "prompt too long"}}), ok("Score: 5", "length"),
                                    (200, {}, "<html>not json</html>")][n])
    c = client(s.url)
    assert ask(c).rejected == "HTTP 400: prompt too long"
    assert ask(c).finished is False
    with pytest.raises(EndpointError, match="not in the chat-completions format"):
        ask(c)
    assert len(s.requests) == 3  # none of these is retried


def test_no_key_in_the_environment_sends_no_header(stub, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    s = stub(lambda n, body, auth: ok("Score: 1"))
    ask(client(s.url))
    assert s.requests[0]["auth"] is None


# --- through the judging stage -------------------------------------------------------------------

def endpoint_run(run, url, **cfg):
    run.cfg.judge = f"openai:{url}#judge-model"
    for k, v in cfg.items():
        setattr(run.cfg, k, v)
    cands = [{"id": f"r1-p{i // 2:04d}-c{i % 2}", "prompt_id": f"r1-p{i // 2:04d}", "prompt": f"Question {i // 2}?",
              "response": f"Answer {i}.", "finished": True, "tokens": 2} for i in range(8)]
    write_jsonl(run.round_dir(1) / "candidates.jsonl", cands)
    return run.round_dir(1) / "candidates.jsonl", run.round_dir(1) / "judgments.jsonl"


def scored(n, body, auth):
    content = body["messages"][0]["content"]
    if "Answer 3." in content:
        return 400, {}, {"error": {"message": f"refused (key {auth.split()[-1]})"}}  # a server that leaks the key
    if "Answer 5." in content:
        return ok(f"I see {auth}. No score here.")
    return (*ok(f"Reasonable. Score: {int(content.split('Answer ')[1][0]) % 6}"), 0.05)


def test_openai_judge_in_the_judging_stage(run, stub):
    s = stub(scored)
    cands, out = endpoint_run(run, s.url, judge_concurrency=3, judge_samples=2)
    stages.judge_candidates(run, 1, round_judge(run, 1, models=None), cands, out)
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [f"r1-p{i // 2:04d}-c{i % 2}-j{k}" for i in range(8) for k in range(2)]
    by_answer = {r["candidate_id"]: r for r in rows}
    assert by_answer["r1-p0001-c1"]["parse"] == REJECTED and by_answer["r1-p0001-c1"]["score"] is None
    assert by_answer["r1-p0002-c1"]["parse"] == "no score"
    assert by_answer["r1-p0000-c0"]["score"] == 0 and by_answer["r1-p0003-c0"]["score"] == 0
    assert by_answer["r1-p0001-c0"]["score"] == 2 and by_answer["r1-p0002-c0"]["score"] == 4
    assert len(s.requests) == 16 and 1 < s.max_active <= 3
    assert len({r["body"]["seed"] for r in s.requests}) == 16  # every sample its own seed
    first = s.requests[0]["body"]
    assert first["max_tokens"] == run.cfg.judge_max_new_tokens and first["temperature"] == run.cfg.judge_temperature
    assert "<response>Answer" in first["messages"][0]["content"]  # the run's rubric prompt
    # The key reached the server, and nothing of this run holds it (the server echoed it twice).
    assert all(r["auth"] == f"Bearer {KEY}" for r in s.requests)
    leaked = [str(p) for p in run.dir.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert not leaked
    assert "***" in by_answer["r1-p0001-c1"]["text"] and "***" in by_answer["r1-p0002-c1"]["text"]


def test_killed_openai_judging_resumes_without_asking_again(run, stub, monkeypatch):
    s = stub(scored)
    cands, out = endpoint_run(run, s.url, judge_concurrency=1, judge_samples=2)
    appended = []
    real_append = stages.Journal.append

    def append_then_die(self, records):
        real_append(self, records)
        appended.append(records)
        if len(appended) == 3:
            raise KeyboardInterrupt  # a second Ctrl-C: stops at once

    monkeypatch.setattr(stages.Journal, "append", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        stages.judge_candidates(run, 1, round_judge(run, 1, None), cands, out)
    monkeypatch.setattr(stages.Journal, "append", real_append)
    time.sleep(0.3)  # a request a worker had started as the stage stopped reaches the stub
    asked = len(s.requests)
    assert len(read_jsonl(str(out) + ".partial")) == 3 * 2 and not out.exists()  # 3 candidates journaled
    stages.judge_candidates(run, 1, round_judge(run, 1, None), cands, out)
    assert len(s.requests) - asked == (8 - 3) * 2  # only the candidates not yet journaled
    assert len(read_jsonl(out)) == 16


def test_an_endpoint_failing_for_good_keeps_the_finished_judgments(run, stub):
    s = stub(lambda n, body, auth: ok("Score: 3") if n < 4 else (503, {}, "gone"))
    cands, out = endpoint_run(run, s.url, judge_concurrency=1, judge_samples=2, judge_max_retries=1)
    with pytest.raises(SrliteError, match="no answer after 2 attempts"):
        stages.judge_candidates(run, 1, round_judge(run, 1, None), cands, out)
    assert len(read_jsonl(str(out) + ".partial")) == 4  # two candidates finished, kept for the restart


def test_win_rate_sends_the_pairwise_prompt_in_both_orders(run, stub):
    from selfreward_lite.evaluation.winrate import prompts_source, responses_path, win_rate

    s = stub(lambda n, body, auth: ok("The first is better. Winner: A"))  # a judge with a pure position bias
    source = prompts_source(run)
    for n in (1, 2):
        write_jsonl(responses_path(run, n, source), [{"id": f"e{i}", "prompt": f"Q{i}", "response": f"M{n} says {i}",
                                                       "finished": True, "tokens": 3} for i in range(3)])
    run.cfg.winrate_judge = f"openai:{s.url}#judge-model"
    result = win_rate(run, 2, 1, models=None)
    assert (result["wins"], result["losses"], result["ties"], result["verdicts"]) == (3, 3, 0, 6)
    assert result["win_rate"] == 0.5 and result["picked_first"] == 1.0 and result["judge"] == "openai-judge-model"
    contents = [r["body"]["messages"][0]["content"] for r in s.requests]
    assert sum("<response A>M2 says 0</response A>" in c for c in contents) == 1
    assert sum("<response A>M1 says 0</response A>" in c for c in contents) == 1
    assert all(r["body"]["max_tokens"] == run.cfg.eval_max_new_tokens for r in s.requests)


def test_srlite_judge_cli_with_an_endpoint(run, stub, tmp_path):
    s = stub(lambda n, body, auth: ok("Score: 4") if "good" in body["messages"][0]["content"] else ok("Score: 1"))
    answers = write_lines(tmp_path / "answers.jsonl", [{"prompt": "Q", "a": "a good one", "b": "bad", "label": "a"}])
    spec = f"openai:{s.url}#judge-model"
    r = invoke("judge", answers, "-d", run.dir, "--judge", spec)
    assert r.returncode == 0, r.stderr
    out = run.dir / "judge" / "answers-openai-judge-model"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"] == spec and summary["pairwise_accuracy"] == 1.0 and summary["judgments"] == 4
    assert "Traceback" not in r.stderr and KEY not in r.stdout + r.stderr

    bad = stub(lambda n, body, auth: (401, {}, {"error": {"message": f"invalid key {auth}"}}))
    r = invoke("judge", answers, "-d", run.dir, "--judge", f"openai:{bad.url}#judge-model", "-o", tmp_path / "x")
    assert r.returncode == 2 and "refused the API key" in r.stderr and "Traceback" not in r.stderr
    assert KEY not in r.stdout + r.stderr
    r = invoke("judge", answers, "-d", run.dir, "--judge", "m1", "--round", "2")
    assert r.returncode == 2 and "name two judges" in r.stderr


def test_judge_all_returns_records_in_item_order(run, stub):
    s = stub(lambda n, body, auth: (*ok(f"Score: {len(body['messages'][0]['content']) % 6}"), 0.01 * (n % 3)))
    run.cfg.judge_concurrency = 4
    from selfreward_lite.judging.judges import external_judge

    items = [{"id": f"i{k}", "prompt": "Q", "response": "x" * k} for k in range(6)]
    recs = judge_all(external_judge(f"openai:{s.url}#m", run.cfg), items, 2, seed=5)
    assert [(r["item_id"], r["sample"]) for r in recs] == [(f"i{k}", j) for k in range(6) for j in range(2)]


def test_ctrl_c_does_not_wait_for_requests_in_flight(run, stub):
    import os
    import signal

    s = stub(lambda n, body, auth: (*ok("Score: 2"), 5.0))  # a very slow endpoint
    cands, out = endpoint_run(run, s.url, judge_concurrency=2, judge_samples=1)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    # Ctrl-C as an interactive Python gets it: a test process started in the background by a shell
    # without job control inherits SIGINT ignored, and Python then installs no handler of its own.
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            stages.judge_candidates(run, 1, round_judge(run, 1, None), cands, out)
    finally:
        signal.signal(signal.SIGINT, saved)
    assert time.perf_counter() - start < 3  # not the 5 s of the requests in flight
    assert len(s.requests) == 2  # the queued ones were never sent
