import pytest

from selfreward_lite.errors import SrliteError
from selfreward_lite.judging.rubric import (
    COMPACT_TEMPLATE, RUBRIC_TEMPLATE, build_judge_prompt, load_rubric, mean_score, parse_score, split_judge_prompt,
)


@pytest.mark.parametrize(
    "text, score, status",
    [
        ("Relevant and complete.\nScore: 4", 4, "ok"),
        ("**Score:** 3", 3, "ok"),
        ("score = 5/5", 5, "ok"),
        ("Score: 0", 0, "ok"),
        ("Score: 2 points", 2, "ok"),
        ("First pass Score: 2. On reflection...\nScore: 4", 4, "ok"),  # the conclusion wins
        ("Score: 3\nScore: 9", None, "out of range"),  # the final score is out of range: not a number
        ("Score: 7", None, "out of range"),
        ("Score: -1", None, "out of range"),
        ("Score: 3.5", None, "not an integer"),
        ("Score: 4.0", 4, "ok"),
        ("I would give this a four.", None, "no score"),
        ("", None, "no score"),
        ("%%$#@ garbage 5 5 5", None, "no score"),
        ("Scores vary. Score:", None, "no score"),
    ],
)
def test_parse_score(text, score, status):
    parsed = parse_score(text)
    assert parsed.score == score
    assert parsed.status == status


def test_parse_score_none_is_unparsed():
    assert parse_score(None).score is None


def test_unparsed_never_becomes_a_number():
    assert mean_score([None, None]) is None
    assert mean_score([None, 4, 2]) == 3.0


def test_build_judge_prompt_keeps_braces_and_fills_both_fields():
    prompt = build_judge_prompt("What is {x}?", "  It is {y}.  ")
    assert "User: What is {x}?" in prompt
    assert "<response>It is {y}.</response>" in prompt
    assert "{instruction}" not in prompt and "{response}" not in prompt
    assert prompt.startswith(RUBRIC_TEMPLATE.split("{instruction}")[0])


def test_split_judge_prompt_roundtrip():
    for template in (RUBRIC_TEMPLATE, COMPACT_TEMPLATE):
        text = build_judge_prompt("Line one\nline two?", "An answer\nwith lines.", template)
        assert split_judge_prompt(text, template) == ("Line one\nline two?", "An answer\nwith lines.")
    assert split_judge_prompt("just a question", RUBRIC_TEMPLATE) is None


def test_load_rubric(tmp_path):
    assert load_rubric("additive") == RUBRIC_TEMPLATE
    assert load_rubric("additive-compact") == COMPACT_TEMPLATE
    good = tmp_path / "r.txt"
    good.write_text("Q: {instruction}\nA: {response}\nScore: ?")
    assert load_rubric(str(good)).startswith("Q:")
    bad = tmp_path / "bad.txt"
    bad.write_text("only {instruction}")
    with pytest.raises(SrliteError, match=r"\{response\}"):
        load_rubric(str(bad))
    with pytest.raises(SrliteError, match="neither"):
        load_rubric(str(tmp_path / "missing.txt"))
