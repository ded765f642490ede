"""Does a round's DPO move the model? The same round's pairs, trained with each preset's optimizer settings.

    python benchmarks/dpo_settings.py --run-dir RUN [--round 1]

RUN is a run directory with round `--round`'s pairs.jsonl and the adapters of M_t (e.g. made by
`srlite init && srlite iterate --rounds 1` on the cpu preset: the embedded model). M_t is loaded once;
for each setting the new adapter is reset to its initial state (same seed, B = 0), trained with
`train_dpo` exactly as a round does, and measured after training (loop/dpo_diagnostics.py): reward
accuracy, reward margin, mean Δ log p of chosen / rejected and mean |Δ log p| per token, M_t+1 vs M_t.

Settings: `cpu` (the cpu preset's DPO), `gpu-old` (gpu preset before: lr 5e-6, 1 epoch, no warm-up),
`gpu-new` (gpu preset now). Scaled to the embedded model: learning rate, epochs, warm-up and β are the
preset's; the batch is chosen so that an epoch has about as many optimizer steps as the gpu preset gets
(~300 pairs / batch 16 ≈ 20), i.e. batch = max(1, round(pairs / 20)); the LoRA rank is the run's (cpu
preset r 8, α 16: the same α/r = 2 as the gpu preset's r 16, α 32).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from selfreward_lite.config import PRESETS, Config

GPU_OLD = {"dpo_learning_rate": 5e-6, "dpo_epochs": 1.0, "warmup_ratio": 0.0}  # the gpu preset before this change
KEYS = ("dpo_learning_rate", "dpo_epochs", "warmup_ratio", "dpo_beta")


def settings(pairs: int) -> dict[str, dict]:
    cpu = {k: getattr(Config(), k) for k in KEYS} | {"dpo_batch_size": Config().dpo_batch_size}
    gpu_batch = max(1, round(pairs / 20))
    new = {k: PRESETS["gpu"].get(k, getattr(Config(), k)) for k in KEYS}
    return {
        "cpu": cpu,
        "gpu-old": {**new, **GPU_OLD, "dpo_batch_size": gpu_batch},
        "gpu-new": {**new, "dpo_batch_size": gpu_batch},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="a subset of: cpu gpu-old gpu-new")
    args = ap.parse_args()

    from selfreward_lite.loop.train import train_dpo
    from selfreward_lite.models.adapters import reset_trainable
    from selfreward_lite.models.backend import load_model
    from selfreward_lite.run.files import read_jsonl
    from selfreward_lite.run.rundir import open_run

    run = open_run(args.run_dir)
    pairs = read_jsonl(run.round_dir(args.round) / "pairs.jsonl")
    lm = load_model(run.cfg, run.adapters_of(args.round), train_new=True)
    print(f"{len(pairs)} pairs of round {args.round}, model {run.cfg.model}, LoRA r {run.cfg.lora_r} "
          f"alpha {run.cfg.lora_alpha}, dtype {lm.dtype}")
    rows = []
    for name, s in settings(len(pairs)).items():
        if args.only and name not in args.only:
            continue
        reset_trainable(lm, lm.init_seed)
        cfg = replace(run.cfg, **s, train_micro_batch_size=min(run.cfg.train_micro_batch_size, s["dpo_batch_size"]),
                      checkpoint_steps=0, report_to="none")
        start = time.time()
        result = train_dpo(cfg, lm, pairs, on_step=lambda step, total: print(
            f"  {name}: step {step}/{total} at {time.time() - start:.0f} s", file=sys.stderr, flush=True))
        m = result["movement"]
        rows.append({"setting": name, **s, "steps": result["steps"], "seconds": round(time.time() - start, 1),
                     **{k: m[k] for k in ("reward_accuracy", "reward_margin", "delta_logp_chosen",
                                          "delta_logp_rejected", "delta_logp_per_token", "reference_gap")},
                     "warnings": len(m["warnings"])})
        print(json.dumps(rows[-1]), flush=True)
    print()
    print("| setting | lr | epochs | warm-up | batch | steps | reward acc. | margin | Δ log p chosen | Δ log p rejected "
          "| mean abs Δ per token | warnings | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['dpo_learning_rate']:g} | {r['dpo_epochs']:g} | {r['warmup_ratio']:g} | "
              f"{r['dpo_batch_size']} | {r['steps']} | {r['reward_accuracy']:.0%} | {r['reward_margin']:.3f} | "
              f"{r['delta_logp_chosen']:.3f} | {r['delta_logp_rejected']:.3f} | {r['delta_logp_per_token']:.2g} | "
              f"{r['warnings']} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
