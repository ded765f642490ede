"""The new adapter must learn: a non-zero gradient at the first optimizer step, a non-zero B at the end,
or a clear error. Unsloth's fused LoRA kernels read only the first active adapter; if a stacked
training ran through them, the new adapter (second) would silently train nothing. The stand-in
unsloth is made to do exactly that here."""

import pytest
from helpers import STACK_PAIRS, random_adapter
from tiny_models import tiny_llama_dir

from selfreward_lite.config import preset_config
from selfreward_lite.errors import SrliteError
from selfreward_lite.loop import train
from selfreward_lite.models import unsloth as U
from selfreward_lite.models.hf import load_stack


def tiny_cfg(tmp_path, **kw):
    return preset_config("cpu", model=str(tiny_llama_dir(tmp_path / "m", "none")), dtype="float32", lora_r=2,
                         lora_alpha=4, dpo_epochs=1.0, dpo_batch_size=2, train_micro_batch_size=2, checkpoint_steps=0,
                         **kw)


def route_through_first_adapter(model) -> None:
    """What Unsloth's fused kernels do: each LoRA layer computes with the first active adapter only."""
    from peft.tuners.lora import LoraLayer

    for m in model.modules():
        if isinstance(m, LoraLayer):
            def forward(x, *args, _orig=m.forward, _m=m, **kwargs):
                saved = _m._active_adapter
                _m._active_adapter = list(saved)[:1] if isinstance(saved, list) else saved
                try:
                    return _orig(x, *args, **kwargs)
                finally:
                    _m._active_adapter = saved

            m.forward = forward


@pytest.mark.parametrize("checkpointing", [True, False])
def test_unsloth_kernels_reading_only_the_first_adapter_is_a_clear_error(tmp_path, fake_unsloth, monkeypatch,
                                                                          checkpointing):
    # With gradient checkpointing (the gpu preset, and Unsloth's own) the backward runs and the first
    # optimizer step sees no gradient on the new adapter; without it the backward itself finds nothing
    # to differentiate. Both end in the same error.
    cfg = tiny_cfg(tmp_path, gradient_checkpointing=checkpointing)
    random_adapter(cfg, [], tmp_path / "m1", seed=1)
    lm = U.load_stack(cfg, [tmp_path / "m1"], train_new=True)
    use_kernels = U._use_kernels

    def falls_back_to_fused(model, fused):  # the plain path swapped in, yet the LoRA maths of the fused kernels
        use_kernels(model, fused)
        route_through_first_adapter(model)

    monkeypatch.setattr(U, "_use_kernels", falls_back_to_fused)
    U.training_mode(lm)
    with pytest.raises(SrliteError, match="The new adapter did not train: .*Unsloth's fused LoRA kernels read only "
                                          "the first active adapter"):
        train.train_dpo(cfg, lm, STACK_PAIRS[:2])


def test_a_normal_run_passes_the_checks(tmp_path, monkeypatch):
    checks = []
    make_check = train._learning_check
    monkeypatch.setattr(train, "_learning_check", lambda lm: checks.append(make_check(lm)) or checks[-1])
    cfg = tiny_cfg(tmp_path)
    random_adapter(cfg, [], tmp_path / "m1", seed=1)
    lm = load_stack(cfg, [tmp_path / "m1"], train_new=True)
    train.train_dpo(cfg, lm, STACK_PAIRS[:2])
    assert len(checks) == 1 and checks[0].checked  # the gradient check ran at the first optimizer step


def test_zero_gradient_and_zero_b_are_caught(tmp_path, monkeypatch):
    """HF backend: an adapter whose gradient is zeroed before the optimizer sees it never moves."""
    cfg = tiny_cfg(tmp_path)
    lm = load_stack(cfg, [], train_new=True)
    records = [{"prompt": [{"role": "user", "content": "Name a color."}],
                "completion": [{"role": "assistant", "content": "Red."}]}] * 2
    for p in train._trainable_params(lm):
        p.register_hook(lambda g: g * 0)
    with pytest.raises(SrliteError, match="at the first optimizer step its gradients were all zero"):
        train.train_sft(cfg, lm, records)


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_a_one_step_training_with_a_warmup_learns(tmp_path, stage):
    """The gpu preset's warm-up ratio 0.1 on a training of one optimizer step (the GPU kit's round: SFT on
    16 seed records) used to be rounded up to one warm-up step at lr 0: the adapter stayed at B = 0 and
    the round failed with "did not train". A warm-up shorter than one step is now none."""
    cfg = tiny_cfg(tmp_path, warmup_ratio=0.1, sft_batch_size=2, sft_epochs=1.0)
    lm = load_stack(cfg, [], train_new=True)
    if stage == "sft":
        records = [{"prompt": [{"role": "user", "content": "Name a color."}],
                    "completion": [{"role": "assistant", "content": "Red."}]}] * 2
        train.train_sft(cfg, lm, records)
    else:
        train.train_dpo(cfg, lm, STACK_PAIRS[:2])
    assert any(p.abs().sum() > 0 for n, p in lm.model.named_parameters() if "lora_B" in n and train.TRAINABLE in n)
