"""Judges on the real embedded model: a `python:` judge in a real round (M1, a stand-in adapter, answers
the round's prompts; the function judges; pairs and the round summary follow), and a fixed judge from
a model folder loaded through the ModelCache in place of M_t.

Round 1's prompts and DPO adapter are written by hand (the adapter a copy of M1's), so
`pipeline.run_round` runs the candidates, judging, pairs and summary stages for real, in seconds."""

import shutil

import pytest
from helpers import make_nonzero_m1

from selfreward_lite.judging.judges import PythonJudge, round_judge
from selfreward_lite.loop import stages
from selfreward_lite.loop.pipeline import run_round
from selfreward_lite.models.adapters import LoadedModel
from selfreward_lite.models.cache import ModelCache
from selfreward_lite.run.create import create_run
from selfreward_lite.run.files import read_json, read_jsonl, write_json, write_jsonl

TINY = dict(lora_r=4, lora_alpha=8, n_candidates=2, response_max_new_tokens=12, judge_samples=2,
            judge_max_new_tokens=12, gen_batch_size=8, eval_each_round=False, ifeval_each_round=False)

LENGTH_JUDGE = '''
def score(prompt, response):
    """Rewards longer answers, up to 5; an empty answer is unparsed."""
    words = len(response.split())
    return None if words == 0 else min(5.0, words / 2)
'''


@pytest.fixture(scope="module")
def round_one(tmp_path_factory, embedded):
    """A run with a stand-in M1 and round 1 done up to its summary by the real stages, judged by a python judge."""
    tmp = tmp_path_factory.mktemp("judges")
    (tmp / "length_judge.py").write_text(LENGTH_JUDGE)
    run = create_run(tmp / "run", preset="cpu", overrides={**TINY, "judge": f"python:{tmp}/length_judge.py:score"})
    make_nonzero_m1(run.cfg, run.m1_dir / "adapter")
    rd = run.round_dir(1)
    write_jsonl(rd / "prompts.jsonl", [{"id": "r1-p0000", "prompt": "Name three fruits."},
                                       {"id": "r1-p0001", "prompt": "Describe the sea in one sentence."}])
    write_json(rd / "prompts_stats.json", {"generated": 2, "kept": 2, "dropped": {}})
    shutil.copytree(run.m1_dir / "adapter", rd / "adapter")  # DPO is not what this tests
    write_json(rd / "adapter" / "dpo.json", {"steps": 0, "first_loss": None, "last_loss": None, "reward_margin": None,
                                             "reward_accuracy": None})
    models = ModelCache(run)
    metrics = run_round(run, 1, models=models)
    return run, models, metrics


def test_python_judge_in_a_real_round(round_one):
    run, _, metrics = round_one
    rd = run.round_dir(1)
    cands = read_jsonl(rd / "candidates.jsonl")
    judgments = read_jsonl(rd / "judgments.jsonl")
    assert len(cands) == 4 and [j["id"] for j in judgments] == [f"{c['id']}-j0" for c in cands]  # one per answer
    for c, j in zip(cands, judgments):
        words = len(c["response"].split())
        assert j["score"] == (None if words == 0 else min(5.0, words / 2)) or j["score"] == int(min(5.0, words / 2))
        assert (j["score"] is None) == (j["parse"] != "ok") and j["text"].startswith("returned ")
    assert metrics["judge"] == run.cfg.judge and metrics["judge"].endswith("length_judge.py:score")
    assert metrics["judgments"]["total"] == 4 and sum(metrics["judgments"]["histogram"].values()) == \
        metrics["judgments"]["parsed"]
    pairs = read_jsonl(rd / "pairs.jsonl")
    for p in pairs:
        assert p["chosen_score"] > p["rejected_score"] and len(p["chosen"].split()) > len(p["rejected"].split())
    assert len(pairs) + sum(read_json(rd / "pairs_stats.json")["dropped"].values()) == 2


def test_model_folder_judge_through_the_model_cache(round_one, embedded, tmp_path):
    run, models, _ = round_one
    assert isinstance(round_judge(run, 1, models), PythonJudge)
    run.cfg.judge = str(embedded)  # a base model folder judges with the rubric, in place of M1
    run.cfg.judge_samples = 1
    judge = round_judge(run, 1, models)
    assert isinstance(judge, LoadedModel) and models._key == ("model", str(embedded), False)
    assert judge.adapter_names == []  # a plain base model, no adapters of this run
    cands = tmp_path / "candidates.jsonl"
    write_jsonl(cands, read_jsonl(run.round_dir(1) / "candidates.jsonl")[:2])
    out = tmp_path / "judgments.jsonl"
    stages.judge_candidates(run, 1, judge, cands, out)
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["r1-p0000-c0-j0", "r1-p0000-c1-j0"] and all(isinstance(r["text"], str) and r["text"] for r in rows)
    for r in rows:
        assert (r["score"] is None) == (r["parse"] != "ok")
        assert r["score"] is None or 0 <= r["score"] <= 5
    models.release()
