"""IFEval-format accuracy of a run's models: M_N answers IFEval-schema prompts once, lm-eval's
verifiers score the answers, and consecutive models are compared on the same prompts.

Answers are greedy (lm-eval's own IFEval setting, `do_sample: false`): deterministic, so a
difference between two models comes from the models and not from sampling, and the figures
are comparable with published IFEval numbers (given the same token budget: lm-eval allows 1280
new tokens; the cpu preset allows `ifeval_max_new_tokens`, and an answer cut there is scored as
it stands). The chat template is applied to the prompt alone, no system message.

Which prompts: `ifeval_data` ("bundled" = selfreward_lite/data/ifeval_heldout.jsonl) cut to
`ifeval_prompts`, taken evenly spaced through the file (the bundled file is grouped by
instruction type, so 30 of its 76 prompts still cover most types); `srlite eval --ifeval FILE`
uses the whole file.

Cached in the run's eval/ folder (paths from Run), so each model answers once over the whole run
and later rounds, `srlite eval` and `srlite report` reuse the files:
    eval/m<N>/ifeval_answers-<key>.jsonl   answers (key: the file's bytes, the cut, budget, decoding)
    eval/m<N>/ifeval-<key>.json (+ .jsonl) scores (key: the answers' key + the lm-eval version)
    eval/ifeval-m<new>-vs-m<old>-<key>.json paired comparison (exact McNemar on the same prompts)
Every rate is stored with k, n and its 95 % Wilson interval (intervals.Rate.to_dict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ..errors import SrliteError
from ..loop.oom import with_backoff
from ..models import generation
from ..models.cache import ModelCache
from ..run import seeds
from ..run.files import read_json, read_jsonl, write_json, write_jsonl
from ..run.rundir import Run, cache_key
from ..ui import QuietUI
from . import ifeval

DECODING = "greedy"
LEVELS = (("prompt", "strict"), ("prompt", "loose"), ("instruction", "strict"), ("instruction", "loose"))


@dataclass
class IFEvalSet:
    """The prompts the models answer: an IFEval-schema file, cut to `limit` prompts (0 = all)."""

    path: Path
    limit: int = 0
    _records: list | None = field(default=None, repr=False)

    def key_parts(self) -> tuple:
        if not self.path.is_file():
            raise SrliteError(f"{self.path}: no such file (IFEval-schema prompts).")
        return self.path.read_bytes(), self.limit

    def records(self) -> list[ifeval.IFEvalRecord]:
        """The selected records, validated (loaded once)."""
        if self._records is None:
            self._records = select(ifeval.load_ifeval(self.path), self.limit)
        return self._records


def select(records: list, limit: int) -> list:
    """`limit` records evenly spaced through the file (all when limit is 0 or too large)."""
    if not limit or limit >= len(records):
        return list(records)
    return [records[i * len(records) // limit] for i in range(limit)]


def source_path(spec: str | Path) -> Path:
    return ifeval.bundled_heldout_path() if str(spec) == "bundled" else Path(spec).expanduser()


def configured_set(run: Run) -> IFEvalSet:
    """The per-round set: `ifeval_data` cut to `ifeval_prompts`."""
    return IFEvalSet(source_path(run.cfg.ifeval_data), run.cfg.ifeval_prompts)


def file_set(path: str | Path) -> IFEvalSet:
    """`srlite eval --ifeval FILE`: the whole file ("bundled": the whole held-out set)."""
    return IFEvalSet(source_path(path), 0)


def unavailable_reason() -> str | None:
    """None when lm-eval's verifiers (and Punkt) are installed; otherwise why not and how to install them."""
    return ifeval.unavailable_reason()


def skipped(reason: str) -> dict:
    """What an evaluation records in place of IFEval figures it could not compute (never silent)."""
    return {"skipped": reason, "install": ifeval.EXTRA}


# --- paths ----------------------------------------------------------------------------------

def _answers_key(run: Run, s: IFEvalSet) -> str:
    return cache_key(*s.key_parts(), run.cfg.ifeval_max_new_tokens, DECODING)


def _scores_key(run: Run, s: IFEvalSet) -> str:
    try:
        version = metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        version = None
    return cache_key(_answers_key(run, s), version)


def answers_path(run: Run, n: int, s: IFEvalSet) -> Path:
    return run.ifeval_answers_path(n, _answers_key(run, s))


def scores_path(run: Run, n: int, s: IFEvalSet) -> Path:
    return run.ifeval_path(n, _scores_key(run, s))


def comparison_path(run: Run, new: int, old: int, s: IFEvalSet) -> Path:
    return run.ifeval_comparison_path(new, old, _scores_key(run, s))


# --- answers, scores, comparisons -----------------------------------------------------------

