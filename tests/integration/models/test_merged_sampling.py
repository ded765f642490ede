"""M_t samples and judges merged (base not quantized) or folded (4-bit), and training still gets the stack.
On a tiny random-weight Llama (tiny_models.tiny_chatml): merging and folding are exact arithmetic."""

import torch

from helpers import random_adapter
from tiny_models import tiny_chatml
from selfreward_lite.config import preset_config
from selfreward_lite.models.adapters import FOLDED, TRAINABLE
from selfreward_lite.models.backend import for_sampling, for_training
from selfreward_lite.models.cache import ModelCache
from selfreward_lite.models.hf import load_stack
from selfreward_lite.run.rundir import Run

TEXT = "Write a haiku about the sea."


def logits(lm):
    ids = lm.tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        return lm.model(**ids).logits


def lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def test_sampler_is_merged_and_trainer_keeps_the_stack(tmp_path):
    cfg = preset_config("cpu", model=tiny_chatml(tmp_path), dtype="float32", lora_r=4, lora_alpha=8)
    run = Run(tmp_path, cfg)
    random_adapter(cfg, [], run.m1_dir / "adapter", seed=0, meta_name="sft.json")
    random_adapter(cfg, [run.m1_dir / "adapter"], run.round_dir(1) / "adapter", seed=1)
    stack = load_stack(cfg, run.adapters_of(2))  # M2 = base + m1 + m2, all active
    want = logits(stack)
    with stack.model.disable_adapter(), torch.no_grad():
        bare = stack.model(**stack.tokenizer(TEXT, return_tensors="pt")).logits
    assert (want - bare).abs().max() > 0.1  # the stack changes the model

    models = ModelCache(run)
    sampler = models.sampler(2)
    assert not lora_layers(sampler.model)  # merged: a plain transformers model, no LoRA products
    assert (logits(sampler) - want).abs().max() < 1e-3  # float32 rounding of W + BA only

    trainer = models.trainer(2)  # loaded afresh: the exact unmerged stack + the new adapter
    assert list(trainer.model.base_model.active_adapters) == ["m1", "m2", TRAINABLE]
    assert lora_layers(trainer.model) and not any(m.merged for m in lora_layers(trainer.model))
    assert torch.equal(logits(trainer), want)  # new adapter at B = 0: exactly M2, as the DPO reference needs


def test_fold_for_sampling_then_training_sees_the_stack(tmp_path):
    """The 4-bit path (folding, exact), shown on a float32 base: sampling folds, training unfolds."""
    cfg = preset_config("cpu", model=tiny_chatml(tmp_path), dtype="float32", lora_r=4, lora_alpha=8)
    dirs = [tmp_path / "a0", tmp_path / "a1"]
    random_adapter(cfg, [], dirs[0], seed=0)
    random_adapter(cfg, dirs[:1], dirs[1], seed=1)
    lm = load_stack(cfg, dirs, train_new=True)
    want = logits(for_training(lm))
    folded = for_sampling(lm)
    assert folded.adapter_names == [FOLDED] and list(lm.model.base_model.active_adapters) == [FOLDED]
    assert torch.allclose(logits(folded), want, atol=1e-3, rtol=0)
    again = for_training(lm)
    assert FOLDED not in lm.model.peft_config
    assert list(lm.model.base_model.active_adapters) == ["m1", "m2", TRAINABLE]
    assert torch.equal(logits(again), want)
