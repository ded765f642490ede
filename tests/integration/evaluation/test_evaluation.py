"""Evaluation on the real embedded model, with tiny settings: the automatic end-of-round eval,
`srlite eval`, `srlite judge` and `srlite report` through the CLI (in process).

M1 and round 1's adapter are stand-ins (random LoRA adapters), and round 1's other artifacts are
written by hand (helpers.fake_round), so `pipeline.run_round` has only its evaluation step left to
do: the path `srlite iterate` takes at the end of every round, in seconds.
"""

import json

import pytest
from helpers import EVAL_TINY as TINY
from helpers import fake_round, make_nonzero_m1
from helpers import invoke as srlite

from selfreward_lite.evaluation.runner import evaluate_round
from selfreward_lite.loop.pipeline import run_round
from selfreward_lite.models.cache import ModelCache
from selfreward_lite.run.create import create_run
from selfreward_lite.run.files import read_jsonl


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, embedded):
    """A run with M1, round 1 (so M2 exists), and round 1's automatic evaluation done."""
    run = create_run(tmp_path_factory.mktemp("eval") / "run", preset="cpu", overrides=TINY)
    make_nonzero_m1(run.cfg, run.m1_dir / "adapter")
    fake_round(run, 1)
    run_round(run, 1)  # every stage's artifact exists except eval.json: only the evaluation runs
    return run


def test_end_of_round_eval(evaluated_run, monkeypatch):
    run = evaluated_run
    ev = json.loads((run.round_dir(1) / "eval.json").read_text())
    assert set(ev["judge_quality"]) == {"M1", "M2"}
    for q in ev["judge_quality"].values():
        assert q["questions"] == 1 and q["answers"] == 3 and q["judgments"] == 6  # 3 answers x 2 samples
        assert q["pairwise"]["pairs"] == 3  # references 3, 1, 5: all pairs differ
        assert q["parsed"] == sum(q["histogram"].values())
    [cached] = list((run.dir / "eval" / "m1").glob("judge_quality-*.jsonl"))
    for j in read_jsonl(cached):
        assert (j["score"] is None) == (j["parse"] != "ok")  # unparsed stays unparsed
    w = ev["win_rate"]
    assert (w["new"], w["old"], w["judge"]) == ("M2", "M1", "M1")  # the default winrate_judge: a fixed M1
    assert w["prompts"] == 2 and w["verdicts"] == 4  # both orders
    assert w["wins"] + w["losses"] + w["ties"] + w["unparsed"] == 4
    verdicts = read_jsonl(next((run.dir / "eval").glob("winrate-m2-vs-m1-*.jsonl")))
    assert sorted(v["a"] for v in verdicts) == ["new", "new", "old", "old"]
    assert len(read_jsonl(next((run.dir / "eval" / "m2").glob("responses-*.jsonl")))) == 2
    # IFEval format: both models answered 3 held-out prompts (greedy, once each), scored strict and loose,
    # with n and intervals, and compared on the same prompts.
    i = ev["ifeval"]
    assert set(i["models"]) == {"M1", "M2"} and i["limit"] == 3
    for s in i["models"].values():
        assert s["prompt_strict"]["n"] == 3 and s["prompt_strict"]["text"] == "too few (n=3)"
        assert s["instruction_loose"]["k"] >= s["instruction_strict"]["k"] and s["decoding"] == "greedy"
        assert s["max_new_tokens"] == 12 and s["answers"]["n"] == 3
    c = i["comparison"]["prompt_strict"]
    assert c["n"] == 3 and c["improved"] + c["worsened"] + c["both_pass"] + c["both_fail"] == 3
    [answers] = list((run.dir / "eval" / "m1").glob("ifeval_answers-*.jsonl"))
    assert [len(r["response"]) > 0 for r in read_jsonl(answers)] == [True] * 3

    # Everything is cached: evaluating again loads no model.
    monkeypatch.setattr(ModelCache, "get", lambda self, spec, **kw: pytest.fail(f"model {spec} loaded again"))
    assert evaluate_round(run, 1, run.dir / "again.json") == ev


