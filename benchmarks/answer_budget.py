"""How many of a round's prompts could form a pair at each answer budget (`response_max_new_tokens`).

    PYTHONPATH=. python benchmarks/answer_budget.py --run-dir RUN --rounds 1 3

A pair needs two *finished* answers to its prompt (a cut-off answer is never paired). For each round
given, M_t answers that round's prompts again, `n_candidates` times each, with the run's sampling
settings but a budget of --max-new-tokens (256) and its own seed; then, for each budget of --budgets,
counts the answers that finished within it and the prompts with at least two of them (an upper
bound on the round's pairs at that budget: ties still drop some). Prints the stage's seconds at the
large budget too, the price of finishing more.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--rounds", type=int, nargs="+", default=[1])
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--budgets", type=int, nargs="+", default=[96, 128, 160, 192, 256])
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    from selfreward_lite.loop.stages import stage_sampling
    from selfreward_lite.models import generation
    from selfreward_lite.models.backend import prepare
    from selfreward_lite.models.cache import ModelCache
    from selfreward_lite.run.files import read_jsonl
    from selfreward_lite.run.rundir import open_run

    run = open_run(args.run_dir)
    cfg = run.cfg
    prepare(cfg)
    models = ModelCache(run)
    for t in args.rounds:
        prompts = [p["prompt"] for p in read_jsonl(run.round_dir(t) / "prompts.jsonl")]
        lm = models.sampler(t)
        texts = [generation.render_chat(lm.tokenizer, [{"role": "user", "content": p}]) for p in prompts]
        t0 = time.perf_counter()
        sampling = {**stage_sampling(cfg)["candidates"], "max_new_tokens": args.max_new_tokens}
        groups = generation.generate(lm, texts, cfg.n_candidates, batch_size=cfg.gen_batch_size, seed=args.seed,
                                     **sampling)
        took = time.perf_counter() - t0
        print(f"round {t}: M{t} answers its {len(prompts)} prompts x {cfg.n_candidates} at {args.max_new_tokens} "
              f"tokens in {took:.1f} s")
        for b in args.budgets:
            per_prompt = [sum(s.finished and s.n_tokens <= b for s in g) for g in groups]
            print(f"  budget {b:4d}: answers finished {sum(per_prompt)}/{len(prompts) * cfg.n_candidates}, "
                  f"prompts with two or more {sum(k >= 2 for k in per_prompt)}/{len(prompts)}")


if __name__ == "__main__":
    main()
