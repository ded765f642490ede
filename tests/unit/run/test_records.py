import json
import re
from collections import Counter

import pytest

from selfreward_lite.run.records import bundled_path, first_user_text, load_messages, split_prompt_completion
from selfreward_lite.errors import SrliteError
from selfreward_lite.judging.rubric import build_judge_prompt, parse_score

GOOD = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}


def write(tmp_path, lines, name="seed.jsonl"):
    p = tmp_path / name
    p.write_bytes(b"".join((line if isinstance(line, bytes) else (line + "\n").encode()) for line in lines))
    return p


@pytest.mark.parametrize(
    "line, pattern",
    [
        ("{not json", r"line 2: not valid JSON"),
        ('["a list"]', r"line 2: expected a JSON object"),
        ('{"text": "x"}', r"line 2, field 'messages': missing"),
        ('{"messages": "hi"}', r"line 2, field 'messages': must be a list"),
        ('{"messages": [{"role": "user", "content": "x"}]}', r"line 2, field 'messages': must be a list of at least two"),
        ('{"messages": [{"role": "human", "content": "x"}, {"role": "assistant", "content": "y"}]}',
         r"line 2, field 'messages\[0\]\.role': 'human' is not one of"),
        ('{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "y"}]}',
         r"line 2, field 'messages\[0\]\.content': is empty"),
        ('{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]}',
         r"line 2, field 'messages\[0\]\.content': must be a string"),
        ('{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}',
         r"line 2, field 'messages\[1\]\.role': the last message must be 'assistant'"),
        ('{"messages": [{"role": "system", "content": "x"}, {"role": "assistant", "content": "y"}]}',
         r"line 2, field 'messages': needs at least one 'user'"),
        ('{"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "y"}]}',
         r"line 2, field 'messages\[1\]\.role': a system message may only come first"),
        ('{"messages": ["hi", {"role": "assistant", "content": "y"}]}', r"line 2, field 'messages\[0\]'"),
    ],
)
def test_bad_records_name_file_line_field(tmp_path, line, pattern):
    p = write(tmp_path, [json.dumps(GOOD), line])
    with pytest.raises(SrliteError, match=pattern) as e:
        load_messages(str(p), "ift")
    assert str(p) in str(e.value)


def test_non_utf8(tmp_path):
    p = write(tmp_path, [json.dumps(GOOD), b'{"messages": "\xff\xfe"}\n'])
    with pytest.raises(SrliteError, match=r"line 2: not valid UTF-8"):
        load_messages(str(p), "ift")


def test_empty_file_and_directory(tmp_path):
    empty = write(tmp_path, [], name="empty.jsonl")
    with pytest.raises(SrliteError, match="contains no records"):
        load_messages(str(empty), "ift")
    with pytest.raises(SrliteError, match="is a directory"):
        load_messages(str(tmp_path), "ift")
    with pytest.raises(SrliteError, match="no such file"):
        load_messages(str(tmp_path / "nope.jsonl"), "ift")


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path):
    p = write(tmp_path, [json.dumps(GOOD), "", "   ", '{"x": 1}'])
    with pytest.raises(SrliteError, match="line 4"):
        load_messages(str(p), "ift")


def test_split_prompt_completion():
    msgs = GOOD["messages"]
    assert split_prompt_completion(msgs) == {"prompt": msgs[:1], "completion": msgs[1:]}
    assert first_user_text(msgs) == "Hi?"


# --- the bundled seed data ---------------------------------------------------------------

def _eft_scores(kind):
    return [parse_score(m[-1]["content"]).score for m in load_messages("bundled", kind)]


def test_bundled_sizes_and_validity():
    assert len(load_messages("bundled", "ift")) >= 100
    assert len(load_messages("bundled", "eft_train")) >= 60
    assert len(load_messages("bundled", "eft_eval")) >= 20


@pytest.mark.parametrize("kind", ["eft_train", "eft_eval"])
def test_bundled_eft_scores_spread_and_rubric_matches(kind):
    scores = _eft_scores(kind)
    assert None not in scores
    assert set(Counter(scores)) == {0, 1, 2, 3, 4, 5}
    for messages in load_messages("bundled", kind):
        user = messages[0]["content"]
        m = re.search(r"\nUser: (.*)\n<response>(.*)</response>\n", user, re.S)
        assert m, "EFT prompt is not the rubric template"
        assert user == build_judge_prompt(m.group(1), m.group(2))
        assert messages[-1]["content"].rstrip().splitlines()[-1].startswith("Score: ")


def test_bundled_eval_split_held_out():
    def questions(kind):
        return {re.search(r"\nUser: (.*)\n<response>", m[0]["content"], re.S).group(1)
                for m in load_messages("bundled", kind)}

    assert not questions("eft_train") & questions("eft_eval")
    ift = {first_user_text(m) for m in load_messages("bundled", "ift")}
    assert not ift & (questions("eft_train") | questions("eft_eval"))
    assert bundled_path("ift").is_file()
