"""Pure logic of resuming: the journal, out-of-memory back-off, config drift, pre-flight checks."""

import json
import shutil
from dataclasses import asdict

import pytest
import torch

from selfreward_lite.run import interrupts
from selfreward_lite.run.files import read_json, write_json
from selfreward_lite.errors import SrliteError
from selfreward_lite.run.journal import Journal, complete_groups
from selfreward_lite.loop.oom import is_oom, with_backoff
from selfreward_lite.run.preflight import check_disk, check_drift, check_layout, preflight, remove_stale_temporaries, snapshot_config
from selfreward_lite.run.create import create_run
from selfreward_lite.run.rundir import open_run


def rec(pid, k):
    return {"id": f"{pid}-c{k}", "prompt_id": pid, "response": f"answer {k}"}


# --- journal -------------------------------------------------------------------------------

def test_journal_repairs_torn_tail_and_drops_incomplete_groups(tmp_path):
    j = Journal(tmp_path / "candidates.jsonl")
    j.append([rec("p0", 0), rec("p0", 1)])
    j.append([rec("p1", 0), rec("p1", 1)])
    # A kill in the middle of writing p2's chunk: one full line, then half a line.
    with open(j.path, "a") as f:
        f.write(json.dumps(rec("p2", 0)) + "\n" + json.dumps(rec("p2", 1))[:17])
    kept = j.load(complete_groups("prompt_id", 2))
    assert [r["id"] for r in kept] == ["p0-c0", "p0-c1", "p1-c0", "p1-c1"]
    # The file was repaired: appending p2 again gives exactly one copy of each record.
    assert j.path.read_text().endswith("\n")
    j.append([rec("p2", 0), rec("p2", 1)])
    ids = [r["id"] for r in j.load(complete_groups("prompt_id", 2))]
    assert ids == ["p0-c0", "p0-c1", "p1-c0", "p1-c1", "p2-c0", "p2-c1"]
    j.finish(j.load())
    assert not j.path.exists()
    assert len((tmp_path / "candidates.jsonl").read_text().splitlines()) == 6


def test_journal_ignores_duplicates_and_empty(tmp_path):
    j = Journal(tmp_path / "x.jsonl")
    assert j.load() == []
    j.append([rec("p0", 0), rec("p0", 1), rec("p0", 0)])
    assert [r["id"] for r in j.load(complete_groups("prompt_id", 2))] == ["p0-c0", "p0-c1"]
    assert len(j.path.read_text().splitlines()) == 2


def test_journal_garbled_middle_line_keeps_prefix(tmp_path):
    j = Journal(tmp_path / "x.jsonl")
    j.path.write_bytes(b'{"id": "a", "prompt_id": "p"}\n\xff\xfe garbage\n{"id": "b", "prompt_id": "p"}\n')
    assert [r["id"] for r in j.load()] == ["a"]


# --- interrupts ----------------------------------------------------------------------------

def test_first_signal_only_requests_a_stop(tmp_path):
    import os
    import signal

    seen = []
    with interrupts.graceful_stop(seen.append):
        interrupts.check()
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
        with pytest.raises(interrupts.Interrupted) as e:
            interrupts.check()
        assert e.value.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # second signal: stop at once
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# --- out-of-memory back-off -----------------------------------------------------------------

@pytest.fixture
def run(tmp_path):
    return create_run(tmp_path / "run", preset="cpu", overrides={})


def test_backoff_halves_records_and_reuses(run):
    tried = []

    def work(size):
        tried.append(size)
        if size > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return size

    assert with_backoff(run, "generation", 32, work) == 8
    assert tried == [32, 16, 8]
    assert read_json(run.manifest_path)["batch_sizes"] == {"generation": 8}
    tried.clear()
    assert with_backoff(open_run(run.dir), "generation", 32, work) == 8  # resumed: starts at 8
    assert tried == [8]


def test_backoff_floor_gives_clear_error_and_other_errors_pass(run):
    def always_oom(size):
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(SrliteError, match="even at batch size 1"):
        with_backoff(run, "training", 4, always_oom)
    with pytest.raises(ValueError):
        with_backoff(run, "training", 4, lambda s: (_ for _ in ()).throw(ValueError("bug")))
    assert is_oom(MemoryError("out of memory")) and not is_oom(RuntimeError("shape mismatch"))


