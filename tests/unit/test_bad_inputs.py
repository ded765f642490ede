"""Bad input never gets past the door: each malformed input in tests/bad_inputs/ (and a few
made on the fly) gives a clear error naming the problem, a non-zero exit, no traceback, and
leaves the run directory exactly as it was.

`init` cases start without a run directory (it must still not exist afterwards, or be
unchanged when it existed); `iterate` cases start from a valid, freshly initialised run whose
config or seed copies are then damaged.
"""

import json
import shutil
from pathlib import Path

import pytest
from helpers import BAD_INPUTS as CORPUS
from helpers import invoke
from helpers import tree_digest

# (case, options for `srlite init`, expected text in the error)
INIT_CASES = [
    ("empty file", ["--ift", "empty.jsonl"], "contains no records"),
    ("only blank lines", ["--ift", "blank_lines.jsonl"], "contains no records"),
    ("truncated JSONL", ["--ift", "truncated.jsonl"], "truncated.jsonl, line 3: not valid JSON"),
    ("non-UTF-8 bytes", ["--ift", "not_utf8.jsonl"], "not_utf8.jsonl, line 2: not valid UTF-8"),
    ("plain text, not JSON", ["--ift", "plain_text.jsonl"], "plain_text.jsonl, line 1: not valid JSON"),
    ("a list instead of an object", ["--ift", "array_record.jsonl"], "line 1: expected a JSON object"),
    ("null record", ["--ift", "null_record.jsonl"], "line 2: expected a JSON object"),
    ("missing messages", ["--ift", "missing_messages.jsonl"], "line 1, field 'messages': missing"),
    ("messages is a string", ["--ift", "messages_not_list.jsonl"], "field 'messages': must be a list"),
    ("a single message", ["--ift", "one_message.jsonl"], "at least two messages"),
    ("empty messages", ["--ift", "empty_messages.jsonl"], "line 2, field 'messages': must be a list of at least two"),
    ("missing role", ["--ift", "missing_role.jsonl"], "field 'messages[0].role': None is not one of"),
    ("wrong role", ["--ift", "wrong_role.jsonl"], "field 'messages[1].role': 'bot' is not one of"),
    ("content is a number", ["--ift", "content_not_string.jsonl"], "field 'messages[1].content': must be a string, got int"),
    ("empty content", ["--ift", "empty_content.jsonl"], "field 'messages[1].content': is empty"),
    ("last turn is the user's", ["--ift", "last_not_assistant.jsonl"], "the last message must be 'assistant'"),
    ("system message in the middle", ["--ift", "system_in_middle.jsonl"], "a system message may only come first"),
    ("no user message", ["--ift", "no_user_message.jsonl"], "needs at least one 'user' message"),
    ("message is a string", ["--ift", "message_not_object.jsonl"], "field 'messages[0]': must be an object"),
    ("huge line", ["--ift", "{huge}"], "line 2: 5.0 MB on one line"),
    ("a directory where a file is expected", ["--ift", "{dir}"], "is a directory; expected a JSONL file"),
    ("missing file", ["--ift", "no_such_file.jsonl"], "no_such_file.jsonl: no such file"),
    ("judge example without a score", ["--eft", "eft_no_score.jsonl"], "field 'messages[1].content': a judge example must end with 'Score: N'"),
    ("judge score out of range", ["--eft-eval", "eft_score_out_of_range.jsonl"], "here: out of range"),
    ("unknown config key", ["--set", "prompts_per_rounds=8"], "unknown config key 'prompts_per_rounds'. Did you mean 'prompts_per_round'?"),
    ("zero count", ["--set", "prompts_per_round=0"], "field 'prompts_per_round' must be > 0, got 0"),
    ("negative count", ["--set", "n_candidates=-2"], "field 'n_candidates' must be > 0, got -2"),
    ("one candidate cannot make a pair", ["--set", "n_candidates=1"], "at least 2 to form a pair"),
    ("wrong type", ["--set", "temperature=hot"], "field 'temperature' must be float, got 'hot'"),
    ("bool for an int", ["--set", "judge_samples=true"], "field 'judge_samples' must be int, got True"),
    ("probability above 1", ["--set", "top_p=1.5"], "field 'top_p' must be between 0 and 1"),
    ("unknown choice", ["--set", "quantize=8bit"], "field 'quantize' is '8bit'; choose one of auto, 4bit, none"),
    ("empty target modules", ["--set", "lora_target_modules=[]"], "field 'lora_target_modules' must be list"),
    ("missing rubric file", ["--set", "rubric=/nonexistent/rubric.txt"], "rubric is neither"),
    ("rubric without placeholders", ["--set", "rubric={corpus}/rubric_without_placeholders.txt"], "must contain the placeholder {instruction}"),
    ("--set without =", ["--set", "prompts_per_round"], "expected key=value"),
    ("unknown preset", ["--preset", "turbo"], "Unknown preset 'turbo'"),
]

