"""The judge kinds without a model: a python judge's results become records (only a number in [0, 5] is a
score), its file is imported once and its errors name the spec; the judging stage journals and resumes
with an external judge; the round's judge comes from the ModelCache (one model in memory); pre-flight
refuses a fixed judge that does not exist yet; changing `judge` mid-round is refused; the win rate with
a python judge compares the two answers' scores; float scores fill the histogram."""

import json
import math

import pytest
from helpers import write_lines

from selfreward_lite.errors import SrliteError
from selfreward_lite.judging import judges
from selfreward_lite.judging.engine import judgment_summary
from selfreward_lite.judging.judges import (PythonJudge, check_judges, load_python_function, python_score,
                                            round_judge)
from selfreward_lite.judging.spec import parse_judge_spec
from selfreward_lite.loop import stages
from selfreward_lite.loop.pairs import select_pairs
from selfreward_lite.run.files import read_json, read_jsonl, write_json, write_jsonl
from selfreward_lite.run.preflight import check_drift, snapshot_config
from selfreward_lite.run.rundir import open_run

JUDGE_PY = '''
import math
CALLS = []

def score(prompt, response):
    CALLS.append(response)
    table = {"float": 3.5, "int": 4, "none": None, "high": 7, "low": -0.5, "text": "4", "bool": True,
             "nan": math.nan, "inf": math.inf}
    if response == "boom":
        raise ValueError("no verdict for boom")
    return table.get(response, len(response) % 6)
'''


@pytest.fixture
def judge_file(tmp_path):
    path = tmp_path / "my_judge.py"
    path.write_text(JUDGE_PY)
    return path


@pytest.mark.parametrize("response, score, status", [
    ("float", 3.5, "ok"), ("int", 4, "ok"), ("none", None, "no score"), ("high", None, "out of range"),
    ("low", None, "out of range"), ("inf", None, "out of range"), ("text", None, "not a number"),
    ("bool", None, "not a number"), ("nan", None, "not a number"), ("boom", None, "error"),
])
def test_python_results_become_records(judge_file, response, score, status):
    fn = load_python_function(parse_judge_spec(f"python:{judge_file}:score"))
    got, parse, text = python_score(fn, "Q", response)
    assert (got, parse) == (score, status) and text
    assert type(got) is type(score)  # 4 stays an int, 3.5 a float
    if status == "error":
        assert text == "raised ValueError: no verdict for boom"


def test_python_file_imported_once_per_process(judge_file):
    spec = parse_judge_spec(f"python:{judge_file}:score")
    fn = load_python_function(spec)
    fn("q", "x")
    assert load_python_function(spec) is fn and len(fn.__globals__["CALLS"]) == 1


@pytest.mark.parametrize("body, message", [
    (None, "no such file"),
    ("def other(p, r):\n    return 1\n", "has no function 'score' .functions defined there: other"),
    ("import no_such_module_here\n", "importing .* failed: ModuleNotFoundError"),
    ("def score(p, r:\n", "failed: SyntaxError"),
])
def test_python_judge_errors_name_the_spec(tmp_path, body, message):
    path = tmp_path / f"j{abs(hash(str(body)))}.py"
    if body is not None:
        path.write_text(body)
    with pytest.raises(SrliteError, match=message) as e:
        load_python_function(parse_judge_spec(f"python:{path}:score"))
    assert f"judge 'python:{path}:score'" in str(e.value)


def test_static_check_reads_without_running(tmp_path):
    path = tmp_path / "lazy.py"
    path.write_text("raise SystemExit('must not run')\ntry:\n    from os.path import join as score\nexcept ImportError:\n"
                    "    pass\nif True:\n    other = lambda p, r: 1\n")
    judges.check_python_file(parse_judge_spec(f"python:{path}:score"))  # defined under try: found, nothing ran
    judges.check_python_file(parse_judge_spec(f"python:{path}:other"))
    with pytest.raises(SrliteError, match="defines no function 'missing'"):
        judges.check_python_file(parse_judge_spec(f"python:{path}:missing"))
    path.write_text("def score(:\n")
    with pytest.raises(SrliteError, match="is not valid Python"):
        judges.check_python_file(parse_judge_spec(f"python:{path}:score"))


def test_float_scores_fill_the_histogram():
    recs = [{"score": s, "parse": "ok" if s is not None else "no score"} for s in (3.5, 3.4, 0.49, 5, 2.5, None)]
    s = judgment_summary(recs)
    assert s["histogram"] == {"0": 1, "1": 0, "2": 0, "3": 2, "4": 1, "5": 1}  # 2.5 and 3.5 go up, 3.4 down
    assert sum(s["histogram"].values()) == s["parsed"] == 5 and s["non_integer"] == 4
    assert math.isclose(s["mean_score"], (3.5 + 3.4 + 0.49 + 5 + 2.5) / 5)


# --- the judging stage with an external judge ---------------------------------------------------

