"""Does it work? The evaluation runs: judge quality (judge_quality.py) and instruction following
(winrate.py) of M1..M_t, each computed once and cached in the run's eval/ folder.

Run on demand with `srlite eval`, or automatically at the end of each round (`eval_each_round`);
`srlite report` reads the cached results back. Models are taken from one `ModelCache`, model by
model, so each is loaded at most once (and not at all when its results are cached).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import SrliteError
from ..models.cache import ModelCache
from ..run.files import write_json
from ..run.rundir import Run, open_run
from ..ui import QuietUI
from .judge_quality import judge_quality
from .winrate import model_responses, prompts_source, win_rate


def evaluate_round(run: Run, t: int, out: Path, ui=QuietUI(), models: ModelCache | None = None) -> dict:
    """The end-of-round evaluation of round t: judge quality of M_t and M_t+1, and M_t+1 vs M_t.

    Cached results are reused, so each model is judged once over the whole run.
    """
    models = models or ModelCache(run)
    quality = {}
    for n in (t, t + 1):  # model by model, so each is loaded at most once (and not at all when cached)
        quality[f"M{n}"] = judge_quality(run, n, models, ui=ui)
        model_responses(run, n, models, prompts_source(run), ui)
    result = {"round": t, "judge_quality": quality, "win_rate": win_rate(run, t + 1, t, models, ui=ui)}
    write_json(out, result)
    return result


def run_eval(run_dir: Path, model: int | None = None, eft: Path | None = None, prompts: Path | None = None,
             judge: str | None = None, ui=QuietUI()) -> dict:
    """`srlite eval`: judge quality of M1..M_newest (or of M_model only) and the win rate of each
    model against the one before it. Cached results are reused."""
    run = open_run(run_dir)
    if judge is not None:
        run = dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, winrate_judge=judge))
    if model is None:
        newest = run.newest_model()
        if newest == 0:
            raise SrliteError(f"{run.dir}: no model to evaluate yet (M1 is missing). Run `srlite iterate` first.")
        wanted = list(range(1, newest + 1))
    else:
        wanted = [run.check_model(model, allow_base=True)]
    models = ModelCache(run)
    quality, wins = [], []
    # Model by model, so each is loaded once: its judge quality, then (as the newer side) its win rate.
    for n in wanted:
        quality.append(judge_quality(run, n, models, eft, ui))
        if n + 1 in wanted:  # M_n is the older side of the next match: answer now, while it is loaded
            model_responses(run, n, models, prompts_source(run, prompts), ui)
        if n >= 2:
            wins.append(win_rate(run, n, n - 1, models, prompts, ui))
    return {"run_dir": str(run.dir), "judge_quality": quality, "win_rates": wins}
