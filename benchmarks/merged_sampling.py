"""Round 3's candidate sampling: M3's stack of 3 adapters active (before) vs merged into the weights (now).

    PYTHONPATH=. python benchmarks/merged_sampling.py                   # embedded model, cpu preset
    PYTHONPATH=. python benchmarks/merged_sampling.py --prompts 8 --max-new-tokens 96 --repeats 2

M3 = the base + m1 + two round adapters (random B: stand-ins for trained ones, same shapes as the
preset's). "stack" is how M_t sampled before (`hf.load_stack` + `backend.for_sampling`: t LoRA
products per projection per token); "merged" is what `ModelCache.sampler` gives now on a base that
is not quantized (`backend.load_merged`). Both generate the preset's N candidates for the same
prompts through `generation.generate` with the same seed; runs alternate so load changes on a shared
machine hit both. Prints generated tokens/s of each and the ratio (tokens counted, not assumed).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def stand_in_adapters(cfg, root: Path, t: int) -> list[Path]:
    """t adapters, each trained on top of the ones before it (random B so each changes the model)."""
    import torch

    from selfreward_lite.models.adapters import TRAINABLE, save_adapter
    from selfreward_lite.models.hf import load_stack

    dirs: list[Path] = []
    for i in range(t):
        lm = load_stack(cfg, dirs, train_new=True)
        torch.manual_seed(i)
        with torch.no_grad():
            for name, p in lm.model.named_parameters():
                if f"lora_B.{TRAINABLE}." in name:
                    p.normal_(0, 0.02)
        save_adapter(lm, root / f"a{i}", "stand_in.json", {"seed": i})
        dirs.append(root / f"a{i}")
    return dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--adapters", type=int, default=3, help="stack depth (M3 in round 3)")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    import torch

    from selfreward_lite.config import preset_config
    from selfreward_lite.models.backend import for_sampling, load_merged
    from selfreward_lite.models.generation import generate, render_chat
    from selfreward_lite.models.hf import load_stack
    from selfreward_lite.run.records import first_user_text, load_messages

    cfg = preset_config("cpu")
    dirs = stand_in_adapters(cfg, Path(tempfile.mkdtemp(prefix="srlite-merge-bench-")), args.adapters)
    models = {"stack": for_sampling(load_stack(cfg, dirs, train_new=True)), "merged": load_merged(cfg, dirs)}
    tok = models["merged"].tokenizer
    texts = [render_chat(tok, [{"role": "user", "content": first_user_text(m)}])
             for m in load_messages("bundled", "ift")[: args.prompts]]

    stats = {k: {"tokens": 0, "wall_s": 0.0, "cpu_s": 0.0} for k in models}
    for _ in range(args.repeats):
        for name, lm in models.items():
            wall, cpu = time.perf_counter(), time.process_time()
            out = generate(lm, texts, cfg.n_candidates, temperature=cfg.temperature, top_p=cfg.top_p,
                           max_new_tokens=args.max_new_tokens, batch_size=cfg.gen_batch_size, seed=0)
            stats[name]["wall_s"] += time.perf_counter() - wall
            stats[name]["cpu_s"] += time.process_time() - cpu
            stats[name]["tokens"] += sum(s.n_tokens for group in out for s in group)
    for s in stats.values():
        s["tokens_per_s"] = round(s["tokens"] / s["wall_s"], 2)
        s["tokens_per_cpu_s"] = round(s["tokens"] / s["cpu_s"], 2)
    ratio = stats["merged"]["tokens_per_s"] / stats["stack"]["tokens_per_s"]
    cpu_ratio = stats["merged"]["tokens_per_cpu_s"] / stats["stack"]["tokens_per_cpu_s"]
    print(json.dumps({"dtype": str(models["merged"].dtype), "threads": torch.get_num_threads(),
                      "candidates": cfg.n_candidates, "batch_size": cfg.gen_batch_size, **vars(args),
                      **stats}, indent=1))
    print(f"round-{args.adapters} sampling: stack {stats['stack']['tokens_per_s']} tokens/s, merged "
          f"{stats['merged']['tokens_per_s']} tokens/s: {ratio:.2f}x (per CPU second: {cpu_ratio:.2f}x)")


if __name__ == "__main__":
    main()
