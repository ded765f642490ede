"""What the run measured, gathered from the files that exist (nothing is computed anew).

Reads roundN/metrics.json, the prompts/pairs stats, the DPO logs and the cached evaluations;
anything missing is None, so a run with 0..N rounds can be reported.
"""

from __future__ import annotations

from pathlib import Path

from ..evaluation.judge_quality import cached_judge_quality
from ..evaluation.winrate import cached_win_rate
from ..run.files import read_json
from ..run.rundir import METRICS, Run


def _read(path: Path):
    return read_json(path) if path.is_file() else None


def collect(run: Run) -> dict:
    """Everything the report shows, from the files that exist."""
    rounds = []
    t = 1
    while run.round_dir(t).is_dir():
        dpo = _read(run.dpo_summary_path(t))
        rounds.append({
            "round": t,
            "metrics": _read(run.round_dir(t) / METRICS),
            "prompts": _read(run.prompts_stats_path(t)),
            "pairs": _read(run.pairs_stats_path(t)),
            "dpo_log": [h for h in (dpo or {}).get("log", []) if "loss" in h],
            "win_rate": cached_win_rate(run, t + 1, t),
        })
        t += 1
    return {
        "run_dir": str(run.dir),
        "model": run.cfg.model,
        "preset": run.cfg.preset,
        "m1": _read(run.m1_dir / METRICS),
        "rounds": rounds,
        "judge_quality": {n: cached_judge_quality(run, n) for n in range(1, run.newest_model() + 1)},
    }
