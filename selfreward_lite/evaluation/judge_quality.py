"""Judge quality (the paper's reward-modelling table): how well M_n's scores agree with reference
scores of held-out answers.

Each model judges the held-out EFT eval answers (the run's seed/eft_eval.jsonl, or a user's ranked
set); its mean score per answer is compared with the reference score: pairwise accuracy, exact
match, Spearman, Kendall tau-b, parse-failure rate. Results are cached in the run's eval/ folder,
keyed by a hash of the data and the settings that affect them, so each model is judged once.
"""

from __future__ import annotations

import math

from pathlib import Path

from ..errors import SrliteError
from ..judging.engine import judge_items, judgment_summary, scores_by_item
from ..judging.rubric import RUBRIC_TEMPLATE, load_rubric, mean_score, parse_score, split_judge_prompt
from ..models.cache import ModelCache
from ..run import seeds
from ..run.files import read_json, write_json, write_jsonl
from ..run.records import read_jsonl_file
from ..run.rundir import Run, cache_key
from ..ui import QuietUI
from .intervals import correlation_interval, rate
from .stats import kendall_tau_b, pairwise_accuracy, spearman


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
                    cfg.judge_temperature, cfg.judge_top_p, cfg.judge_max_new_tokens, cfg.seed, cfg.top_k,
                    cfg.repetition_penalty, *(["expected"] if cfg.judge_scoring == "expected" else []),
                    *(["completed"] if cfg.judge_complete_score else []))
    return run.judge_quality_path(n, key)


def judge_quality(run: Run, n: int, models: ModelCache, source: Path | None = None, ui=QuietUI()) -> dict:
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
        records = judge_items(lm, run.cfg, rubric, items, seed=seeds.evaluation(run.cfg.seed), on_batch=advance)
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
    summary = judgment_summary(records)
    refs, mods = [i["reference"] for i in scored], [means[i["id"]] for i in scored]
    pairwise = pairwise_accuracy(list(groups.values()))
    # a continuous (expected) score matches when it rounds to the reference (x.5 up)
    exact = sum(r["score"] is not None and math.floor(r["score"] + 0.5) == ref_of[r["item_id"]] for r in records)
    # Each figure with its n and 95 % interval (Wilson; percentile bootstrap over answers for the
    # correlations), so no display shows more certainty than the counts carry.
    intervals = {
        "pairwise_accuracy": rate(pairwise["correct"], pairwise["pairs"]).to_dict(),
        "exact_match": rate(exact, len(records)).to_dict(),
        "parse_rate": rate(summary["parsed"], summary["judgments"]).to_dict(),
        "spearman": correlation_interval(refs, mods, "spearman").to_dict(),
        "kendall_tau_b": correlation_interval(refs, mods, "kendall").to_dict(),
    }
    return {
        "questions": len(groups),
        "answers": len(items),
        "answers_scored": len(scored),
        **{k: summary[k] for k in ("judgments", "parsed", "parse_rate", "unparsed", "completed")},
        # pairs of answers to one question with different reference scores; model ties and
        # unscored answers count as wrong
        "pairwise": pairwise,
        # share of ALL judgments (unparsed included, as misses) whose score equals the reference
        "exact_match": exact / len(records) if records else None,
        # over answers with at least one parsed judgment: mean model score vs reference score
        "spearman": spearman(refs, mods),
        "kendall_tau_b": kendall_tau_b(refs, mods),
        **{k: summary[k] for k in ("histogram", "mean_score")},
        "mean_reference": sum(i["reference"] for i in items) / len(items) if items else None,
        "intervals": intervals,
    }


def cached_judge_quality(run: Run, n: int) -> dict | None:
    """The default-settings judge quality of M_n if it was computed (for reports)."""
    try:  # a report must not fail because an eval input has moved since
        p = judge_quality_path(run, n)
    except SrliteError:
        return None
    return read_json(p) if p.is_file() else None
