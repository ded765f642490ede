"""IFEval-schema data: google/IFEval's records, loaded and validated against lm-eval's verifiers.

One JSON object per line:
    {"key": 1000, "prompt": "...", "instruction_id_list": ["punctuation:no_comma", ...],
     "kwargs": [{}, {"num_highlights": 3}, ...]}
The real `input_data.jsonl` (541 prompts) loads as is, and so does the Hugging Face export whose
kwargs carry every argument name with null for the unused ones (nulls are dropped, as lm-eval
does). A UTF-8 BOM and CRLF line ends are accepted.

A verifier whose argument is missing or unusable picks a random value (lm-eval inherits this from
Google's code; the real data has a few, e.g. `letter: "#"` for `keywords:letter_frequency`, which
the verifier replaces by a random letter). Missing arguments are refused at load time; replaced
ones are reported in `IFEvalRecord.notes` (refused with `strict=True`).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable

from ..errors import SrliteError
from .ifeval_verifiers import _no_sentence_model, _seeded, _Verifiers, _verifiers

HELDOUT_FILE = "ifeval_heldout.jsonl"
REQUIRED_FIELDS = ("key", "prompt", "instruction_id_list", "kwargs")

# Argument types, by name, for all arguments of lm-eval's registered verifiers. An argument name
# not listed here (a future lm-eval verifier) is passed through unchecked.
_INT_ARGS = frozenset({"num_sentences", "num_placeholders", "num_bullets", "num_highlights", "num_sections",
                       "num_paragraphs", "nth_paragraph", "frequency", "num_words", "let_frequency",
                       "capital_frequency"})
_STR_ARGS = frozenset({"language", "relation", "section_spliter", "postscript_marker", "keyword", "end_phrase",
                       "first_word", "letter", "let_relation", "capital_relation", "prompt_to_repeat"})
_LIST_ARGS = frozenset({"keywords", "forbidden_words"})
# Seeds under which each verifier is built at load time: an argument that differs between them
# was chosen at random by the verifier.
_PROBE_SEEDS = (11, 23, 37, 59)
_PROBE_RESPONSE = "Hello world. This is a SHORT test answer, with two sentences."


# --- records ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class IFEvalRecord:
    key: int | str
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict, ...]          # per instruction; nulls dropped, integral floats made int
    where: str = ""                   # "FILE, line N" for messages
    notes: tuple[str, ...] = ()       # verifier quirks found at load time (see module docstring)

    def to_dict(self) -> dict:
        return {"key": self.key, "prompt": self.prompt, "instruction_id_list": list(self.instruction_id_list),
                "kwargs": [dict(k) for k in self.kwargs]}


def _fail(where: str, field_name: str, message: str):
    raise SrliteError(f"{where}, field {field_name!r}: {message}")


def _clean_value(where: str, fname: str, iid: str, name: str, value):
    if name in _INT_ARGS:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, fname, f"argument {name!r} of {iid!r} must be an integer, got {value!r}.")
    elif name in _STR_ARGS:
        if not isinstance(value, str):
            _fail(where, fname, f"argument {name!r} of {iid!r} must be a string, got {value!r}.")
    elif name in _LIST_ARGS:
        if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
            _fail(where, fname, f"argument {name!r} of {iid!r} must be a list of non-empty strings, "
                                f"got {value!r}.")
    return value


def _check_instruction(v: _Verifiers, where: str, index: int, iid: str, raw,
                       strict: bool) -> tuple[dict, list[str]]:
    """Validate one (instruction id, kwargs) pair; return the cleaned kwargs and any notes."""
    fname = f"kwargs[{index}]"
    cls = v.registry.get(iid) if isinstance(iid, str) else None
    if cls is None:
        close = difflib.get_close_matches(str(iid), list(v.registry), n=2)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise SrliteError(f"{where}, field 'instruction_id_list[{index}]': unknown instruction id {iid!r}.{hint} "
                          f"lm-eval {v.version} knows {len(v.registry)} ids, e.g. 'punctuation:no_comma', "
                          f"'detectable_format:title', 'length_constraints:number_words'.")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        _fail(where, fname, f"must be an object of arguments for {iid!r}, got {type(raw).__name__}.")
    expected = list(cls(iid).get_instruction_args_keys())
    kwargs = {}
    for name, value in raw.items():
        if value is None:          # Hugging Face export: every argument name, null when unused
            continue
        if name not in expected:
            takes = f"takes {', '.join(repr(e) for e in expected)}" if expected else "takes no arguments"
            _fail(where, fname, f"unexpected argument {name!r} for {iid!r}, which {takes}.")
        kwargs[name] = _clean_value(where, fname, iid, name, value)
    # lm-eval drops every falsy argument (`if v`), and a missing one makes the verifier invent a value.
    ignored = [n for n, val in kwargs.items() if not val]
    missing = [n for n in expected if n not in kwargs or n in ignored]
    if missing:
        detail = (f" ({', '.join(f'{n}={kwargs[n]!r}' for n in ignored)} is ignored by lm-eval, which drops "
                  f"empty and zero arguments)" if ignored else "")
        _fail(where, fname, f"{iid!r} needs {', '.join(repr(m) for m in missing)}{detail}; without it the "
                            f"verifier would check against a randomly chosen value.")
    kwargs = {n: val for n, val in kwargs.items() if val}
    built = []
    for seed in _PROBE_SEEDS:
        with _seeded(str(seed)):
            inst = cls(iid)
            try:
                inst.build_description(**kwargs)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                _fail(where, fname, f"the {iid!r} verifier rejects {kwargs}: {type(e).__name__}: {e}.")
            built.append(inst.get_instruction_args() or {})
    randomized = sorted(k for k in built[0] if any(b.get(k) != built[0].get(k) for b in built[1:]))
    notes = []
    if randomized:
        msg = (f"the {iid!r} verifier does not accept {', '.join(f'{k}={kwargs.get(k)!r}' for k in randomized)} "
               f"and substitutes a random value (lm-eval behaviour; srlite fixes the seed per prompt)")
        if strict:
            _fail(where, fname, msg + ".")
        notes.append(f"{fname}: {msg}")
    try:
        inst.check_following(_PROBE_RESPONSE)
    except LookupError as e:
        if v.sentence_model is None:
            raise SrliteError(f"{where}: {_no_sentence_model(iid)}") from None
        raise SrliteError(f"{where}: instruction {iid!r} needs NLTK data that is missing ({e}).") from None
    except Exception as e:  # a verifier that crashes on a plain answer would crash mid-evaluation
        _fail(where, fname, f"the {iid!r} verifier fails with these arguments ({kwargs}) on a test answer: "
                            f"{type(e).__name__}: {e}.")
    return kwargs, notes


def _record(v: _Verifiers, obj, where: str, strict: bool) -> IFEvalRecord:
    if not isinstance(obj, dict):
        raise SrliteError(f"{where}: expected a JSON object with fields {', '.join(REQUIRED_FIELDS)}, "
                          f"got {type(obj).__name__}.")
    absent = [f for f in REQUIRED_FIELDS if f not in obj]
    if absent:
        raise SrliteError(f"{where}: missing field{'s' if len(absent) > 1 else ''} "
                          f"{', '.join(repr(f) for f in absent)}; an IFEval record has "
                          f"{', '.join(REQUIRED_FIELDS)}.")
    key = obj["key"]
    if isinstance(key, bool) or not isinstance(key, (int, str)) or (isinstance(key, str) and not key.strip()):
        _fail(where, "key", f"must be an integer or a non-empty string, got {key!r}.")
    prompt = obj["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        _fail(where, "prompt", "must be a non-empty string.")
    ids = obj["instruction_id_list"]
    if not isinstance(ids, list) or not ids:
        _fail(where, "instruction_id_list", "must be a non-empty list of instruction ids.")
    kwargs = obj["kwargs"]
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        got = f"{len(kwargs)} entries" if isinstance(kwargs, list) else type(kwargs).__name__
        _fail(where, "kwargs", f"must be a list with one object per instruction ({len(ids)}), got {got}.")
    cleaned, notes = [], []
    for i, (iid, kw) in enumerate(zip(ids, kwargs)):
        kw_clean, kw_notes = _check_instruction(v, where, i, iid, kw, strict)
        cleaned.append(kw_clean)
        notes += kw_notes
    return IFEvalRecord(key=key, prompt=prompt, instruction_id_list=tuple(ids), kwargs=tuple(cleaned),
                        where=where, notes=tuple(notes))


def records_from_dicts(objects: Iterable, source: str = "records", *, strict: bool = False) -> list[IFEvalRecord]:
    """Validate IFEval records given as dicts (e.g. rows of a dataset); messages name `source`, row N."""
    v = _verifiers()
    records, seen = [], {}
    for n, obj in enumerate(objects, start=1):
        records.append(_record(v, obj, f"{source}, row {n}", strict))
        _check_unique(records[-1], seen)
    if not records:
        raise SrliteError(f"{source}: contains no IFEval records.")
    return records


def _check_unique(record: IFEvalRecord, seen: dict) -> None:
    if record.key in seen:
        raise SrliteError(f"{record.where}, field 'key': {record.key!r} is used twice (also at {seen[record.key]}); "
                          f"keys pair up answers across rounds, so each must be unique.")
    seen[record.key] = record.where


def load_ifeval(path: str | Path, *, strict: bool = False) -> list[IFEvalRecord]:
    """Load and validate a JSONL file in google/IFEval's schema.

    Errors (SrliteError, one paragraph) name the file, the line and the field: invalid JSON or
    UTF-8, a missing field, an unknown instruction id, arguments that do not match the verifier,
    a duplicate key. `strict=True` also refuses records whose arguments the verifier replaces by
    a random value (recorded in `IFEvalRecord.notes` otherwise); the bundled set is strict-clean.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise SrliteError(f"{path}: is a directory; expected an IFEval JSONL file.")
    if not path.is_file():
        raise SrliteError(f"{path}: no such file.")
    try:
        text = path.read_bytes().decode("utf-8-sig")   # -sig: a leading BOM is dropped
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise SrliteError(f"{path}, line {line}: not valid UTF-8 ({e.reason}).") from None
    v = _verifiers()
    records, seen = [], {}
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters that
    # splitlines() treats as line breaks.
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise SrliteError(f"{where}: not valid JSON ({e.msg} at column {e.colno}).") from None
        records.append(_record(v, obj, where, strict))
        _check_unique(records[-1], seen)
    if not records:
        raise SrliteError(f"{path}: contains no IFEval records.")
    return records


def bundled_heldout_path() -> Path:
    """The held-out set written for this project (selfreward_lite/data/ifeval_heldout.jsonl)."""
    return Path(str(resources.files("selfreward_lite") / "data" / HELDOUT_FILE))


def load_heldout(*, strict: bool = True) -> list[IFEvalRecord]:
    return load_ifeval(bundled_heldout_path(), strict=strict)
