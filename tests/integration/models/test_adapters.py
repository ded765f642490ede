"""Folding the frozen adapter stack into one LoRA adapter is exact (PEFT "cat")."""

import torch

from helpers import random_adapter
from selfreward_lite.config import preset_config
from selfreward_lite.models.adapters import FOLDED, fold_stack
from selfreward_lite.models.hf import load_stack


def test_folded_adapter_equals_stack(tmp_path, embedded):
    cfg = preset_config("cpu", dtype="float32", lora_r=4, lora_alpha=8)
    dirs = []
    for i in range(2):
        random_adapter(cfg, list(dirs), tmp_path / f"a{i}", seed=i)
        dirs.append(tmp_path / f"a{i}")
    lm = load_stack(cfg, dirs)
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        stacked = lm.model(**ids).logits
        with lm.model.disable_adapter():
            bare = lm.model(**ids).logits
    folded_lm = fold_stack(lm)
    assert folded_lm.adapter_names == [FOLDED]
    assert lm.model.active_adapters == [FOLDED]
    with torch.no_grad():
        folded = folded_lm.model(**ids).logits
    assert (stacked - bare).abs().max() > 0.1  # the stack does something
    assert torch.allclose(folded, stacked, atol=1e-3, rtol=0)
    cfg_f = lm.model.peft_config[FOLDED]
    assert cfg_f.r == 8  # rank is the sum of the stacked ranks
