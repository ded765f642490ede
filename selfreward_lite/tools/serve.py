"""`srlite serve`: M_N behind an OpenAI-compatible chat-completions endpoint.

    srlite serve --round 3                 # http://127.0.0.1:8000/v1, model id "m3"
    curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"model": "m3", "messages": [{"role": "user", "content": "Name three uses of vinegar."}]}'

Chat UIs, evaluation harnesses (lm-eval's local-chat-completions, AlpacaEval, MT-Bench runners) and
another run's `openai:` judge (`judge=openai:http://127.0.0.1:8000/v1#m3`) can use a run's models.

- POST /v1/chat/completions: the messages rendered with the model's chat template; temperature,
  top_p, max_tokens (or max_completion_tokens), seed, stop and n honoured (defaults: the run's
  candidate sampling settings and token budget; temperature 0 is greedy). `stream: true` is accepted
  and sends the whole answer as one chunk. Other fields are ignored.
- GET /v1/models: the one model served.

Requests are answered one at a time (a lock around generation: one model, one device). A bad request
gets HTTP 400 (404 for another model's name) with an OpenAI-style {"error": {"message": ...}}; a
failure while generating gets 500 naming the exception's type, never a traceback (that goes to the
server's log). Ctrl-C stops it cleanly. For tests and automation, `max_requests` (stop after
answering that many chat completions) and `idle_exit` (stop after that many seconds without one) make
it stop by itself. FastAPI and uvicorn (the `serve` extra) are imported only here.

(No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run time,
and `Request` is imported inside `build_app`.)
"""

import asyncio
import contextlib
import json
import logging
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import SrliteError
from ..models import generation
from ..models.cache import ModelCache
from ..run.rundir import open_run

SERVE_FIX = 'pip install "selfreward-lite[serve]"'
ROLES = ("system", "user", "assistant")
MAX_N, MAX_STOP = 8, 4
log = logging.getLogger("srlite.serve")


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def payload(self) -> dict:
        return {"error": {"message": str(self), "type": "invalid_request_error", "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    messages: list[dict]
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None
    stop: list[str]
    n: int
    stream: bool


def _number(body: dict, name: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            (low < value if low_open else low <= value) and value <= high):
        raise BadRequest(f"'{name}' must be a number in {'(' if low_open else '['}{low}, {high}], got {value!r}", param=name)
    return float(value)


def _integer(body: dict, name: str, default: int | None, low: int | None = None, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) or (
            high is not None and value > high):
        bounds = f" between {low} and {high}" if high is not None else f" >= {low}" if low is not None else ""
        raise BadRequest(f"'{name}' must be an integer{bounds}, got {value!r}", param=name)
    return value


def _content(i: int, content) -> str:
    if isinstance(content, list):  # content parts: text ones only
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            raise BadRequest(f"messages[{i}].content: only text parts are supported", param="messages")
        content = "\n".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise BadRequest(f"messages[{i}].content must be a string (or a list of text parts)", param="messages")
    return content


def parse_request(body, cfg, model_id: str) -> ChatRequest:
    """A chat-completions request checked field by field; BadRequest says what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != model_id:
        raise BadRequest(f"model {model!r} is not served here; this server serves {model_id!r}", 404, "model",
                         "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of {\"role\", \"content\"}", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRequest(f"messages[{i}]: 'role' must be one of {', '.join(ROLES)}", param="messages")
        out.append({"role": m["role"], "content": _content(i, m.get("content"))})
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stop, list) or len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest(f"'stop' must be a non-empty string or a list of at most {MAX_STOP} of them", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", param="stream")
    budget = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return ChatRequest(
        messages=out, temperature=_number(body, "temperature", cfg.temperature, 0, 2),
        top_p=_number(body, "top_p", cfg.top_p, 0, 1, low_open=True),
        max_tokens=_integer(body, budget, cfg.response_max_new_tokens, 1), seed=_integer(body, "seed", None),
        stop=stop, n=_integer(body, "n", 1, 1, MAX_N), stream=stream)


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """The text up to the first stop string (which the answer does not include), and whether one was found."""
    cuts = [text.find(s) for s in stop if s in text]
    return (text[: min(cuts)].rstrip(), True) if cuts else (text, False)


class ChatService:
    """M_N answering chat-completions requests, one at a time."""

    def __init__(self, lm, cfg, model_id: str):
        self.lm, self.cfg, self.model_id, self.created = lm, cfg, model_id, int(time.time())
        self.lock = threading.Lock()
        model_cfg = getattr(lm.model, "config", None)
        self.context = getattr(model_cfg, "max_position_embeddings", None)

    def complete(self, req: ChatRequest) -> dict:
        tok = self.lm.tokenizer
        text = generation.render_chat(tok, req.messages)
        prompt_tokens = len(generation.prompt_ids(tok, text))  # what the model sees: BOS included where it takes one
        if isinstance(self.context, int) and prompt_tokens + req.max_tokens > self.context:
            raise BadRequest(f"the prompt ({prompt_tokens} tokens) plus max_tokens ({req.max_tokens}) exceed the "
                             f"model's context of {self.context} tokens", param="messages", code="context_length_exceeded")
        seed = req.seed if req.seed is not None else random.randrange(2**31)
        with self.lock:
            [group] = generation.generate(self.lm, [text], req.n, temperature=req.temperature, top_p=req.top_p,
                                          max_new_tokens=req.max_tokens, batch_size=req.n, seed=seed % 2**31,
                                          stop_strings=req.stop or None)
        choices = []
        for i, s in enumerate(group):
            content, stopped = cut_at_stop(s.text, req.stop)
            choices.append({"index": i, "message": {"role": "assistant", "content": content}, "logprobs": None,
                            "finish_reason": "stop" if s.finished or stopped else "length"})
        completion = sum(s.n_tokens for s in group)
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_id, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                          "total_tokens": prompt_tokens + completion}}


def sse_events(result: dict):
    """A finished completion as server-sent events of chat.completion.chunk objects, then [DONE]."""
    head = {k: result[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    for c in result["choices"]:
        for delta, finish in ((c["message"], None), ({}, c["finish_reason"])):
            chunk = head | {"choices": [{"index": c["index"], "delta": delta, "finish_reason": finish}]}
            yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


class Stopper:
    """Stops the server by itself: after `max_requests` chat completions answered, or `idle_exit`
    seconds without a request. Runs on the server's event loop."""

    def __init__(self, max_requests: int | None, idle_exit: float | None):
        self.max_requests, self.idle_exit = max_requests, idle_exit
        self.server, self.reason, self.answered, self.active = None, None, 0, 0
        self.last = time.monotonic()

    def begin(self) -> None:
        self.active += 1
        self.last = time.monotonic()

    async def end(self) -> None:  # after the response is sent
        self.active -= 1
        self.answered += 1
        self.last = time.monotonic()
        if self.max_requests and self.answered >= self.max_requests:
            self.stop(f"answered {self.answered} request(s)")

    def stop(self, reason: str) -> None:
        self.reason = reason
        if self.server is not None:
            self.server.should_exit = True

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        watch = asyncio.create_task(self._watch_idle()) if self.idle_exit else None
        yield
        if watch:
            watch.cancel()

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_exit / 4))
            if not self.active and time.monotonic() - self.last >= self.idle_exit:
                return self.stop(f"idle for {self.idle_exit:g} s")


