from collections import Counter

import pytest

from selfreward_lite.loop.pairs import (
    DROP_IDENTICAL, DROP_MARGIN, DROP_TIE, DROP_TOO_FEW, DROP_TRUNCATED, EXCLUDED_TRUNCATED, EXCLUDED_UNSCORED,
    candidate_counts, length_stats, select_pairs,
)


def cand(pid, k, score, response=None, **extra):
    return {"prompt_id": pid, "prompt": f"prompt {pid}", "id": f"{pid}-c{k}", "score": score,
            "response": response if response is not None else f"answer {k} of {pid}", **extra}


def test_best_vs_worst():
    pairs, dropped = select_pairs([cand("a", 0, 2.0), cand("a", 1, 4.5), cand("a", 2, 3.0), cand("a", 3, 1.0)])
    assert len(pairs) == 1 and not dropped
    p = pairs[0]
    assert (p["chosen_id"], p["rejected_id"]) == ("a-c1", "a-c3")
    assert (p["chosen_score"], p["rejected_score"]) == (4.5, 1.0)
    assert p["chosen"] != p["rejected"]


def test_ties_dropped():
    pairs, dropped = select_pairs([cand("a", 0, 3.0), cand("a", 1, 3.0), cand("a", 2, 3.0)])
    assert pairs == [] and dropped[DROP_TIE] == 1


def test_unparsed_candidates_excluded_and_counted():
    # Only one scored candidate: the unparsed ones must not become "rejected".
    pairs, dropped = select_pairs([cand("a", 0, 4.0), cand("a", 1, None), cand("a", 2, None)])
    assert pairs == [] and dropped[DROP_TOO_FEW] == 1
    pairs, _ = select_pairs([cand("b", 0, 4.0), cand("b", 1, None), cand("b", 2, 2.0)])
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [("b-c0", "b-c2")]


def test_single_candidate_dropped():
    pairs, dropped = select_pairs([cand("a", 0, 5.0)])
    assert pairs == [] and dropped[DROP_TOO_FEW] == 1


def test_margin():
    cands = [cand("a", 0, 3.0), cand("a", 1, 3.5)]
    assert len(select_pairs(cands, 0.0)[0]) == 1
    pairs, dropped = select_pairs(cands, 0.5)
    assert pairs == [] and dropped[DROP_MARGIN] == 1


def test_ties_among_the_best_and_the_worst_are_broken_at_random_not_by_length():
    """Before: the shortest of the equal best was always chosen and the longest of the equal worst always
    rejected, a hidden length preference. Now each is a seeded random draw: reproducible, length-blind."""
    cands = [cand("a", 0, 5.0, "long answer here, really quite long"), cand("a", 1, 5.0, "short"),
             cand("a", 2, 1.0, "x"), cand("a", 3, 1.0, "a much longer bad answer")]
    picks = Counter()
    for seed in range(200):
        (p,), _ = select_pairs(cands, seed=seed)
        picks[(p["chosen_id"], p["rejected_id"])] += 1
        assert select_pairs(cands, seed=seed)[0] == [p]  # the same seed makes the same pair
        assert select_pairs(list(reversed(cands)), seed=seed)[0][0]["chosen_id"] == p["chosen_id"]  # file order is irrelevant
    assert set(picks) == {(c, r) for c in ("a-c0", "a-c1") for r in ("a-c2", "a-c3")}
    assert all(n > 25 for n in picks.values()), picks  # about 50 each


def test_tie_breaks_of_prompts_are_independent():
    """Prompt i draws from its own seed: adding or scoring another prompt does not change its pair."""
    a = [cand("a", 0, 4.0), cand("a", 1, 4.0), cand("a", 2, 1.0)]
    b = [cand("b", 0, 3.0), cand("b", 1, 3.0), cand("b", 2, 2.0), cand("b", 3, 2.0)]
    for seed in range(20):
        alone = select_pairs(a, seed=seed)[0]
        assert select_pairs(a + b, seed=seed)[0][:1] == alone


def test_float_scores_that_are_equal_up_to_rounding_tie():
    """Scores may be floats (a judge giving 0.1 steps): 0.1 + 0.2 and 0.3 are the same score."""
    pairs, dropped = select_pairs([cand("a", 0, 0.1 + 0.2), cand("a", 1, 0.3)])
    assert pairs == [] and dropped == {DROP_TIE: 1}
    (p,), _ = select_pairs([cand("a", 0, 0.1 + 0.2), cand("a", 1, 0.3), cand("a", 2, 0.05)], seed=1)
    assert p["chosen_id"] in ("a-c0", "a-c1") and p["rejected_id"] == "a-c2"
    pairs, dropped = select_pairs([cand("a", 0, 0.7), cand("a", 1, 0.1 + 0.1)], min_margin=0.5)
    assert pairs == [] and dropped == {DROP_MARGIN: 1}  # a gap of 0.5 up to rounding is within a margin of 0.5


# --- truncation ---------------------------------------------------------------------------------

def test_truncated_candidates_never_enter_a_pair():
    """Before: a response cut off at the token budget could be chosen or rejected like any other."""
    cands = [cand("a", 0, 5.0, finished=False), cand("a", 1, 4.0), cand("a", 2, 2.0), cand("a", 3, 0.0, finished=False)]
    for seed in range(10):
        (p,), dropped = select_pairs(cands, seed=seed)
        assert (p["chosen_id"], p["rejected_id"]) == ("a-c1", "a-c2") and not dropped  # paired among the finished


