"""LLM-as-a-Judge scoring engine: K sampled judgments per (prompt, response), batched.

One implementation, used by the round's judging stage (stages.judge_candidates), by
`srlite judge` and by the judge-quality evaluation. A judgment without a valid final
`Score: N` keeps score None with the parse status saying why; it never becomes a number.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .judge import build_judge_prompt, parse_score


def judge_items(lm, cfg, rubric: str, items: Sequence[dict], *, seed: int,
                on_batch: Callable[[int], None] | None = None) -> list[dict]:
    """Judge each item ({"id", "prompt", "response"}) `cfg.judge_samples` times with `rubric`.

    Returns one record per judgment, in item order then sample order:
    {"item_id", "sample", "text", "score" (int or None), "parse" (status)}. All samples of
    an item share one prefill (model.generate with n = judge_samples).
    """
    from .model import generate, render_chat

    texts = [
        render_chat(lm.tokenizer, [{"role": "user", "content": build_judge_prompt(it["prompt"], it["response"], rubric)}])
        for it in items
    ]
    samples = generate(
        lm, texts, cfg.judge_samples, temperature=cfg.judge_temperature, top_p=cfg.judge_top_p,
        max_new_tokens=cfg.judge_max_new_tokens, batch_size=cfg.gen_batch_size, seed=seed,
        on_batch=on_batch,
    )
    records = []
    for it, group in zip(items, samples):
        for k, s in enumerate(group):
            parsed = parse_score(s.text)
            records.append({"item_id": it["id"], "sample": k, "text": s.text,
                            "score": parsed.score, "parse": parsed.status})
    return records


def scores_by_item(records: Sequence[dict]) -> dict[str, list[int | None]]:
    """item id -> its judgments' scores (None for unparsed), in sample order."""
    out: dict[str, list[int | None]] = {}
    for r in records:
        out.setdefault(r["item_id"], []).append(r["score"])
    return out
