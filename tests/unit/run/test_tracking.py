"""`report_to`: round metrics to TensorBoard / W&B; a clear message when the package is missing."""

import importlib.util

import pytest
from helpers import tensorboard_scalars as scalars

from selfreward_lite.config import preset_config
from selfreward_lite.errors import SrliteError
from selfreward_lite.run.create import create_run
from selfreward_lite.run import tracking
from selfreward_lite.run.rundir import Run


def test_report_to_is_validated():
    with pytest.raises(SrliteError, match="'report_to' is 'mlflow'; choose one of none, tensorboard, wandb"):
        preset_config("cpu", report_to="mlflow")
    assert preset_config("cpu").report_to == "none"


def test_missing_tracker_package_is_reported_at_run_start(tmp_path, monkeypatch):
    from selfreward_lite.loop.pipeline import iterate

    real = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    run = create_run(tmp_path / "run", preset="cpu", overrides={"report_to": "wandb"})
    with pytest.raises(SrliteError, match="'wandb' package is not installed. Install it with: pip install wandb"):
        iterate(run.dir, 1)
    assert not (run.dir / "m1").exists()  # refused before any work


def test_round_metrics_to_tensorboard(tmp_path):
    cfg = preset_config("cpu", report_to="tensorboard")
    for t, rate in ((1, 0.75), (2, 0.85)):
        tracking.log_round_metrics(Run(tmp_path, cfg), t, {"round": t, "judgments": {"parse_rate": rate, "unparsed": {}},
                                                      "pairs": {"kept": 10 + t}, "note": "text is skipped"})
    got = scalars(tmp_path / "logs" / "rounds")
    assert got["round/judgments/parse_rate"] == [(1, 0.75), (2, pytest.approx(0.85))]
    assert got["round/pairs/kept"] == [(1, 11.0), (2, 12.0)]
    tracking.log_round_metrics(Run(tmp_path / "off", preset_config("cpu")), 1, {"pairs": {"kept": 1}})
    assert not (tmp_path / "off").exists()  # report_to "none" writes nothing


def test_round_metrics_to_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")  # optional extra, not in [test]
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = preset_config("cpu", report_to="wandb")
    for t in (1, 2):
        tracking.log_round_metrics(Run(tmp_path / "run", cfg), t, {"round": t, "pairs": {"kept": 10 + t}})
    runs = sorted((tmp_path / "run" / "logs" / "rounds" / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 2 and runs[0].name == runs[1].name  # one W&B run id per srlite run, resumed each round
