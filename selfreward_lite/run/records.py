"""Seed data: loading and validating conversational `messages` records.

A record is {"messages": [{"role": ..., "content": ...}, ...]} ending with an assistant
turn. Sources: a JSONL file, a Hugging Face dataset id (optionally "id:split"), or
"bundled" (the seed files shipped in this package). Every record is checked; the first bad
one raises an SrliteError naming the file, line and field.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path

from ..errors import SrliteError
from ..judging.rubric import parse_score

ROLES = ("system", "user", "assistant")
MAX_LINE_BYTES = 4_000_000  # a seed record longer than this is a wrong file, not a conversation
BUNDLED = {
    "ift": "ift_seed.jsonl",
    "eft_train": "eft_train.jsonl",
    "eft_eval": "eft_eval.jsonl",
    "eval_prompts": "eval_prompts.jsonl",  # held-out prompts for the win rate (evaluation/winrate.py)
}


def bundled_path(kind: str) -> Path:
    return Path(str(resources.files("selfreward_lite") / "data" / BUNDLED[kind]))


def validate_record(record, where: str) -> list[dict]:
    """Return the record's messages, or raise naming `where` (file + line) and the field."""
    if not isinstance(record, dict):
        raise SrliteError(f"{where}: expected a JSON object with a 'messages' field, got {type(record).__name__}.")
    if "messages" not in record:
        raise SrliteError(f"{where}, field 'messages': missing (each record needs a 'messages' list).")
    messages = record["messages"]
    if not isinstance(messages, list) or len(messages) < 2:
        raise SrliteError(f"{where}, field 'messages': must be a list of at least two messages (user, assistant).")
    for i, m in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(m, dict):
            raise SrliteError(f"{where}, field '{field}': must be an object with 'role' and 'content'.")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise SrliteError(f"{where}, field '{field}.role': {role!r} is not one of {', '.join(ROLES)}.")
        if not isinstance(content, str):
            raise SrliteError(f"{where}, field '{field}.content': must be a string, got {type(content).__name__}.")
        if not content.strip():
            raise SrliteError(f"{where}, field '{field}.content': is empty.")
        if role == "system" and i != 0:
            raise SrliteError(f"{where}, field '{field}.role': a system message may only come first.")
    if messages[-1]["role"] != "assistant":
        raise SrliteError(f"{where}, field 'messages[{len(messages) - 1}].role': the last message must be 'assistant'.")
    if not any(m["role"] == "user" for m in messages):
        raise SrliteError(f"{where}, field 'messages': needs at least one 'user' message.")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def read_jsonl_file(path: Path) -> list[tuple[int, object]]:
    """(line number, parsed JSON) for each non-blank line of a JSONL file (gzip-compressed when its
    name ends in .gz); errors name the file and line. The one reader of users' JSONL files."""
    path = Path(path)
    if path.is_dir():
        raise SrliteError(f"{path}: is a directory; expected a JSONL file.")
    if not path.is_file():
        raise SrliteError(f"{path}: no such file.")
    opener = gzip.open if path.name.endswith(".gz") else open
    out = []
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if len(raw) > MAX_LINE_BYTES:
                    raise SrliteError(
                        f"{path}, line {lineno}: {len(raw) / 1e6:.1f} MB on one line; a record may have at most "
                        f"{MAX_LINE_BYTES // 1_000_000} MB. Is this really a JSONL file of conversations?"
                    )
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise SrliteError(f"{path}, line {lineno}: not valid UTF-8 ({e.reason} at byte {e.start}).") from None
                if not text.strip():
                    continue
                try:
                    out.append((lineno, json.loads(text)))
                except json.JSONDecodeError as e:
                    raise SrliteError(f"{path}, line {lineno}: not valid JSON ({e.msg} at column {e.colno}).") from None
    except (OSError, EOFError) as e:  # e.g. a truncated or non-gzip .gz
        raise SrliteError(f"{path}: cannot be read ({e}).") from None
    return out


def load_messages(source: str, kind: str) -> list[list[dict]]:
    """Load and validate every record of a seed source; returns the message lists."""
    if source == "bundled":
        path = bundled_path(kind)
    else:
        path = Path(source).expanduser()
    if source == "bundled" or path.exists() or source.endswith((".jsonl", ".json")):
        rows = read_jsonl_file(path)
        where = lambda n: f"{path}, line {n}"  # noqa: E731
    else:
        rows = load_hf_dataset(source)
        where = lambda n: f"dataset {source}, row {n}"  # noqa: E731
    if not rows:
        raise SrliteError(f"{path if source == 'bundled' or path.exists() else source}: contains no records.")
    records = [validate_record(rec, where(n)) for n, rec in rows]
    if kind.startswith("eft"):
        for (n, _), messages in zip(rows, records):
            _check_judgment(messages, where(n))
    return records


def _check_judgment(messages: list[dict], where: str) -> None:
    """A judge example must end with a score M1 can learn to give (and eval can compare with)."""
    last = len(messages) - 1
    parsed = parse_score(messages[last]["content"])
    if parsed.score is None:
        raise SrliteError(
            f"{where}, field 'messages[{last}].content': a judge example must end with 'Score: N' (N from 0 to 5); "
            f"here: {parsed.status}."
        )


def load_hf_dataset(source: str) -> list[tuple[int, object]]:
    name, _, split = source.partition(":")
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a hard dependency
        raise SrliteError("The 'datasets' package is needed to read Hugging Face datasets.") from None
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # network, missing dataset, bad split: all user-fixable
        raise SrliteError(
            f"{source}: not a file, and loading it as a Hugging Face dataset failed "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Pass a JSONL path or a reachable dataset id."
        ) from None
    return [(i, dict(row)) for i, row in enumerate(ds)]


def split_prompt_completion(messages: list[dict]) -> dict:
    """TRL prompt/completion form: loss on the final assistant turn only."""
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def first_user_text(messages: list[dict]) -> str:
    return next(m["content"] for m in messages if m["role"] == "user")
