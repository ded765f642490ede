from selfreward_lite.loop.pairs import DROP_IDENTICAL, DROP_MARGIN, DROP_TIE, DROP_TOO_FEW, select_pairs


def cand(pid, k, score, response=None):
    return {"prompt_id": pid, "prompt": f"prompt {pid}", "id": f"{pid}-c{k}", "score": score,
            "response": response if response is not None else f"answer {k} of {pid}"}


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


def test_equal_best_prefers_shorter_and_equal_worst_rejects_longer():
    cands = [cand("a", 0, 5.0, "long answer here"), cand("a", 1, 5.0, "short"),
             cand("a", 2, 1.0, "x"), cand("a", 3, 1.0, "a much longer bad answer")]
    (p,), _ = select_pairs(cands)
    assert p["chosen_id"] == "a-c1" and p["rejected_id"] == "a-c3"


def test_prompts_independent_and_counts():
    cands = [cand("a", 0, 1.0), cand("a", 1, 2.0), cand("b", 0, 2.0), cand("b", 1, 2.0), cand("c", 0, None)]
    pairs, dropped = select_pairs(cands)
    assert [p["prompt_id"] for p in pairs] == ["a"]
    assert dropped == {DROP_TIE: 1, DROP_TOO_FEW: 1}


def test_identical_texts_are_not_a_preference():
    pairs, dropped = select_pairs([cand("a", 0, 4.0, "Paris."), cand("a", 1, 2.0, "Paris. ")])
    assert pairs == [] and dropped[DROP_IDENTICAL] == 1
