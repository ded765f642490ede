"""Judge quality without a model: the ranked set (the run's held-out EFT split or a user's file),
and the reward-modelling figures computed from judgments."""

import pytest
from helpers import write_lines

from selfreward_lite.config import preset_config
from selfreward_lite.errors import SrliteError
from selfreward_lite.evaluation.judge_quality import judge_quality_metrics, limit_questions, load_ranked_set
from selfreward_lite.judging.rubric import COMPACT_TEMPLATE, RUBRIC_TEMPLATE
from selfreward_lite.run.create import create_run
from selfreward_lite.run.records import bundled_path


def test_bundled_eft_eval_is_a_ranked_set():
    items = load_ranked_set(bundled_path("eft_eval"), RUBRIC_TEMPLATE)
    assert len(items) == 30 and len({i["group"] for i in items}) == 10
    assert items[0]["prompt"] == "What is the tallest mountain in the world?"
    assert [i["reference"] for i in items[:3]] == [3, 1, 5]
    assert len(limit_questions(items, 3)) == 9 and limit_questions(items, 0) == items


def test_ranked_set_reads_the_runs_rubric_and_plain_records(tmp_path):
    run = create_run(tmp_path / "run", preset="cpu", overrides={})  # cpu preset: compact rubric re-rendered
    items = load_ranked_set(run.seed_path("eft_eval"), COMPACT_TEMPLATE)
    assert len(items) == 30 and items[0]["prompt"] == "What is the tallest mountain in the world?"
    plain = write_lines(tmp_path / "plain.jsonl", [{"prompt": "Q", "response": "A", "score": 4},
                                                    {"prompt": "Q", "response": "B", "score": 1},
                                                    {"prompt": "Q2", "response": "C", "score": 2}])
    items = load_ranked_set(plain, COMPACT_TEMPLATE)
    assert [(i["group"], i["reference"]) for i in items] == [(0, 4), (0, 1), (1, 2)]


@pytest.mark.parametrize("line, message", [
    ({"prompt": "Q", "response": "A"}, r"line 1, field 'score'"),
    ({"prompt": "Q", "response": "A", "score": "high"}, r"line 1, field 'score'"),
    ({"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Score: 3"}]},
     r"line 1, field 'messages\[0\].content': not a judge prompt"),
    ({"messages": [{"role": "user", "content": RUBRIC_TEMPLATE.replace("{instruction}", "Q").replace("{response}", "A")},
                   {"role": "assistant", "content": "fine"}]}, r"line 1, field 'messages\[-1\].content'.*no score"),
])
def test_ranked_set_errors(tmp_path, line, message):
    with pytest.raises(SrliteError, match=message):
        load_ranked_set(write_lines(tmp_path / "r.jsonl", [line]), COMPACT_TEMPLATE)


def test_judge_quality_metrics_from_judgments():
    items = [{"id": f"q0-a{k}", "group": 0, "reference": r} for k, r in enumerate([3, 1, 5])] + \
            [{"id": f"q1-a{k}", "group": 1, "reference": r} for k, r in enumerate([0, 2])]
    scores = {"q0-a0": [3, 4], "q0-a1": [1, None], "q0-a2": [4, 4], "q1-a0": [None, None], "q1-a1": [2, 2]}
    status = lambda s: "ok" if s is not None else "no score"  # noqa: E731
    records = [{"item_id": i, "sample": k, "text": "", "score": s, "parse": status(s)}
               for i, ss in scores.items() for k, s in enumerate(ss)]
    m = judge_quality_metrics(items, records)
    # means: 3.5, 1, 4, None, 2. Group 0 pairs (3,1) right, (3,5) right, (1,5) right; group 1 (0,2) unscored.
    assert m["pairwise"] == {"pairs": 4, "correct": 3, "model_ties": 0, "unscored": 1, "accuracy": 0.75}
    assert m["judgments"] == 10 and m["parsed"] == 7 and m["parse_rate"] == 0.7
    assert m["unparsed"] == {"no score": 3}
    # exact: q0-a0 3 (yes), 4; q0-a1 1 (yes); q0-a2 no; q1-a1 2, 2 (yes, yes) -> 4 of 10 judgments
    assert m["exact_match"] == 0.4
    # scored answers: refs (3,1,5,2), means (3.5,1,4,2): same order -> rho = tau = 1
    assert m["spearman"] == pytest.approx(1.0) and m["kendall_tau_b"] == pytest.approx(1.0)
    assert m["histogram"] == {"0": 0, "1": 1, "2": 2, "3": 1, "4": 3, "5": 0}


def test_eval_config_validation():
    with pytest.raises(SrliteError, match="eval_prompts"):
        preset_config("cpu", eval_prompts=-1)
    with pytest.raises(SrliteError, match="eval_each_round"):
        preset_config("cpu", eval_each_round="yes")
    assert preset_config("gpu").eval_questions == 0  # the gpu preset uses the full sets
