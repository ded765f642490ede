"""Does it work? The evaluation runs: judge quality (judge_quality.py), the win rate (winrate.py)
and IFEval-format accuracy (ifeval_run.py) of M1..M_t, each computed once and cached in the run's
eval/ folder.

Run on demand with `srlite eval`, or automatically at the end of each round (`eval_each_round`
for judge quality and the win rate, `ifeval_each_round` for IFEval); `srlite report` reads the
cached results back. Models are taken from one `ModelCache`, model by model, so each is loaded
at most once (and not at all when its results are cached). When lm-eval's verifiers are not
installed, IFEval is skipped with a notice that says how to install them; the rest runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import SrliteError
from ..models.cache import ModelCache
from ..run.files import write_json
from ..run.rundir import Run, open_run
from ..ui import QuietUI
from . import ifeval_run
from .judge_quality import judge_quality
from .winrate import model_responses, prompts_source, win_rate


def _ifeval_set(run: Run, ui, explicit: Path | str | None = None) -> ifeval_run.IFEvalSet | dict:
    """The IFEval set to evaluate, or a `skipped` record (with a notice) when the verifiers are missing.

    An explicit `--ifeval FILE` that cannot run is an error; the configured per-round set is skipped.
    """
    reason = ifeval_run.unavailable_reason()
    if reason is None:
        s = ifeval_run.file_set(explicit) if explicit is not None else ifeval_run.configured_set(run)
        s.records()  # validate the file before any model is loaded
        return s
    if explicit is not None:
        raise SrliteError(reason)
    ui.info(f"[yellow]IFEval-format evaluation skipped:[/] {reason}")
    return ifeval_run.skipped(reason)


def check_ifeval(run: Run, ui=QuietUI()) -> None:
    """Before `iterate` loads a model: with `ifeval_each_round` on, validate the IFEval set (a bad file
    stops the run now, not after hours of training), or say once that IFEval will be skipped."""
    if not run.cfg.ifeval_each_round:
        return
    reason = ifeval_run.unavailable_reason()
    if reason is None:
        ifeval_run.configured_set(run).records()
    else:
        ui.info(f"[yellow]IFEval-format evaluation will be skipped after each round:[/] {reason} "
                "(or set ifeval_each_round to false in config.json)")


def evaluate_round(run: Run, t: int, out: Path, ui=QuietUI(), models: ModelCache | None = None) -> dict:
    """The end-of-round evaluation of round t: judge quality of M_t and M_t+1 and M_t+1 vs M_t
    (`eval_each_round`), and IFEval-format accuracy of both with their paired comparison
    (`ifeval_each_round`). Cached results are reused, so each model is evaluated once over the run.
    """
    models = models or ModelCache(run)
    cfg = run.cfg
    ifeval_set = _ifeval_set(run, ui) if cfg.ifeval_each_round else None
    answering = isinstance(ifeval_set, ifeval_run.IFEvalSet)
    quality = {}
    for n in (t, t + 1):  # model by model, so each is loaded at most once (and not at all when cached)
        if cfg.eval_each_round:
            quality[f"M{n}"] = judge_quality(run, n, models, ui=ui)
            model_responses(run, n, models, prompts_source(run), ui)
        if answering:
            ifeval_run.model_answers(run, n, models, ifeval_set, ui)
    result: dict = {"round": t}
    if cfg.eval_each_round:
        result.update(judge_quality=quality, win_rate=win_rate(run, t + 1, t, models, ui=ui))
    if answering:
        ev = ifeval_run.evaluate_models(run, [t, t + 1], models, ifeval_set, ui, compare_with_previous=False)
        result["ifeval"] = {"source": ev["source"], "limit": ev["limit"], "models": {m["model"]: m for m in ev["models"]},
                            "comparison": ifeval_run.comparison(run, t + 1, t, models, ifeval_set, ui)}
    elif ifeval_set is not None:
        result["ifeval"] = ifeval_set
    write_json(out, result)
    return result


def run_eval(run_dir: Path, model: int | None = None, eft: Path | None = None, prompts: Path | None = None,
             judge: str | None = None, ui=QuietUI(), ifeval: Path | str | None = None) -> dict:
    """`srlite eval`: judge quality of M1..M_newest (or of M_model only), the win rate of each model
    against the one before it, and IFEval-format accuracy with the paired comparison of each model
    with the one before it (on `ifeval`, a file in google/IFEval's schema, whole; default: the
    configured set, skipped with a notice when lm-eval is missing). Cached results are reused."""
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
    ifeval_set = _ifeval_set(run, ui, ifeval)
    answering = isinstance(ifeval_set, ifeval_run.IFEvalSet)
    models = ModelCache(run)
    quality, wins = [], []
    # Model by model, so each is loaded once: its judge quality and IFEval answers, then (as the
    # newer side) its win rate.
    for n in wanted:
        if answering and n >= 2 and n - 1 not in wanted:  # --round N: M_N-1's answers, for the comparison
            ifeval_run.model_answers(run, n - 1, models, ifeval_set, ui)
        quality.append(judge_quality(run, n, models, eft, ui))
        if answering:
            ifeval_run.model_answers(run, n, models, ifeval_set, ui)
        if n + 1 in wanted:  # M_n is the older side of the next match: answer now, while it is loaded
            model_responses(run, n, models, prompts_source(run, prompts), ui)
        if n >= 2:
            wins.append(win_rate(run, n, n - 1, models, prompts, ui))
    ifeval_result = ifeval_run.evaluate_models(run, wanted, models, ifeval_set, ui) if answering else ifeval_set
    return {"run_dir": str(run.dir), "judge_quality": quality, "win_rates": wins, "ifeval": ifeval_result}
