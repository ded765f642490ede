"""The judge kinds at work (spec.py parses them; see there for the forms).

Judges of our own models (`self`, `m<N>`, a model folder) are loaded models: the stages generate
judgments with them in batches (loop/stages.py, engine.judge_items). The others are
`ExternalJudge`s, which load no model and produce the same judgment records
{"item_id", "sample", "text", "score", "parse"}:

- `PythonJudge`: FUNCTION(prompt, response) -> a score in [0, 5] (int or float) or None. None, a
  non-number, a number out of range, or an exception give an unparsed judgment whose `parse` says
  which and whose `text` says what came back; never a number. One judgment per answer (the
  function takes no seed, so K calls would repeat it). The file is imported once per process.
- `OpenAIJudge`: the run's rubric prompt as the user message to an OpenAI-compatible endpoint,
  K samples per answer (each with its own seed), `judge_concurrency` requests in flight, parsed
  with the rubric's rules (final `Score: N`); see openai_client.py for retries and the API key.

Scores may therefore be floats; means, pairs and summaries take them as they are.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import math
import numbers
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from ..errors import SrliteError
from ..models.generation import Sample
from ..run import seeds as seed_scheme
from ..run.rundir import JUDGMENTS
from . import engine
from .openai_client import ChatClient, Reply
from .rubric import MAX_SCORE, NO_SCORE, build_judge_prompt, load_rubric
from .spec import JudgeSpec, absolute, parse_judge_spec, resolved

REJECTED = "rejected by endpoint"  # parse status of a request the endpoint refused (HTTP 400, ...)
PYTHON_CHUNK = 64  # answers scored by a python judge between two journal writes

Records = list[tuple[int, list[dict]]]  # (item index, its judgment records), as items finish


class ExternalJudge:
    """A judge that is not one of our loaded models."""

    def __init__(self, spec: JudgeSpec):
        self.spec = spec

    def samples(self, k: int) -> int:
        """Judgments per answer when the config asks for `k`."""
        return k

    def judge(self, items: Sequence[dict], n: int, seeds: Sequence[int]) -> Iterator[Records]:
        """Judge each item ({"id", "prompt", "response"}) n times (item i with seeds[i]); yields the
        records of items as they finish, in groups (write each group to the journal)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


# --- python: FILE.py:FUNCTION -----------------------------------------------------------------

_imported: dict[str, object] = {}  # absolute file -> module, so each file is imported once per process


def load_python_function(spec: JudgeSpec) -> Callable:
    """The function a python spec names; a clear error naming the spec if the file, the import or
    the function fails."""
    spec = resolved(spec)
    path = Path(spec.path)
    if not path.is_file():
        raise SrliteError(f"judge {spec.text!r}: no such file {path}.")
    module = _imported.get(str(path))
    if module is None:
        name = "srlite_judge_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        try:
            loader.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise SrliteError(f"judge {spec.text!r}: importing {path} failed: {type(e).__name__}: {e}") from None
        _imported[str(path)] = module
    fn = getattr(module, spec.function, None)
    if not callable(fn):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise SrliteError(f"judge {spec.text!r}: {path} has no function {spec.function!r} "
                          f"(functions defined there: {', '.join(found) or 'none'}).")
    return fn


def python_score(fn: Callable, prompt: str, response: str) -> tuple[int | float | None, str, str]:
    """(score, parse status, text) of one call; only a real number in [0, 5] becomes a score."""
    try:
        value = fn(prompt, response)
    except Exception as e:  # the user's code: any failure is this answer's unparsed judgment
        return None, "error", f"raised {type(e).__name__}: {e}"[:500]
    text = f"returned {value!r}"[:500]
    if value is None:
        return None, NO_SCORE, text
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(float(value)):
        return None, "not a number", text
    v = float(value)
    if not 0 <= v <= MAX_SCORE:
        return None, "out of range", text
    return (int(v) if v.is_integer() else v), "ok", text


class PythonJudge(ExternalJudge):
    def __init__(self, spec: JudgeSpec):
        super().__init__(resolved(spec))
        self.fn = load_python_function(self.spec)

    def samples(self, k: int) -> int:
        return 1  # FUNCTION(prompt, response) has no seed: a second call would only repeat the first

    def judge(self, items, n, seeds):
        for start in range(0, len(items), PYTHON_CHUNK):
            group = []
            for i in range(start, min(start + PYTHON_CHUNK, len(items))):
                score, status, text = python_score(self.fn, items[i]["prompt"], items[i]["response"])
                group.append((i, [{"item_id": items[i]["id"], "sample": 0, "text": text, "score": score,
                                   "parse": status, "finished": True}]))
            yield group


# --- openai:BASE_URL#MODEL --------------------------------------------------------------------

