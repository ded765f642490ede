"""The judge-quality statistics against values worked out by hand (and cross-checked with scipy's definitions)."""

import math

import pytest

from selfreward_lite.evaluation.stats import average_ranks, kendall_tau_b, pairwise_accuracy, pearson, spearman


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert average_ranks([3, 3, 3]) == [2.0, 2.0, 2.0]
    assert average_ranks([]) == []


def test_spearman_hand_computed():
    # No ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); ranks x 1..5, y (2,1,4,3,5): d^2 sum = 4 -> 1 - 24/120 = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # With ties: x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4). Pearson of the ranks:
    # mean 2.5; dx = (-1.5, 0, 0, 1.5), dy = (-1.5, -.5, .5, 1.5): sxy = 4.5, sxx = 4.5, syy = 5
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert spearman([5, 4, 3], [1, 2, 3]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # constant series: undefined, not 0
    assert spearman([1], [2]) is None


def test_kendall_tau_b_hand_computed():
    # x = (1,2,3,4), y = (1,3,2,4): 6 pairs, 5 concordant, 1 discordant, no ties -> 4/6
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # x = (1,2,2,3), y = (1,2,3,3): pairs (0,1)C (0,2)C (0,3)C (1,2) tie x (1,3)C (2,3) tie y
    # C = 4, D = 0, n0 = 6, ties_x = 1, ties_y = 1 -> 4 / sqrt(5 * 5) = 0.8
    assert kendall_tau_b([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    # a pair tied in both counts in both tie terms: x = (1,1,2), y = (0,0,1): C = 2, n0 = 3 -> 2/2
    assert kendall_tau_b([1, 1, 2], [0, 0, 1]) == pytest.approx(1.0)
    assert kendall_tau_b([2, 2], [1, 3]) is None


def test_pearson_basic():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        pearson([1, 2], [1])


def test_pairwise_accuracy_counts_ties_and_unscored_as_wrong():
    groups = [
        # reference 5, 3, 1; model 4.5, 4.5, 1: pairs (5,3) model tie, (5,1) right, (3,1) right
        [(5, 4.5), (3, 4.5), (1, 1.0)],
        # reference 2, 2, 4: only pairs with different references count: (2,4) twice.
        # model 3 vs 1 for (first 2, 4): wrong; second answer unscored
        [(2, 3.0), (2, None), (4, 1.0)],
    ]
    out = pairwise_accuracy(groups)
    assert out == {"pairs": 5, "correct": 2, "model_ties": 1, "unscored": 1, "accuracy": 2 / 5}
    assert pairwise_accuracy([[(3, 1.0), (3, 2.0)]])["accuracy"] is None  # no comparable pairs
