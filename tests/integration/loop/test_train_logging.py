"""`report_to`: the trainers' curves go to TensorBoard under the run's logs/ folder."""

from helpers import tensorboard_scalars as scalars

from selfreward_lite.config import preset_config


def test_sft_training_curves_to_tensorboard(tmp_path, embedded):
    from selfreward_lite.loop.train import train_sft
    from selfreward_lite.models.hf import load_stack

    cfg = preset_config("cpu", report_to="tensorboard", sft_epochs=1.0, sft_batch_size=2, train_micro_batch_size=2)
    lm = load_stack(cfg, [], train_new=True)
    records = [{"prompt": [{"role": "user", "content": f"Say {w}."}], "completion": [{"role": "assistant", "content": w}]}
               for w in ("yes", "no")]
    train_sft(cfg, lm, records, log_dir=tmp_path / "logs" / "m1-sft")
    got = scalars(tmp_path / "logs" / "m1-sft")
    assert [step for step, _ in got["train/loss"]] == [1]
    assert "TENSORBOARD_LOGGING_DIR" not in __import__("os").environ  # restored after training
