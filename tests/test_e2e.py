"""End to end on the embedded model: the real CLI, `init` then `iterate --rounds 2`, with an
interruption (SIGINT) in the middle that the second invocation recovers from."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path


from conftest import tree_digest
from selfreward_lite.data import bundled_path

# Small but real: every stage runs, on few prompts and short generations. M1 sees all the judge
# (EFT) seed data twice, as in the cpu preset, so that its judgments parse, but only a slice of
# the instruction (IFT) seed.
TINY = [
    "--set", "prompts_per_round=6", "--set", "n_candidates=4", "--set", "judge_samples=3",
    "--set", "prompt_max_new_tokens=40", "--set", "response_max_new_tokens=40",
    "--set", "judge_max_new_tokens=96", "--set", "sft_epochs=2", "--set", "dpo_epochs=1",
    "--set", "gen_batch_size=24",
    # the automatic end-of-round evaluation runs too, on 1 EFT question and 2 held-out prompts
    "--set", "eval_questions=1", "--set", "eval_prompts=2", "--set", "eval_max_new_tokens=24",
]
IFT_SLICE = 24


def srlite(*args, **kw):
    return subprocess.run([sys.executable, "-m", "selfreward_lite", *map(str, args)], capture_output=True,
                          text=True, timeout=900, **kw)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def wait_for(path: Path, proc, timeout=600):
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout, f"{path} never appeared"
        time.sleep(0.2)


def check_round(rd: Path, cfg: dict):
    prompts = read_jsonl(rd / "prompts.jsonl")
    stats = json.loads((rd / "prompts_stats.json").read_text())
    assert 0 < len(prompts) <= cfg["prompts_per_round"] and stats["kept"] == len(prompts)
    assert stats["generated"] == stats["kept"] + sum(stats["dropped"].values())
    assert len({p["id"] for p in prompts}) == len(prompts) and all(p["prompt"].strip() for p in prompts)

    cands = read_jsonl(rd / "candidates.jsonl")
    assert len(cands) == len(prompts) * cfg["n_candidates"]
    assert {c["prompt_id"] for c in cands} == {p["id"] for p in prompts}
    assert len({c["id"] for c in cands}) == len(cands)

    judgments = read_jsonl(rd / "judgments.jsonl")
    assert len(judgments) == len(cands) * cfg["judge_samples"]
    for j in judgments:
        assert isinstance(j["text"], str)
        if j["score"] is None:
            assert j["parse"] != "ok"  # unparsed stays unparsed
        else:
            assert j["parse"] == "ok" and 0 <= j["score"] <= 5

    pairs = read_jsonl(rd / "pairs.jsonl")
    pstats = json.loads((rd / "pairs_stats.json").read_text())
    assert pstats["kept"] == len(pairs) > 0
    assert len(pairs) + sum(pstats["dropped"].values()) == len(prompts)
    for p in pairs:
        assert p["chosen_score"] > p["rejected_score"] and p["chosen"] != p["rejected"]

    assert (rd / "adapter" / "adapter_model.safetensors").is_file()
    dpo = json.loads((rd / "adapter" / "dpo.json").read_text())
    assert dpo["steps"] >= 1 and set(dpo["ref_logps"]) == {p["id"] for p in pairs}
    metrics = json.loads((rd / "metrics.json").read_text())
    assert metrics["judgments"]["total"] == len(judgments)
    assert metrics["pairs"]["kept"] == len(pairs)
    assert sum(metrics["judgments"]["histogram"].values()) == metrics["judgments"]["parsed"]


def test_init_iterate_interrupt_resume(tmp_path, embedded):
    run = tmp_path / "run"
    ift = tmp_path / "ift_slice.jsonl"
    ift.write_text("".join(bundled_path("ift").read_text().splitlines(keepends=True)[:IFT_SLICE]))
    r = srlite("init", "-d", run, "--preset", "cpu", "--ift", ift, *TINY)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert len(read_jsonl(run / "seed" / "ift.jsonl")) == IFT_SLICE

    # First invocation: interrupted with Ctrl-C (SIGINT) once round 1 has its candidates.
    # A shell running us in the background may have set SIGINT to "ignore", which the child would
    # inherit; restore the default so that Python turns SIGINT into KeyboardInterrupt, as at a terminal.
    proc = subprocess.Popen([sys.executable, "-m", "selfreward_lite", "iterate", "--rounds", "2", "-d", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(run / "round1" / "candidates.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (out, err)
    assert "Interrupted" in out and "Traceback" not in out + err
    assert not (run / "round1" / "adapter").exists()
    assert not list(run.rglob("*.tmp")), "a temporary file was left behind"
    kept = {name: tree_digest(run / name) for name in ("m1/adapter",)}
    kept.update({f"round1/{f}": (run / "round1" / f).read_bytes() for f in ("prompts.jsonl", "candidates.jsonl")})
    stages_before = json.loads((run / "manifest.json").read_text())["stages"]

    # Second invocation: continues after the last finished stage.
    r = srlite("iterate", "--rounds", "2", "-d", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "m1/adapter (done earlier" in r.stdout and "round1/candidates.jsonl (done earlier" in r.stdout
    assert tree_digest(run / "m1/adapter") == kept["m1/adapter"]
    for f in ("prompts.jsonl", "candidates.jsonl"):
        assert (run / "round1" / f).read_bytes() == kept[f"round1/{f}"]
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    for name, info in stages_before.items():
        assert stages[name] == info, f"{name} was redone"
    assert "Round 1: M1 -> M2" in r.stdout and "Round 2: M2 -> M3" in r.stdout
    assert "parse rate" in r.stdout
    assert "Judge quality" in r.stdout  # the end-of-round evaluation ran and was shown

    for t in (1, 2):
        check_round(run / f"round{t}", cfg)
    # Round 2 trained on top of round 1: earlier adapters are unchanged by round 2.
    assert tree_digest(run / "m1/adapter") == kept["m1/adapter"]
    assert json.loads((run / "round2" / "metrics.json").read_text())["round"] == 2

    # Nothing more to do: a third invocation changes nothing.
    snapshot = tree_digest(run)
    r = srlite("iterate", "--rounds", "2", "-d", run)
    assert r.returncode == 0
    after = tree_digest(run)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {k: v for k, v in snapshot.items() if k != "manifest.json"}

    r = srlite("status", "-d", run)
    assert r.returncode == 0 and "round 2" in r.stdout

    # Each round evaluated M_t and M_t+1 (M2's judge quality computed once, in round 1) and M_t+1 vs M_t.
    for t in (1, 2):
        ev = json.loads((run / f"round{t}" / "eval.json").read_text())
        assert set(ev["judge_quality"]) == {f"M{t}", f"M{t + 1}"}
        assert ev["win_rate"]["verdicts"] == 4
    assert json.loads((run / "round2" / "eval.json").read_text())["judge_quality"]["M2"] == \
        json.loads((run / "round1" / "eval.json").read_text())["judge_quality"]["M2"]
    r = srlite("report", "-d", run)
    assert r.returncode == 0, r.stderr
    assert (run / "report" / "report.md").is_file() and (run / "report" / "win_rate.png").is_file()
