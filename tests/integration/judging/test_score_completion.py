"""A judgment that ends without its score is asked for it (judging/engine.complete_scores), on the
embedded model and its real tokenizer: the judge prompt and the judgment, then "\\nScore:", continued
by the model for a few tokens. Sampled: the number it writes; expected: the mean of its digit
distribution there. Judgments cut off by the budget or with a score out of range are left alone."""

import pytest

from selfreward_lite.config import preset_config
from selfreward_lite.judging import engine
from selfreward_lite.judging.rubric import load_rubric
from selfreward_lite.models.generation import Sample
from selfreward_lite.models.hf import load_stack

ITEM = {"id": "q0", "prompt": "How do I boil an egg?",
        "response": "Put the egg in boiling water for eight to ten minutes, then cool it in cold water."}
STOPPED = "Out of 5 points, the response earns 4."  # the bare model, greedy, then writes "4."


@pytest.mark.parametrize("scoring", ["sampled", "expected"])
def test_a_judgment_without_a_score_gets_one(embedded, scoring):
    cfg = preset_config("cpu", dtype="float32", judge_scoring=scoring)
    lm = load_stack(cfg, [])
    rubric = load_rubric(cfg.rubric)
    text = engine.judge_text(lm, rubric, ITEM)
    group = [Sample(STOPPED, True, 16), Sample("Relevant and helpful. Score: 9", True, 9),
             Sample("The response is relevant and", False, 6)]
    records = [engine.parse_judgments(ITEM, group)]
    assert [r["parse"] for r in records[0]] == ["no score", "out of range", "truncated"]
    judge_kw, reader = engine.sampling(cfg), engine.ScoreReader.for_tokenizer(lm.tokenizer)
    greedy = {**judge_kw, "temperature": 0, "prefix": None,
              **({"score_tokens": reader.token_ids} if scoring == "expected" else {})}
    engine.complete_scores(lm, [text], [group], records, reader if scoring == "expected" else None, seed=0,
                           batch_size=4, sampling=engine.completion_sampling(greedy))
    done, out_of_range, cut = records[0]
    assert done["completed"] and done["text"].startswith(STOPPED + "\nScore:")
    assert done["parse"] == "ok", done
    if scoring == "expected":  # a distribution over the digits, not the one digit written
        assert done["expected"] and isinstance(done["score"], float) and 3 < done["score"] < 5 and done["score"] != 4
    else:
        assert done["score"] == 4 and done["text"] == f"{STOPPED}\nScore: 4."
    assert "completed" not in out_of_range and out_of_range["score"] is None
    assert "completed" not in cut and cut["parse"] == "truncated"


def test_judge_items_completes_and_counts_it(embedded):
    """Through judge_items: the bare base model rarely writes the rubric's score line; every judgment
    that ended at EOS without one is completed, and the summary says how many parsed scores came so."""
    cfg = preset_config("cpu", dtype="float32", judge_samples=4, judge_max_new_tokens=64)
    lm = load_stack(cfg, [])
    items = [{"id": f"q{k}", "prompt": q, "response": r} for k, (q, r) in enumerate([
        (ITEM["prompt"], ITEM["response"]), ("Name a primary color.", "Red."), ("What is 2+2?", "4"), ("Say hi.", "Hi!")])]
    records = engine.judge_items(lm, cfg, load_rubric(cfg.rubric), items, seed=4)  # 6 of 16 end without a score
    completed = [r for r in records if r.get("completed")]
    assert completed, [r["parse"] for r in records]  # the test needs at least one judgment to complete
    for r in records:
        if r.get("completed"):  # ended at EOS without a score line, then asked for it
            assert r["finished"] and "\nScore:" in r["text"] and r["parse"] in ("ok", "out of range", "not an integer")
        else:
            assert r["parse"] != "no score"  # nothing that ended without a score is left uncompleted
    summary = engine.judgment_summary(records)
    assert summary["completed"] == sum(r["score"] is not None for r in completed)
