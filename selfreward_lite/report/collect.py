"""What the run measured, gathered from the files that exist (nothing is computed anew).

Reads roundN/metrics.json, the prompts/pairs stats, the DPO logs and the cached evaluations;
anything missing is None, so a run with 0..N rounds can be reported.
"""

from __future__ import annotations

from pathlib import Path

from ..evaluation import ifeval_run
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
            "ifeval_comparison": ifeval_run.cached_comparison(run, t + 1, t),
            # the end-of-round evaluation records why it skipped IFEval (lm-eval missing), never silently
            "ifeval_skipped": ((_read(run.eval_path(t)) or {}).get("ifeval") or {}).get("skipped"),
        })
        t += 1
    newest = run.newest_model()
    return {
        "run_dir": str(run.dir),
        "model": run.cfg.model,
        "preset": run.cfg.preset,
        "m1": _read(run.m1_dir / METRICS),
        "rounds": rounds,
        "judge_quality": {n: cached_judge_quality(run, n) for n in range(1, newest + 1)},
        "ifeval": {n: ifeval_run.cached_scores(run, n) for n in range(1, newest + 1)},
        "ifeval_source": {"data": run.cfg.ifeval_data, "prompts": run.cfg.ifeval_prompts,
                          "max_new_tokens": run.cfg.ifeval_max_new_tokens},
    }
