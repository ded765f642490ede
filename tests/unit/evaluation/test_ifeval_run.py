"""IFEval-format evaluation of a run's models (evaluation/ifeval_run.py, runner.py) and `srlite eval --ifeval`,
with a stand-in model (no weights): each model answers once, the cache is keyed by the settings, IFEval is
skipped with a notice (never silently, never failing the round) when lm-eval is missing.
"""

import codecs
import json

import pytest
from helpers import invoke

from selfreward_lite.errors import SrliteError
from selfreward_lite.evaluation import ifeval_run, runner
from selfreward_lite.models import generation
from selfreward_lite.models.cache import ModelCache
from selfreward_lite.run.create import create_run
from selfreward_lite.run.files import read_json

pytest.importorskip("lm_eval", reason="needs the ifeval extra: pip install 'selfreward-lite[ifeval]'")

# google/IFEval's schema as the Hugging Face export writes it: every argument name, null when unused.
NULLS = {"num_highlights": None, "relation": None, "num_words": None, "keywords": None, "forbidden_words": None}
RECORDS = [
    {"key": 1001, "prompt": "Write a haiku about rain. Use only lowercase letters.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [dict(NULLS)]},
    {"key": 1002, "prompt": "Describe a cat in fewer than 10 words, without commas.",
     "instruction_id_list": ["length_constraints:number_words", "punctuation:no_comma"],
     "kwargs": [{**NULLS, "relation": "less than", "num_words": 10}, dict(NULLS)]},
    {"key": 1003, "prompt": "Name two fruits and mention the word banana.",
     "instruction_id_list": ["keywords:existence"], "kwargs": [{**NULLS, "keywords": ["banana"]}]},
]


def write_real_schema(path):
    """A BOM, CRLF line ends and null kwargs, as files exported on Windows from the HF dataset look."""
    path.write_bytes(codecs.BOM_UTF8 + "".join(json.dumps(r) + "\r\n" for r in RECORDS).encode())
    return path


class FakeTokenizer:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return messages[-1]["content"]


class FakeModel:
    """M_n's stand-in: M1 answers in capitals with a comma and no banana; later models in lowercase, briefly, with one."""

    def __init__(self, n):
        self.n, self.tokenizer = n, FakeTokenizer()

    def answer(self, text):
        if "Winner:" in text:
            return "Winner: A"
        if "Score:" in text:
            return "Score: 3"
        return "APPLE, PEAR AND RAIN." if self.n == 1 else "this is a banana and that is an apple."


@pytest.fixture
def fake_models(monkeypatch):
    """Every model load and every generate call, recorded."""
    calls = {"loads": [], "generate": []}

    def get(self, spec, **kw):
        calls["loads"].append(spec)
        return FakeModel(spec)

    def generate(lm, texts, n, **kw):
        calls["generate"].append((lm.n, len(texts), kw.get("temperature"), kw.get("max_new_tokens")))
        return [[generation.Sample(lm.answer(t), True, 4) for _ in range(n)] for t in texts]

    monkeypatch.setattr(ModelCache, "get", get)
    monkeypatch.setattr(generation, "generate", generate)
    return calls


@pytest.fixture
def two_model_run(tmp_path):
    """A run where M1 and M2 exist (adapter folders with a config; the stand-in model never reads them)."""
    run = create_run(tmp_path / "run", preset="cpu", overrides={"eval_questions": 1, "eval_prompts": 2})
    for d in (run.m1_dir, run.round_dir(1)):
        (d / "adapter").mkdir(parents=True)
        (d / "adapter" / "adapter_config.json").write_text("{}")
    assert run.newest_model() == 2
    return run


def test_select_is_evenly_spaced_and_deterministic():
    assert ifeval_run.select(list(range(76)), 4) == [0, 19, 38, 57]
    assert ifeval_run.select(list(range(76)), 30)[:3] == [0, 2, 5] and len(ifeval_run.select(list(range(76)), 30)) == 30
    assert ifeval_run.select([1, 2, 3], 0) == [1, 2, 3] and ifeval_run.select([1, 2, 3], 9) == [1, 2, 3]


def test_each_model_answers_once_greedy_and_the_cache_follows_the_settings(two_model_run, fake_models, tmp_path):
    run = two_model_run
    s = ifeval_run.file_set(write_real_schema(tmp_path / "input_data.jsonl"))
    ev = ifeval_run.evaluate_models(run, [1, 2], ModelCache(run), s)
    assert fake_models["loads"] == [1, 2]
    assert fake_models["generate"] == [(1, 3, 0.0, run.cfg.ifeval_max_new_tokens), (2, 3, 0.0, run.cfg.ifeval_max_new_tokens)]
    m1, m2 = ev["models"]
    assert (m1["model"], m1["prompt_strict"]["k"], m1["prompt_strict"]["n"]) == ("M1", 0, 3)
    assert (m2["prompt_strict"]["k"], m2["instruction_strict"]["k"], m2["instruction_strict"]["n"]) == (3, 4, 4)
    assert m2["prompt_strict"]["text"] == "too few (n=3)" and 0 < m2["prompt_strict"]["ci_low"] < 1
    assert m1["answers"]["cut_at_budget"] == 0 and m1["decoding"] == "greedy" and m1["verifier"]["lm_eval"]
    [c] = ev["comparisons"]
    assert (c["new"], c["old"]) == ("M2", "M1")
    assert (c["prompt_strict"]["improved"], c["prompt_strict"]["worsened"]) == (3, 0)
    assert c["prompt_strict"]["p_value"] == pytest.approx(0.25) and "McNemar" in c["prompt_strict"]["test"]
    for n in (1, 2):
        assert ifeval_run.answers_path(run, n, s).is_file() and ifeval_run.scores_path(run, n, s).is_file()

    # Cached: again, and for the end-of-round comparison, nothing is loaded or generated.
    fake_models["loads"].clear(), fake_models["generate"].clear()
    assert ifeval_run.evaluate_models(run, [1, 2], ModelCache(run), s) == ev
    assert fake_models == {"loads": [], "generate": []}
    # Another token budget is another evaluation: the answers are made again.
    run.cfg.ifeval_max_new_tokens = 7
    ifeval_run.model_answers(run, 1, ModelCache(run), s)
    assert fake_models["generate"] == [(1, 3, 0.0, 7)]


def test_end_of_round_ifeval_and_its_cache(two_model_run, fake_models):
    run = two_model_run
    run.cfg.eval_each_round, run.cfg.ifeval_prompts = False, 5  # IFEval only, 5 of the bundled prompts
    ev = runner.evaluate_round(run, 1, run.eval_path(1), models=ModelCache(run))
    assert set(ev) == {"round", "ifeval"} and read_json(run.eval_path(1)) == ev
    assert set(ev["ifeval"]["models"]) == {"M1", "M2"} and ev["ifeval"]["limit"] == 5
    assert ev["ifeval"]["models"]["M1"]["prompt_strict"]["n"] == 5
    assert ev["ifeval"]["comparison"]["prompt_strict"]["n"] == 5
    assert [g[:2] for g in fake_models["generate"]] == [(1, 5), (2, 5)]
    assert ifeval_run.cached_scores(run, 2) == ev["ifeval"]["models"]["M2"]
    assert ifeval_run.cached_comparison(run, 2, 1) == ev["ifeval"]["comparison"]


class Notes:
    def __init__(self):
        self.lines = []

    def info(self, message, **kw):
        self.lines.append(message)

    def __getattr__(self, name):  # the rest of the UI interface: progress bars, stages
        from selfreward_lite.ui import QuietUI

        return getattr(QuietUI(), name)


def test_without_lm_eval_the_round_says_so_and_goes_on(two_model_run, fake_models, monkeypatch, tmp_path):
    run = two_model_run
    why = "IFEval scoring needs lm-eval's IFEval verifiers ... Install the optional extra: pip install 'selfreward-lite[ifeval]'"
    monkeypatch.setattr(ifeval_run.ifeval, "unavailable_reason", lambda: why)
    ui = Notes()
    runner.check_ifeval(run, ui)  # at the start of `iterate`: said once, nothing fails
    assert "will be skipped after each round" in ui.lines[0] and "pip install" in ui.lines[0]
    run.cfg.eval_each_round = False
    ev = runner.evaluate_round(run, 1, run.eval_path(1), ui, ModelCache(run))
    assert ev["ifeval"] == {"skipped": why, "install": "pip install 'selfreward-lite[ifeval]'"}
    assert "IFEval-format evaluation skipped" in ui.lines[1] and fake_models["generate"] == []
    # Asked for explicitly (`srlite eval --ifeval FILE`), it is an error that says what to install.
    with pytest.raises(SrliteError, match=r"selfreward-lite\[ifeval\]"):
        runner.run_eval(run.dir, ifeval=write_real_schema(tmp_path / "i.jsonl"))


def test_a_bad_ifeval_file_stops_iterate_before_any_model(two_model_run, fake_models, tmp_path):
    run = two_model_run
    run.cfg.ifeval_data = str(tmp_path / "missing.jsonl")
    with pytest.raises(SrliteError, match="missing.jsonl: no such file"):
        runner.check_ifeval(run)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**RECORDS[0], "instruction_id_list": ["punctuation:no_commas"]}) + "\n")
    run.cfg.ifeval_data = str(bad)
    with pytest.raises(SrliteError, match=r"bad.jsonl, line 1, field 'instruction_id_list\[0\]'.*no_comma"):
        runner.check_ifeval(run)
    assert fake_models["loads"] == []


