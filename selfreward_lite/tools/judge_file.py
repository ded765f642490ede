"""`srlite judge`: score a user's JSONL with one of the run's models and the run's rubric, or with any
judge (`--judge`: a model folder, a python function, an OpenAI-compatible endpoint).

Input, one JSON object per line, either
  {"prompt": ..., "response": ...}                          a single answer, or
  {"prompt": ..., "a": ..., "b": ..., "label": "a"|"b"}      a pair (label optional: the better one),
with an optional "id". Output folder: scores.jsonl (mean score per answer, or per pair both
means, the predicted winner and whether it matches the label), judgments.jsonl (every raw
judgment), summary.json (parse rate, score histogram, pairwise accuracy when labels exist).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SrliteError
from ..judging.engine import judge_items, judgment_summary, scores_by_item
from ..judging.judges import check_spec, external_judge, judge_all
from ..judging.rubric import load_rubric, mean_score
from ..judging.spec import absolute, parse_judge_spec, resolved
from ..models.cache import ModelCache
from ..run import seeds
from ..run.files import write_json, write_jsonl
from ..run.records import read_jsonl_file
from ..run.rundir import JUDGE_SCORES, JUDGE_SUMMARY, JUDGMENTS, open_run
from ..ui import QuietUI


def load_judge_input(path: Path) -> tuple[str, list[dict]]:
    """("single" | "pairs", records); every record checked, errors name file, line and field."""
    path = Path(path)
    kind, records, seen = None, [], set()
    for line, rec in read_jsonl_file(path):
        where = f"{path}, line {line}"
        if not isinstance(rec, dict):
            raise SrliteError(f"{where}: expected a JSON object with 'prompt' and 'response' (or 'a' and 'b').")
        this = "pairs" if ("a" in rec or "b" in rec) else "single"
        if kind is None:
            kind = this
        elif this != kind:
            raise SrliteError(f"{where}: mixes a {'pair' if this == 'pairs' else 'single answer'} into a file of "
                              f"{'pairs' if kind == 'pairs' else 'single answers'}; use one kind per file.")
        fields = ("prompt", "a", "b") if kind == "pairs" else ("prompt", "response")
        for name in fields:
            if not isinstance(rec.get(name), str) or not rec[name].strip():
                raise SrliteError(f"{where}, field {name!r}: missing or not a non-empty string.")
        label = rec.get("label")
        if kind == "pairs" and label is not None and label not in ("a", "b"):
            raise SrliteError(f"{where}, field 'label': must be \"a\" or \"b\" (the better answer), got {label!r}.")
        rid = str(rec.get("id", f"{'p' if kind == 'pairs' else 'r'}{len(records):05d}"))
        if rid in seen:
            raise SrliteError(f"{where}, field 'id': {rid!r} is used twice.")
        seen.add(rid)
        records.append({**{k: rec[k] for k in fields}, "id": rid, **({"label": label} if label else {})})
    if not records:
        raise SrliteError(f"{path}: contains no records.")
    return kind, records


def judge_file(run_dir: Path, input_path: Path, model: int | None = None, out_dir: Path | None = None,
               ui=QuietUI(), judge: str | None = None) -> dict:
    """Judge every answer in `input_path` and write the results. The judge: M_model (default: the
    newest), or `judge`, any judge spec (judging/spec.py; "self" means M_model)."""
    run = open_run(run_dir)
    kind, records = load_judge_input(input_path)
    spec = resolved(parse_judge_spec(judge or "self", "--judge"))
    if spec.kind != "self" and model is not None and spec.round != model:
        raise SrliteError(f"--round {model} and --judge {spec.text!r} name two judges; give one of them.")
    if spec.kind == "self" or spec.round is not None:  # a model of this run
        n = run.check_model(spec.round if spec.round is not None else model, allow_base=True)
    else:
        n = None
        check_spec(spec, "--judge", newest=0, when="")  # the folder exists; the python file defines the function
    name = f"M{n}" if n is not None else spec.label
    out_dir = Path(out_dir) if out_dir else run.judge_dir(Path(input_path).stem, n if n is not None else spec.label)
    if kind == "pairs":
        items = [{"id": f"{r['id']}/{side}", "prompt": r["prompt"], "response": r[side]}
                 for r in records for side in ("a", "b")]
    else:
        items = [{"id": r["id"], "prompt": r["prompt"], "response": r["response"]} for r in records]
    samples = run.cfg.judge_samples
    with ui.progress(f"{name} judges answers", total=len(items)) as advance:
        if spec.external:
            external = external_judge(spec, run.cfg)
            samples = external.samples(samples)
            judgments = judge_all(external, items, samples, seeds.judge_file(run.cfg.seed), on_batch=advance)
        else:
            lm = ModelCache(run).get(n if n is not None else spec.path)
            judgments = judge_items(lm, run.cfg, load_rubric(run.cfg.rubric), items,
                                    seed=seeds.judge_file(run.cfg.seed), on_batch=advance)
    by_item = scores_by_item(judgments)
    rows = score_rows(kind, records, by_item)
    summary = {"input": str(input_path), "kind": kind, "model": name, "judge": absolute(spec.text), "rubric": run.cfg.rubric,
               "judge_samples": samples, "records": len(records),
               **judgment_summary(judgments), **(pair_summary(rows) if kind == "pairs" else {}),
               "out_dir": str(out_dir)}
    write_jsonl(out_dir / JUDGMENTS, judgments)
    write_jsonl(out_dir / JUDGE_SCORES, rows)
    write_json(out_dir / JUDGE_SUMMARY, summary)
    return summary


def score_rows(kind: str, records: list[dict], by_item: dict) -> list[dict]:
    rows = []
    for r in records:
        if kind == "single":
            scores = by_item.get(r["id"], [])
            rows.append({"id": r["id"], "score": mean_score(scores), "scores": scores})
            continue
        sa, sb = by_item.get(f"{r['id']}/a", []), by_item.get(f"{r['id']}/b", [])
        ma, mb = mean_score(sa), mean_score(sb)
        predicted = None if ma is None or mb is None else "tie" if ma == mb else ("a" if ma > mb else "b")
        row = {"id": r["id"], "score_a": ma, "score_b": mb, "scores_a": sa, "scores_b": sb, "predicted": predicted}
        if "label" in r:
            row.update(label=r["label"], correct=predicted == r["label"])
        rows.append(row)
    return rows


def pair_summary(rows: list[dict]) -> dict:
    """Pairwise accuracy over labelled pairs; a predicted tie or an unscored side counts as wrong."""
    labelled = [r for r in rows if "label" in r]
    return {
        "pairs_labelled": len(labelled),
        "pairs_correct": sum(r["correct"] for r in labelled),
        "pairs_tied": sum(r["predicted"] == "tie" for r in labelled),
        "pairs_unscored": sum(r["predicted"] is None for r in labelled),
        "pairwise_accuracy": sum(r["correct"] for r in labelled) / len(labelled) if labelled else None,
    }
