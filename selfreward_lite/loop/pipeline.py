"""The self-rewarding loop (Yuan et al., 2024), stage by stage.

M1 = M0 + SFT on seed IFT + EFT.  Round t turns M_t into M_t+1:
  1. self-instruction: M_t writes new prompts;
  2. M_t samples N candidate responses per prompt;
  3. M_t judges each candidate with the additive rubric (K samples, averaged), or the configured
     `judge` does (a fixed model, a python function, an OpenAI-compatible endpoint: judging/judges.py);
  4. preference pairs: best vs worst candidate per prompt;
  5. DPO trains a new adapter stacked on M_t's, with M_t as the reference.
Each step reads artifacts on disk and writes one; a step whose artifact exists is skipped,
so an interrupted `srlite iterate` continues where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ..evaluation.runner import check_ifeval, evaluate_round
from ..judging.judges import import_python_judges, judging_title, round_judge
from ..models.backend import prepare
from ..models.cache import ModelCache
from ..run import interrupts
from ..run.files import read_json
from ..run.lock import run_lock
from ..run.preflight import preflight, remove_stale_temporaries, snapshot_config
from ..run.rundir import ADAPTER, CANDIDATES, JUDGMENTS, METRICS, PAIRS, PROMPTS, Run, open_run
from ..run.tracking import check_report_to, log_round_metrics
from ..ui import QuietUI
from . import stages as S


def step(run: Run, ui, name: str, out: Path, make: Callable[[Path], object]) -> None:
    """Run one stage unless its artifact already exists; record it in the manifest."""
    label = f"{out.parent.name}/{out.name}"
    remove_stale_temporaries(out)
    if out.exists():
        ui.skipped(label)
        return
    interrupts.check()
    snapshot_config(run, out.parent)
    ui.stage(f"{label}: {name}")
    start = time.perf_counter()
    make(out)
    run.record_stage(label, time.perf_counter() - start)


def build_m1(run: Run, ui=QuietUI(), models: ModelCache | None = None) -> None:
    """M1: SFT of the first adapter on the seed IFT + EFT data (M0 = the base model + a new adapter)."""
    models = models or ModelCache(run)
    step(run, ui, "SFT on seed IFT + EFT", run.m1_dir / ADAPTER, lambda out: S.train_m1(run, models.trainer(0), out, ui))
    step(run, ui, "M1 summary", run.m1_dir / METRICS, lambda out: S.summarize_m1(run, out))


def run_round(run: Run, t: int, ui=QuietUI(), models: ModelCache | None = None) -> dict:
    """One self-rewarding iteration: M_t -> M_t+1. M_t is loaded on first use and kept for the round."""
    models = models or ModelCache(run)
    rd = run.round_dir(t)
    step(run, ui, "self-instruction (new prompts)", rd / PROMPTS,
         lambda out: S.create_prompts(run, t, models.sampler(t), out, ui))
    step(run, ui, f"{run.cfg.n_candidates} candidates per prompt", rd / CANDIDATES,
         lambda out: S.sample_candidates(run, t, models.sampler(t), rd / PROMPTS, out, ui))
    step(run, ui, judging_title(run.cfg), rd / JUDGMENTS,
         lambda out: S.judge_candidates(run, t, round_judge(run, t, models), rd / CANDIDATES, out, ui))
    step(run, ui, "preference pairs", rd / PAIRS,
         lambda out: S.build_pairs(run, t, rd / CANDIDATES, rd / JUDGMENTS, out))
    step(run, ui, f"DPO -> M{t + 1}", rd / ADAPTER,
         lambda out: S.train_round_adapter(run, t, models.trainer(t), rd / PAIRS, out, ui))
    step(run, ui, "round summary", rd / METRICS, lambda out: S.summarize_round(run, t, out))
    if run.cfg.eval_each_round or run.cfg.ifeval_each_round:
        models.release()  # M_t with its trained adapter; the evaluation loads the models it needs one at a time
        what = ([f"judge quality of M{t} and M{t + 1}, M{t + 1} vs M{t}"] if run.cfg.eval_each_round else []) + \
               (["IFEval-format accuracy"] if run.cfg.ifeval_each_round else [])
        step(run, ui, "evaluation: " + ", ".join(what), run.eval_path(t),
             lambda out: evaluate_round(run, t, out, ui, models))
    return read_json(rd / METRICS)


def iterate(run_dir: Path, rounds: int, ui=QuietUI(), force: bool = False) -> list[dict]:
    """Bring the run to `rounds` completed rounds (building M1 first if needed); returns each round's metrics.

    Pre-flight checks run before any model is loaded; `force` accepts changed settings. Each round
    finished by this call is handed to `ui.round_done` with its metrics and evaluation.
    """
    run = open_run(run_dir)
    with run_lock(run):
        preflight(run, rounds, force)
        check_report_to(run.cfg)
        prepare(run.cfg)  # picks hf/unsloth; unsloth must be imported before the libraries it patches
        check_ifeval(run, ui)  # after prepare: lm-eval imports libraries that unsloth patches
        import_python_judges(run.cfg)  # after the backend's imports, before any model loads
        models = ModelCache(run)
        build_m1(run, ui, models)
        results = []
        for t in range(1, rounds + 1):
            done_before = (run.round_dir(t) / METRICS).exists()
            metrics = run_round(run, t, ui, models)
            if not done_before:
                evaluation = read_json(run.eval_path(t)) if run.eval_path(t).is_file() else None
                ui.round_done(t, metrics, evaluation)
                log_round_metrics(run, t, metrics)
            results.append(metrics)
    return results
