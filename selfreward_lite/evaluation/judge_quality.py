"""Does it work? Judge quality and instruction following of M1..M_t, computed once and cached.

Judge quality (the paper's reward-modelling table): each model judges the held-out EFT eval
answers (the run's seed/eft_eval.jsonl, or a user's ranked set); its mean score per answer
is compared with the reference score: pairwise accuracy, exact match, Spearman, Kendall tau-b,
parse-failure rate. Instruction following: M_t+1 vs M_t head to head (winrate.py).

Results are cached under <run>/eval/, keyed by model and by a hash of the data and the
settings that affect them, so M1..M_t are each evaluated once and `srlite report` can read
them back. Run on demand with `srlite eval`, or automatically at the end of each round
(`eval_each_round`).
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
from collections import Counter
from pathlib import Path

from ..run.files import read_json, write_json, write_jsonl
from ..run.records import read_jsonl_file
from ..report.display import QuietUI
from ..errors import SrliteError
from ..judging.rubric import RUBRIC_TEMPLATE, load_rubric, mean_score, parse_score, split_judge_prompt
from ..run.rundir import Run, open_run
from ..judging.engine import judge_items, scores_by_item
from .stats import kendall_tau_b, pairwise_accuracy, spearman

EVAL_DIR = "eval"
EVAL_SEED_OFFSET = 901  # every model is judged with the same sampling seed: differences come from the model


def eval_seed(run: Run) -> int:
    return run.cfg.seed * 1000 + EVAL_SEED_OFFSET


def cache_key(*parts) -> str:
    """Short hash of everything a cached result depends on (data bytes, settings)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:10]


# --- models ---------------------------------------------------------------------------------

def model_exists(run: Run, n: int) -> bool:
    return n == 0 or all((d / "adapter_config.json").is_file() for d in run.adapters_of(n))


def newest_model(run: Run) -> int:
    """N of the newest M_N on disk (0 if not even M1 exists)."""
    n = 0
    while model_exists(run, n + 1):
        n += 1
    return n


def check_model(run: Run, n: int) -> None:
    if n < 0 or not model_exists(run, n):
        newest = newest_model(run)
        raise SrliteError(
            f"{run.dir}: model M{n} does not exist (M0 is the base model, M1 the SFT model, M_t+1 the model after "
            f"round t); the newest here is M{newest}. Run `srlite iterate` first or choose --round 0..{newest}."
        )


class Models:
    """Loads models on demand and keeps at most one in memory (two 4-bit 7B models would not fit a 24 GB card)."""

    def __init__(self, run: Run):
        self.run, self.spec, self.lm = run, None, None

    def get(self, spec: int | str):
        """`spec`: N for M_N of this run, or a local model folder (base model, no adapters)."""
        if spec != self.spec:
            from ..models.hf import load_stack

            self.spec, self.lm = None, None
            gc.collect()
            if isinstance(spec, int):
                check_model(self.run, spec)
                adapters = self.run.adapters_of(spec) if spec > 0 else []
                self.lm = load_stack(self.run.cfg, adapters, train_new=False)
            else:
                self.lm = load_stack(dataclasses.replace(self.run.cfg, model=spec), [], train_new=False)
            self.spec = spec
        return self.lm


def model_name(spec: int | str) -> str:
    return f"M{spec}" if isinstance(spec, int) else str(spec)


# --- the ranked set ---------------------------------------------------------------------------

