"""Pre-flight checks and config drift: a run that cannot finish fails before any model is loaded,
and never continues on settings that contradict its finished work."""

import shutil

import pytest

from selfreward_lite.errors import SrliteError
from selfreward_lite.run.files import read_json, write_json
from selfreward_lite.run.preflight import check_disk, check_drift, check_layout, preflight, remove_stale_temporaries, snapshot_config
from selfreward_lite.run.rundir import open_run


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
