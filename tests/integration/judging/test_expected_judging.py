"""Expected-score judging on the embedded model and its real tokenizer: one judgment per answer, a
parsed one scored by a continuous value in [0, 5] read from the digit distribution at its "Score:"."""

from selfreward_lite.config import preset_config
from selfreward_lite.judging.engine import judge_items
from selfreward_lite.judging.expected import digit_tokens
from selfreward_lite.judging.rubric import load_rubric
from selfreward_lite.models.hf import load_stack

ITEMS = [{"id": f"i{k}", "prompt": q, "response": r} for k, (q, r) in enumerate([
    ("Name a primary color.", "Red."),
    ("How do I boil an egg?", "Put the egg in boiling water for eight to ten minutes, then cool it in cold water."),
])]


def test_expected_scores_are_continuous_and_one_per_answer(embedded):
    cfg = preset_config("cpu", dtype="float32", judge_scoring="expected", judge_max_new_tokens=64)
    lm = load_stack(cfg, [])
    assert all(ids for ids in digit_tokens(lm.tokenizer).values())  # SmolLM2 spells each digit as one token
    # a judge prompt whose continuation the model completes with a score right away
    items = [{**it, "response": it["response"] + "\n\nThe response is relevant. Score:"} for it in ITEMS]
    records = judge_items(lm, cfg, load_rubric(cfg.rubric), items, seed=0)
    assert [r["item_id"] for r in records] == ["i0", "i1"]  # one judgment per answer
    for r in records:
        assert r["score"] is None or (0 <= r["score"] <= 5 and isinstance(r["score"], float))
        if r["score"] is not None and r["expected"]:
            assert r["score"] != int(r["score"])  # a real distribution, not one digit with probability 1