def load_ranked_set(path: Path, rubric: str) -> list[dict]:
    """Answers with reference scores, grouped by question.

    Two record forms: {"messages": [judge prompt, reference judgment ending "Score: N"]} (the EFT
    format; the prompt may use the run's rubric or the paper's), or {"prompt", "response", "score"}.
    Returns items {"id", "group", "prompt", "response", "reference"}, groups in file order.
    """
    items, groups = [], {}
    for line, rec in read_jsonl_file(path):
        where = f"{path}, line {line}"
        if not isinstance(rec, dict):
            raise SrliteError(f"{where}: expected a JSON object.")
        if "messages" in rec:
            msgs = rec["messages"]
            user = next((m.get("content") for m in msgs if isinstance(m, dict) and m.get("role") == "user"), None) \
                if isinstance(msgs, list) else None
            last = msgs[-1] if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict) else {}
            if not isinstance(user, str) or last.get("role") != "assistant" or not isinstance(last.get("content"), str):
                raise SrliteError(f"{where}, field 'messages': needs a user judge prompt and a final assistant judgment.")
            parts = split_judge_prompt(user, rubric) or split_judge_prompt(user, RUBRIC_TEMPLATE)
            if parts is None:
                raise SrliteError(f"{where}, field 'messages[0].content': not a judge prompt of the run's rubric "
                                  "(cannot find the question and the answer in it).")
            prompt, response = parts
            ref = parse_score(last["content"])
            if ref.score is None:
                raise SrliteError(f"{where}, field 'messages[-1].content': reference judgment has no valid final "
                                  f"'Score: N' ({ref.status}).")
            score = ref.score
        else:
            for name in ("prompt", "response"):
                if not isinstance(rec.get(name), str) or not rec[name].strip():
                    raise SrliteError(f"{where}, field {name!r}: missing or not a non-empty string.")
            score = rec.get("score")
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise SrliteError(f"{where}, field 'score': missing or not a number (the reference score).")
            prompt, response = rec["prompt"], rec["response"]
        g = groups.setdefault(prompt.strip(), len(groups))
        items.append({"id": f"q{g}-a{sum(1 for i in items if i['group'] == g)}", "group": g,
                      "prompt": prompt, "response": response, "reference": score})
    if not items:
        raise SrliteError(f"{path}: contains no records.")
    return items


def limit_questions(items: list[dict], questions: int) -> list[dict]:
    return [i for i in items if i["group"] < questions] if questions else items


# --- judge quality ----------------------------------------------------------------------------

def question_limit(run: Run, source: Path | None) -> int:
    """The run's own split is cut to `eval_questions` (sized for the per-round cost); a user's set is used whole."""
    return run.cfg.eval_questions if source is None else 0


def judge_quality_path(run: Run, n: int, source: Path | None = None) -> Path:
    limit = question_limit(run, source)
    source = Path(source) if source else run.seed_path("eft_eval")
    if not source.is_file():
        raise SrliteError(f"{source}: no such file (ranked answers for judge quality).")
    cfg = run.cfg
    key = cache_key(source.read_bytes(), load_rubric(cfg.rubric), limit, cfg.judge_samples,
                    cfg.judge_temperature, cfg.judge_top_p, cfg.judge_max_new_tokens, cfg.seed)
    return run.dir / EVAL_DIR / f"m{n}" / f"judge_quality-{key}.json"


def judge_quality(run: Run, n: int, models: Models, source: Path | None = None, ui=QuietUI()) -> dict:
    """M_n's agreement with the reference scores (cached; computed on first request)."""
    out = judge_quality_path(run, n, source)
    if out.is_file():
        return read_json(out)
    limit = question_limit(run, source)
    source = Path(source) if source else run.seed_path("eft_eval")
    rubric = load_rubric(run.cfg.rubric)
    items = limit_questions(load_ranked_set(source, rubric), limit)
    lm = models.get(n)
    with ui.progress(f"M{n} judges held-out answers", total=len(items)) as advance:
        records = judge_items(lm, run.cfg, rubric, items, seed=eval_seed(run), on_batch=advance)
    write_jsonl(out.with_suffix(".jsonl"), records)
    result = {"model": f"M{n}", "source": str(source), **judge_quality_metrics(items, records)}
    write_json(out, result)
    return result


