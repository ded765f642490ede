"""The self-rewarding loop (Yuan et al., 2024), stage by stage.

M1 = M0 + SFT on seed IFT + EFT.  Round t turns M_t into M_t+1:
  1. self-instruction: M_t writes new prompts;
  2. M_t samples N candidate responses per prompt;
  3. M_t judges each candidate with the additive rubric (K samples, averaged);
  4. preference pairs: best vs worst candidate per prompt;
  5. DPO trains a new adapter stacked on M_t's, with M_t as the reference.
Each step reads artifacts on disk and writes one; a step whose artifact exists is skipped,
so an interrupted `srlite iterate` continues where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Callable

from ..run import interrupts
from . import stages as S
from ..report.display import QuietUI
from ..run.preflight import preflight, remove_stale_temporaries, snapshot_config
from ..run.rundir import EVAL, Run, open_run, run_lock


class ModelSlot:
    """M_t, loaded on first use and kept for the rest of the round (one instance in memory)."""

    def __init__(self, run: Run, adapter_dirs: list[Path]):
        self.run, self.adapter_dirs, self._lm = run, adapter_dirs, None

    def sampler(self):
        """M_t for generation: the frozen stack without the (zero) trainable adapter."""
        from ..models.backend import for_sampling

        return for_sampling(self._load())

    def trainer(self):
        """M_t + a fresh trainable adapter, for SFT/DPO."""
        from ..models.backend import for_training

        return for_training(self._load())

    def release(self) -> None:
        """Drop M_t from memory (the evaluation loads the models it needs one at a time)."""
        self._lm = None

    def _load(self):
        if self._lm is None:
            from ..models.backend import load_model

            self._lm = load_model(self.run.cfg, self.adapter_dirs, train_new=True)
        return self._lm


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


def build_m1(run: Run, ui=QuietUI()) -> None:
    """M1: SFT of the first adapter on the seed IFT + EFT data."""
    slot = ModelSlot(run, [])
    step(run, ui, "SFT on seed IFT + EFT", run.m1_dir / S.ADAPTER, lambda out: S.train_m1(run, slot.trainer(), out, ui))
    step(run, ui, "M1 summary", run.m1_dir / S.METRICS, lambda out: S.summarize_m1(run, out))


def run_round(run: Run, t: int, ui=QuietUI()) -> dict:
    """One self-rewarding iteration: M_t -> M_t+1."""
    from ..run.files import read_json

    rd = run.round_dir(t)
    m_t = ModelSlot(run, run.adapters_of(t))
    step(run, ui, "self-instruction (new prompts)", rd / S.PROMPTS,
         lambda out: S.create_prompts(run, t, m_t.sampler(), out, ui))
    step(run, ui, f"{run.cfg.n_candidates} candidates per prompt", rd / S.CANDIDATES,
         lambda out: S.sample_candidates(run, t, m_t.sampler(), rd / S.PROMPTS, out, ui))
    step(run, ui, f"LLM-as-a-judge, {run.cfg.judge_samples} samples each", rd / S.JUDGMENTS,
         lambda out: S.judge_candidates(run, t, m_t.sampler(), rd / S.CANDIDATES, out, ui))
    step(run, ui, "preference pairs", rd / S.PAIRS,
         lambda out: S.build_pairs(run, rd / S.CANDIDATES, rd / S.JUDGMENTS, out))
    step(run, ui, f"DPO -> M{t + 1}", rd / S.ADAPTER,
         lambda out: S.train_round_adapter(run, t, m_t.trainer(), rd / S.PAIRS, out, ui))
    step(run, ui, "round summary", rd / S.METRICS, lambda out: S.summarize_round(run, t, out))
    if run.cfg.eval_each_round:
        from ..evaluation.judge_quality import evaluate_round

        m_t.release()
        step(run, ui, f"evaluation: judge quality of M{t} and M{t + 1}, M{t + 1} vs M{t}", rd / EVAL,
             lambda out: evaluate_round(run, t, out, ui))
    return read_json(rd / S.METRICS)


def iterate(run_dir: Path, rounds: int, ui=QuietUI(), force: bool = False) -> list[dict]:
    """Bring the run to `rounds` completed rounds (building M1 first if needed).

    Pre-flight checks run before any model is loaded; `force` accepts changed settings.
    """
    from ..run.tracking import check_report_to, log_round_metrics

    run = open_run(run_dir)
    with run_lock(run):
        preflight(run, rounds, force)
        check_report_to(run.cfg)
        from ..models.backend import prepare

        prepare(run.cfg)  # picks hf/unsloth; unsloth must be imported before the libraries it patches
        build_m1(run, ui)
        results = []
        for t in range(1, rounds + 1):
            done_before = (run.round_dir(t) / S.METRICS).exists()
            metrics = run_round(run, t, ui)
            if not done_before:
                ui.round_table(f"Round {t}: M{t} -> M{t + 1}", metrics)
                log_round_metrics(run.cfg, run.dir, t, metrics)
                if (run.round_dir(t) / EVAL).is_file():
                    from ..run.files import read_json
                    from ..report.markdown import round_eval_table

                    ui.info(round_eval_table(read_json(run.round_dir(t) / EVAL)))
            results.append(metrics)
    return results
