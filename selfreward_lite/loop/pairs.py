"""Preference pairs: for each prompt, the highest- vs the lowest-scoring candidate.

Which candidates are ranked. A candidate's score is the mean of its parsed judgments. A
candidate is *ranked* only if it finished (a response cut off at `response_max_new_tokens` is
excluded: its abrupt end is not a quality the model should learn to prefer or avoid) and has at
least `min_parsed` parsed judgments (`judge_min_parsed`); the others are counted by reason and
never enter a pair. A prompt with some truncated candidates is paired among its finished ones.

Which prompts are dropped, each reason counted: fewer than two finished candidates because
some were truncated ("truncated"); otherwise fewer than two ranked ones; best and worst mean scores equal (a tie) or no more than
`min_margin` apart; best and worst texts identical.

Which candidates are paired. The rejected answer is one of the lowest-scoring candidates; the
chosen one is one of the highest-scoring candidates. Among equal scores the choice is random,
seeded per prompt (run/seeds.py: round t's pair stage, prompt i), so no length (or position)
preference hides in the tie-break and a re-run makes the same pairs. With length control
(`length_margin`, Meta-Rewarding, Wu et al. 2024) the chosen answer is instead the *shortest*
(in characters; equal lengths: random) of the ranked candidates whose score is within
`length_margin` of the best score and still more than `min_margin` above the rejected one.
Scores may be any floats (means of integer scores, or a judge that gives floats); equality is
tested with a tolerance of 1e-9.
"""

from __future__ import annotations

import random
from collections import Counter

from ..run import seeds

DROP_TRUNCATED = "truncated (fewer than two finished candidates)"
DROP_TOO_FEW = "fewer than two scored candidates"
DROP_TIE = "tie (best == worst score)"
DROP_MARGIN = "score gap within margin"
DROP_IDENTICAL = "best and worst responses identical"

# Why a candidate is not ranked (pairs_stats.json "candidates").
EXCLUDED_TRUNCATED = "truncated"
EXCLUDED_UNSCORED = "too few parsed judgments"

EPS = 1e-9


def n_parsed(c: dict) -> int:
    """How many parsed judgments the candidate's score is the mean of."""
    return c["n_parsed"] if "n_parsed" in c else int(c.get("score") is not None)


def exclusion(c: dict, min_parsed: int = 1) -> str | None:
    """Why candidate `c` cannot be ranked, or None. A missing `finished` means finished."""
    if not c.get("finished", True):
        return EXCLUDED_TRUNCATED
    if c.get("score") is None or n_parsed(c) < min_parsed:
        return EXCLUDED_UNSCORED
    return None


def select_pairs(candidates: list[dict], min_margin: float = 0.0, *, seed: int = 0, min_parsed: int = 1,
                 length_margin: float | None = None) -> tuple[list[dict], Counter]:
    """`candidates`: dicts with prompt_id, prompt, id, response, score (mean or None), and optionally
    n_parsed (parsed judgments behind the score), finished, tokens.

    Returns (pairs, prompts dropped by reason). `seed` seeds the tie-breaks (prompt i draws from
    seeds.batch(seed, i), i in order of first appearance).
    """
    by_prompt: dict[str, list[dict]] = {}
    for c in candidates:
        by_prompt.setdefault(c["prompt_id"], []).append(c)
    pairs, dropped = [], Counter()
    for i, (prompt_id, group) in enumerate(by_prompt.items()):
        rng = random.Random(seeds.batch(seed, i))
        finished = [c for c in group if exclusion(c, min_parsed) != EXCLUDED_TRUNCATED]
        ranked = sorted((c for c in group if exclusion(c, min_parsed) is None), key=lambda c: c["id"])
        if len(ranked) < 2:
            # "truncated" when the cut-off answers are why fewer than two are left to compare.
            dropped[DROP_TRUNCATED if len(finished) < min(2, len(group)) else DROP_TOO_FEW] += 1
            continue
        best = max(c["score"] for c in ranked)
        worst = min(c["score"] for c in ranked)
        if best - worst <= EPS:
            dropped[DROP_TIE] += 1
            continue
        if best - worst <= min_margin + EPS:
            dropped[DROP_MARGIN] += 1
            continue
        if length_margin is None:
            pool = [c for c in ranked if best - c["score"] <= EPS]
        else:
            pool = [c for c in ranked if best - c["score"] <= length_margin + EPS and c["score"] - worst > min_margin + EPS]
            shortest = min(len(c["response"]) for c in pool)
            pool = [c for c in pool if len(c["response"]) == shortest]
        chosen = rng.choice(pool)
        # The same text judged twice with different scores is judge noise, not a preference.
        worst_pool = [c for c in ranked if c["score"] - worst <= EPS]
        rejectable = [c for c in worst_pool if c["response"].strip() != chosen["response"].strip()]
        if not rejectable:
            dropped[DROP_IDENTICAL] += 1
            continue
        rejected = rng.choice(rejectable)
        pair = {
            "id": f"{prompt_id}-pair",
            "prompt_id": prompt_id,
            "prompt": chosen["prompt"],
            "chosen": chosen["response"],
            "rejected": rejected["response"],
            "chosen_id": chosen["id"],
            "rejected_id": rejected["id"],
            "chosen_score": chosen["score"],
            "rejected_score": rejected["score"],
            "chosen_parsed": n_parsed(chosen),
            "rejected_parsed": n_parsed(rejected),
        }
        if "tokens" in chosen and "tokens" in rejected:
            pair.update(chosen_tokens=chosen["tokens"], rejected_tokens=rejected["tokens"])
        pairs.append(pair)
    return pairs, dropped


def candidate_counts(candidates: list[dict], min_parsed: int = 1) -> dict:
    """How many candidates there were, how many were ranked, and why the others were not."""
    reasons = Counter(exclusion(c, min_parsed) for c in candidates)
    ranked = reasons.pop(None, 0)
    return {"total": len(candidates), "ranked": ranked, "excluded": dict(reasons)}


def length_stats(pairs: list[dict]) -> dict:
    """Mean length of chosen and rejected answers and the mean chosen − rejected difference, in
    characters and (when the pairs carry them) tokens; None without pairs. A positive difference
    means DPO is taught to prefer longer answers."""
    def mean(values):
        values = list(values)
        return sum(values) / len(values) if values else None

    with_tokens = [p for p in pairs if "chosen_tokens" in p]
    return {
        "chosen_mean_chars": mean(len(p["chosen"]) for p in pairs),
        "rejected_mean_chars": mean(len(p["rejected"]) for p in pairs),
        "chosen_minus_rejected_chars": mean(len(p["chosen"]) - len(p["rejected"]) for p in pairs),
        "chosen_minus_rejected_tokens": (mean(p["chosen_tokens"] - p["rejected_tokens"] for p in with_tokens)
                                         if pairs and len(with_tokens) == len(pairs) else None),
    }
