"""M1's SFT, padded micro-batches (before) vs padding-free (now), in one invocation.

    PYTHONPATH=. python benchmarks/sft_speed.py                  # 64 seed records (a seeded sample), 1 epoch
    PYTHONPATH=. python benchmarks/sft_speed.py --records 0      # all seed records (M1's whole SFT data)

The cpu preset's M1 SFT (`stages.train_m1`: seed IFT + EFT records, `train.train_sft`) on the
embedded model, on a seeded sample of `--records` of the IFT + EFT records (EFT records are
about a third of them and begin with the same rubric), `--epochs` epochs: the same model instance,
the same records, batches, seed and starting adapter (reset to its initial state between runs),
so both do the same optimizer steps on the same examples. Runs alternate (padded, padding-free,
padded, ...) so a load change on a shared machine hits both. "padding-free" is what train_sft does now:
one row per micro-batch, prompt starts shared (padding_free.share_prompt_prefixes), attention per
sequence; `--micro-batch` sets its micro-batch (default the preset's). Prints the seconds of each, the
ratio, the tokens each forwarded (padding included) and the first-step losses, which must agree
(the same loss, within bf16 rounding).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=64, help="first N seed records (0: all)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--micro-batch", type=int, default=0, help="padding-free micro-batch (0: the preset's)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each path (alternating)")
    args = ap.parse_args()

    import torch

    from selfreward_lite.loop import train
    from selfreward_lite.models.adapters import reset_trainable
    from selfreward_lite.models.hf import load_stack
    from selfreward_lite.run.create import create_run
    from selfreward_lite.run.files import read_jsonl
    from selfreward_lite.run.records import split_prompt_completion

    torch.set_num_threads(torch.get_num_threads())
    run = create_run(Path(tempfile.mkdtemp(prefix="srlite-sft-bench-")) / "run", preset="cpu", overrides={})
    records = [split_prompt_completion(r["messages"]) for kind in ("ift", "eft_train")
               for r in read_jsonl(run.seed_path(kind))]
    if args.records:
        records = random.Random(0).sample(records, min(args.records, len(records)))
    cfg = replace(run.cfg, sft_epochs=args.epochs, report_to="none", checkpoint_steps=0)
    lm = load_stack(cfg, [], train_new=True)

    tokens = {"padded": 0, "padding-free": 0}

    def count(name):
        def hook(module, inputs, kwargs):
            ids = kwargs.get("input_ids", inputs[0] if inputs else None)
            tokens[name] += int(ids.numel())
        return hook

    times: dict[str, list[float]] = {"padded": [], "padding-free": []}
    losses: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, pf in (("padded", False), ("padding-free", True)):
            reset_trainable(lm, lm.init_seed)
            handle = lm.model.register_forward_pre_hook(count(name), with_kwargs=True)
            start = time.perf_counter()
            run_cfg = replace(cfg, train_micro_batch_size=args.micro_batch) if pf and args.micro_batch else cfg
            result = train.train_sft(run_cfg, lm, records, padding_free=pf)
            times[name].append(time.perf_counter() - start)
            handle.remove()
            losses[name] = result["first_loss"]
    best = {k: min(v) for k, v in times.items()}
    report = {
        "records": len(records), "epochs": args.epochs, "steps": result["steps"],
        "micro_batch": {"padded": cfg.train_micro_batch_size,
                        "padding-free": args.micro_batch or cfg.train_micro_batch_size},
        "batch": cfg.sft_batch_size, "dtype": str(lm.dtype),
        "seconds": times, "tokens_forwarded": {k: v // args.repeats for k, v in tokens.items()},
        "first_loss": losses, "ratio": round(best["padded"] / best["padding-free"], 2),
    }
    print(json.dumps(report, indent=1))
    print(f"SFT padded {best['padded']:.1f} s, padding-free {best['padding-free']:.1f} s: "
          f"{report['ratio']}x faster ({tokens['padded'] // args.repeats} vs "
          f"{tokens['padding-free'] // args.repeats} tokens forwarded)")


if __name__ == "__main__":
    main()
