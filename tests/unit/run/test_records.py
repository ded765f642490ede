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


# --- inputs as people have them: BOM + CRLF, TRL's prompt/completion ------------------------------

def windows(path, out):
    """`path` as a Windows editor saves it: a UTF-8 byte-order mark and CRLF line ends."""
    out.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return out


def test_every_jsonl_loader_takes_a_bom_and_crlf(tmp_path):
    """Before: a file with a UTF-8 byte-order mark was refused at line 1 ("not valid JSON")."""
    from helpers import FIXTURES, write_lines

    from selfreward_lite.evaluation.heldout import ifeval_prompts
    from selfreward_lite.evaluation.judge_quality import load_ranked_set
    from selfreward_lite.evaluation.winrate import load_eval_prompts
    from selfreward_lite.judging.rubric import RUBRIC_TEMPLATE
    from selfreward_lite.tools.importers import import_messages, import_oasst
    from selfreward_lite.tools.judge_file import load_judge_input

    ift = windows(bundled_path("ift"), tmp_path / "ift.jsonl")
    assert load_messages(str(ift), "ift") == load_messages("bundled", "ift")
    assert import_messages(str(ift), tmp_path / "out.jsonl") == len(load_messages("bundled", "ift"))
    eft = windows(bundled_path("eft_eval"), tmp_path / "eft.jsonl")
    assert load_messages(str(eft), "eft_eval") == load_messages("bundled", "eft_eval")
    assert len(load_ranked_set(eft, RUBRIC_TEMPLATE)) == len(load_messages("bundled", "eft_eval"))
    prompts = windows(bundled_path("eval_prompts"), tmp_path / "prompts.jsonl")
    assert load_eval_prompts(prompts) == load_eval_prompts(bundled_path("eval_prompts"))
    judge_in = windows(write_lines(tmp_path / "j.jsonl", [{"prompt": "Q", "response": "R"}]), tmp_path / "j2.jsonl")
    assert load_judge_input(judge_in)[0] == "single"
    assert import_oasst(str(windows(FIXTURES / "oasst_messages.jsonl", tmp_path / "oasst.jsonl")), tmp_path / "o")["ift records"] == 2
    ifeval = windows(write_lines(tmp_path / "if.jsonl", [{"key": 1, "prompt": "Write in lowercase.",
                                                           "instruction_id_list": [], "kwargs": []}]), tmp_path / "if2.jsonl")
    assert ifeval_prompts(ifeval) == ["Write in lowercase."]


def test_bom_crlf_file_errors_still_name_the_line_and_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n" + b'{"messages": [{"role": "user", "content": "x"}, '
                  b'{"role": "bot", "content": "y"}]}\r\n')
    with pytest.raises(SrliteError, match=r"bad.jsonl, line 2, field 'messages\[1\]\.role': 'bot'"):
        load_messages(str(p), "ift")


def test_trl_conversational_prompt_completion_records_become_messages(tmp_path):
    """TRL's conversational prompt/completion form (also with a system turn) is taken for seed data."""
    user, assistant = {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}
    system = {"role": "system", "content": "Be brief."}
    p = write(tmp_path, [json.dumps({"prompt": [user], "completion": [assistant]}),
                         json.dumps({"prompt": [system, user], "completion": [assistant]}),
                         json.dumps(GOOD)])
    assert load_messages(str(p), "ift") == [[user, assistant], [system, user, assistant], GOOD["messages"]]


@pytest.mark.parametrize("record, pattern", [
    ({"prompt": [{"role": "user", "content": "x"}]}, r"line 1, field 'completion': missing"),
    ({"prompt": "Hi?", "completion": "Hello."}, r"line 1, field 'prompt': is plain text"),
    ({"prompt": [], "completion": [{"role": "assistant", "content": "y"}]}, r"line 1, field 'prompt': must be a non-empty list"),
    ({"prompt": [{"role": "user", "content": "x"}], "completion": [{"role": "user", "content": "y"}]},
     r"line 1, field 'completion\[0\]\.role': 'user'"),
    ({"prompt": [{"role": "user", "content": "x"}], "completion": [{"role": "assistant", "content": ""}]},
     r"line 1, field 'completion\[0\]\.content': is empty"),
    ({"prompt": [{"role": "user", "content": "x"}, {"role": "system", "content": "s"}],
      "completion": [{"role": "assistant", "content": "y"}]}, r"line 1, field 'prompt\[1\]\.role': a system message may only come first"),
    ({"prompt": [{"role": "system", "content": "s"}], "completion": [{"role": "assistant", "content": "y"}]},
     r"line 1, field 'prompt': needs at least one 'user' message"),
])
def test_prompt_completion_errors_name_the_field_as_written(tmp_path, record, pattern):
    p = write(tmp_path, [json.dumps(record)])
    with pytest.raises(SrliteError, match=pattern):
        load_messages(str(p), "ift")
