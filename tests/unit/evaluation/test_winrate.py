"""Win rate without a model: verdict parsing, the pairwise prompt, counting, the judge choice, and the
bundled held-out eval prompts."""

import re

import pytest
from helpers import write_lines

from selfreward_lite.errors import SrliteError
from selfreward_lite.evaluation.winrate import (bundled_eval_prompts, build_pairwise_prompt, load_eval_prompts, parse_verdict,
                                                resolve_judge, win_rate_summary)
from selfreward_lite.judging.rubric import RUBRIC_TEMPLATE, split_judge_prompt
from selfreward_lite.run.records import first_user_text, load_messages


@pytest.mark.parametrize("text, verdict", [
    ("A is clearer. Winner: A", "A"), ("**Winner:** b", "B"), ("Winner: tie", "tie"), ("winner = B.", "B"),
    ("Winner: A ... on reflection, Winner: B", "B"), ("I prefer A.", None), ("Winner: C", None), ("Winner: Alpha", None),
    ("", None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_pairwise_prompt_keeps_braces():
    p = build_pairwise_prompt("What is {x}?", " {a} one ", "{b} two")
    assert "User: What is {x}?" in p and "<response A>{a} one</response A>" in p and "<response B>{b} two</response B>"
    assert p.rstrip().endswith('"Winner: tie".')


def test_win_rate_summary_counts_from_the_new_models_side():
    v = lambda pid, a, verdict: {"prompt_id": pid, "a": a, "verdict": verdict,  # noqa: E731
                                 "outcome": None if verdict is None else "tie" if verdict == "tie"
                                 else "win" if (verdict == "A") == (a == "new") else "loss"}
    # p0: won in both orders; p1: lost both; p2: a tie and an unparsed verdict
    verdicts = [v("p0", "new", "A"), v("p0", "old", "B"), v("p1", "new", "B"), v("p1", "old", "A"),
                v("p2", "new", "tie"), v("p2", "old", None)]
    rows_new = [{"response": "x" * 10, "tokens": 4}, {"response": "x" * 20, "tokens": 6}]
    rows_old = [{"response": "x" * 4, "tokens": 2}, {"response": "x" * 6, "tokens": 2}]
    s = win_rate_summary(verdicts, rows_new, rows_old)
    assert (s["wins"], s["losses"], s["ties"], s["unparsed"]) == (2, 2, 1, 1)
    assert s["win_rate"] == pytest.approx(2.5 / 5)
    assert s["picked_first"] == pytest.approx(2 / 4)  # A picked twice of four A/B verdicts
    assert s["mean_chars"] == {"new": 15, "old": 5} and s["mean_tokens"] == {"new": 5, "old": 2}
    # n and the Wilson interval are stored; 5 parsed verdicts are too few for a percentage
    w = s["intervals"]["win_rate"]
    assert (w["k"], w["n"], w["text"]) == (2.5, 5, "too few (n=5)") and w["ci_low"] < 0.5 < w["ci_high"]
    assert (s["intervals"]["picked_first"]["k"], s["intervals"]["picked_first"]["n"]) == (2, 4)
    # by prompt: each prompt counts once (p2's tie leaves it even); sign test on 1 vs 1
    assert {k: s["by_prompt"][k] for k in ("prompts", "new_better", "old_better", "even", "p_value")} == \
        {"prompts": 3, "new_better": 1, "old_better": 1, "even": 1, "p_value": 1.0}


def test_resolve_judge(tmp_path):
    assert resolve_judge("self", 3) == 3 and resolve_judge("newest", 3) == 3 and resolve_judge("m1", 3) == 1
    assert resolve_judge(str(tmp_path), 3) == str(tmp_path.resolve())
    with pytest.raises(SrliteError, match="not 'self', 'm<N>'.*nor an existing model folder"):
        resolve_judge(str(tmp_path / "nope"), 3)


def normalise(text):
    return re.sub(r"\W+", " ", text.lower()).strip()


def test_bundled_eval_prompts_are_held_out():
    prompts = load_eval_prompts(bundled_eval_prompts())
    assert len(prompts) >= 30 and len({normalise(p["prompt"]) for p in prompts}) == len(prompts)
    seeds = {normalise(first_user_text(m)) for m in load_messages("bundled", "ift")}
    for kind in ("eft_train", "eft_eval"):
        for m in load_messages("bundled", kind):
            parts = split_judge_prompt(m[0]["content"], RUBRIC_TEMPLATE)
            assert parts, m[0]["content"][:80]
            seeds.add(normalise(parts[0]))
    overlap = [p["prompt"] for p in prompts if normalise(p["prompt"]) in seeds]
    assert not overlap
    assert len(load_eval_prompts(bundled_eval_prompts(), 5)) == 5


def test_eval_prompts_errors(tmp_path):
    with pytest.raises(SrliteError, match=r"line 2, field 'prompt'"):
        load_eval_prompts(write_lines(tmp_path / "e.jsonl", [{"prompt": "a"}, {"text": "b"}]))