def test_prompt_with_fewer_than_two_finished_candidates_is_dropped_as_truncated():
    cands = [cand("a", 0, 5.0, finished=False), cand("a", 1, 1.0), cand("a", 2, 3.0, finished=False),
             cand("b", 0, 4.0), cand("b", 1, None), cand("b", 2, 2.0, finished=False)]
    pairs, dropped = select_pairs(cands)
    assert pairs == [] and dropped == {DROP_TRUNCATED: 1, DROP_TOO_FEW: 1}
    assert candidate_counts(cands) == {"total": 6, "ranked": 2, "excluded": {EXCLUDED_TRUNCATED: 3, EXCLUDED_UNSCORED: 1}}


# --- judge_min_parsed -------------------------------------------------------------------------

def test_min_parsed_judgments_to_be_ranked():
    cands = [cand("a", 0, 5.0, n_parsed=1), cand("a", 1, 3.0, n_parsed=2), cand("a", 2, 1.0, n_parsed=2)]
    (p,), _ = select_pairs(cands, min_parsed=1)
    assert (p["chosen_id"], p["chosen_parsed"], p["rejected_parsed"]) == ("a-c0", 1, 2)
    (p,), _ = select_pairs(cands, min_parsed=2)
    assert (p["chosen_id"], p["rejected_id"], p["chosen_parsed"]) == ("a-c1", "a-c2", 2)
    assert candidate_counts(cands, 2) == {"total": 3, "ranked": 2, "excluded": {EXCLUDED_UNSCORED: 1}}
    pairs, dropped = select_pairs(cands, min_parsed=3)
    assert pairs == [] and dropped == {DROP_TOO_FEW: 1}


# --- length control (Meta-Rewarding) and the length record ---------------------------------------

def test_length_control_chooses_the_shortest_within_the_margin_of_the_best():
    cands = [cand("a", 0, 5.0, "the best answer, long and thorough"), cand("a", 1, 4.5, "ok, short"),
             cand("a", 2, 3.0, "tiny"), cand("a", 3, 1.0, "bad answer")]
    assert select_pairs(cands, seed=0)[0][0]["chosen_id"] == "a-c0"  # off: the best
    assert select_pairs(cands, length_margin=0.0)[0][0]["chosen_id"] == "a-c0"  # only the best is within 0
    (p,), _ = select_pairs(cands, length_margin=0.5)
    assert (p["chosen_id"], p["chosen_score"], p["rejected_id"]) == ("a-c1", 4.5, "a-c3")
    assert select_pairs(cands, length_margin=2.0)[0][0]["chosen_id"] == "a-c2"
    # However wide the margin, the chosen answer still scores more than pair_min_margin above the rejected one.
    assert select_pairs(cands, length_margin=10.0)[0][0]["chosen_id"] == "a-c2"
    assert select_pairs(cands, 2.5, length_margin=10.0)[0][0]["chosen_id"] == "a-c1"


def test_length_control_margin_zero_prefers_the_shortest_of_equal_best():
    cands = [cand("a", 0, 5.0, "long answer here"), cand("a", 1, 5.0, "short"), cand("a", 2, 1.0, "bad")]
    for seed in range(10):
        assert select_pairs(cands, seed=seed, length_margin=0.0)[0][0]["chosen_id"] == "a-c1"


def test_length_stats():
    pairs = [{"chosen": "x" * 10, "rejected": "x" * 4, "chosen_tokens": 5, "rejected_tokens": 2},
             {"chosen": "x" * 2, "rejected": "x" * 6, "chosen_tokens": 1, "rejected_tokens": 3}]
    assert length_stats(pairs) == {"chosen_mean_chars": 6.0, "rejected_mean_chars": 5.0,
                                   "chosen_minus_rejected_chars": 1.0, "chosen_minus_rejected_tokens": 0.5}
    assert length_stats([])["chosen_minus_rejected_chars"] is None
    assert length_stats([{"chosen": "ab", "rejected": "a"}])["chosen_minus_rejected_tokens"] is None


def test_pairs_carry_tokens_when_candidates_have_them():
    (p,), _ = select_pairs([cand("a", 0, 4.0, tokens=12), cand("a", 1, 1.0, tokens=30)])
    assert (p["chosen_tokens"], p["rejected_tokens"]) == (12, 30)


def test_prompts_independent_and_counts():
    cands = [cand("a", 0, 1.0), cand("a", 1, 2.0), cand("b", 0, 2.0), cand("b", 1, 2.0), cand("c", 0, None)]
    pairs, dropped = select_pairs(cands)
    assert [p["prompt_id"] for p in pairs] == ["a"]
    assert dropped == {DROP_TIE: 1, DROP_TOO_FEW: 1}


def test_identical_texts_are_not_a_preference():
    pairs, dropped = select_pairs([cand("a", 0, 4.0, "Paris."), cand("a", 1, 2.0, "Paris. ")])
    assert pairs == [] and dropped[DROP_IDENTICAL] == 1
    # Among equal worst, one that differs from the chosen text is rejected rather than dropping the prompt.
    for seed in range(10):
        (p,), _ = select_pairs([cand("a", 0, 4.0, "Paris."), cand("a", 1, 2.0, "Paris."), cand("a", 2, 2.0, "Rome.")], seed=seed)
        assert p["rejected_id"] == "a-c2"
