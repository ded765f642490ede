"""LLM-as-a-Judge scoring engine: K sampled judgments per (prompt, response), batched.

One implementation, used by the round's judging stage (stages.judge_candidates), by
`srlite judge` and by the judge-quality evaluation. A judgment without a valid final
`Score: N` keeps score None with the parse status saying why; it never becomes a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .rubric import build_judge_prompt, parse_score


def judge_text(lm, rubric: str, item: dict) -> str:
    """The rendered judge prompt for one item ({"prompt", "response"})."""
    from ..models.hf import render_chat

    return render_chat(lm.tokenizer, [{"role": "user", "content": build_judge_prompt(item["prompt"], item["response"], rubric)}])


def parse_judgments(item: dict, group) -> list[dict]:
    """One record per sampled judgment of `item`:
    {"item_id", "sample", "text", "score" (int or None), "parse" (status)}."""
    records = []
    for k, s in enumerate(group):
        parsed = parse_score(s.text)
        records.append({"item_id": item["id"], "sample": k, "text": s.text, "score": parsed.score, "parse": parsed.status})
    return records


def sampling(cfg) -> dict:
    """The judge's sampling settings, as model.generate takes them."""
    return {"temperature": cfg.judge_temperature, "top_p": cfg.judge_top_p, "max_new_tokens": cfg.judge_max_new_tokens}


def judge_items(lm, cfg, rubric: str, items: Sequence[dict], *, seed: int,
                on_batch: Callable[[int], None] | None = None) -> list[dict]:
    """Judge each item ({"id", "prompt", "response"}) `cfg.judge_samples` times with `rubric`.

    Returns the records of `parse_judgments`, in item order then sample order. All samples of
    an item share one prefill (model.generate with n = judge_samples). (The round's judging
    stage uses the same pieces, batch by batch, so that it can resume; see stages.py.)
    """
    from ..models.hf import generate

    texts = [judge_text(lm, rubric, it) for it in items]
    samples = generate(lm, texts, cfg.judge_samples, batch_size=cfg.gen_batch_size, seed=seed, on_batch=on_batch,
                       **sampling(cfg))
    return [r for it, group in zip(items, samples) for r in parse_judgments(it, group)]


def scores_by_item(records: Sequence[dict]) -> dict[str, list[int | None]]:
    """item id -> its judgments' scores (None for unparsed), in sample order."""
    out: dict[str, list[int | None]] = {}
    for r in records:
        out.setdefault(r["item_id"], []).append(r["score"])
    return out