class OpenAIJudge(ExternalJudge):
    def __init__(self, spec: JudgeSpec, cfg):
        super().__init__(spec)
        self.cfg, self.rubric = cfg, load_rubric(cfg.rubric)
        self.client = ChatClient(spec.base_url, spec.model, api_key_env=cfg.judge_api_key_env,
                                 timeout=cfg.judge_timeout, max_retries=cfg.judge_max_retries,
                                 concurrency=cfg.judge_concurrency)

    def close(self) -> None:
        self.client.close()

    def judge(self, items, n, seeds):
        replies: dict[int, list] = {i: [None] * n for i in range(len(items))}
        jobs = [(build_judge_prompt(items[i]["prompt"], items[i]["response"], self.rubric),
                 seed_scheme.generate_call(seeds[i], k), (i, k)) for i in range(len(items)) for k in range(n)]
        with contextlib.closing(self.run_jobs(jobs, self.cfg.judge_max_new_tokens)) as answers:
            for (i, k), reply in answers:
                replies[i][k] = reply
                if all(r is not None for r in replies[i]):
                    yield [(i, self.records(items[i], replies.pop(i)))]

    def complete(self, contents: Sequence[str], seeds: Sequence[int], max_tokens: int,
                 on_done: Callable[[int], None] | None = None) -> list[Reply]:
        """One answer per user message (the win rate's pairwise prompts), in order."""
        out: list = [None] * len(contents)
        for i, reply in self.run_jobs([(c, s, i) for i, (c, s) in enumerate(zip(contents, seeds))], max_tokens):
            out[i] = reply
            if on_done:
                on_done(1)
        return out

    @staticmethod
    def records(item: dict, replies: list[Reply]) -> list[dict]:
        """The rubric's parse rules, through the one engine; a refused request is unparsed, with why."""
        recs = engine.parse_judgments(item, [Sample(r.text, r.finished, r.n_tokens) for r in replies])
        for rec, r in zip(recs, replies):
            if r.rejected:
                rec.update(text=r.rejected, score=None, parse=REJECTED)
        return recs

    def run_jobs(self, jobs: list[tuple[str, int, object]], max_tokens: int) -> Iterator[tuple[object, Reply]]:
        """(key, reply) per job (content, seed, key) as each finishes, `judge_concurrency` at a time. On
        an error or when the consumer stops early (Ctrl-C), the queued jobs are dropped at once and the
        requests in flight end when the judge is closed (`close`, which every caller does)."""
        stop = threading.Event()
        cfg = self.cfg

        def ask(content: str, seed: int) -> Reply:
            return self.client.chat(content, temperature=cfg.judge_temperature, top_p=cfg.judge_top_p,
                                    max_tokens=max_tokens, seed=seed, stop=stop)

        pool = ThreadPoolExecutor(max_workers=cfg.judge_concurrency, thread_name_prefix="srlite-judge")
        try:
            pending = {pool.submit(ask, content, seed): key for content, seed, key in jobs}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)  # all the futures done by now
                failed = next((f.exception() for f in finished if f.exception() is not None), None)
                for fut in finished:  # every answer in hand is handed over (and journaled) before a failure
                    key = pending.pop(fut)
                    if fut.exception() is None:
                        yield key, fut.result()
                if failed is not None:
                    raise failed  # an EndpointError: the finally below drops the rest
        finally:
            stop.set()  # a request waiting to be retried gives up
            pool.shutdown(wait=False, cancel_futures=True)


# --- choosing and checking a judge --------------------------------------------------------------

def external_judge(spec: JudgeSpec | str, cfg) -> ExternalJudge:
    """The judge object of a python or openai spec."""
    spec = parse_judge_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "python":
        return PythonJudge(spec)
    if spec.kind == "openai":
        return OpenAIJudge(spec, cfg)
    raise ValueError(f"{spec.text!r} is judged by a loaded model, not an external judge")


def judge_all(judge: ExternalJudge, items: Sequence[dict], n: int, seed: int,
              on_batch: Callable[[int], None] | None = None) -> list[dict]:
    """Every item's records, in item order then sample order (as engine.judge_items returns them)."""
    by_item: dict[int, list[dict]] = {}
    try:
        with contextlib.closing(judge.judge(items, n, [seed_scheme.batch(seed, i) for i in range(len(items))])) as groups:
            for group in groups:
                by_item.update(group)
                if on_batch:
                    on_batch(len(group))
    finally:
        judge.close()
    return [r for i in range(len(items)) for r in by_item[i]]


def judge_key(spec: JudgeSpec) -> str:
    """What a cached result judged by `spec` depends on: the spec, and a python file's contents."""
    spec = resolved(spec)
    if spec.kind == "python":
        path = Path(spec.path)
        if not path.is_file():
            raise SrliteError(f"judge {spec.text!r}: no such file {path}.")
        return f"python:{path}:{spec.function}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    return spec.path if spec.kind == "model" and spec.path else spec.text


