"""Self-instruction: few-shot prompts that make M_t write new tasks, and the filters.

Paper: 8-shot (6 seed + 2 generated), T 0.6, top-p 0.9; Self-Instruct style filtering.
We drop empty, too short, over-long (or cut off by the token budget) prompts, exact
duplicates and near duplicates (ROUGE-L F >= threshold vs seeds and already kept prompts).
"""

from __future__ import annotations

import random
import re
from collections import Counter

HEADER = (
    "Below are tasks and questions that people asked an AI assistant. Write one new task or "
    "question, different from all of them. Write only the task itself: no answer, no explanation.\n\n"
)
STOP = "\nTask"

DROP_EMPTY = "empty"
DROP_SHORT = "too short"
DROP_LONG = "too long or cut off"
DROP_DUPLICATE = "exact duplicate"
DROP_NEAR = "near duplicate (ROUGE-L)"

_WORD = re.compile(r"\w+")


def one_line(text: str) -> str:
    return " ".join(text.split())


def few_shot_prompt(seed_prompts: list[str], generated: list[str], shots: int, from_generated: int,
                    rng: random.Random) -> str:
    """An 8-shot style prompt; the model continues after the last "Task N:"."""
    k_gen = min(from_generated, len(generated))
    examples = rng.sample(seed_prompts, min(shots - k_gen, len(seed_prompts))) + rng.sample(generated, k_gen)
    rng.shuffle(examples)
    lines = [f"Task {i}: {one_line(e)}" for i, e in enumerate(examples, start=1)]
    return HEADER + "\n".join(lines) + f"\nTask {len(examples) + 1}:"


def extract_prompt(generated: str) -> tuple[str, bool]:
    """The new task (the generated text up to the first line break), and whether it ended
    there rather than running out of tokens mid-line."""
    text, newline, _ = generated.strip().partition("\n")
    return one_line(text), bool(newline)


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 between two token lists (longest common subsequence)."""
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


class PromptFilter:
    """Accepts or rejects candidate prompts against the seeds and everything kept so far."""

    def __init__(self, seeds: list[str], min_words: int, max_words: int, max_rouge: float):
        self.min_words, self.max_words, self.max_rouge = min_words, max_words, max_rouge
        self.seen: set[str] = set()
        self.pool: list[tuple[list[str], Counter]] = []
        for s in seeds:
            self._remember(s)
        self.dropped: Counter = Counter()

    def _remember(self, text: str) -> None:
        toks = tokens(text)
        self.seen.add(" ".join(toks))
        self.pool.append((toks, Counter(toks)))

    def reason_to_drop(self, text: str, finished: bool = True) -> str | None:
        toks = tokens(text)
        if not toks:
            return DROP_EMPTY
        if len(toks) < self.min_words:
            return DROP_SHORT
        if len(toks) > self.max_words or not finished:
            return DROP_LONG
        if " ".join(toks) in self.seen:
            return DROP_DUPLICATE
        counts = Counter(toks)
        for other, other_counts in self.pool:
            # LCS <= size of the multiset intersection: skip the DP when it cannot reach the threshold.
            bound = sum((counts & other_counts).values())
            if bound and 2 * bound / (len(toks) + len(other)) >= self.max_rouge:
                if rouge_l(toks, other) >= self.max_rouge:
                    return DROP_NEAR
        return None

    def offer(self, text: str, finished: bool = True) -> bool:
        """Keep `text` if it passes every filter; count the reason otherwise."""
        reason = self.reason_to_drop(text, finished)
        if reason:
            self.dropped[reason] += 1
            return False
        self._remember(text)
        return True