def build_app(service: ChatService, stopper: Stopper):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="srlite serve", lifespan=stopper.lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/v1/models")
    async def list_models():
        stopper.last = time.monotonic()
        return {"object": "list", "data": [{"id": service.model_id, "object": "model", "created": service.created,
                                            "owned_by": "srlite"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        stopper.begin()
        try:
            try:
                body = await request.json()
            except ValueError:
                raise BadRequest("the request body is not valid JSON") from None
            req = parse_request(body, service.cfg, service.model_id)
            result = await run_in_threadpool(service.complete, req)
            response = StreamingResponse(sse_events(result), media_type="text/event-stream") if req.stream \
                else JSONResponse(result)
        except BadRequest as e:
            response = JSONResponse(e.payload(), status_code=e.status)
        except Exception as e:  # never a traceback to the client: the server's log gets it
            log.error("chat completion failed", exc_info=True)
            response = JSONResponse({"error": {"message": f"the server failed while generating ({type(e).__name__}); "
                                               "see its log", "type": "server_error", "param": None, "code": None}},
                                    status_code=500)
        response.background = BackgroundTask(stopper.end)
        return response

    return app


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads (a taken port fails at once); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SrliteError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host.") from None
    return sock


def serve(run_dir: Path, t: int | None = None, host: str = "127.0.0.1", port: int = 8000, *,
          max_requests: int | None = None, idle_exit: float | None = None,
          say: Callable[[str], None] = print, news: Callable[[str], None] = print) -> dict:
    """Serve M_t (default: the newest; 0 = the base model) until Ctrl-C, or until `max_requests` chat
    completions were answered, or `idle_exit` seconds passed without one. `say` gets the line with the
    URL (stdout), `news` the rest (stderr). Returns what happened."""
    run = open_run(run_dir)
    t = run.check_model(t, allow_base=True)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise SrliteError(f"srlite serve needs FastAPI and uvicorn: {SERVE_FIX}") from None
    sock = bind(host, port)
    try:
        port = sock.getsockname()[1]
        news(f"Loading M{t} ...")
        service = ChatService(ModelCache(run).get(t), run.cfg, f"m{t}")
        stopper = Stopper(max_requests, idle_exit)
        server = uvicorn.Server(uvicorn.Config(build_app(service, stopper), log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=5))
        stopper.server = server
        if host not in ("127.0.0.1", "localhost", "::1"):
            news(f"warning: listening on {host}: anyone who can reach this machine can use M{t} (no authentication).")
        sock.listen(2048)  # from here on a client's connection waits in the queue until uvicorn accepts it
        say(f"Serving M{t} as model 'm{t}' at http://{f'[{host}]' if ':' in host else host}:{port}/v1 (Ctrl-C stops).")
        server.run(sockets=[sock])
    finally:
        sock.close()
    news(f"Stopped ({stopper.reason or 'interrupted'}) after answering {stopper.answered} request(s).")
    return {"model": f"M{t}", "port": port, "answered": stopper.answered, "stopped": stopper.reason or "interrupted"}