def candidates(run, texts):
    cands = [{"id": f"r1-p{i // 2:04d}-c{i % 2}", "prompt_id": f"r1-p{i // 2:04d}", "prompt": "Q", "response": r,
              "finished": True, "tokens": 3} for i, r in enumerate(texts)]
    path = run.round_dir(1) / "candidates.jsonl"
    write_jsonl(path, cands)
    return path


def test_python_judge_in_the_judging_stage_and_pairs(run, judge_file):
    run.cfg.judge = f"python:{judge_file}:score"
    cands = candidates(run, ["float", "int", "none", "boom", "ab", "abcd"])
    judge = round_judge(run, 1, models=None)  # an external judge needs no model
    assert isinstance(judge, PythonJudge)
    out = run.round_dir(1) / "judgments.jsonl"
    stages.judge_candidates(run, 1, judge, cands, out)
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [f"{c['id']}-j0" for c in read_jsonl(cands)]  # one judgment per candidate
    assert [(r["score"], r["parse"]) for r in rows] == [(3.5, "ok"), (4, "ok"), (None, "no score"), (None, "error"),
                                                        (2, "ok"), (4, "ok")]
    assert rows[3]["text"].startswith("raised ValueError") and rows[0]["text"] == "returned 3.5"
    score_of = {r["candidate_id"]: r["score"] for r in rows}
    pairs, dropped = select_pairs([{**c, "score": score_of[c["id"]]} for c in read_jsonl(cands)])
    # p0: 4 vs 3.5 (float scores pair like any); p1: one scored answer, dropped; p2: 4 vs 2
    assert [(p["chosen"], p["rejected"], p["chosen_score"], p["rejected_score"]) for p in pairs] == [
        ("int", "float", 4, 3.5), ("abcd", "ab", 4, 2)]
    assert dict(dropped) == {"fewer than two scored candidates": 1}


def test_external_judging_resumes_without_asking_again(run, judge_file, monkeypatch):
    """A kill after some candidates were journaled: the restart judges only the others."""
    monkeypatch.setattr(judges, "PYTHON_CHUNK", 2)
    run.cfg.judge = f"python:{judge_file}:score"
    cands = candidates(run, ["a", "bb", "ccc", "dddd", "e", "ff"])
    out = run.round_dir(1) / "judgments.jsonl"
    judge = round_judge(run, 1, None)
    calls = judge.fn.__globals__["CALLS"]
    calls.clear()

    class Kill(Exception):
        pass

    def interrupted_after_first_chunk(records):
        raise Kill

    monkeypatch.setattr(stages.Journal, "append", _append_then(stages.Journal.append, interrupted_after_first_chunk))
    with pytest.raises(Kill):
        stages.judge_candidates(run, 1, judge, cands, out)
    monkeypatch.undo()
    assert calls == ["a", "bb"] and not out.exists()
    with open(str(out) + ".partial", "a") as f:
        f.write('{"id": "torn')  # a kill in mid-write
    stages.judge_candidates(run, 1, round_judge(run, 1, None), cands, out)
    assert calls == ["a", "bb", "ccc", "dddd", "e", "ff"]
    assert [r["score"] for r in read_jsonl(out)] == [1, 2, 3, 4, 1, 2]


def _append_then(append, after):
    def wrapped(self, records):
        append(self, records)
        after(records)
    return wrapped


class FakeCache:
    """Records what the round asks of the ModelCache."""

    def __init__(self):
        self.calls = []

    def sampler(self, t):
        self.calls.append(("sampler", t))
        return f"M{t} sampling"

    def get(self, spec, train_new=False):
        self.calls.append(("get", spec))
        return f"model {spec}"


def test_round_judge_loads_through_the_model_cache(run, tmp_path):
    for spec, t, expected in (("self", 2, ("sampler", 2)), ("m2", 2, ("sampler", 2)), ("m1", 3, ("get", 1)),
                              ("m0", 1, ("get", 0)), (str(tmp_path), 1, ("get", str(tmp_path)))):
        run.cfg.judge = spec
        cache = FakeCache()
        round_judge(run, t, cache)
        assert cache.calls == [expected], spec


def test_a_fixed_judge_releases_m_t_and_dpo_reloads_it(run, monkeypatch):
    """With the real ModelCache: the fixed judge is another key, so M_t is dropped for it (one model in
    memory) and loaded again for DPO."""
    from selfreward_lite.models import cache as cache_mod

    loads = []
    monkeypatch.setattr(cache_mod, "load_model", lambda cfg, adapters, train_new, **kw: loads.append(
        (len(adapters), train_new)) or object())
    monkeypatch.setattr(type(run), "check_model", lambda self, t, allow_base=False: t)
    cache = cache_mod.ModelCache(run)
    cache.get(2, train_new=True)  # M2 samples prompts and candidates
    run.cfg.judge = "m1"
    round_judge(run, 2, cache)  # M1 judges: M2 released
    cache.get(2, train_new=True)  # DPO: M2 again
    assert loads == [(2, True), (1, False), (2, True)]


# --- pre-flight and drift -------------------------------------------------------------------------

