"""`srlite serve` without a model (FastAPI's TestClient, a stand-in generate): requests checked field by
field with 400s that say what is wrong, sampling settings passed through, stop strings cut, streaming,
a failure as a 500 without a traceback, and the server stopping by itself."""

import json
import re
import socket
import sys
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from selfreward_lite.config import preset_config  # noqa: E402
from selfreward_lite.errors import SrliteError  # noqa: E402
from selfreward_lite.models import generation  # noqa: E402
from selfreward_lite.models.generation import Sample  # noqa: E402
from selfreward_lite.tools import serve  # noqa: E402

CFG = preset_config("cpu")


class Tok:
    bos_token_id, chat_template = None, ""  # no BOS (generation.bos_id)

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


def service(context=4096):
    lm = SimpleNamespace(tokenizer=Tok(), model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=context)))
    return serve.ChatService(lm, CFG, "m2")


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def fake_generate(lm, texts, n, **kw):
        seen.append({"texts": texts, "n": n, **kw})
        if "explode" in texts[0]:
            raise RuntimeError("CUDA out of memory at /secret/path")
        return [[Sample(f"Answer {k}. Counting: 1 2 3 STOP 4", k == 0, 9) for k in range(n)]]

    monkeypatch.setattr(generation, "generate", fake_generate)
    return seen


def client(stopper=None, **kw):
    stopper = stopper or serve.Stopper(None, None)
    return TestClient(serve.build_app(service(**kw), stopper))


def chat(c, **body):
    return c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi there"}], **body})


def test_completion_honours_the_sampling_fields(calls):
    with client() as c:
        r = chat(c, model="m2", temperature=0, top_p=0.5, max_tokens=7, seed=11, stop=["STOP"], n=2)
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion" and data["model"] == "m2" and data["id"].startswith("chatcmpl-")
    assert [ch["message"] for ch in data["choices"]] == [{"role": "assistant", "content": "Answer 0. Counting: 1 2 3"},
                                                         {"role": "assistant", "content": "Answer 1. Counting: 1 2 3"}]
    assert [ch["finish_reason"] for ch in data["choices"]] == ["stop", "stop"]  # cut at the stop string
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 18, "total_tokens": 20}
    [call] = calls
    assert (call["n"], call["temperature"], call["top_p"], call["max_new_tokens"], call["seed"], call["stop_strings"]) == \
        (2, 0.0, 0.5, 7, 11, ["STOP"])
    assert call["texts"] == ["<user>Hi there<assistant>"]


class BosTok(Tok):
    """A tokenizer whose plain encoding starts with BOS (id 1) while its chat template writes none."""
    bos_token_id = 1

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": ([1] if add_special_tokens else []) + text.split()}


def test_prompt_tokens_count_the_bos_the_model_sees(calls):
    lm = SimpleNamespace(tokenizer=BosTok(), model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=4096)))
    with TestClient(serve.build_app(serve.ChatService(lm, CFG, "m2"), serve.Stopper(None, None))) as c:
        r = chat(c, max_tokens=7)
    assert r.json()["usage"]["prompt_tokens"] == 3  # BOS + the 2 tokens of the rendered chat


