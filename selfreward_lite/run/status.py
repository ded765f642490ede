"""`srlite status`: what exists in a run, read from disk (a file that exists is complete)."""

from __future__ import annotations

from pathlib import Path

from .rundir import ADAPTER, ADAPTER_CONFIG, CANDIDATES, JUDGMENTS, METRICS, PAIRS, PROMPTS, Run, journal_of, open_run


def count(path: Path) -> int | str | None:
    """Records in a finished artifact; for one in progress, what its journal says; None if not started."""
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    journal = journal_of(path)
    if not journal.is_file():
        return None
    if path.name == PROMPTS:  # its journal holds raw samples, not kept prompts
        return "in progress"
    finished = journal.read_bytes().count(b"\n")  # a torn last line has no newline yet
    return f"{finished} so far"


def run_status(run: Run) -> dict:
    """What exists: M1, then each round's stages, with a few counts."""
    rounds = []
    t = 1
    while run.round_dir(t).is_dir():
        rd = run.round_dir(t)
        rounds.append(
            {
                "round": t,
                "prompts": count(rd / PROMPTS),
                "candidates": count(rd / CANDIDATES),
                "judgments": count(rd / JUDGMENTS),
                "pairs": count(rd / PAIRS),
                "adapter": (rd / ADAPTER / ADAPTER_CONFIG).is_file(),
                "complete": (rd / METRICS).is_file(),
            }
        )
        t += 1
    return {
        "run_dir": str(run.dir),
        "model": run.cfg.model,
        "preset": run.cfg.preset,
        "m1": (run.m1_dir / METRICS).is_file(),
        "m1_started": run.snapshot_path(run.m1_dir).is_file(),  # settings snapshot: SFT has begun
        "rounds": rounds,
        "completed_rounds": run.completed_rounds(),
        "manifest": run.manifest(),
    }


def status(run_dir: Path) -> dict:
    """`srlite status` for the run in `run_dir`."""
    return run_status(open_run(run_dir))
