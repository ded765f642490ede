"""Optional experiment tracking: TensorBoard or Weights & Biases (config field `report_to`).

Training curves come from the TRL trainers' own `report_to` integration; the round summary
(roundN/metrics.json) is logged once per round with the round number as the step. Everything
goes under run_dir/logs/ (TensorBoard event files; W&B's local folder):

    logs/m1-sft/  logs/round1-dpo/ ...   trainer curves (loss, learning rate, DPO rewards)
    logs/rounds/                          round metrics: parse rate, mean score, pairs kept, ...

    tensorboard --logdir srlite-run/logs

The tracking packages are imported only when used; a missing one is reported at run start.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from ..errors import SrliteError
from .rundir import Run

_INSTALL = {"tensorboard": "pip install tensorboard", "wandb": "pip install wandb (then `wandb login`, or WANDB_MODE=offline)"}
WANDB_PROJECT = "srlite"  # used unless WANDB_PROJECT is set


def check_report_to(cfg) -> None:
    """Fail early, with the command that fixes it, when the chosen tracker is not installed."""
    if cfg.report_to == "none":
        return
    if importlib.util.find_spec(cfg.report_to) is None:
        raise SrliteError(
            f"config: report_to is {cfg.report_to!r} but the {cfg.report_to!r} package is not installed. "
            f"Install it with: {_INSTALL[cfg.report_to]}; or set report_to to 'none' in config.json."
        )


def trainer_report_to(cfg, log_dir: Path | None) -> list[str]:
    """The trainers' `report_to`: nothing unless tracking is on and a log folder was given."""
    return [] if cfg.report_to == "none" or log_dir is None else [cfg.report_to]


@contextlib.contextmanager
def trainer_logging(cfg, log_dir: Path | None):
    """Point the trainers' TensorBoard / W&B callbacks at `log_dir` (they read these variables)."""
    if cfg.report_to == "none" or log_dir is None:
        yield
        return
    log_dir = Path(log_dir).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    values = {"TENSORBOARD_LOGGING_DIR": str(log_dir), "WANDB_DIR": str(log_dir.parent),
              "WANDB_PROJECT": os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
              "WANDB_RUN_GROUP": _group(log_dir.parent.parent)}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        # The trainer's W&B callback leaves its run open; the next trainer would log into it.
        wandb = sys.modules.get("wandb")
        if cfg.report_to == "wandb" and wandb is not None and wandb.run is not None:
            wandb.finish()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _group(run_dir: Path) -> str:
    """W&B group of all of one srlite run's W&B runs (trainers and rounds): the run folder's name."""
    return Path(run_dir).resolve().name


def flat_numbers(metrics: dict, prefix: str = "") -> dict[str, float]:
    """{"judgments": {"parse_rate": 0.8}} -> {"judgments/parse_rate": 0.8}; non-numbers are left out."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_numbers(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def log_round_metrics(run: Run, t: int, metrics: dict) -> None:
    """Log round t's summary (step = t) to the configured tracker."""
    cfg, run_dir = run.cfg, run.dir
    if cfg.report_to == "none":
        return
    check_report_to(cfg)
    values = flat_numbers({k: v for k, v in metrics.items() if k != "round"})
    folder = run.round_metrics_log_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.report_to == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(folder))
        for name, value in values.items():
            writer.add_scalar(f"round/{name}", value, global_step=t)
        writer.close()
    else:
        import wandb

        # One W&B run per srlite run for the round metrics, resumed round after round.
        run_id = "srlite-rounds-" + hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]
        wb = wandb.init(project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT), dir=str(folder), id=run_id,
                        name=f"{Path(run_dir).resolve().name} rounds", resume="allow", job_type="rounds",
                        group=_group(run_dir))
        wb.log({f"round/{k}": v for k, v in values.items()}, step=t)
        wb.finish()
