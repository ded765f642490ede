"""Honest statistics for every figure srlite shows: n, a 95 % interval, and "too few" below MIN_N.

Every rate on the terminal, in report.md and in the plots goes through `rate` / `format_rate`,
and every correlation through `correlation_interval` / `format_correlation`, so no display can
print "win rate 100.0 %" from a single verdict.

- Proportions: Wilson score interval (Wilson 1927). Unlike the normal ("Wald") interval it
  never leaves [0, 1], is not degenerate at 0/n or n/n, and keeps close to its nominal coverage
  for small n (Brown, Cai & DasGupta 2001), which is where our figures live (tens of prompts).
- Paired round-vs-round comparisons on the same prompts: exact McNemar test, i.e. the two-sided
  exact binomial sign test on the discordant prompts (improved vs worsened); prompts that both
  models pass or both fail carry no information about which is better.
- Correlations (Spearman rho, Kendall tau-b): percentile bootstrap over items with a fixed seed.
  See `correlation_interval` for why not Fisher's z.

Pure Python except the bootstrap, which imports numpy (already installed with transformers and
datasets) inside the function. Written here rather than taken from scipy.stats (binomtest,
bootstrap) or statsmodels because neither is in the base install (scipy arrives only with the
`ifeval` extra, through scikit-learn), and every display needs these figures; the tests check
them against scipy where it is installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

from .stats import WeightedRankCorrelation

# Below this many observations a rate or a correlation is shown as "too few (n=…)": a Wilson
# interval for n = 9 spans about 60 points, so a percentage would suggest knowledge we lack.
MIN_N = 10
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
# The Kendall bootstrap holds three n x n matrices; above this many items it would need
# hundreds of MB, so larger sets are refused rather than silently subsampled.
MAX_BOOTSTRAP_ITEMS = 4000


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _check_counts(k: int, n: int) -> None:
    if isinstance(k, bool) or isinstance(n, bool) or not isinstance(k, int) or not isinstance(n, int):
        raise TypeError(f"counts must be integers, got k={k!r}, n={n!r}")
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


# --- proportions ---------------------------------------------------------------------------

def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for k successes out of n; (0.0, 1.0) when n == 0.

    Known values (95 %): 0/10 -> (0, 0.2775), 5/10 -> (0.2366, 0.7634), 10/10 -> (0.7225, 1).
    """
    _check_counts(k, n)
    return _wilson(k, n, confidence)


def _wilson(k: float, n: int, confidence: float) -> tuple[float, float]:
    # k may be a half-integer here (win_rate: a tie counts as half a win); the formula only needs p.
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = k / n
    z2n = z * z / n
    center = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


@dataclass(frozen=True)
class Rate:
    """k of n, with its Wilson interval. `str(rate)` is the one display form."""

    k: int | float     # a whole count; a half-integer only for win_rate (ties count half)
    n: int
    low: float
    high: float
    confidence: float = CONFIDENCE
    min_n: int = MIN_N

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def enough(self) -> bool:
        """Whether n reaches the minimum for showing a percentage."""
        return self.n >= self.min_n

    def __str__(self) -> str:
        return _format_proportion(self.k, self.n, self.low, self.high, self.min_n, self.confidence)

    def to_dict(self) -> dict:
        return {"k": self.k, "n": self.n, "rate": self.value, "ci_low": self.low, "ci_high": self.high,
                "confidence": self.confidence, "min_n": self.min_n, "enough": self.enough, "text": str(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Rate":
        """Back from `to_dict` (a JSON artifact); the interval is taken as stored."""
        return cls(d["k"], d["n"], d["ci_low"], d["ci_high"], d.get("confidence", CONFIDENCE), d.get("min_n", MIN_N))


def rate(k: int, n: int, *, confidence: float = CONFIDENCE, min_n: int = MIN_N) -> Rate:
    low, high = wilson_interval(k, n, confidence)
    return Rate(k, n, low, high, confidence, min_n)


def win_rate(wins: int, losses: int, ties: int, *, confidence: float = CONFIDENCE, min_n: int = MIN_N) -> Rate:
    """(wins + ties / 2) / (wins + losses + ties) with the Wilson interval at that proportion.

    A tie counts as half a win (AlpacaEval's convention), so k may be a half-integer; the Wilson
    formula needs only the proportion and n. n counts verdicts: when each prompt is judged in both
    orders, its two verdicts are not independent, so read the interval together with the sign test
    over prompts (`exact_mcnemar_p(new_better, old_better)`), which counts each prompt once.
    """
    for v in (wins, losses, ties):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"verdict counts must be non-negative integers, got {wins!r}, {losses!r}, {ties!r}")
    n = wins + losses + ties
    k = wins + ties / 2 if ties % 2 else wins + ties // 2
    low, high = _wilson(k, n, confidence)
    return Rate(k, n, low, high, confidence, min_n)


def _pct_floor(x: float) -> int:
    # Outward rounding: the printed interval always contains the computed one. The epsilon keeps
    # 0.28 * 100 = 28.000000000000004 from rounding up to 29.
    return math.floor(x * 100 + 1e-9)


def _pct_ceil(x: float) -> int:
    return math.ceil(x * 100 - 1e-9)


def format_rate(k: int, n: int, *, min_n: int = MIN_N, confidence: float = CONFIDENCE) -> str:
    """"62.5% (n=40, 95% CI 47–76%)"; "too few (n=3)" below `min_n`; "no data (n=0)".

    The interval bounds are rounded outwards to whole percent, so the display never looks
    tighter than the computed interval.
    """
    _check_counts(k, n)
    return _format_proportion(k, n, *_wilson(k, n, confidence), min_n, confidence)


def _format_proportion(k: float, n: int, low: float, high: float, min_n: int, confidence: float) -> str:
    # The one display form of a proportion (format_rate and str(Rate) both come here).
    if n == 0:
        return "no data (n=0)"
    if n < min_n:
        return f"too few (n={n})"
    return (f"{100 * k / n:.1f}% (n={n}, {round(confidence * 100)}% CI "
            f"{_pct_floor(low)}–{_pct_ceil(high)}%)")


# --- paired comparisons --------------------------------------------------------------------

def exact_mcnemar_p(improved: int, worsened: int) -> float:
    """Two-sided exact McNemar p-value = exact binomial sign test on the discordant pairs.

    Under H0 (both models equally good) each discordant item is improved or worsened with
    probability 1/2: p = min(1, 2 * P[X <= min(b, c)]), X ~ Binomial(b + c, 1/2), computed from
    exact integers (Python's int / int division rounds correctly, so no underflow or overflow).
    1.0 when there is no discordant pair. Known values: (1, 9) -> 0.021484375, (0, 5) -> 0.0625.
    """
    for v in (improved, worsened):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"counts must be non-negative integers, got {improved!r}, {worsened!r}")
    m = improved + worsened
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(improved, worsened) + 1))
    return min(1.0, (2 * tail) / (1 << m))