def judge_quality_metrics(items: list[dict], records: list[dict]) -> dict:
    """The reward-modelling figures of one model, from its judgments of the ranked items."""
    by_item = scores_by_item(records)
    means = {i["id"]: mean_score(by_item.get(i["id"], [])) for i in items}
    groups: dict[int, list] = {}
    for i in items:
        groups.setdefault(i["group"], []).append((i["reference"], means[i["id"]]))
    ref_of = {i["id"]: i["reference"] for i in items}
    scored = [i for i in items if means[i["id"]] is not None]
    parsed = [r["score"] for r in records if r["score"] is not None]
    refs, mods = [i["reference"] for i in scored], [means[i["id"]] for i in scored]
    return {
        "questions": len(groups),
        "answers": len(items),
        "answers_scored": len(scored),
        "judgments": len(records),
        "parsed": len(parsed),
        "parse_rate": len(parsed) / len(records) if records else None,
        "unparsed": dict(Counter(r["parse"] for r in records if r["score"] is None)),
        # pairs of answers to one question with different reference scores; model ties and
        # unscored answers count as wrong
        "pairwise": pairwise_accuracy(list(groups.values())),
        # share of ALL judgments (unparsed included, as misses) whose score equals the reference
        "exact_match": sum(r["score"] == ref_of[r["item_id"]] for r in records) / len(records) if records else None,
        # over answers with at least one parsed judgment: mean model score vs reference score
        "spearman": spearman(refs, mods),
        "kendall_tau_b": kendall_tau_b(refs, mods),
        "histogram": {str(s): parsed.count(s) for s in range(6)},
        "mean_score": sum(parsed) / len(parsed) if parsed else None,
        "mean_reference": sum(i["reference"] for i in items) / len(items) if items else None,
    }


# --- orchestration --------------------------------------------------------------------------

def evaluate_round(run: Run, t: int, out: Path, ui=QuietUI()) -> dict:
    """The end-of-round evaluation of round t: judge quality of M_t and M_t+1, and M_t+1 vs M_t.

    Cached results are reused, so each model is judged once over the whole run.
    """
    from .winrate import model_responses, prompts_source, win_rate

    models = Models(run)
    quality = {}
    for n in (t, t + 1):  # model by model, so each is loaded at most once (and not at all when cached)
        quality[f"M{n}"] = judge_quality(run, n, models, ui=ui)
        model_responses(run, n, models, prompts_source(run), ui)
    result = {"round": t, "judge_quality": quality, "win_rate": win_rate(run, t + 1, t, models, ui=ui)}
    write_json(out, result)
    return result


def run_eval(run_dir: Path, model: int | None = None, eft: Path | None = None, prompts: Path | None = None,
             judge: str | None = None, ui=QuietUI()) -> dict:
    """`srlite eval`: judge quality of M1..M_newest (or of M_model only) and the win rate of each
    model against the one before it. Cached results are reused."""
    from .winrate import model_responses, prompts_source, win_rate

    run = open_run(run_dir)
    if judge is not None:
        run = dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, winrate_judge=judge))
    newest = newest_model(run)
    if model is None:
        if newest == 0:
            raise SrliteError(f"{run.dir}: no model to evaluate yet (M1 is missing). Run `srlite iterate` first.")
        wanted = list(range(1, newest + 1))
    else:
        check_model(run, model)
        wanted = [model]
    models = Models(run)
    quality, wins = [], []
    # Model by model, so each is loaded once: its judge quality, then (as the newer side) its win rate.
    for n in wanted:
        quality.append(judge_quality(run, n, models, eft, ui))
        if n + 1 in wanted:  # M_n is the older side of the next match: answer now, while it is loaded
            model_responses(run, n, models, prompts_source(run, prompts), ui)
        if n >= 2:
            wins.append(win_rate(run, n, n - 1, models, prompts, ui))
    return {"run_dir": str(run.dir), "judge_quality": quality, "win_rates": wins}


def cached_judge_quality(run: Run, n: int) -> dict | None:
    """The default-settings judge quality of M_n if it was computed (for reports)."""
    try:  # a report must not fail because an eval input has moved since
        p = judge_quality_path(run, n)
    except SrliteError:
        return None
    return read_json(p) if p.is_file() else None
