"""Rates, paired tests and correlation intervals (selfreward_lite/evaluation/intervals.py)."""

import math
import random

import pytest

from selfreward_lite.evaluation import intervals as iv

from selfreward_lite.evaluation.stats import WeightedRankCorrelation, kendall_tau_b, spearman


# --- Wilson ----------------------------------------------------------------------------------

@pytest.mark.parametrize("k, n, low, high", [
    # Published 95 % Wilson intervals (e.g. Brown, Cai & DasGupta 2001; statsmodels proportion_confint).
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (1, 10, 0.0179, 0.4042),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_known_values(k, n, low, high):
    lo, hi = iv.wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_wilson_edges_and_errors():
    assert iv.wilson_interval(0, 0) == (0.0, 1.0)
    assert iv.wilson_interval(0, 7)[0] == 0.0 and iv.wilson_interval(7, 7)[1] == 1.0
    lo90, hi90 = iv.wilson_interval(5, 10, confidence=0.90)
    lo95, hi95 = iv.wilson_interval(5, 10)
    assert lo95 < lo90 < 0.5 < hi90 < hi95
    for bad in [(-1, 5), (6, 5), (1, -1)]:
        with pytest.raises(ValueError):
            iv.wilson_interval(*bad)
    with pytest.raises(TypeError):
        iv.wilson_interval(True, 5)
    with pytest.raises(TypeError):
        iv.wilson_interval(1.0, 5)


def test_wilson_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(0, 12), (3, 17), (40, 60), (199, 200)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert iv.wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_format_rate():
    assert iv.format_rate(25, 40) == "62.5% (n=40, 95% CI 47–76%)"
    assert iv.format_rate(3, 3) == "too few (n=3)"
    assert iv.format_rate(1, 9) == "too few (n=9)"
    assert iv.format_rate(0, 0) == "no data (n=0)"
    # Outward rounding: 0/10 -> 0–27.75 % shows as 0–28 %, 10/10 -> 72.25–100 % as 72–100 %.
    assert iv.format_rate(0, 10) == "0.0% (n=10, 95% CI 0–28%)"
    assert iv.format_rate(10, 10) == "100.0% (n=10, 95% CI 72–100%)"
    assert iv.format_rate(5, 10) == "50.0% (n=10, 95% CI 23–77%)"
    assert iv.format_rate(3, 5, min_n=5).startswith("60.0% (n=5, ")
    # The single-verdict case from the issue can no longer print "100.0 %".
    assert iv.format_rate(1, 1) == "too few (n=1)"


def test_rate_object():
    r = iv.rate(25, 40)
    assert str(r) == iv.format_rate(25, 40)
    assert r.value == 0.625 and r.enough
    d = r.to_dict()
    assert d["k"] == 25 and d["n"] == 40 and d["ci_low"] < 0.625 < d["ci_high"] and d["text"] == str(r)
    assert iv.rate(0, 0).value is None and not iv.rate(3, 4).enough


# --- paired comparisons ----------------------------------------------------------------------

@pytest.mark.parametrize("b, c, p", [
    (1, 9, 0.021484375),        # 2 * (1 + 10) / 1024
    (0, 5, 0.0625),             # 2 / 32
    (9, 1, 0.021484375),        # symmetric
    (5, 5, 1.0),
    (0, 0, 1.0),
    (0, 1, 1.0),
    (2, 10, 0.0385742188),      # 2 * (1 + 12 + 66) / 4096
])
def test_exact_mcnemar_known_values(b, c, p):
    assert iv.exact_mcnemar_p(b, c) == pytest.approx(p, abs=1e-9)


def test_exact_mcnemar_matches_scipy_and_large_counts():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(3, 11), (20, 31), (7, 7), (0, 25), (140, 101)]:
        assert iv.exact_mcnemar_p(b, c) == pytest.approx(stats.binomtest(b, b + c).pvalue, rel=1e-9)
    assert 0 < iv.exact_mcnemar_p(2000, 2300) < 1e-4   # big integers, no overflow


def test_paired_comparison_counts_and_text():
    before = [0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1]
    after = [1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1]
    c = iv.paired_comparison(before, after)
    assert (c.n, c.improved, c.worsened, c.both_pass, c.both_fail) == (12, 5, 1, 5, 1)
    assert c.p_value == pytest.approx(iv.exact_mcnemar_p(5, 1))
    assert (c.before.k, c.after.k) == (6, 10)
    assert str(c) == "improved 5, worsened 1 of 12 (exact McNemar p = 0.22)"
    assert str(iv.paired_comparison([1, 0], [1, 1])) == "too few (n=2)"
    assert c.to_dict()["before"]["k"] == 6
    with pytest.raises(ValueError):
        iv.paired_comparison([1, 0], [1])


def test_format_p():
    assert iv.format_p(0.0004) == "p < 0.001"
    assert iv.format_p(0.0213) == "p = 0.021"
    assert iv.format_p(0.5) == "p = 0.50"


# --- correlations ----------------------------------------------------------------------------

def _scores(n, seed):
    rnd = random.Random(seed)
    x = [rnd.randint(0, 5) for _ in range(n)]
    y = [min(5, max(0, v + rnd.choice([-2, -1, 0, 0, 1]))) for v in x]
    return x, y


@pytest.mark.parametrize("method, reference", [("spearman", spearman), ("kendall", kendall_tau_b)])
def test_point_estimate_matches_pure_python_stats(method, reference):
    for seed in range(5):
        x, y = _scores(37, seed)
        assert iv.correlation_interval(x, y, method).value == pytest.approx(reference(x, y), abs=1e-12)


@pytest.mark.parametrize("method, reference", [("spearman", spearman), ("kendall", kendall_tau_b)])
def test_weighted_resample_equals_materialised_resample(method, reference):
    """The bootstrap's weighted formula is the statistic of the resample itself (ties included)."""
    import numpy as np

    x, y = _scores(25, 7)
    stat = WeightedRankCorrelation(method, np.asarray(x, float), np.asarray(y, float))
    rnd = random.Random(3)
    for _ in range(20):
        idx = [rnd.randrange(25) for _ in range(25)]
        w = np.bincount(idx, minlength=25)[None, :]
        expected = reference([x[i] for i in idx], [y[i] for i in idx])
        got = float(stat(w)[0])
        if expected is None:
            assert math.isnan(got)
        else:
            assert got == pytest.approx(expected, abs=1e-12)


def test_correlation_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    x, y = _scores(60, 1)
    assert iv.correlation_interval(x, y, "spearman").value == pytest.approx(stats.spearmanr(x, y).statistic)
    assert iv.correlation_interval(x, y, "kendall").value == pytest.approx(stats.kendalltau(x, y).statistic)


def test_correlation_interval_properties():
    x, y = _scores(80, 2)
    c = iv.correlation_interval(x, y, "spearman")
    assert c.low < c.value < c.high and -1 <= c.low and c.high <= 1
    assert c == iv.correlation_interval(x, y, "spearman")             # fixed seed: same interval
    assert iv.correlation_interval(x, y, "spearman", seed=1) != c
    wider = iv.correlation_interval(x[:20], y[:20], "spearman")
    assert wider.high - wider.low > c.high - c.low                     # fewer items, wider interval
    assert c.resamples == iv.BOOTSTRAP_RESAMPLES
    assert str(c).startswith(f"Spearman ρ {c.value:.2f} (n=80, 95% CI ")
    k = iv.correlation_interval(x, y, "kendall")
    assert str(k).startswith("Kendall τ-b ") and k.low < k.value < k.high


def test_correlation_perfect_too_few_and_undefined():
    perfect = iv.correlation_interval(list(range(12)), list(range(12)), "kendall")
    assert perfect.value == pytest.approx(1.0) and perfect.low == pytest.approx(1.0)
    few = iv.correlation_interval([1, 2, 3], [1, 3, 2])
    assert few.low is None and str(few) == "Spearman ρ: too few (n=3)"
    const = iv.correlation_interval([3] * 15, list(range(15)))
    assert const.value is None and "undefined" in str(const)
    assert "no data" in str(iv.correlation_interval([], []))
    with pytest.raises(ValueError):
        iv.correlation_interval([1, 2], [1], "spearman")
    with pytest.raises(ValueError):
        iv.correlation_interval([1, 2], [1, 2], "pearson")


def test_correlation_interval_is_fast_enough_for_an_eval_set():
    import time

    x, y = _scores(541, 3)          # the size of the paper's EFT eval split
    t = time.perf_counter()
    iv.correlation_interval(x, y, "kendall")
    iv.correlation_interval(x, y, "spearman")
    assert time.perf_counter() - t < 20
