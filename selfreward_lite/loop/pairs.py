"""Preference pairs: for each prompt, the highest- vs the lowest-scoring candidate.

A candidate's score is the mean of its parsed judgments; a candidate with no parsed
judgment is unscored and never enters a pair. Prompts with fewer than two scored
candidates, or whose best and worst mean scores tie (or differ by no more than the
configured margin), or whose best and worst texts are identical, are dropped, and each
reason is counted.
"""

from __future__ import annotations

from collections import Counter

DROP_TOO_FEW = "fewer than two scored candidates"
DROP_TIE = "tie (best == worst score)"
DROP_MARGIN = "score gap within margin"
DROP_IDENTICAL = "best and worst responses identical"


def select_pairs(candidates: list[dict], min_margin: float = 0.0) -> tuple[list[dict], Counter]:
    """`candidates`: dicts with prompt_id, prompt, id, response, score (mean or None).

    Returns (pairs, drop counts). Among equally best candidates the shortest is chosen, and
    among equally worst the longest is rejected, which leans against length drift (the
    paper's responses grew every round).
    """
    by_prompt: dict[str, list[dict]] = {}
    for c in candidates:
        by_prompt.setdefault(c["prompt_id"], []).append(c)
    pairs, dropped = [], Counter()
    for prompt_id, group in by_prompt.items():
        scored = [c for c in group if c["score"] is not None]
        if len(scored) < 2:
            dropped[DROP_TOO_FEW] += 1
            continue
        best_score = max(c["score"] for c in scored)
        worst_score = min(c["score"] for c in scored)
        if best_score == worst_score:
            dropped[DROP_TIE] += 1
            continue
        if best_score - worst_score <= min_margin:
            dropped[DROP_MARGIN] += 1
            continue
        chosen = min((c for c in scored if c["score"] == best_score), key=lambda c: len(c["response"]))
        rejected = max((c for c in scored if c["score"] == worst_score), key=lambda c: len(c["response"]))
        if chosen["response"].strip() == rejected["response"].strip():
            # The same text judged twice with different scores is judge noise, not a preference.
            dropped[DROP_IDENTICAL] += 1
            continue
        pairs.append(
            {
                "id": f"{prompt_id}-pair",
                "prompt_id": prompt_id,
                "prompt": chosen["prompt"],
                "chosen": chosen["response"],
                "rejected": rejected["response"],
                "chosen_id": chosen["id"],
                "rejected_id": rejected["id"],
                "chosen_score": best_score,
                "rejected_score": worst_score,
            }
        )
    return pairs, dropped
