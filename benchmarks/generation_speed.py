"""Batched candidate + judging stages vs the naive one-`generate`-per-sample loop.

    python benchmarks/generation_speed.py                    # embedded model, CPU preset
    python benchmarks/generation_speed.py --prompts 16 --max-new-tokens 96

Both paths use the same model instance, the same prompts, the same number of samples and the
same token budget; every sequence generates exactly `--max-new-tokens` tokens (min_new_tokens
= max_new_tokens; no judgment stops at its "Score: N"), so the comparison is of equal work. The
naive path is what public self-rewarding scripts do: one `model.generate` call per candidate and
per judgment. The batched path is the stages' own: `generation.generate`, and for judging the
rubric's KV cache computed once (`judging.engine.rubric_prefix`, models/prefix.py).
Prints tokens/s of each and the speed-up ratio, measured in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from selfreward_lite.config import preset_config
from selfreward_lite.judging.engine import rubric_prefix
from selfreward_lite.judging.rubric import build_judge_prompt, load_rubric
from selfreward_lite.models.generation import generate, render_chat, shared_prefix
from selfreward_lite.models.hf import load_stack
from selfreward_lite.run.records import first_user_text, load_messages


def naive(lm, texts, n, max_new_tokens, temperature, top_p):
    tok, model = lm.tokenizer, lm.model
    out = []
    for text in texts:
        group = []
        for _ in range(n):
            enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                seq = model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p,
                                     max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                     pad_token_id=tok.pad_token_id)
            group.append(tok.decode(seq[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
        out.append(group)
    return out


def batched(lm, texts, n, max_new_tokens, temperature, top_p, batch_size, prefix_text=None):
    # min_new_tokens: same work as the naive path (no early stop at EOS).
    prefix = shared_prefix(lm, prefix_text) if prefix_text else None  # timed: the stage computes it too
    lm.model.generation_config.min_new_tokens = max_new_tokens
    try:
        samples = generate(lm, texts, n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                           batch_size=batch_size, seed=0, prefix=prefix)
    finally:
        lm.model.generation_config.min_new_tokens = None
    return [[s.text for s in group] for group in samples]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--judge-samples", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=None, help="sequences per generate call (default: preset)")
    args = ap.parse_args()

    cfg = preset_config("gpu" if torch.cuda.is_available() else "cpu", model=args.model)
    batch_size = args.batch_size or cfg.gen_batch_size
    lm = load_stack(cfg, [])
    questions = [first_user_text(m) for m in load_messages("bundled", "ift")[: args.prompts]]
    cand_texts = [render_chat(lm.tokenizer, [{"role": "user", "content": q}]) for q in questions]
    common = dict(max_new_tokens=args.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)

    rubric = load_rubric(cfg.rubric)
    results = {}
    for name, run in (("batched", lambda t, n, prefix_text=None: batched(lm, t, n, batch_size=batch_size,
                                                                         prefix_text=prefix_text, **common)),
                      ("naive", lambda t, n, prefix_text=None: naive(lm, t, n, **common))):
        torch.manual_seed(0)
        start = time.perf_counter()
        cands = run(cand_texts, args.candidates)
        t_cand = time.perf_counter() - start
        # Judge the candidates this path produced (same shapes and budget on both paths).
        judge_texts = [render_chat(lm.tokenizer, [{"role": "user", "content": build_judge_prompt(q, c, rubric)}])
                       for q, group in zip(questions, cands) for c in group]
        start = time.perf_counter()
        run(judge_texts, args.judge_samples, prefix_text=rubric_prefix(lm, rubric))
        t_judge = time.perf_counter() - start
        n_seq = len(cand_texts) * args.candidates + len(judge_texts) * args.judge_samples
        results[name] = {"candidates_s": t_cand, "judging_s": t_judge, "total_s": t_cand + t_judge,
                         "tokens_per_s": n_seq * args.max_new_tokens / (t_cand + t_judge)}
        print(f"{name:8s} candidates {t_cand:7.1f}s  judging {t_judge:7.1f}s  "
              f"{results[name]['tokens_per_s']:8.1f} tokens/s", flush=True)

    ratio = results["naive"]["total_s"] / results["batched"]["total_s"]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(json.dumps({"device": device, "dtype": str(lm.dtype), "batch_size": batch_size, **vars(args),
                      **{k: {m: round(v, 2) for m, v in r.items()} for k, r in results.items()}}, indent=1))
    print(f"speed-up (naive time / batched time): {ratio:.1f}x")


if __name__ == "__main__":
    main()