def judging_title(cfg) -> str:
    """The judging stage's line in the terminal: who judges, how many judgments per candidate."""
    spec = parse_judge_spec(cfg.judge, "judge")
    who = {"self": "LLM-as-a-judge", "model": f"LLM-as-a-judge by {spec.label}",
           "python": f"python judge {spec.label}", "openai": f"endpoint judge {spec.model}"}[spec.kind]
    n = 1 if spec.kind == "python" else cfg.judge_samples
    return f"{who}, {n} sample{'s' if n > 1 else ''} each"


def round_judge(run, t: int, models):
    """Round t's judge: M_t itself (self, or m<t>), another model through the ModelCache (which
    releases M_t first: one model in memory; DPO reloads it), or an external judge."""
    spec = parse_judge_spec(run.cfg.judge, "judge")
    if spec.kind == "self" or spec.round == t:
        return models.sampler(t)
    if spec.kind == "model":
        return models.get(spec.round if spec.round is not None else str(resolved(spec).path))
    return external_judge(spec, run.cfg)


def check_spec(spec: JudgeSpec, field: str, newest: int, when: str) -> None:
    """What can be checked before any model loads: M_N exists by then (`newest` is the newest model
    at that point), the folder exists, the python file imports and has the function."""
    if spec.kind == "model" and spec.round is not None and spec.round > newest:
        made_by = "SFT" if spec.round == 1 else f"round {spec.round - 1}"
        raise SrliteError(
            f"config: {field} is {spec.text!r}, but M{spec.round} (made by {made_by}) does not exist yet when "
            f"{when} (the newest model then is M{newest}). A fixed judge m<N> can serve from round N on; "
            f"set {field} to 'self' or to m<N> with N <= {newest} for now, and change it between rounds.")
    if spec.kind == "model" and spec.path is not None and not Path(spec.path).expanduser().is_dir():
        raise SrliteError(f"config: {field} {spec.text!r} is not 'self', 'm<N>', 'python:FILE.py:FUNCTION' or "
                          "'openai:BASE_URL#MODEL', nor an existing model folder.")
    if spec.kind == "python":
        check_python_file(spec)


def check_python_file(spec: JudgeSpec) -> None:
    """The file exists, parses, and defines the function at its top level: checked by reading it, not
    running it (nothing of the user's runs at `srlite init`, nor before the backend's own imports:
    Unsloth must be imported before the libraries it patches). `load_python_function` imports it."""
    spec = resolved(spec)
    path = Path(spec.path)
    if not path.is_file():
        raise SrliteError(f"judge {spec.text!r}: no such file {path}.")
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError) as e:
        raise SrliteError(f"judge {spec.text!r}: {path} is not valid Python ({type(e).__name__}: {e}).") from None
    if spec.function not in _top_level_names(tree.body):
        raise SrliteError(f"judge {spec.text!r}: {path} defines no function {spec.function!r} at its top level.")


def _top_level_names(body: list) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in getattr(node, "targets", None) or [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        else:  # if / try / with / for at the top level: their bodies define top-level names too
            for field in ("body", "orelse", "finalbody", "handlers"):
                names |= _top_level_names(getattr(node, field, None) or [])
    return names


def import_python_judges(cfg) -> None:
    """Import the config's python judge files now (once per process): `srlite iterate` calls this
    after choosing its backend and before loading a model, so a failing import stops it early."""
    for field in ("judge", "winrate_judge"):
        spec = parse_judge_spec(getattr(cfg, field), field)
        if spec.kind == "python":
            load_python_function(spec)


def at_init(spec: str, field: str) -> str:
    """`srlite init`: the spec with its path made absolute (relative to the current directory), and
    checked as far as it can be before a model exists."""
    spec = absolute(spec, field)
    parsed = parse_judge_spec(spec, field)
    if parsed.kind != "model" or parsed.path is not None:
        check_spec(parsed, field, newest=0, when="")
    return spec


def check_judges(run, rounds: int) -> None:
    """Pre-flight: the judges of the rounds still to judge (and to evaluate) can serve."""
    cfg = run.cfg
    todo = [t for t in range(1, rounds + 1) if not (run.round_dir(t) / JUDGMENTS).is_file()]
    if todo:
        check_spec(parse_judge_spec(cfg.judge, "judge"), "judge", todo[0], f"round {todo[0]} judges")
    todo = [t for t in range(1, rounds + 1) if not run.eval_path(t).is_file()]
    if cfg.eval_each_round and todo:
        check_spec(parse_judge_spec(cfg.winrate_judge, "winrate_judge"), "winrate_judge", todo[0] + 1,
                   f"round {todo[0]} is evaluated")
