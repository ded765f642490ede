"""Judge specs: each kind parses, malformed ones are errors that name the field and the forms, the config
validates both judge fields (and never echoes what may be a key), and `srlite init` records paths absolute."""

import json

import pytest
from helpers import invoke

from selfreward_lite.config import config_from_dict, preset_config
from selfreward_lite.errors import SrliteError
from selfreward_lite.judging.spec import absolute, parse_judge_spec


@pytest.mark.parametrize("text, kind, parts", [
    ("self", "self", {}),
    ("newest", "self", {}),  # winrate_judge's old default, still accepted
    ("m0", "model", {"round": 0}),
    ("m12", "model", {"round": 12}),
    ("/models/llama", "model", {"path": "/models/llama"}),
    ("python:judges/kit.py:score", "python", {"path": "judges/kit.py", "function": "score"}),
    ("python:C:/x/kit.py:score", "python", {"path": "C:/x/kit.py", "function": "score"}),  # the last ':' splits
    ("openai:http://127.0.0.1:8000/v1#m3", "openai", {"base_url": "http://127.0.0.1:8000/v1", "model": "m3"}),
    ("openai:https://api.example.com/v1/#org/model-7b", "openai",
     {"base_url": "https://api.example.com/v1", "model": "org/model-7b"}),
])
def test_kinds(text, kind, parts):
    s = parse_judge_spec(text)
    assert s.kind == kind and s.text == text
    for name, value in parts.items():
        assert getattr(s, name) == value
    assert s.external == (kind in ("python", "openai"))


def test_labels():
    assert [parse_judge_spec(t).label for t in ("self", "m2", "/a/b/llama", "python:x/kit.py:score",
                                                 "openai:http://h:1/v1#gpt")] == [
        "self", "M2", "llama", "kit.score", "openai-gpt"]


@pytest.mark.parametrize("text, message", [
    ("", r"judge: must be 'self', 'm<N>', a local model folder, 'python:FILE.py:FUNCTION' or 'openai:BASE_URL#MODEL'"),
    (3, r"judge: must be"),
    ("python:kit.py", r"'python:FILE.py:FUNCTION'"),
    ("python:kit.txt:score", r"'python:FILE.py:FUNCTION'"),
    ("python:kit.py:not-a-name", r"'python:FILE.py:FUNCTION'"),
    ("openai:http://127.0.0.1:8000/v1", r"'openai:BASE_URL#MODEL'"),
    ("openai:127.0.0.1:8000/v1#m", r"'openai:BASE_URL#MODEL'"),
    ("openai:http://127.0.0.1/v1#", r"'openai:BASE_URL#MODEL'"),
    ("openai:https://user:sk-secret@api.example.com/v1#m", r"carries credentials"),
    ("python", r"did you mean 'python:...'"),
])
def test_malformed_specs(text, message):
    with pytest.raises(SrliteError, match=message) as e:
        parse_judge_spec(text)
    assert "sk-secret" not in str(e.value)


def test_config_validates_both_fields_and_defaults():
    cfg = preset_config("cpu")
    assert (cfg.judge, cfg.winrate_judge) == ("self", "m1")
    assert preset_config("gpu").winrate_judge == "m1"  # a fixed judge in both presets
    assert config_from_dict({"winrate_judge": "newest"}, "config.json").winrate_judge == "newest"  # old files load
    with pytest.raises(SrliteError, match=r"config.json: field 'judge' 'python:x.py': .*python:FILE.py:FUNCTION"):
        config_from_dict({"judge": "python:x.py"}, "config.json")
    with pytest.raises(SrliteError, match=r"field 'winrate_judge': must be"):
        config_from_dict({"winrate_judge": " "}, "config.json")
    with pytest.raises(SrliteError, match=r"'judge_concurrency' must be > 0"):
        config_from_dict({"judge_concurrency": 0}, "config.json")
    with pytest.raises(SrliteError, match=r"'judge_max_retries' must be >= 0"):
        config_from_dict({"judge_max_retries": -1}, "config.json")


def test_a_key_pasted_as_the_variable_name_is_refused_without_echoing_it():
    with pytest.raises(SrliteError, match="NAME of an environment variable") as e:
        config_from_dict({"judge_api_key_env": "sk-proj-abc123secret"}, "config.json")
    assert "abc123secret" not in str(e.value)
    assert config_from_dict({"judge_api_key_env": "MY_KEY"}, "x").judge_api_key_env == "MY_KEY"


def test_absolute_resolves_files_and_existing_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "judges").mkdir()
    assert absolute("python:judges/kit.py:score") == f"python:{tmp_path}/judges/kit.py:score"
    assert absolute("judges") == str(tmp_path / "judges")
    for same in ("self", "m3", "openai:http://h:1/v1#m"):
        assert absolute(same) == same


def test_init_records_a_relative_python_judge_absolute_and_checks_it(tmp_path, monkeypatch):
    """gpu-kit's form: `--set judge=python:benchmarks/gpu/kit_judge.py:score`, relative to the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks" / "gpu").mkdir(parents=True)
    (tmp_path / "benchmarks" / "gpu" / "kit_judge.py").write_text("def score(prompt, response):\n    return 3\n")
    r = invoke("init", "-d", "run", "--preset", "cpu", "--set", "judge=python:benchmarks/gpu/kit_judge.py:score",
               "--set", "winrate_judge=python:benchmarks/gpu/kit_judge.py:score")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["judge"] == cfg["winrate_judge"] == f"python:{tmp_path}/benchmarks/gpu/kit_judge.py:score"

    for spec, message in (("python:benchmarks/gpu/nope.py:score", "no such file"),
                          ("python:benchmarks/gpu/kit_judge.py:scor", "defines no function 'scor'"),
                          ("/no/such/model", "nor an existing model folder")):
        r = invoke("init", "-d", "run2", "--preset", "cpu", "--set", f"judge={spec}")
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert spec.split(":")[0] in r.stderr and not (tmp_path / "run2" / "config.json").exists()
