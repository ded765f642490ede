"""A small client for OpenAI-compatible chat-completions endpoints (vLLM, SGLang, llama.cpp server,
Ollama, hosted APIs, `srlite serve`): what the `openai:` judge sends its prompts through.

Why httpx and not the `openai` SDK: httpx is installed with the core dependencies already
(huggingface_hub, which transformers needs, depends on it), so this judge adds no dependency; it has
per-request timeouts, a thread-safe connection pool and precise exception types. The policy a judge
needs (which failures to retry, which to record as an unparsed judgment, which must stop the run
with a fix) is a few lines here, where the SDK's built-in retries are not configurable per status
and its client refuses to start without an API key, which local servers do not need.

Policy, per request:
- connection errors, timeouts, HTTP 408/409/425/429 and 5xx: retried up to `max_retries` times with
  exponential back-off (1 s, 2 s, 4 s ... at most 30 s, with jitter; a 429's Retry-After is honoured),
  then an `EndpointError` (the journal keeps every finished judgment; running again continues);
- HTTP 401/403/404: an `EndpointError` at once (wrong key, URL or model: retrying cannot help);
- other 4xx (e.g. 400 for a prompt longer than the server's context): that request's answer is
  `rejected` with the server's message; the judge records it as an unparsed judgment.

The API key comes from the environment variable the config names (absent: no Authorization header).
It is sent in that header only and removed from every text this module returns or raises, since a
misbehaving server may echo it.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass

from ..errors import SrliteError

RETRY_STATUSES = frozenset({408, 409, 425, 429})  # and every 5xx
FATAL_STATUSES = {401: "the endpoint refused the API key", 403: "the endpoint refused the API key",
                  404: "no such endpoint or model"}
BACKOFF_BASE_S, BACKOFF_CAP_S = 1.0, 30.0
MAX_MESSAGE = 300  # characters of a server's error message kept in texts and errors


class EndpointError(SrliteError):
    """The endpoint cannot be used (configuration) or did not answer after every retry."""


class Cancelled(Exception):
    """The caller stopped waiting (Ctrl-C, or another request failed for good)."""


@dataclass
class Reply:
    text: str
    finished: bool  # False when the endpoint stopped at max_tokens (finish_reason "length")
    n_tokens: int
    rejected: str | None = None  # the endpoint refused this request (HTTP 400, 413, 422, ...): why


class ChatClient:
    """POST {base_url}/chat/completions for one model; thread-safe (one connection pool)."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str, timeout: float, max_retries: int,
                 concurrency: int):
        import httpx

        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.model, self.max_retries, self.api_key_env = model, max_retries, api_key_env
        self._key = os.environ.get(api_key_env) or None
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers,
                                  limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
        self._httpx = httpx

    @property
    def where(self) -> str:
        return f"openai judge {self.url} (model {self.model!r})"

    def close(self) -> None:
        self._http.close()

    def redact(self, text: str) -> str:
        """`text` without the API key (and cut to a readable length for messages)."""
        return text.replace(self._key, "***") if self._key else text

    def chat(self, content: str, *, temperature: float, top_p: float, max_tokens: int, seed: int,
             stop: threading.Event | None = None) -> Reply:
        """One user message, one answer. `stop` set: give up (Cancelled) instead of retrying."""
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], "temperature": temperature,
                "top_p": top_p, "max_tokens": max_tokens, "seed": seed % 2**31}
        problem = "no attempt"
        for attempt in range(self.max_retries + 1):
            if stop is not None and stop.is_set():
                raise Cancelled
            wait = backoff(attempt)
            try:
                r = self._http.post(self.url, json=body)
            except self._httpx.TransportError as e:  # connection refused or reset, timeouts, protocol errors
                problem = f"{type(e).__name__}: {self.redact(str(e)) or 'no detail'}"
            else:
                if r.status_code == 200:
                    return self._reply(r)
                message = f"HTTP {r.status_code}: {self._server_message(r)}"
                if r.status_code in FATAL_STATUSES:
                    hint = (f"set the environment variable {self.api_key_env} (judge_api_key_env) to a valid key"
                            if r.status_code in (401, 403) else "check BASE_URL (usually ending in /v1) and MODEL")
                    raise EndpointError(f"{self.where}: {FATAL_STATUSES[r.status_code]} ({message}); {hint}.")
                if r.status_code not in RETRY_STATUSES and r.status_code < 500:
                    return Reply("", True, 0, rejected=message)
                problem = message
                wait = retry_after(r) or wait
            if attempt < self.max_retries and (stop.wait(wait) if stop is not None else _sleep(wait)):
                raise Cancelled
        raise EndpointError(f"{self.where}: no answer after {self.max_retries + 1} attempts (last: {problem}). "
                            "Finished judgments are kept; run the same command again to continue.")

    def _reply(self, r) -> Reply:
        try:
            data = r.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise EndpointError(f"{self.where}: the answer is not in the chat-completions format "
                                f"({self.redact(r.text[:MAX_MESSAGE])!r}); check BASE_URL.") from None
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        return Reply(self.redact(text), choice.get("finish_reason") != "length",
                     tokens if isinstance(tokens, int) else 0)

    def _server_message(self, r) -> str:
        try:
            err = r.json().get("error")
            message = err.get("message") if isinstance(err, dict) else err
        except (ValueError, AttributeError):
            message = None
        message = message if isinstance(message, str) and message else (r.text or r.reason_phrase)
        return self.redact(message.strip())[:MAX_MESSAGE]


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (0-based): exponential, capped, jittered."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)


def retry_after(r) -> float | None:
    try:
        return min(BACKOFF_CAP_S, max(0.0, float(r.headers.get("retry-after", ""))))
    except ValueError:
        return None


def _sleep(seconds: float) -> bool:
    threading.Event().wait(seconds)
    return False
