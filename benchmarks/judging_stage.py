"""The judging stage, old vs new, in one invocation: seconds and judge quality on the held-out EFT split.

    python benchmarks/judging_stage.py                       # embedded model (M0), cpu preset, bundled EFT eval split
    python benchmarks/judging_stage.py --run-dir RUN --model 1   # a run's M_1 as the judge
    python benchmarks/judging_stage.py --repeats 3           # each variant 3 times, the fastest counted

The variants judge the same answers with the same model, seed and settings (the pipeline's own
`engine.judge_items`, the pieces the round's judging stage runs batch by batch):
  old       sampled judging (judge_samples judgments per answer), every prompt prefilled whole, HF's
            `generate` (a batch runs until its longest row ends);
  prefix    the same with the rubric's KV cache computed once and copied into every batch
            (models/prefix.py; exact: the same logits);
  rows      the same as prefix, in our decode loop (models/decode.py): a finished row leaves the batch,
            top-p among the most probable tokens instead of a sort of the whole vocabulary;
  new       the same as rows, with grouped attention on CPU (models/attention.py);
  completed the same as new, and a judgment that ended without its score is asked for it
            (judge_complete_score, judging/engine.complete_scores): the stage as it runs now;
  expected  judge_scoring "expected": one justification per answer, the score the probability-
            weighted mean of the digits 0..5 at its "Score:" (judging/expected.py), with the cache
            and the completion.
(old, prefix, rows and new judge without the completion, as the stage did before it.)
Each variant runs after a warm-up call; the answers are the bundled held-out EFT split (30 answers
to 10 questions with reference scores). Judge quality is evaluation/judge_quality's: pairwise
accuracy (Wilson interval) and Kendall tau-b (bootstrap interval), each with its n.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import sys
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def quality_text(q: dict) -> str:
    pw, ci = q["pairwise"], q["intervals"]
    return (f"pairwise accuracy {pw['correct']}/{pw['pairs']}: {ci['pairwise_accuracy']['text']}; "
            f"Kendall tau-b {ci['kendall_tau_b']['text']}; parse rate {q['parsed']}/{q['judgments']} "
            f"({q['completed']} completed); "
            f"mean score {q['mean_score'] if q['mean_score'] is None else round(q['mean_score'], 2)}")


@contextlib.contextmanager
def generation_as(drop_finished: bool, grouped: bool):
    """The engine calls `generation.generate`: without our decode loop it gets HF's `generate` path
    (drop_finished=False), without grouped attention the eager attention used before it (on CPU)."""
    from selfreward_lite.models import generation

    saved = generation.generate, generation.attention_for_generation
    generation.generate = functools.partial(saved[0], drop_finished=drop_finished)
    if not grouped:
        generation.attention_for_generation = eager_on_cpu
    try:
        yield
    finally:
        generation.generate, generation.attention_for_generation = saved


@contextlib.contextmanager
def eager_on_cpu(lm):
    """What batched generation used on CPU before grouped attention: HF's eager attention."""
    from selfreward_lite.models.adapters import transformers_model

    base = transformers_model(lm.model)
    before = base.config._attn_implementation
    if lm.device == "cpu":
        base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, help="judge with this run's model --model (default: the embedded model, M0)")
    ap.add_argument("--model", type=int, default=1, help="with --run-dir: which M_n judges")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each variant; the fastest is reported")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from selfreward_lite.config import preset_config
    from selfreward_lite.evaluation.judge_quality import judge_quality_metrics, load_ranked_set
    from selfreward_lite.judging.engine import judge_items
    from selfreward_lite.judging.rubric import load_rubric
    from selfreward_lite.models.backend import prepare

    if args.run_dir:
        from selfreward_lite.models.cache import ModelCache
        from selfreward_lite.run.rundir import open_run

        run = open_run(args.run_dir)
        cfg = run.cfg
        prepare(cfg)
        lm = ModelCache(run).sampler(args.model)
        who = f"{args.run_dir} M{args.model}"
    else:
        from selfreward_lite.models.hf import load_stack

        cfg = preset_config("cpu")
        prepare(cfg)
        lm = load_stack(cfg, [])
        who = "embedded model (M0)"
    rubric = load_rubric(cfg.rubric)
    items = load_ranked_set(Path(str(resources.files("selfreward_lite") / "data" / "eft_eval.jsonl")), rubric)
    sampled = dataclasses.replace(cfg, judge_scoring="sampled", judge_complete_score=False)
    completed = dataclasses.replace(sampled, judge_complete_score=True)
    expected = dataclasses.replace(cfg, judge_scoring="expected", judge_complete_score=True)
    variants = {  # config, rubric cache, finished rows leave the batch, grouped attention
        "old": (sampled, False, False, False),
        "prefix": (sampled, True, False, False),
        "rows": (sampled, True, True, False),
        "new": (sampled, True, True, True),
        "completed": (completed, True, True, True),
        "expected": (expected, True, True, True),
    }
    judge_items(lm, cfg, rubric, items[:2], seed=args.seed)  # warm-up (one-time allocations, kernels)
    seconds, quality = {}, {}
    for _ in range(args.repeats):
        for name, (vcfg, cache, drop, grouped) in variants.items():
            t0 = time.perf_counter()
            with generation_as(drop, grouped):
                records = judge_items(lm, vcfg, rubric, items, seed=args.seed, prefix_cache=cache)
            took = time.perf_counter() - t0
            seconds[name] = min(took, seconds.get(name, float("inf")))
            quality[name] = judge_quality_metrics(items, records)
    print(f"judge: {who}; backend {lm.backend}, device {lm.device}; rubric {cfg.rubric}; {len(items)} answers to "
          f"{len({i['group'] for i in items})} questions; judge_samples {cfg.judge_samples} (expected: 1), "
          f"judge_max_new_tokens {cfg.judge_max_new_tokens}, gen_batch_size {cfg.gen_batch_size}; "
          f"fastest of {args.repeats}")
    for name in variants:
        print(f"  {name:9s} {seconds[name]:7.1f} s   {quality_text(quality[name])}")
    print(f"ratio old / prefix (rubric cache only):         {seconds['old'] / seconds['prefix']:.2f}x")
    print(f"ratio old / rows (rubric cache, rows leave):    {seconds['old'] / seconds['rows']:.2f}x")
    print(f"ratio old / new (+ grouped attention):          {seconds['old'] / seconds['new']:.2f}x")
    print(f"ratio old / completed (+ scores asked for):     {seconds['old'] / seconds['completed']:.2f}x")
    print(f"ratio old / expected (the same, K=1):           {seconds['old'] / seconds['expected']:.2f}x")
    print(json.dumps({"seconds": seconds, "quality": {k: {"pairwise": q["pairwise"], "intervals": q["intervals"],
                                                          "parse_rate": q["parse_rate"]} for k, q in quality.items()}}))


if __name__ == "__main__":
    main()
