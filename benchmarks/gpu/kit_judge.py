"""A deterministic stand-in judge for the GPU kit's round on a random-weight model.

    srlite init ... --set judge=python:benchmarks/gpu/kit_judge.py:score

A random-weight model cannot judge (its judgments never parse), so without this no
preference pair would form and DPO would have nothing to train on. This judge only has to
tell candidates apart, deterministically: it scores an answer by its length (up to 40 words)
and its share of distinct words, so two different random answers almost never tie. It says
nothing about quality; the kit measures time and memory, not learning.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def score(prompt: str, response: str) -> float | None:
    """A score in [0, 5]; None (unscored, never paired) for an answer with no word in it."""
    words = _WORD.findall(response.lower())
    if not words:
        return None
    length = min(len(words), 40) / 40  # longer is better, up to 40 words
    variety = len(set(words)) / len(words)  # fewer repeated words is better
    return round(2.5 * length + 2.5 * variety, 3)
