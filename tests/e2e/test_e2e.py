"""End to end on the embedded model, through the real CLI.

A reference run (`init`, then `iterate --rounds 2`, never interrupted) is checked stage by
stage; a second run with the same settings is killed (SIGKILL) inside prompt generation,
candidate sampling, judging and DPO training, stopped with SIGTERM and SIGINT, restarted
each time, and must end with the same records as the reference: same ids, same counts, no
duplicates, nothing left half-written.

The reference runs in the background and the kill test (which needs only its M1) beside its
rounds: one process trains while the other starts up, loads or decodes small batches, work that
keeps one core busy at most. Each process gets half the module's cores (`ENV`).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import srlite as run_cli
from helpers import tree_digest
from selfreward_lite.run.records import bundled_path

# Small but real: every stage runs, on few prompts and short generations. M1 sees all the judge
# (EFT) seed data, so that its judgments parse, but only a slice of the instruction (IFT) seed, once,
# at twice the cpu preset's learning rate (the preset: two epochs; measured on the same data: SFT
# 130 -> 60 s, more judgments parsed and more pairs). A cut-off answer is never paired, and this M1
# finishes only about half of its answers within 128 tokens, so each prompt gets 6 candidates, 2
# judgments each as in the cpu preset. Its parsed judgments are short ("Score: 4"; none longer than
# 53 tokens in two rounds), so judgments get 64 tokens. Measured with these settings: judgments parsed
# 51 and 40 of 60 (26 and 19 of them completed: judge_complete_score), pairs 4 and 2 (before the
# completion: 25 and 27 parsed, pairs 3 and 3).
TINY = [
    "--set", "prompts_per_round=5", "--set", "n_candidates=6", "--set", "judge_samples=2",
    "--set", "prompt_max_new_tokens=40", "--set", "response_max_new_tokens=128",
    "--set", "judge_max_new_tokens=64", "--set", "sft_epochs=1", "--set", "sft_learning_rate=6e-4",
    "--set", "dpo_epochs=1",
    "--set", "gen_batch_size=4",  # < prompts_per_round: several batches/chunks per stage, so kills land inside
    # the automatic end-of-round evaluation runs too, on 1 EFT question and 2 held-out prompts
    "--set", "eval_questions=1", "--set", "eval_prompts=2", "--set", "eval_max_new_tokens=24",
    "--set", "ifeval_prompts=2", "--set", "ifeval_max_new_tokens=16",
]
IFT_SLICE = 24

# The environment of every srlite process here: the reference and the kill test's runs go two at a
# time, so each gets half the cores this module has (all of them, or a pytest-xdist worker's share:
# tests/conftest.py).
ENV = {**os.environ, "OMP_NUM_THREADS": str(max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 2) // 2))}


def srlite(*args, **kw):
    return run_cli(*args, timeout=900, env=ENV, **kw)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def wait_for(proc, ready, timeout=600, what="kill point") -> bool:
    """Wait until `ready()`; False if the process ended first."""
    start = time.time()
    while not ready():
        if proc.poll() is not None:
            return False
        assert time.time() - start < timeout, f"{what} never reached"
        time.sleep(0.05)
    return True


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


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


class Background:
    """`srlite iterate --rounds 2` on the reference run, in the background (output to files, so
    that a full pipe never blocks it)."""

    def __init__(self, run: Path):
        self.run, self.out, self.err = run, run.parent / "iterate.out", run.parent / "iterate.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "selfreward_lite", "iterate", "--rounds", "2", "-d", str(run)],
                                         stdout=out, stderr=err, env=ENV)

    def wait_for_m1(self) -> None:
        m1 = self.run / "m1" / "metrics.json"
        assert wait_for(self.proc, m1.is_file, what="the reference's M1"), self.err.read_text()[-3000:]

    def result(self):
        self.proc.wait(timeout=1200)
        return self.proc.returncode, self.out.read_text(), self.err.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:  # a test failed before waiting for it
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, embedded):
    """A run that is never interrupted, started in the background (`Background`)."""
    base = tmp_path_factory.mktemp("reference")
    run = base / "run"
    ift = base / "ift_slice.jsonl"
    ift.write_text("".join(bundled_path("ift").read_text().splitlines(keepends=True)[:IFT_SLICE]))
    r = srlite("init", "-d", run, "--preset", "cpu", "--ift", ift, *TINY)
    assert r.returncode == 0, r.stderr
    iterate = Background(run)
    yield {"run": run, "ift": ift, "iterate": iterate}
    iterate.stop()


def start(run: Path):
    # A shell running us in the background may have set SIGINT to "ignore", which the child would
    # inherit; restore the default, as at a terminal.
    return subprocess.Popen([sys.executable, "-m", "selfreward_lite", "iterate", "--rounds", "1", "-d", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_kill_anywhere_then_resume_gives_the_same_records(reference, tmp_path):
    ref = reference["run"]
    run = tmp_path / "run"
    # The same settings (the evaluation after the round is left out: it is not what is tested here).
    r = srlite("init", "-d", run, "--preset", "cpu", "--ift", reference["ift"], *TINY, "--set", "eval_each_round=false",
               "--set", "ifeval_each_round=false")
    assert r.returncode == 0, r.stderr
    reference["iterate"].wait_for_m1()
    shutil.copytree(ref / "m1", run / "m1")  # same M1 (its own kill/restart is the DPO case below)
    rd = run / "round1"
    partial = {name: rd / f"{name}.jsonl.partial" for name in ("prompts", "candidates", "judgments")}

    # Each kill point: the journal (or file) to watch, the artifact whose appearance means the point
    # was passed, and the signal. A point is reached when its journal has more finished records than
    # when the process started: then the stage is mid-way.
    plan = [
        ("prompts", partial["prompts"], rd / "prompts.jsonl", signal.SIGKILL),
        ("candidates", partial["candidates"], rd / "candidates.jsonl", signal.SIGINT),
        ("candidates", partial["candidates"], rd / "candidates.jsonl", signal.SIGKILL),
        ("judging", partial["judgments"], rd / "judgments.jsonl", signal.SIGTERM),
        ("judging", partial["judgments"], rd / "judgments.jsonl", signal.SIGKILL),
        ("DPO", rd / "pairs.jsonl", rd / "adapter", signal.SIGKILL),
    ]
    landed = []
    for stage, watch, done, sig in plan:
        before = lines_in(watch)
        proc = start(run)
        reached = wait_for(proc, lambda: lines_in(watch) > before or done.exists())
        if reached:
            if stage == "DPO":
                time.sleep(2.0)  # the model is loaded already: DPO's reference pass and steps are running
            inside = not done.exists()
            proc.send_signal(sig)
            landed.append((stage, sig.name, inside))
        out, err = proc.communicate(timeout=600)
        assert "Traceback" not in out + err, out + err
        if not reached:
            break
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
        else:  # stops at the next safe point, says how to continue
            assert proc.returncode == 128 + sig, (out, err)
            said = " ".join(out.split())  # rich wraps long lines
            assert f"Stopped ({sig.name})" in said and "continue with: srlite iterate --rounds 1" in said, out
    # Every kill point was reached, in the middle of its stage.
    assert [(stage, inside) for stage, _, inside in landed] == [(p[0], True) for p in plan], landed
    assert not (rd / "adapter").exists()

    r = srlite("iterate", "--rounds", "1", "-d", run)
    assert r.returncode == 0, r.stdout + r.stderr

    cfg = json.loads((run / "config.json").read_text())
    check_round(rd, cfg)
    assert reference["iterate"].result()[0] == 0  # the reference's rounds ran beside this test
    assert not list(run.rglob("*.partial")) and not list(run.rglob("*.tmp")), "a journal or temporary was left"
    for name in ("prompts", "candidates", "judgments", "pairs"):
        got = [x["id"] for x in read_jsonl(rd / f"{name}.jsonl")]
        want = [x["id"] for x in read_jsonl(ref / "round1" / f"{name}.jsonl")]
        assert len(got) == len(set(got)), f"{name}: duplicate records"
        assert got == want, f"{name}: records differ from the uninterrupted run"
    for name in ("prompts_stats.json", "pairs_stats.json"):
        assert json.loads((rd / name).read_text()) == json.loads((ref / "round1" / name).read_text())


def test_init_and_iterate(reference):
    run = reference["run"]
    returncode, out, err = reference["iterate"].result()
    assert returncode == 0, out + err
    cfg = json.loads((run / "config.json").read_text())
    assert len(read_jsonl(run / "seed" / "ift.jsonl")) == IFT_SLICE
    assert "Round 1: M1 -> M2" in out and "Round 2: M2 -> M3" in out and "parse rate" in out
    assert "Judge quality" in out  # the end-of-round evaluation ran and was shown
    for t in (1, 2):
        check_round(run / f"round{t}", cfg)
        assert json.loads((run / f"round{t}" / "config.json").read_text()) == cfg  # settings of the round
    assert json.loads((run / "round2" / "metrics.json").read_text())["round"] == 2
    assert not list(run.rglob("*.partial")) and not list(run.rglob("*.tmp"))

    # Nothing more to do: another invocation changes nothing.
    snapshot = tree_digest(run)
    r = srlite("iterate", "--rounds", "2", "-d", run)
    assert r.returncode == 0 and "m1/adapter (done earlier" in r.stdout
    after = tree_digest(run)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == {k: v for k, v in snapshot.items() if k != "manifest.json"}

    r = srlite("status", "-d", run)
    assert r.returncode == 0 and "round 2" in r.stdout

    # Each round evaluated M_t and M_t+1 (M2's judge quality computed once, in round 1) and M_t+1 vs M_t.
    for t in (1, 2):
        ev = json.loads((run / f"round{t}" / "eval.json").read_text())
        assert set(ev["judge_quality"]) == {f"M{t}", f"M{t + 1}"}
        assert ev["win_rate"]["verdicts"] == 4
        assert set(ev["ifeval"]["models"]) == {f"M{t}", f"M{t + 1}"} and ev["ifeval"]["comparison"]["prompt_strict"]["n"] == 2
    assert json.loads((run / "round2" / "eval.json").read_text())["judge_quality"]["M2"] == \
        json.loads((run / "round1" / "eval.json").read_text())["judge_quality"]["M2"]
    assert len(list((run / "eval" / "m2").glob("ifeval_answers-*.jsonl"))) == 1  # M2 answered once, in round 1
    r = srlite("report", "-d", run)
    assert r.returncode == 0, r.stderr
    assert (run / "report" / "report.md").is_file() and (run / "report" / "win_rate.png").is_file()
    assert (run / "report" / "ifeval.png").is_file() and "IFEval format" in (run / "report" / "report.md").read_text()
