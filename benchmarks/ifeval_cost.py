"""What the per-round IFEval-format evaluation costs here: seconds for one model to answer N prompts of
the bundled held-out set (greedy, as srlite does) at a token budget, for a few sizes.

    python benchmarks/ifeval_cost.py                       # N = 20, 30, 40 at 128 tokens; 30 at 192
    python benchmarks/ifeval_cost.py --configs 30x128,76x256

The model is the embedded SmolLM2-135M-Instruct (M0, no adapter; a round's M_t adds LoRA layers,
which cost a little more), loaded once in a temporary run with the cpu preset, then each
configuration answers through the same code as the end-of-round evaluation
(evaluation/ifeval_run.model_answers, gen_batch_size 32). Printed per configuration: seconds,
CPU seconds of this process, the ratio to a reference workload run first in the same process (the
round's candidate stage at the cpu preset: on a shared, loaded machine absolute times inflate, the
ratio much less), answers cut at the budget, mean answer tokens, prompt-level strict accuracy.
A 3-round run answers with 4 models (M1..M4), so the run pays about 4x the seconds shown.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfreward_lite.evaluation import ifeval, ifeval_run  # noqa: E402
from selfreward_lite.evaluation.winrate import bundled_eval_prompts, load_eval_prompts  # noqa: E402
from selfreward_lite.models import generation  # noqa: E402
from selfreward_lite.models.cache import ModelCache  # noqa: E402
from selfreward_lite.run.create import create_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="20x128,30x128,40x128,30x192",
                    help="comma-separated PROMPTSxTOKENS configurations")
    args = ap.parse_args()
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    if ifeval_run.unavailable_reason():
        sys.exit(ifeval_run.unavailable_reason())
    with tempfile.TemporaryDirectory() as tmp:
        run = create_run(Path(tmp) / "run", preset="cpu", overrides={})
        models = ModelCache(run)
        start = time.perf_counter()
        models.get(0)
        print(f"model loaded in {time.perf_counter() - start:.1f} s; {os.cpu_count()} CPUs; "
              f"load average {os.getloadavg()[0]:.2f}")
        # Reference: the round's candidate stage at the cpu preset (12 prompts x 4 samples x 96 tokens,
        # T 0.7), whose time on a quiet machine the README gives: the ratio survives a loaded machine.
        prompts = [p["prompt"] for p in load_eval_prompts(bundled_eval_prompts(), 12)]
        lm = models.get(0)
        texts = [generation.render_chat(lm.tokenizer, [{"role": "user", "content": p}]) for p in prompts]
        start, cpu = time.perf_counter(), time.process_time()
        generation.generate(lm, texts, run.cfg.n_candidates, temperature=run.cfg.temperature, top_p=run.cfg.top_p,
                            max_new_tokens=run.cfg.response_max_new_tokens, batch_size=run.cfg.gen_batch_size, seed=0)
        ref, ref_cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"reference (candidate stage: 12 prompts x 4 x 96 tokens): {ref:.1f} s, CPU {ref_cpu:.1f} s")
        print(f"{'prompts':>7} {'tokens':>6} {'seconds':>8} {'CPU s':>7} {'x ref':>6} {'cut':>5} {'mean tok':>8}  "
              "prompt-level strict")
        for n, budget in configs:
            r = dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, ifeval_max_new_tokens=budget))
            s = ifeval_run.IFEvalSet(ifeval.bundled_heldout_path(), n)
            start, cpu = time.perf_counter(), time.process_time()
            rows = ifeval_run.model_answers(r, 0, models, s)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            summary = ifeval.summarize(ifeval.score_responses(s.records(), [x["response"] for x in rows]))
            cut = sum(not x["finished"] for x in rows)
            mean_tokens = sum(x["tokens"] for x in rows) / len(rows)
            print(f"{len(rows):>7} {budget:>6} {seconds:>8.1f} {cpu:>7.1f} {cpu / ref_cpu:>6.2f} {cut:>5} {mean_tokens:>8.0f}  {summary.prompt_strict}"
                  f"  (load {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