# (case, how to damage a valid run, expected text in the error)
ITERATE_CASES = [
    ("config.json truncated", "config_truncated", "config.json, line 5: not valid JSON"),
    ("config.json is a list", "config_list", "the config must be a JSON object"),
    ("config.json unknown key", "config_unknown_key", "unknown config key 'temprature'. Did you mean 'temperature'?"),
    ("config.json wrong type", "config_wrong_type", "field 'n_candidates' must be int, got 'four'"),
    ("config.json negative", "config_negative", "field 'gen_batch_size' must be > 0, got -8"),
    ("config.json missing", "config_missing", "no config file here"),
    ("seed copy damaged", "seed_damaged", "ift.jsonl, line 2, field 'messages[1].role'"),
    ("seed copy missing", "seed_missing", "eft_eval.jsonl: seed file missing"),
    ("seed copy changed after start", "seed_changed", "the seed data changed after the run started"),
    ("model changed after M1", "drift_model", "model: 'embedded' -> 'other/model'"),
    ("round folder links outside", "link_outside", "outside the run directory"),
    ("run dir is a file", "run_dir_file", "exists and is not a directory"),
]


def check_failure(r, expected: str):
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Traceback" not in out, out
    assert expected in " ".join(out.split()), out  # rich may wrap long lines


@pytest.mark.parametrize("case,options,expected", INIT_CASES, ids=[c[0] for c in INIT_CASES])
def test_bad_init_input(tmp_path, case, options, expected):
    huge = tmp_path / "huge.jsonl"
    if "{huge}" in options:
        good = json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]})
        huge.write_text(good + "\n" + json.dumps({"messages": [{"role": "user", "content": "x" * 5_000_000}]}) + "\n")
    (tmp_path / "adir").mkdir()
    subst = {"{huge}": str(huge), "{dir}": str(tmp_path / "adir"), "{corpus}": str(CORPUS)}
    args = []
    for o in options:
        for k, v in subst.items():
            o = o.replace(k, v)
        if o.endswith((".jsonl", ".txt")) and not o.startswith(("/", "rubric=", "prompts")):
            o = str(CORPUS / o)
        args.append(o)
    run = tmp_path / "run"
    check_failure(invoke("init", "-d", run, "--preset", "cpu", *args), expected)
    assert not run.exists(), "a failed init left a run directory behind"


def test_init_over_an_existing_run_changes_nothing(tmp_path):
    run = tmp_path / "run"
    assert invoke("init", "-d", run, "--preset", "cpu").returncode == 0
    before = tree_digest(run)
    check_failure(invoke("init", "-d", run, "--preset", "cpu", "--set", "seed=3"), "a run already exists here")
    assert tree_digest(run) == before


def damage(run: Path, how: str, tmp_path: Path) -> Path:
    cfg_path = run / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if how == "config_truncated":
        shutil.copy(CORPUS / "config_truncated.json", cfg_path)
    elif how == "config_list":
        shutil.copy(CORPUS / "config_not_object.json", cfg_path)
    elif how == "config_unknown_key":
        cfg["temprature"] = 0.5
    elif how == "config_wrong_type":
        cfg["n_candidates"] = "four"
    elif how == "config_negative":
        cfg["gen_batch_size"] = -8
    elif how == "config_missing":
        cfg_path.unlink()
    elif how == "seed_damaged":
        lines = (run / "seed" / "ift.jsonl").read_text().splitlines(keepends=True)
        lines[1] = lines[1].replace('"role": "assistant"', '"role": "robot"')
        (run / "seed" / "ift.jsonl").write_text("".join(lines))
    elif how == "seed_missing":
        (run / "seed" / "eft_eval.jsonl").unlink()
    elif how in ("seed_changed", "drift_model"):
        (run / "m1").mkdir()
        shutil.copy(cfg_path, run / "m1" / "config.json")  # as if M1 had started with these settings
        if how == "seed_changed":
            lines = (run / "seed" / "ift.jsonl").read_text().splitlines(keepends=True)
            (run / "seed" / "ift.jsonl").write_text("".join(lines[:-1]))
        else:
            cfg["model"] = "other/model"
    elif how == "link_outside":
        (tmp_path / "elsewhere").mkdir()
        (run / "round1").symlink_to(tmp_path / "elsewhere")
    elif how == "run_dir_file":
        shutil.rmtree(run)
        run.write_text("not a directory\n")
    if how in ("config_unknown_key", "config_wrong_type", "config_negative", "drift_model"):
        cfg_path.write_text(json.dumps(cfg, indent=2))
    return run


@pytest.mark.parametrize("case,how,expected", ITERATE_CASES, ids=[c[0] for c in ITERATE_CASES])
def test_bad_run_state(tmp_path, case, how, expected):
    run = tmp_path / "run"
    assert invoke("init", "-d", run, "--preset", "cpu").returncode == 0
    damage(run, how, tmp_path)
    before = tree_digest(run) if run.is_dir() else run.read_bytes()
    check_failure(invoke("iterate", "--rounds", "1", "-d", run), expected)
    assert (tree_digest(run) if run.is_dir() else run.read_bytes()) == before, "the failed command changed the run"


def test_rounds_must_be_positive(tmp_path):
    r = invoke("iterate", "--rounds", "0", "-d", tmp_path / "run")
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr and "--rounds" in r.stderr


def test_corpus_size():
    assert len(INIT_CASES) + len(ITERATE_CASES) + 2 >= 30
    assert len(list(CORPUS.iterdir())) >= 20
