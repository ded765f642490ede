"""Batched candidate + judging stages vs the naive one-`generate`-per-sample loop.

    python benchmarks/generation_speed.py                    # embedded model, CPU preset
    python benchmarks/generation_speed.py --prompts 16 --max-new-tokens 96

Both paths use the same model instance, the same prompts, the same number of samples, the same
token budget and the same endings as the stages: a candidate ends at EOS, a judgment at EOS or right
after its "Score: N" line (the judge's stop strings). The naive path is what public self-rewarding
scripts do: one `model.generate` call per candidate and per judgment (each stops when its own
sample ends). The batched path is the stages' own: `generation.generate` (our decode loop, in which
a finished row leaves the batch), and for judging the rubric's KV cache computed once
(`judging.engine.rubric_prefix`, models/prefix.py).

Sampled answers differ between the paths, so their lengths do too: the figure compared is tokens/s,
tokens being the generated tokens each path actually kept (pads never count), measured in the same
invocation. Seconds and tokens of each path are printed beside it.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from selfreward_lite.config import preset_config
from selfreward_lite.judging.engine import rubric_prefix, sampling
from selfreward_lite.judging.rubric import build_judge_prompt, load_rubric
from selfreward_lite.models.generation import StopOnText, generate, render_chat, shared_prefix
from selfreward_lite.models.hf import load_stack
from selfreward_lite.run.records import first_user_text, load_messages


def naive(lm, texts, n, max_new_tokens, temperature, top_p, stop_strings=None):
    """(texts, tokens generated): one `generate` per sample, stopping at EOS or a stop string."""
    from transformers import StoppingCriteriaList

    tok, model = lm.tokenizer, lm.model
    out, tokens = [], 0
    for text in texts:
        group = []
        for _ in range(n):
            enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
            start = enc["input_ids"].shape[1]
            stop = StoppingCriteriaList([StopOnText(tok, stop_strings, start)]) if stop_strings else None
            with torch.inference_mode():
                seq = model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                                     max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                     stopping_criteria=stop)
            new = seq[0, start:].tolist()
            kept = new[: new.index(tok.eos_token_id)] if tok.eos_token_id in new else new
            tokens += len(kept)
            group.append(tok.decode(kept, skip_special_tokens=True))
        out.append(group)
    return out, tokens


def batched(lm, texts, n, max_new_tokens, temperature, top_p, batch_size, stop_strings=None, prefix_text=None):
    """(texts, tokens generated): the stages' `generation.generate`."""
    prefix = shared_prefix(lm, prefix_text) if prefix_text else None  # timed: the stage computes it too
    samples = generate(lm, texts, n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                       batch_size=batch_size, seed=0, prefix=prefix, stop_strings=stop_strings)
    return [[s.text for s in group] for group in samples], sum(s.n_tokens for g in samples for s in g)


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
    judge_stops = sampling(cfg)["stop_strings"]
    results = {}
    for name, run in (("batched", lambda t, n, **kw: batched(lm, t, n, batch_size=batch_size, **common, **kw)),
                      ("naive", lambda t, n, prefix_text=None, **kw: naive(lm, t, n, **common, **kw))):
        torch.manual_seed(0)
        start = time.perf_counter()
        cands, cand_tokens = run(cand_texts, args.candidates)
        t_cand = time.perf_counter() - start
        # Judge the candidates this path produced (same shapes, budget and endings on both paths).
        judge_texts = [render_chat(lm.tokenizer, [{"role": "user", "content": build_judge_prompt(q, c, rubric)}])
                       for q, group in zip(questions, cands) for c in group]
        start = time.perf_counter()
        _, judge_tokens = run(judge_texts, args.judge_samples, stop_strings=judge_stops,
                              prefix_text=rubric_prefix(lm, rubric))
        t_judge = time.perf_counter() - start
        results[name] = {"candidates_s": t_cand, "judging_s": t_judge, "total_s": t_cand + t_judge,
                         "candidate_tokens": cand_tokens, "judgment_tokens": judge_tokens,
                         "candidates_tokens_per_s": cand_tokens / t_cand, "judging_tokens_per_s": judge_tokens / t_judge,
                         "tokens_per_s": (cand_tokens + judge_tokens) / (t_cand + t_judge)}
        r = results[name]
        print(f"{name:8s} candidates {t_cand:7.1f}s ({cand_tokens} tokens, {r['candidates_tokens_per_s']:.1f}/s)  "
              f"judging {t_judge:7.1f}s ({judge_tokens} tokens, {r['judging_tokens_per_s']:.1f}/s)  "
              f"{r['tokens_per_s']:8.1f} tokens/s", flush=True)

    ratio = results["batched"]["tokens_per_s"] / results["naive"]["tokens_per_s"]
    per_stage = {k: results["batched"][f"{k}_tokens_per_s"] / results["naive"][f"{k}_tokens_per_s"]
                 for k in ("candidates", "judging")}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(json.dumps({"device": device, "dtype": str(lm.dtype), "batch_size": batch_size, **vars(args),
                      **{k: {m: round(v, 2) for m, v in r.items()} for k, r in results.items()}}, indent=1))
    print(f"speed-up, tokens/s batched / naive: candidates {per_stage['candidates']:.1f}x, "
          f"judging {per_stage['judging']:.1f}x, both stages {ratio:.1f}x")


if __name__ == "__main__":
    main()