def model_answers(run: Run, n: int, models: ModelCache, s: IFEvalSet, ui=QuietUI()) -> list[dict]:
    """M_n's greedy answer to each selected prompt (cached: a model answers once per set and settings)."""
    out = answers_path(run, n, s)
    if out.is_file():
        return read_jsonl(out)
    cfg = run.cfg
    records = s.records()
    lm = models.get(n)
    texts = [generation.render_chat(lm.tokenizer, [{"role": "user", "content": r.prompt}]) for r in records]
    with ui.progress(f"M{n} answers {len(records)} IFEval-format prompts", total=len(records)) as advance:
        samples = with_backoff(run, "ifeval", cfg.gen_batch_size, lambda bs: generation.generate(
            lm, texts, 1, temperature=0.0, top_p=1.0, max_new_tokens=cfg.ifeval_max_new_tokens, batch_size=bs,
            seed=seeds.evaluation(cfg.seed), on_batch=advance))
    rows = [{"key": r.key, "prompt": r.prompt, "response": smp.text, "finished": smp.finished, "tokens": smp.n_tokens}
            for r, (smp,) in zip(records, samples)]
    write_jsonl(out, rows)
    return rows


def model_scores(run: Run, n: int, models: ModelCache, s: IFEvalSet, ui=QuietUI()) -> dict:
    """M_n's IFEval-format accuracy on the set: prompt/instruction level, strict/loose, with intervals (cached)."""
    out = scores_path(run, n, s)
    if out.is_file():
        return read_json(out)
    rows = model_answers(run, n, models, s, ui)
    results = ifeval.score_responses(s.records(), {r["key"]: r["response"] for r in rows})
    write_jsonl(out.with_suffix(".jsonl"), [{**res.to_dict(), "finished": row["finished"], "tokens": row["tokens"]}
                                            for res, row in zip(results, rows)])
    summary = ifeval.summarize(results)
    result = {
        "model": f"M{n}", "source": str(s.path), "limit": s.limit, "decoding": DECODING,
        "max_new_tokens": run.cfg.ifeval_max_new_tokens, "verifier": ifeval.verifier_info(),
        "answers": {"n": len(rows), "cut_at_budget": sum(not r["finished"] for r in rows),
                    "mean_chars": sum(len(r["response"]) for r in rows) / max(1, len(rows)),
                    "mean_tokens": sum(r["tokens"] for r in rows) / max(1, len(rows))},
        **summary.to_dict(),
    }
    write_json(out, result)
    return result


def prompt_results(run: Run, n: int, s: IFEvalSet) -> list[ifeval.PromptResult]:
    return [ifeval.PromptResult.from_dict(d) for d in read_jsonl(scores_path(run, n, s).with_suffix(".jsonl"))]


def comparison(run: Run, new: int, old: int, models: ModelCache, s: IFEvalSet, ui=QuietUI()) -> dict:
    """M_new vs M_old on the same prompts: for each level and mode, improved / worsened and exact McNemar p."""
    out = comparison_path(run, new, old, s)
    if out.is_file():
        return read_json(out)
    model_scores(run, old, models, s, ui)
    model_scores(run, new, models, s, ui)
    before, after = prompt_results(run, old, s), prompt_results(run, new, s)
    result = {"new": f"M{new}", "old": f"M{old}", "source": str(s.path), "limit": s.limit,
              **{f"{level}_{mode}": ifeval.compare_rounds(before, after, level=level, mode=mode).to_dict()
                 for level, mode in LEVELS}}
    write_json(out, result)
    return result


def evaluate_models(run: Run, wanted: list[int], models: ModelCache, s: IFEvalSet, ui=QuietUI(),
                    compare_with_previous: bool = True) -> dict:
    """Scores of each model in `wanted` and the comparison of each with the model before it.

    Answers come first, model by model in the order given, so each model is loaded at most once
    here; scoring and comparing load nothing.
    """
    needed = sorted(set(wanted) | ({n - 1 for n in wanted if n >= 2} if compare_with_previous else set()))
    for n in needed:
        model_answers(run, n, models, s, ui)
    scores = [model_scores(run, n, models, s, ui) for n in wanted]
    pairs = [(n, n - 1) for n in wanted if compare_with_previous and n >= 2]
    return {"source": str(s.path), "limit": s.limit, "models": scores,
            "comparisons": [comparison(run, new, old, models, s, ui) for new, old in pairs]}


def cached_scores(run: Run, n: int) -> dict | None:
    """M_n's scores on the configured set if they were computed (for reports; loads nothing)."""
    try:  # a report must not fail because an eval input has moved since
        p = scores_path(run, n, configured_set(run))
    except SrliteError:
        return None
    return read_json(p) if p.is_file() else None


def cached_comparison(run: Run, new: int, old: int) -> dict | None:
    try:
        p = comparison_path(run, new, old, configured_set(run))
    except SrliteError:
        return None
    return read_json(p) if p.is_file() else None
