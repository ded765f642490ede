"""Peak memory of a judging batch: the shared prefill with full-vocabulary logits (before) vs one position.

    python benchmarks/generation_memory.py                   # 6 judge prompts x 3 samples, bf16/fp32 as the CPU allows
    python benchmarks/generation_memory.py --prompts 21      # the gpu preset's judging batch (64 // 3 prompts); ~3 GB before

The model is a tiny random-weight Llama (2 layers, hidden 64) with Llama-3's vocabulary of 128,256,
so the LM head dominates exactly as it does on Llama-3-8B (whose full logits are the same size:
they depend on the vocabulary, not the width). The prompts are real judge prompts: the gpu preset's
rubric ("additive", the paper's) around the bundled IFT seed questions and answers, tokenised by the
embedded model's tokenizer. Every variant runs the pipeline's `generation.generate` (judge_samples
samples per prompt, the shared prefill, a few new tokens: the peak is the prefill) in a fresh
process of its own, after a warm-up call on one short prompt; "before" swaps in the prefill as it was (all prompt positions through the LM
head). Memory is the process's peak resident set during the call minus its resident set just
before (sampled every millisecond, and checked against the kernel's ru_maxrss). Both variants run in
one invocation, so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LLAMA3_VOCAB = 128_256


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Highest resident set seen while the block runs, by polling (1 ms)."""

    def __enter__(self):
        self.peak, self._stop = rss_bytes(), False
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def full_logits_prefill(model, enc: dict, n: int) -> dict:
    """The shared prefill before the fix: the LM head over every prompt position."""
    ids, mask = enc["input_ids"], enc["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)
    return {"input_ids": ids.repeat_interleave(n, dim=0), "attention_mask": mask.repeat_interleave(n, dim=0),
            "past_key_values": cache}


def build_model(folder: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from selfreward_lite.models.embedded import embedded_model_dir

    tok = AutoTokenizer.from_pretrained(embedded_model_dir())  # real text, ids < 49,152 < 128,256
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=LLAMA3_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)


def measure(folder: str, variant: str, prompts: int, samples: int, new_tokens: int, dtype: str) -> dict:
    import torch

    from selfreward_lite.config import preset_config
    from selfreward_lite.judging import engine
    from selfreward_lite.judging.rubric import load_rubric
    from selfreward_lite.models import generation
    from selfreward_lite.models.hf import load_stack
    from selfreward_lite.run.records import load_messages

    cfg = preset_config("cpu", model=folder, dtype=dtype)
    lm = load_stack(cfg, [])
    rubric = load_rubric(preset_config("gpu").rubric)
    seed = load_messages("bundled", "ift")[:prompts]
    items = [{"prompt": m[0]["content"], "response": m[-1]["content"]} for m in seed]
    texts = [engine.judge_text(lm, rubric, it) for it in items]
    lengths = [len(generation.prompt_ids(lm.tokenizer, t)) for t in texts]
    if variant == "before":
        generation._shared_prefill = full_logits_prefill
    # Warm up (thread pools, kernels, lazily loaded code) on one short prompt, so only the batch is measured.
    generation.generate(lm, [texts[0][:200]], samples, temperature=0.7, top_p=0.9, max_new_tokens=2, batch_size=samples,
                        seed=0)
    before_call = rss_bytes()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    with PeakRSS() as peak:
        generation.generate(lm, texts, samples, temperature=0.7, top_p=0.9, max_new_tokens=new_tokens,
                            batch_size=prompts * samples, seed=0)
    seconds = time.perf_counter() - start
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # ru_maxrss is the whole process's peak; it only speaks for the call when the call raised it
    kernel_peak = maxrss_after if maxrss_after > maxrss_before else None
    return {"variant": variant, "dtype": str(lm.dtype), "prompts": prompts, "samples": samples,
            "prompt_tokens_mean": sum(lengths) / len(lengths), "prompt_tokens_max": max(lengths),
            "peak_increase_bytes": max(peak.peak, kernel_peak or 0) - before_call,
            "polled_peak_increase_bytes": peak.peak - before_call,
            "kernel_peak_increase_bytes": None if kernel_peak is None else kernel_peak - before_call,
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=6, help="judge prompts in the batch (gpu preset: 64 // 3 = 21)")
    ap.add_argument("--samples", type=int, default=3, help="judgments per prompt (gpu preset: judge_samples 3)")
    ap.add_argument("--new-tokens", type=int, default=4)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    ap.add_argument("--child", nargs=2, metavar=("FOLDER", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.prompts, args.samples, args.new_tokens, args.dtype)))
        return

    import torch

    with tempfile.TemporaryDirectory(prefix="srlite-genmem-") as folder:
        build_model(Path(folder))
        results = {}
        for variant in ("after", "before"):
            cmd = [sys.executable, __file__, "--child", folder, variant, "--prompts", str(args.prompts),
                   "--samples", str(args.samples), "--new-tokens", str(args.new_tokens), "--dtype", args.dtype]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[variant]
            print(f"{variant:6s} peak +{r['peak_increase_bytes'] / 2**20:8.1f} MiB  ({r['seconds']:.1f} s)", flush=True)
    b, a = results["before"], results["after"]
    expected = args.prompts * (b["prompt_tokens_max"] - 1) * LLAMA3_VOCAB * (2 if "bfloat16" in b["dtype"] else 4)
    device = f"CPU, {torch.get_num_threads()} threads"
    print(json.dumps({"device": device, "vocab": LLAMA3_VOCAB, **{k: v for k, v in a.items() if k != "variant"},
                      "before_MiB": round(b["peak_increase_bytes"] / 2**20, 1),
                      "after_MiB": round(a["peak_increase_bytes"] / 2**20, 1),
                      "full_logits_tensor_MiB": round(expected / 2**20, 1)}, indent=1))
    print(f"peak memory of the judging batch, before / after: {b['peak_increase_bytes'] / a['peak_increase_bytes']:.1f}x")


if __name__ == "__main__":
    main()
