"""`srlite judge` without a model: its input, checked line by line, and the pair rows and summary."""

import pytest
from helpers import write_lines

from selfreward_lite.errors import SrliteError
from selfreward_lite.tools.judge_file import load_judge_input, pair_summary, score_rows


def test_judge_input_single_and_pairs(tmp_path):
    kind, recs = load_judge_input(write_lines(tmp_path / "s.jsonl", [{"prompt": "Q", "response": "R"},
                                                                      {"id": "x", "prompt": "Q2", "response": "R2"}]))
    assert kind == "single" and [r["id"] for r in recs] == ["r00000", "x"]
    kind, recs = load_judge_input(write_lines(tmp_path / "p.jsonl", [{"prompt": "Q", "a": "1", "b": "2", "label": "b"},
                                                                      {"prompt": "Q", "a": "1", "b": "2"}]))
    assert kind == "pairs" and recs[0]["label"] == "b" and "label" not in recs[1]


@pytest.mark.parametrize("lines, message", [
    ([{"prompt": "Q", "response": "R"}, {"prompt": "Q"}], r"line 2, field 'response': missing"),
    ([{"prompt": "", "response": "R"}], r"line 1, field 'prompt'"),
    ([{"prompt": "Q", "a": "x", "b": 3}], r"line 1, field 'b'"),
    ([{"prompt": "Q", "a": "x", "b": "y", "label": "c"}], r"line 1, field 'label': must be \"a\" or \"b\""),
    ([{"prompt": "Q", "response": "R"}, {"prompt": "Q", "a": "x", "b": "y"}], r"line 2: mixes a pair"),
    ([{"id": "1", "prompt": "Q", "response": "R"}, {"id": 1, "prompt": "Q", "response": "R"}], r"line 2, field 'id'"),
    (["[1, 2]"], r"line 1: expected a JSON object"),
    (["{not json"], r"line 1: not valid JSON"),
    ([], r"contains no records"),
])
def test_judge_input_errors_name_file_line_field(tmp_path, lines, message):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(SrliteError, match=message) as e:
        load_judge_input(path)
    assert str(path) in str(e.value)


def test_pair_rows_ties_and_unscored_count_as_wrong():
    recs = [{"id": "p1", "label": "a"}, {"id": "p2", "label": "b"}, {"id": "p3", "label": "a"}, {"id": "p4", "label": "b"},
            {"id": "p5"}]
    by_item = {"p1/a": [5, 4], "p1/b": [2, None], "p2/a": [3], "p2/b": [3], "p3/a": [None], "p3/b": [1],
               "p4/a": [4], "p4/b": [1], "p5/a": [1], "p5/b": [2]}
    rows = score_rows("pairs", recs, by_item)
    assert [r["predicted"] for r in rows] == ["a", "tie", None, "a", "b"]
    assert rows[0]["score_a"] == 4.5 and rows[0]["score_b"] == 2.0
    s = pair_summary(rows)
    assert s == {"pairs_labelled": 4, "pairs_correct": 1, "pairs_tied": 1, "pairs_unscored": 1, "pairwise_accuracy": 0.25}
