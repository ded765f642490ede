"""Agreement statistics for judge quality, in pure Python (no numpy/scipy dependency), and their
weighted form for the bootstrap (WeightedRankCorrelation, numpy imported inside).

Ties get average ranks (Spearman) and the tau-b correction (Kendall), as in scipy.stats.
A statistic that is undefined (fewer than two values, or a constant series) is None, never 0.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks starting at 1; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) != len(y):
        raise ValueError("pearson: sequences differ in length")
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson correlation of the average ranks."""
    return pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """(concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y)), n0 = n(n-1)/2."""
    if len(x) != len(y):
        raise ValueError("kendall_tau_b: sequences differ in length")
    concordant = discordant = ties_x = ties_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0:
            ties_x += 1
        if dy == 0:
            ties_y += 1
        if dx * dy > 0:
            concordant += 1
        elif dx * dy < 0:
            discordant += 1
    n0 = len(x) * (len(x) - 1) // 2
    denom = math.sqrt((n0 - ties_x) * (n0 - ties_y))
    return (concordant - discordant) / denom if denom else None


def pairwise_accuracy(groups: Sequence[Sequence[tuple[float, float | None]]]) -> dict:
    """Within each group (answers to one question), every pair of answers whose reference
    scores differ: is the model's score ordered the same way?

    `groups`: per question, (reference score, model score or None) per answer. A model tie
    counts as wrong (the judge failed to separate them), and so does a pair where an answer has
    no model score (unparsed judge output cannot rank anything).
    """
    pairs = correct = model_ties = unscored = 0
    for group in groups:
        for (ref_a, mod_a), (ref_b, mod_b) in combinations(group, 2):
            if ref_a == ref_b:
                continue
            pairs += 1
            if mod_a is None or mod_b is None:
                unscored += 1
            elif mod_a == mod_b:
                model_ties += 1
            elif (mod_a - mod_b) * (ref_a - ref_b) > 0:
                correct += 1
    return {
        "pairs": pairs,
        "correct": correct,
        "model_ties": model_ties,
        "unscored": unscored,
        "accuracy": correct / pairs if pairs else None,
    }


class WeightedRankCorrelation:
    """Spearman rho or Kendall tau-b of weighted samples, for the bootstrap in intervals.py: item i
    appears weights[b, i] times in resample b. A row of ones is the original sample. (numpy,
    imported when used.)

    Equal to the statistic computed on the materialised resample (the tests check this against
    the pure-Python statistics): ties get average ranks (rho) and the tau-b correction, as in
    scipy. Values are NaN where the statistic is undefined (a constant side).
    """

    def __init__(self, method: str, x, y):
        import numpy as np

        self.np, self.method = np, method
        if method == "kendall":
            sx = np.sign(x[:, None] - x[None, :])
            sy = np.sign(y[:, None] - y[None, :])
            # Copies of one item tie on both sides; two distinct items i, j form w_i * w_j pairs:
            # (concordant - discordant) = 1/2 w'(Sx*Sy)w; pairs untied in x = 1/2 w'|Sx|w.
            self.c, self.ax, self.ay = sx * sy, np.abs(sx), np.abs(sy)
        else:
            self.xr = self._rank_tables(x)
            self.yr = self._rank_tables(y)

    def _rank_tables(self, v):
        np = self.np
        uniq, inv = np.unique(v, return_inverse=True)
        onehot = np.zeros((len(v), len(uniq)))
        onehot[np.arange(len(v)), inv] = 1
        return inv, onehot

    def _ranks(self, w, tables):
        inv, onehot = tables
        counts = w @ onehot                                   # (B, distinct values)
        below = self.np.cumsum(counts, axis=1) - counts
        ranks = (below + (counts + 1) / 2)[:, inv]            # (B, n) average ranks per item
        return ranks, (counts > 0).sum(axis=1) > 1            # and: more than one distinct value

    def __call__(self, weights):
        np = self.np
        w = np.asarray(weights, dtype=np.float64)
        if self.method == "kendall":
            s = ((w @ self.c) * w).sum(axis=1)
            tx = ((w @ self.ax) * w).sum(axis=1)
            ty = ((w @ self.ay) * w).sum(axis=1)
            ok = (tx > 0) & (ty > 0)
            return np.where(ok, s / np.sqrt(np.where(ok, tx * ty, 1.0)), np.nan)
        rx, okx = self._ranks(w, self.xr)
        ry, oky = self._ranks(w, self.yr)
        total = w.sum(axis=1, keepdims=True)
        dx = rx - (w * rx).sum(axis=1, keepdims=True) / total
        dy = ry - (w * ry).sum(axis=1, keepdims=True) / total
        ok = okx & oky
        sxy = (w * dx * dy).sum(axis=1)
        den = np.sqrt((w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1))
        return np.where(ok, sxy / np.where(ok, den, 1.0), np.nan)