def test_training_stage_restarts_from_fresh_adapter_after_oom(run, monkeypatch):
    """Simulated OOM in DPO: the adapter is reset to B = 0 and training retried at half micro-batch."""
    from selfreward_lite.loop import stages

    calls = []

    class FakeLM:
        pass

    def fake_train(cfg, lm, pairs, on_step=None, checkpoint_dir=None, log_dir=None):
        calls.append(cfg.train_micro_batch_size)
        if cfg.train_micro_batch_size > 1:
            raise torch.cuda.OutOfMemoryError("out of memory")
        return {"steps": 1}

    resets = []
    monkeypatch.setattr("selfreward_lite.loop.train.train_dpo", fake_train)
    monkeypatch.setattr("selfreward_lite.models.adapters.reset_trainable", lambda lm, seed: resets.append(lm))
    monkeypatch.setattr("selfreward_lite.models.adapters.save_adapter", lambda lm, out, name, meta: write_json(out / name, meta))
    pairs = run.round_dir(1) / "pairs.jsonl"
    pairs.parent.mkdir(parents=True)
    pairs.write_text(json.dumps({"id": "x", "prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    stages.train_round_adapter(run, 1, FakeLM(), pairs, run.round_dir(1) / "adapter")
    assert calls == [4, 2, 1] and len(resets) == 2
    assert read_json(run.manifest_path)["batch_sizes"]["training"] == 1


# --- config drift ---------------------------------------------------------------------------

def edit_config(run, **changes):
    cfg = read_json(run.config_path)
    cfg.update(changes)
    write_json(run.config_path, cfg)
    return open_run(run.dir)


def test_drift_refused_for_run_wide_fields_after_m1(run):
    snapshot_config(run, run.m1_dir)
    check_drift(open_run(run.dir), force=False)  # nothing changed
    changed = edit_config(run, rubric="additive", gen_batch_size=4)
    with pytest.raises(SrliteError, match="rubric: 'additive-compact' -> 'additive'"):
        check_drift(changed, force=False)
    ok = edit_config(run, rubric="additive-compact", gen_batch_size=4)  # batch size alone is fine
    check_drift(ok, force=False)


def test_drift_round_fields_locked_only_while_round_in_progress(run):
    snapshot_config(run, run.m1_dir)
    snapshot_config(run, run.round_dir(1))
    changed = edit_config(run, n_candidates=6)
    with pytest.raises(SrliteError, match="n_candidates: 4 -> 6 .used by round 1, which is in progress"):
        check_drift(changed, force=False)
    write_json(run.round_dir(1) / "metrics.json", {"round": 1})  # round 1 finished: round 2 may differ
    check_drift(changed, force=False)


def test_drift_forced_is_recorded(run):
    snapshot_config(run, run.m1_dir)
    changed = edit_config(run, seed=7)
    check_drift(changed, force=True)
    forced = read_json(run.manifest_path)["forced_config_changes"]
    assert forced[0]["changes"] == {"seed": [0, 7]}
    check_drift(changed, force=False)  # accepted once, not asked again
    assert read_json(run.m1_dir / "config.json")["seed"] == 7


# --- pre-flight -----------------------------------------------------------------------------

def test_seed_copy_edited_after_start_is_refused(run):
    path = run.seed_path("ift")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    preflight(run, 1)  # not started yet: the copy is still valid, and nothing depends on it
    snapshot_config(run, run.m1_dir)
    with pytest.raises(SrliteError, match="seed data changed after the run started"):
        preflight(run, 1)
    path.write_text("".join(lines[:-1]) + '{"messages": []}\n')
    with pytest.raises(SrliteError, match=r"ift.jsonl, line \d+, field 'messages'"):
        preflight(run, 1)


def test_disk_space_check(run, monkeypatch):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 5 * 1024 * 1024))
    with pytest.raises(SrliteError, match="not enough free disk space"):
        check_disk(run, 3)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, 10**11))
    check_disk(run, 3)