@dataclass(frozen=True)
class PairedComparison:
    """The same items scored pass/fail by two models (before = earlier round, after = later)."""

    n: int                 # items in both
    improved: int          # failed before, pass after
    worsened: int          # passed before, fail after
    both_pass: int
    both_fail: int
    p_value: float         # exact McNemar, two-sided
    before: Rate
    after: Rate
    min_n: int = MIN_N

    @property
    def enough(self) -> bool:
        return self.n >= self.min_n

    def __str__(self) -> str:
        return format_paired(self)

    def to_dict(self) -> dict:
        return {"n": self.n, "improved": self.improved, "worsened": self.worsened,
                "both_pass": self.both_pass, "both_fail": self.both_fail, "p_value": self.p_value,
                "test": "exact McNemar (two-sided sign test on discordant items)",
                "before": self.before.to_dict(), "after": self.after.to_dict(),
                "min_n": self.min_n, "enough": self.enough, "text": str(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "PairedComparison":
        """Back from `to_dict` (a JSON artifact)."""
        return cls(n=d["n"], improved=d["improved"], worsened=d["worsened"], both_pass=d["both_pass"],
                   both_fail=d["both_fail"], p_value=d["p_value"], before=Rate.from_dict(d["before"]),
                   after=Rate.from_dict(d["after"]), min_n=d.get("min_n", MIN_N))


def paired_comparison(before: Sequence[bool], after: Sequence[bool], *, min_n: int = MIN_N) -> PairedComparison:
    """McNemar table and exact p for two aligned pass/fail sequences (same items, same order)."""
    if len(before) != len(after):
        raise ValueError(f"paired comparison needs the same items: {len(before)} vs {len(after)}")
    b = c = both_pass = both_fail = 0
    for x, y in zip(before, after):
        x, y = bool(x), bool(y)
        if x and y:
            both_pass += 1
        elif not x and not y:
            both_fail += 1
        elif y:
            b += 1
        else:
            c += 1
    n = len(before)
    return PairedComparison(n=n, improved=b, worsened=c, both_pass=both_pass, both_fail=both_fail,
                            p_value=exact_mcnemar_p(b, c),
                            before=rate(both_pass + c, n, min_n=min_n),
                            after=rate(both_pass + b, n, min_n=min_n), min_n=min_n)


def format_p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def format_paired(c: PairedComparison) -> str:
    """"improved 9, worsened 2 of 60 (exact McNemar p = 0.065)"; "too few (n=4)"."""
    if c.n == 0:
        return "no data (n=0)"
    if c.n < c.min_n:
        return f"too few (n={c.n})"
    return f"improved {c.improved}, worsened {c.worsened} of {c.n} (exact McNemar {format_p(c.p_value)})"


# --- correlations --------------------------------------------------------------------------

METHODS = ("spearman", "kendall")
_SYMBOL = {"spearman": "Spearman ρ", "kendall": "Kendall τ-b"}


@dataclass(frozen=True)
class Correlation:
    method: str                 # "spearman" or "kendall" (tau-b)
    n: int
    value: float | None         # None: undefined (a constant series) or n < 2
    low: float | None
    high: float | None
    confidence: float = CONFIDENCE
    resamples: int = 0          # bootstrap resamples used (undefined resamples are dropped)
    seed: int = BOOTSTRAP_SEED
    min_n: int = MIN_N

    @property
    def enough(self) -> bool:
        return self.n >= self.min_n

    def __str__(self) -> str:
        return format_correlation(self)

    def to_dict(self) -> dict:
        return {"method": self.method, "n": self.n, "value": self.value, "ci_low": self.low,
                "ci_high": self.high, "confidence": self.confidence, "interval": "percentile bootstrap over items",
                "resamples": self.resamples, "seed": self.seed, "min_n": self.min_n, "enough": self.enough,
                "text": str(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Correlation":
        """Back from `to_dict` (a JSON artifact); the interval is taken as stored."""
        return cls(d["method"], d["n"], d["value"], d["ci_low"], d["ci_high"], d.get("confidence", CONFIDENCE),
                   d.get("resamples", 0), d.get("seed", BOOTSTRAP_SEED), d.get("min_n", MIN_N))


def format_correlation(c: Correlation, *, label: bool = True) -> str:
    """"Spearman ρ 0.42 (n=40, 95% CI 0.12–0.65)"; "too few (n=5)"; "undefined (n=40, ...)".

    label=False leaves out the name (for a table column that carries it): "0.42 (n=40, ...)".
    """
    name = _SYMBOL.get(c.method, c.method) if label else ""
    lead = f"{name}: " if name else ""
    if c.n == 0:
        return f"{lead}no data (n=0)"
    if c.n < c.min_n:
        return f"{lead}too few (n={c.n})"
    if c.value is None:
        return f"{lead}undefined (n={c.n}; one of the two score lists is constant)"
    value = f"{name} {c.value:.2f}" if name else f"{c.value:.2f}"
    if c.low is None or c.high is None:
        return f"{value} (n={c.n}, no interval: too few distinct resamples)"
    return (f"{value} (n={c.n}, {round(c.confidence * 100)}% CI "
            f"{math.floor(c.low * 100 + 1e-9) / 100:.2f}–{math.ceil(c.high * 100 - 1e-9) / 100:.2f})")


def correlation_interval(x: Sequence[float], y: Sequence[float], method: str = "spearman", *,
                         confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                         seed: int = BOOTSTRAP_SEED, min_n: int = MIN_N) -> Correlation:
    """Spearman rho or Kendall tau-b of paired scores, with a percentile bootstrap interval.

    Why a bootstrap over items, not Fisher's z: our scores are 0–5 integers from a judge and from
    human rankings, so most pairs are tied. The Fisher-z standard errors for rank correlations
    (Bonett & Wright 2000 for rho, Fieller et al. 1957 for tau) are derived for continuous data
    near bivariate normality and are not calibrated for heavy ties or small n. Resampling items
    (x_i, y_i) with replacement makes no distributional assumption, keeps each item's pair
    together, and handles ties exactly as the point estimate does. The seed is fixed, so the
    same scores always give the same interval. Resamples in which the statistic is undefined
    (a constant side) are dropped and the count used is reported in `resamples`.

    Below `min_n` items no interval is computed (the display says "too few").
    """
    import numpy as np

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if len(x) != len(y):
        raise ValueError(f"correlation needs paired scores: {len(x)} vs {len(y)}")
    n = len(x)
    if n > MAX_BOOTSTRAP_ITEMS:
        raise ValueError(f"correlation_interval: {n} items is more than {MAX_BOOTSTRAP_ITEMS} "
                         "(the bootstrap holds n x n matrices)")
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if n < 2:
        return Correlation(method, n, None, None, None, confidence, 0, seed, min_n)
    stat = WeightedRankCorrelation(method, xa, ya)
    value = float(stat(np.ones((1, n)))[0])
    value = None if math.isnan(value) else max(-1.0, min(1.0, value))
    if n < min_n or value is None:
        return Correlation(method, n, value, None, None, confidence, 0, seed, min_n)
    rng = np.random.default_rng(seed)
    boot = []
    for start in range(0, resamples, 256):               # (256, n) weights at a time
        b = min(256, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        weights = np.zeros((b, n))
        np.add.at(weights, (np.repeat(np.arange(b), n), idx.ravel()), 1)
        boot.append(stat(weights))
    boot = np.concatenate(boot)
    boot = boot[~np.isnan(boot)]
    if len(boot) < 0.5 * resamples:
        return Correlation(method, n, value, None, None, confidence, int(len(boot)), seed, min_n)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return Correlation(method, n, value, float(low), float(high), confidence, int(len(boot)), seed, min_n)