def test_srlite_eval_cli(evaluated_run, tmp_path):
    run = evaluated_run
    r = srlite("eval", "-d", run.dir)  # M1, M2 and M2 vs M1 are cached: instant
    assert r.returncode == 0, r.stderr
    assert "Judge quality" in r.stdout and "M2 vs M1" in r.stdout

    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text("".join(json.dumps(x) + "\n" for x in [
        {"prompt": "What is 2 + 2?", "response": "4.", "score": 5},
        {"prompt": "What is 2 + 2?", "response": "Fish.", "score": 0}]))
    r = srlite("eval", "-d", run.dir, "--round", "1", "--eft", ranked)
    assert r.returncode == 0, r.stderr
    [custom] = [p for p in (run.dir / "eval" / "m1").glob("judge_quality-*.json")
                if json.loads(p.read_text())["source"] == str(ranked)]
    q = json.loads(custom.read_text())
    assert q["answers"] == 2 and q["pairwise"]["pairs"] == 1 and q["judgments"] == 4

    # A file in google/IFEval's schema, whole: each model answers its 2 prompts.
    ifeval_file = tmp_path / "input_data.jsonl"
    ifeval_file.write_text("".join(json.dumps(x) + "\n" for x in [
        {"key": 7, "prompt": "Say hello without commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 8, "prompt": "Reply in lowercase: hi.", "instruction_id_list": ["change_case:english_lowercase"],
         "kwargs": [{"num_words": None}]}]))
    r = srlite("eval", "-d", run.dir, "--ifeval", ifeval_file, env={"COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    assert "IFEval format" in r.stdout and "too few (n=2)" in r.stdout
    for m in ("m1", "m2"):
        assert len([p for p in (run.dir / "eval" / m).glob("ifeval_answers-*.jsonl") if len(read_jsonl(p)) == 2]) == 1

    r = srlite("eval", "-d", run.dir, "--round", "7")
    assert r.returncode == 2 and "error:" in r.stderr and "M7 does not exist" in r.stderr


def test_srlite_judge_cli(evaluated_run, tmp_path):
    run = evaluated_run
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(x) + "\n" for x in [
        {"id": "one", "prompt": "Name a colour.", "a": "Blue.", "b": "A table.", "label": "a"},
        {"prompt": "Say hello.", "a": "Bye.", "b": "Hello!", "label": "b"},
        {"prompt": "Say hi.", "a": "Hi.", "b": "Hi there."}]))
    out = tmp_path / "judged"
    r = srlite("judge", pairs, "-d", run.dir, "--round", "1", "-o", out)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "pairs" and summary["model"] == "M1" and summary["records"] == 3
    assert summary["judgments"] == 12 and summary["pairs_labelled"] == 2  # 3 pairs x 2 sides x 2 samples
    rows = read_jsonl(out / "scores.jsonl")
    assert [r["id"] for r in rows] == ["one", "p00001", "p00002"] and "correct" not in rows[2]
    judgments = read_jsonl(out / "judgments.jsonl")
    assert len(judgments) == 12 and all((j["score"] is None) == (j["parse"] != "ok") for j in judgments)
    assert summary["parsed"] == sum(summary["histogram"].values())
    assert "parse rate" in r.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Q", "response": "R"}) + "\n" + json.dumps({"prompt": "Q"}) + "\n")
    r = srlite("judge", bad, "-d", run.dir)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}, line 2, field 'response'" in r.stderr.replace("\n", "")


def test_srlite_report_cli(evaluated_run):
    run = evaluated_run
    r = srlite("report", "-d", run.dir)
    assert r.returncode == 0, r.stderr
    md = (run.dir / "report" / "report.md").read_text()
    for png in ("judge_scores.png", "pairs.png", "response_length.png", "dpo.png", "judge_quality.png", "win_rate.png",
                "ifeval.png"):
        assert (run.dir / "report" / png).read_bytes()[:4] == b"\x89PNG", png
        assert f"({png})" in md
    assert "M1 exists (no training summary" in md  # the stand-in M1 has no m1/metrics.json
    assert "| M1 |" in md and "| M2 |" in md and "M2 vs M1" in md
    assert "too short: 1" in md and "tie (best == worst score): 2" in md
    assert "Judge quality" in r.stdout and "Instruction following" in r.stdout and "M2 vs M1" in r.stdout
    assert "## Instruction following, verified by program (IFEval format)" in md and "| M2 vs M1 | " in md
    assert "too few (n=3)" in md and "100.0%" not in md
