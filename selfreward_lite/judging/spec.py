"""Judge specs: who scores the answers. The config fields `judge` (the round's judging stage) and
`winrate_judge` (evaluation), `srlite eval --judge` and `srlite judge --judge` all take one of:

    self                      the model being judged judges itself with the rubric (the paper);
                              for a win rate, the newer model of the pair ("newest" is an alias)
    m<N>                      M_N of this run judges with the rubric (M0: the bare base model)
    /path/to/model            a local model folder (a base model, no adapters) judges with the rubric
    python:FILE.py:FUNCTION   FUNCTION(prompt, response) -> float in [0, 5] or None, from FILE.py
    openai:BASE_URL#MODEL     an OpenAI-compatible chat-completions endpoint (BASE_URL as OpenAI
                              clients take it, usually ending in /v1), given the rubric prompt

This module only parses (the config imports it, so it imports nothing of the package but errors);
judges.py runs the kinds. Relative paths are relative to the current directory where they are used;
`srlite init` records them absolute (`absolute`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import SrliteError

FORMS = "'self', 'm<N>', a local model folder, 'python:FILE.py:FUNCTION' or 'openai:BASE_URL#MODEL'"
SELF_ALIASES = ("self", "newest")  # "newest": the old name of winrate_judge's default, still accepted


@dataclass(frozen=True)
class JudgeSpec:
    kind: str  # "self", "model" (m<N> or a folder), "python" or "openai"
    text: str  # the spec as written
    round: int | None = None  # m<N>
    path: str | None = None  # model folder, or python file
    function: str | None = None  # python
    base_url: str | None = None  # openai, without a trailing slash
    model: str | None = None  # openai

    @property
    def external(self) -> bool:
        """Judged outside this process's models (no model of ours is loaded to judge)."""
        return self.kind in ("python", "openai")

    @property
    def label(self) -> str:
        """A short name for tables and folder names: "self", "M2", "kit_judge.score", "openai-gpt-4o"."""
        if self.kind == "self":
            return "self"
        if self.kind == "model":
            return f"M{self.round}" if self.round is not None else Path(self.path).name
        if self.kind == "python":
            return f"{Path(self.path).stem}.{self.function}"
        return f"openai-{self.model}"


def parse_judge_spec(spec: object, field: str = "judge") -> JudgeSpec:
    """The spec's kind and parts; a malformed spec is an error naming `field` and the forms."""
    if not isinstance(spec, str) or not spec.strip():
        raise SrliteError(f"{field}: must be {FORMS}; got {spec!r}.")
    text = spec.strip()
    if text in SELF_ALIASES:
        return JudgeSpec("self", text)
    if re.fullmatch(r"m[0-9]+", text):
        return JudgeSpec("model", text, round=int(text[1:]))
    if text.startswith("python:"):
        file, sep, function = text[len("python:"):].rpartition(":")
        if not sep or not file.endswith(".py") or not function.isidentifier():
            raise SrliteError(f"{field} {text!r}: a python judge is 'python:FILE.py:FUNCTION' (a .py file and "
                              "the name of a function in it, e.g. python:my_judge.py:score).")
        return JudgeSpec("python", text, path=file, function=function)
    if text.startswith("openai:"):
        url, sep, model = text[len("openai:"):].rpartition("#")
        parts = urlsplit(url)
        if not sep or not model.strip() or parts.scheme not in ("http", "https") or not parts.hostname:
            raise SrliteError(f"{field} {text!r}: an endpoint judge is 'openai:BASE_URL#MODEL', e.g. "
                              "openai:http://127.0.0.1:8000/v1#my-model (BASE_URL as OpenAI clients take it).")
        if parts.username or parts.password:
            # Never in a spec: specs are written to config.json and the round's metrics.
            raise SrliteError(f"{field}: the endpoint URL carries credentials; remove them and put the API key "
                              "in the environment variable named by judge_api_key_env.")
        return JudgeSpec("openai", text, base_url=url.rstrip("/"), model=model.strip())
    if text.startswith(("python", "openai")) and ":" not in text:
        raise SrliteError(f"{field} {text!r}: did you mean '{text}:...'? It must be {FORMS}.")
    return JudgeSpec("model", text, path=text)


def absolute(spec: str, field: str = "judge") -> str:
    """The spec with its file or folder made absolute (relative to the current directory), so it means
    the same from any directory later; other kinds unchanged."""
    s = parse_judge_spec(spec, field)
    if s.kind == "python":
        return f"python:{Path(s.path).expanduser().resolve()}:{s.function}"
    if s.kind == "model" and s.path is not None and Path(s.path).expanduser().exists():
        return str(Path(s.path).expanduser().resolve())
    return spec


def resolved(spec: JudgeSpec) -> JudgeSpec:
    """`spec` with an absolute file or folder path (relative to the current directory)."""
    if spec.path is None:
        return spec
    return replace(spec, path=str(Path(spec.path).expanduser().resolve()))