def test_links_out_of_the_run_dir_are_refused(run, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (run.dir / "round1").symlink_to(outside)
    with pytest.raises(SrliteError, match="outside the run directory"):
        check_layout(run)


def test_stale_temporaries_removed(tmp_path):
    out = tmp_path / "adapter"
    (tmp_path / ".adapter.abc123.tmp").mkdir()
    (tmp_path / ".pairs.jsonl.x.tmp").write_text("x")
    remove_stale_temporaries(out)
    assert not (tmp_path / ".adapter.abc123.tmp").exists() and (tmp_path / ".pairs.jsonl.x.tmp").exists()
    # A killed process may also leave a finished artifact's journal or training checkpoints.
    (tmp_path / "adapter.checkpoints" / "checkpoint-3").mkdir(parents=True)
    (tmp_path / "c.jsonl").write_text("{}\n")
    (tmp_path / "c.jsonl.partial").write_text("{}\n")
    remove_stale_temporaries(out)
    assert (tmp_path / "adapter.checkpoints").exists()  # adapter not written yet: keep them
    out.mkdir()
    remove_stale_temporaries(out)
    remove_stale_temporaries(tmp_path / "c.jsonl")
    assert not (tmp_path / "adapter.checkpoints").exists() and not (tmp_path / "c.jsonl.partial").exists()


def test_run_lock_refuses_a_second_process(run):
    import subprocess
    import sys

    from selfreward_lite.run.lock import run_lock

    code = ("import sys; from selfreward_lite.run.rundir import open_run; from selfreward_lite.run.lock import run_lock\n"
            "try:\n    with run_lock(open_run(sys.argv[1])): pass\nexcept Exception as e: print(e)")
    with run_lock(run):
        out = subprocess.run([sys.executable, "-c", code, str(run.dir)], capture_output=True, text=True).stdout
    assert "another srlite process" in out
    assert asdict(run.cfg)  # the run is intact


# --- journaled stages, with a fake model ----------------------------------------------------

class Crash(Exception):
    pass


def fake_generate_factory(crash_after=None):
    """Deterministic stand-in for model.generate: output depends on the text, sample index and seed."""
    import hashlib

    from selfreward_lite.models.generation import Sample

    calls = []

    def generate(lm, texts, n, *, seed, batch_size, stop_strings=None, **kw):
        if crash_after is not None and len(calls) >= crash_after:
            raise Crash
        calls.append(len(texts))
        out = []
        for t in texts:
            group = []
            for k in range(n):
                h = hashlib.sha256(f"{t}|{k}|{seed}".encode()).hexdigest()
                words = " ".join(f"w{h[i:i + 3]}" for i in range(0, 18, 3))
                text = f"Explain the idea of {words} in simple words?\nTask" if stop_strings else f"{words}. Score: {int(h, 16) % 6}"
                group.append(Sample(text, True, 7))
            out.append(group)
        return out

    return generate, calls


class FakeTok:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages)


class FakeLM:
    tokenizer = FakeTok()


@pytest.mark.parametrize("crash_after", [1, 2, 3])
def test_journaled_stages_resume_to_the_uninterrupted_result(tmp_path, monkeypatch, crash_after):
    from selfreward_lite.loop import stages

    def make_run(name):
        return create_run(tmp_path / name, preset="cpu", overrides={
            "prompts_per_round": 6, "gen_batch_size": 4, "n_candidates": 2, "judge_samples": 2})

    def all_stages(run, generate):
        monkeypatch.setattr("selfreward_lite.models.generation.generate", generate)
        rd = run.round_dir(1)
        for fn, out in ((lambda o: stages.create_prompts(run, 1, FakeLM(), o), rd / "prompts.jsonl"),
                        (lambda o: stages.sample_candidates(run, 1, FakeLM(), rd / "prompts.jsonl", o), rd / "candidates.jsonl"),
                        (lambda o: stages.judge_candidates(run, 1, FakeLM(), rd / "candidates.jsonl", o), rd / "judgments.jsonl")):
            if not out.exists():
                fn(out)

    ref = make_run("ref")
    all_stages(ref, fake_generate_factory()[0])
    run = make_run("run")
    crashes = 0
    while True:  # crash after `crash_after` generate calls, again and again, until done
        try:
            all_stages(run, fake_generate_factory(crash_after)[0])
            break
        except Crash:
            crashes += 1
            # a kill can also tear the line being written
            for p in run.round_dir(1).glob("*.partial"):
                with open(p, "a") as f:
                    f.write('{"id": "torn')
    assert crashes >= 3
    for name in ("prompts.jsonl", "candidates.jsonl", "judgments.jsonl", "prompts_stats.json"):
        assert (run.round_dir(1) / name).read_text() == (ref.round_dir(1) / name).read_text(), name
    assert not list(run.round_dir(1).glob("*.partial"))
    assert len((run.round_dir(1) / "judgments.jsonl").read_text().splitlines()) == 6 * 2 * 2


def test_generation_oom_halves_batch_and_keeps_every_record(tmp_path, monkeypatch):
    from selfreward_lite.loop import stages

    run = create_run(tmp_path / "run", preset="cpu", overrides={
        "prompts_per_round": 4, "gen_batch_size": 8, "n_candidates": 2, "judge_samples": 2})
    inner, _ = fake_generate_factory()
    sizes = []

    def tight_memory(lm, texts, n, *, batch_size, **kw):
        sizes.append(batch_size)
        if batch_size > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return inner(lm, texts, n, batch_size=batch_size, **kw)

    monkeypatch.setattr("selfreward_lite.models.generation.generate", tight_memory)
    rd = run.round_dir(1)
    stages.create_prompts(run, 1, FakeLM(), rd / "prompts.jsonl")
    stages.sample_candidates(run, 1, FakeLM(), rd / "prompts.jsonl", rd / "candidates.jsonl")
    assert sizes[:3] == [8, 4, 2] and set(sizes[3:]) == {2}  # halved once, then reused
    assert read_json(run.manifest_path)["batch_sizes"] == {"generation": 2}
    cands = [json.loads(line) for line in (rd / "candidates.jsonl").read_text().splitlines()]
    assert len(cands) == 4 * 2 and len({c["id"] for c in cands}) == 8