def test_defaults_are_the_runs_sampling_settings(calls):
    with client() as c:
        r = c.post("/v1/chat/completions", json={"messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "stop"
    [call] = calls
    assert (call["temperature"], call["top_p"], call["max_new_tokens"], call["stop_strings"]) == \
        (CFG.temperature, CFG.top_p, CFG.response_max_new_tokens, None)
    assert call["texts"] == ["<system>Be brief.<user>Hi<assistant>"]


@pytest.mark.parametrize("body, status, message", [
    ([1, 2], 400, "the request body must be a JSON object"),
    ({"messages": []}, 400, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 400, r"messages\[0\]: 'role' must be one of system, user, assistant"),
    ({"messages": [{"role": "user", "content": 3}]}, 400, r"messages\[0\].content must be a string"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "only text parts"),
    ({"temperature": "hot"}, 400, r"'temperature' must be a number in \[0, 2\], got 'hot'"),
    ({"temperature": 3}, 400, r"'temperature' must be a number in \[0, 2\]"),
    ({"top_p": 0}, 400, r"'top_p' must be a number in \(0, 1\]"),
    ({"max_tokens": 0}, 400, r"'max_tokens' must be an integer >= 1"),
    ({"max_completion_tokens": 2.5}, 400, r"'max_completion_tokens' must be an integer"),
    ({"n": 9}, 400, r"'n' must be an integer between 1 and 8"),
    ({"seed": True}, 400, r"'seed' must be an integer"),
    ({"stop": ["a", ""]}, 400, r"'stop' must be a non-empty string or a list"),
    ({"stream": "yes"}, 400, r"'stream' must be true or false"),
    ({"model": "m7"}, 404, r"model 'm7' is not served here; this server serves 'm2'"),
    ({"max_tokens": 4095}, 400, r"the prompt \(2 tokens\) plus max_tokens \(4095\) exceed the model's context of 4096"),
])
def test_bad_requests_get_a_message(calls, body, status, message):
    with client() as c:
        r = c.post("/v1/chat/completions", json=body if not isinstance(body, dict) or "messages" in body
                   else {"messages": [{"role": "user", "content": "Hi there"}], **body})
    assert r.status_code == status
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert re.search(message, error["message"]), error["message"]
    assert not calls


def test_invalid_json_and_a_failing_model(calls):
    with client() as c:
        r = c.post("/v1/chat/completions", content=b"{nope", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["message"] == "the request body is not valid JSON"
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "explode"}]})
        assert r.status_code == 500
        assert r.json()["error"]["message"] == "the server failed while generating (RuntimeError); see its log"
        assert "Traceback" not in r.text and "/secret/path" not in r.text
        r = c.get("/v1/models")
        assert r.json()["data"][0]["id"] == "m2" and r.json()["object"] == "list"


def test_stream_sends_chunks_then_done(calls):
    with client() as c:
        r = chat(c, stream=True, stop="STOP")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in r.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Answer 0. Counting: 1 2 3"}
    assert chunks[1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}


def test_stops_by_itself_after_max_requests(calls):
    stopper = serve.Stopper(max_requests=3, idle_exit=None)
    stopper.server = SimpleNamespace(should_exit=False)
    with client(stopper) as c:
        chat(c)
        c.post("/v1/chat/completions", json={"messages": []})  # a refused request counts too
        c.get("/v1/models")  # not a chat completion
        assert not stopper.server.should_exit
        chat(c)
    assert stopper.server.should_exit and stopper.answered == 3 and stopper.reason == "answered 3 request(s)"


def test_stops_by_itself_when_idle():
    import asyncio

    stopper = serve.Stopper(max_requests=None, idle_exit=0.2)
    stopper.server = SimpleNamespace(should_exit=False)
    asyncio.run(asyncio.wait_for(stopper._watch_idle(), 5))
    assert stopper.server.should_exit and stopper.reason == "idle for 0.2 s"


def test_cut_at_stop():
    assert serve.cut_at_stop("a b STOP c END", ["END", "STOP"]) == ("a b", True)
    assert serve.cut_at_stop("a b", ["x"]) == ("a b", False)


def test_taken_port_and_missing_extra(run, monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(SrliteError, match=r"cannot listen on 127.0.0.1:\d+ .*choose another --port"):
            serve.bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(SrliteError, match=r'needs FastAPI and uvicorn: pip install "selfreward-lite\[serve\]"'):
        serve.serve(run.dir, 0)


def test_serve_help_documents_the_options():
    from helpers import invoke

    r = invoke("serve", "--help")
    assert r.returncode == 0
    for option in ("--round", "--host", "--port", "--max-requests", "--idle-exit"):
        assert option in r.stdout
