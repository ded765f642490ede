"""M1's SFT as it ran before (old) vs now (new), in one invocation.

    PYTHONPATH=. python benchmarks/sft_speed.py                  # 64 seed records (a seeded sample), 1 epoch
    PYTHONPATH=. python benchmarks/sft_speed.py --records 0      # all seed records (M1's whole SFT data)

The cpu preset's M1 SFT (`stages.train_m1`: seed IFT + EFT records, `train.train_sft`) on the
embedded model, on a seeded sample of `--records` of the IFT + EFT records (EFT records are about a
third of them and begin with the same rubric), `--epochs` epochs: the same model instance, records,
batches, seed and starting adapter (reset between runs), so both do the same optimizer steps on the
same examples.
  old  padded micro-batches; the model's own causal-LM loss, its LM head over every position;
  new  what train_sft does now: one padding-free row per micro-batch whose sequences share their
       common prompt start (padding_free.share_prompt_prefixes; attention per sequence,
       varlen_attention), the LM head only where a completion token is predicted.
Runs alternate (old, new, old, ...) so a load change on a shared machine hits both. Prints the
seconds of each, the ratio, the tokens each forwarded (padding included) and the first-step losses,
which must agree (the same loss, within bf16 rounding). `--micro-batch` changes new's micro-batch.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def old_trainer_class(current):
    """train_sft's CPU trainer as it was: the model's own loss, logits at every position."""

    def make(device):
        class OldLoss(current(device)):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                keys = ("input_ids", "attention_mask", "labels", "position_ids")
                outputs = model(**{k: inputs[k] for k in keys if k in inputs}, num_items_in_batch=num_items_in_batch,
                                use_cache=False)
                return (outputs.loss, outputs) if return_outputs else outputs.loss

        return OldLoss

    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=64, help="a seeded sample of N seed records (0: all)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--micro-batch", type=int, default=0, help="new's micro-batch (0: the preset's)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each path (alternating)")
    args = ap.parse_args()

    import torch

    from selfreward_lite.loop import train
    from selfreward_lite.models.adapters import reset_trainable
    from selfreward_lite.models.hf import load_stack
    from selfreward_lite.run.create import create_run
    from selfreward_lite.run.files import read_jsonl
    from selfreward_lite.run.records import split_prompt_completion

    run = create_run(Path(tempfile.mkdtemp(prefix="srlite-sft-bench-")) / "run", preset="cpu", overrides={})
    records = [split_prompt_completion(r["messages"]) for kind in ("ift", "eft_train")
               for r in read_jsonl(run.seed_path(kind))]
    if args.records:
        records = random.Random(0).sample(records, min(args.records, len(records)))
    cfg = replace(run.cfg, sft_epochs=args.epochs, report_to="none", checkpoint_steps=0)
    lm = load_stack(cfg, [], train_new=True)
    current = train._sft_trainer_class
    variants = {
        "old": (cfg, False, old_trainer_class(current)),
        "new": (replace(cfg, train_micro_batch_size=args.micro_batch or cfg.train_micro_batch_size), True, current),
    }

    tokens = dict.fromkeys(variants, 0)
    times: dict[str, list[float]] = {k: [] for k in variants}
    losses: dict[str, float] = {}

    def count(name):
        def hook(module, inputs, kwargs):
            ids = kwargs.get("input_ids", inputs[0] if inputs else None)
            tokens[name] += int(ids.numel())
        return hook

    for _ in range(args.repeats):
        for name, (run_cfg, padding_free, trainer_class) in variants.items():
            reset_trainable(lm, lm.init_seed)
            handle = lm.model.register_forward_pre_hook(count(name), with_kwargs=True)
            train._sft_trainer_class = trainer_class
            try:
                start = time.perf_counter()
                result = train.train_sft(run_cfg, lm, records, padding_free=padding_free)
                times[name].append(time.perf_counter() - start)
            finally:
                train._sft_trainer_class = current
                handle.remove()
            losses[name] = result["first_loss"]
    best = {k: min(v) for k, v in times.items()}
    report = {
        "records": len(records), "epochs": args.epochs, "steps": result["steps"], "batch": cfg.sft_batch_size,
        "micro_batch": {k: v[0].train_micro_batch_size for k, v in variants.items()}, "dtype": str(lm.dtype),
        "threads": torch.get_num_threads(), "seconds": times,
        "tokens_forwarded": {k: v // args.repeats for k, v in tokens.items()},
        "first_loss": losses, "ratio": round(best["old"] / best["new"], 2),
    }
    print(json.dumps(report, indent=1))
    print(f"SFT old {best['old']:.1f} s, new {best['new']:.1f} s: {report['ratio']}x faster "
          f"({report['tokens_forwarded']['old']} vs {report['tokens_forwarded']['new']} tokens forwarded)")


if __name__ == "__main__":
    main()