def test_preflight_refuses_a_judge_not_trained_yet(run, judge_file, tmp_path):
    run.cfg.judge = "m3"
    with pytest.raises(SrliteError, match=r"judge is 'm3', but M3 .made by round 2. does not exist yet when round 1 "
                                          r"judges .the newest model then is M1."):
        check_judges(run, 3)
    write_jsonl(run.round_dir(1) / "judgments.jsonl", [])
    write_jsonl(run.round_dir(2) / "judgments.jsonl", [])
    check_judges(run, 3)  # rounds 1 and 2 are judged: round 3 is M3's own
    run.cfg.judge = "m1"
    run.cfg.winrate_judge = "m4"
    with pytest.raises(SrliteError, match=r"winrate_judge is 'm4', but M4 .made by round 3. does not exist yet when "
                                          r"round 1 is evaluated"):
        check_judges(run, 3)
    run.cfg.eval_each_round = False
    check_judges(run, 3)
    run.cfg.judge = str(tmp_path / "nowhere")
    with pytest.raises(SrliteError, match="nor an existing model folder"):
        check_judges(run, 4)
    run.cfg.judge = f"python:{judge_file}:scores"
    with pytest.raises(SrliteError, match="defines no function 'scores'"):
        check_judges(run, 4)


def test_changing_the_judge_mid_round_is_refused_between_rounds_allowed(run, judge_file):
    snapshot_config(run, run.m1_dir)
    snapshot_config(run, run.round_dir(1))
    cfg = read_json(run.config_path)
    cfg.update(judge=f"python:{judge_file}:score", judge_concurrency=16)
    write_json(run.config_path, cfg)
    changed = open_run(run.dir)
    with pytest.raises(SrliteError, match=r"judge: 'self' -> 'python:.*score' .used by round 1, which is in progress"):
        check_drift(changed, force=False)
    cfg["judge"] = "self"
    write_json(run.config_path, cfg)
    check_drift(open_run(run.dir), force=False)  # endpoint settings alone may change at any time
    cfg["judge"] = "m1"
    write_json(run.config_path, cfg)
    write_json(run.round_dir(1) / "metrics.json", {"round": 1})  # round 1 finished: round 2 may use another judge
    check_drift(open_run(run.dir), force=False)


# --- the win rate with a python judge --------------------------------------------------------------

def test_win_rate_with_a_python_judge_compares_scores(run, judge_file):
    from selfreward_lite.evaluation.winrate import prompts_source, responses_path, win_rate

    source = prompts_source(run)
    answers = {1: ["ab", "float", "x", "abc"], 2: ["abcd", "int", "none", "abc"]}  # new: win, win, unparsed, tie
    for n, texts in answers.items():
        write_jsonl(responses_path(run, n, source), [{"id": f"e{i}", "prompt": "Q", "response": r, "finished": True,
                                                       "tokens": 1} for i, r in enumerate(texts)])
    run.cfg.winrate_judge = f"python:{judge_file}:score"
    result = win_rate(run, 2, 1, models=None)
    assert (result["wins"], result["losses"], result["ties"], result["unparsed"]) == (2, 0, 1, 1)
    assert result["verdicts"] == 4 and result["win_rate"] == pytest.approx(2.5 / 3)
    assert result["judge"] == "my_judge.score" and result["picked_first"] is None  # no presentation order
    verdicts = read_jsonl(next((run.dir / "eval").glob("winrate-m2-vs-m1-*.jsonl")))
    assert [(v["score_new"], v["score_old"], v["outcome"]) for v in verdicts][:2] == [(4, 2, "win"), (4, 3.5, "win")]
    assert json.loads(json.dumps(result)) == win_rate(run, 2, 1, models=None)  # cached
    # The judge file is part of the cache key: editing it asks again.
    write_lines(judge_file, [JUDGE_PY + "\n# edited"])
    from selfreward_lite.evaluation.winrate import resolve_judge, win_rate_path
    assert not win_rate_path(run, 2, 1, resolve_judge(run.cfg.winrate_judge, 2), source).exists()


def test_iterate_refuses_a_judge_not_trained_yet_before_loading_anything(run, monkeypatch):
    from helpers import invoke

    from selfreward_lite.models import cache as cache_mod

    monkeypatch.setattr(cache_mod, "load_model", lambda *a, **kw: pytest.fail("a model was loaded"))
    cfg = read_json(run.config_path)
    cfg["judge"] = "m3"
    write_json(run.config_path, cfg)
    r = invoke("iterate", "--rounds", "2", "-d", run.dir)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "judge is 'm3', but M3 (made by round 2) does not exist yet when round 1 judges" in r.stderr.replace("\n", "")


def test_the_example_python_judge():
    from helpers import ROOT

    fn = load_python_function(parse_judge_spec(f"python:{ROOT / 'examples' / 'python_judge.py'}:score"))
    assert python_score(fn, "Q", " ".join(["word"] * 30) + ".") == (5, "ok", "returned 5.0")
    assert python_score(fn, "Q", "") == (None, "no score", "returned None")
    assert 0 <= python_score(fn, "Q", "Too short")[0] < 4