def test_srlite_eval_ifeval_file_in_process(two_model_run, fake_models, tmp_path):
    run = two_model_run
    data = write_real_schema(tmp_path / "input_data.jsonl")
    r = invoke("eval", "-d", run.dir, "--ifeval", data, env={"COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "IFEval format" in out and "M2 vs M1" in out and "too few (n=3)" in out
    # The whole file (3 prompts) for each model, greedy; M1's answers also serve the comparison.
    assert [g for g in fake_models["generate"] if g[2] == 0.0] == [(1, 3, 0.0, 128), (2, 3, 0.0, 128)]
    s = ifeval_run.file_set(data)
    assert read_json(ifeval_run.comparison_path(run, 2, 1, s))["prompt_strict"]["improved"] == 3

    # --round 2 reuses every cached answer; a broken file is refused with its line and field.
    fake_models["generate"].clear()
    assert invoke("eval", "-d", run.dir, "--round", "2", "--ifeval", data).returncode == 0
    assert [g for g in fake_models["generate"] if g[2] == 0.0] == []
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"key": 1, "prompt": "Hi", "instruction_id_list": ["punctuation:no_comma"]}) + "\n")
    r = invoke("eval", "-d", run.dir, "--ifeval", bad)
    assert r.returncode == 2 and "bad.jsonl, line 1: missing field 'kwargs'" in r.stderr.replace("\n", "")
