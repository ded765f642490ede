"""The "DPO barely moved the model" rule, on made-up per-pair log-prob changes (no model)."""

import pytest

from selfreward_lite.loop.dpo_diagnostics import MIN_DELTA_PER_TOKEN, MIN_MARGIN, movement_figures, movement_warnings


def test_figures_from_per_pair_changes():
    # (Δ chosen, Δ rejected, chosen tokens, rejected tokens)
    f = movement_figures([(2.0, -3.0, 10, 10), (-1.0, 0.0, 10, 10)], beta=0.1)
    assert f["pairs"] == 2
    assert f["reward_accuracy"] == 0.5
    assert f["reward_margin"] == pytest.approx(0.1 * ((2 + 3) + (-1 - 0)) / 2)
    assert f["delta_logp_chosen"] == pytest.approx(0.5)
    assert f["delta_logp_rejected"] == pytest.approx(-1.5)
    assert f["delta_logp_per_token"] == pytest.approx((2 + 3 + 1 + 0) / 40)
    assert f["warnings"] == []


def test_a_round_that_moved_gives_no_warning():
    f = movement_figures([(-0.5, -8.0, 50, 50)] * 4, beta=0.1)  # both fell, rejected far more: what DPO does
    assert f["reward_accuracy"] == 1.0 and f["reward_margin"] > MIN_MARGIN
    assert f["warnings"] == []


def test_tiny_changes_warn_about_movement_and_margin():
    # lr 5e-6 for 20 steps: every sequence moved by ~0.01 nats over 300 tokens
    f = movement_figures([(0.012, 0.010, 300, 300), (0.008, 0.011, 300, 300)], beta=0.1)
    assert f["delta_logp_per_token"] < MIN_DELTA_PER_TOKEN
    assert len(f["warnings"]) == 2
    assert "barely moved" in f["warnings"][0] and "did not learn" in f["warnings"][1]


def test_moving_without_learning_the_preference_warns_once():
    # large, but chosen and rejected moved alike: accuracy at chance, margin ~0
    f = movement_figures([(-5.0, -5.1, 50, 50), (-5.1, -5.0, 50, 50)], beta=0.1)
    assert f["delta_logp_per_token"] > MIN_DELTA_PER_TOKEN
    assert f["reward_accuracy"] == 0.5 and abs(f["reward_margin"]) < MIN_MARGIN
    assert len(f["warnings"]) == 1 and "did not learn" in f["warnings"][0]


def test_no_pairs_measured_warns():
    f = movement_figures([], beta=0.1)
    assert f["reward_accuracy"] is None
    assert movement_warnings(f) == f["warnings"] and "no pair" in f["warnings"][0]
