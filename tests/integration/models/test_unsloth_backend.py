"""The Unsloth backend's own logic, on CPU, with a stand-in for the `unsloth` package.

Unsloth's fast path needs a CUDA GPU, so `unsloth` is replaced by a fake FastLanguageModel
(helpers.FakeFastLanguageModel, the `fake_unsloth` fixture) that loads with transformers and, like
Unsloth's fused LoRA kernels, installs an MLP forward that raises when more than one adapter is
active. What is checked is this project's code, on a tiny random-weight Llama: the stack folded into
one exact adapter, the kernel swap between sampling (one adapter) and training (folded M_t + the new
adapter), and the DPO reference being exactly M_t.
"""

import pytest
import torch
from helpers import completion_logprobs, random_adapter
from tiny_models import tiny_chatml

from selfreward_lite.config import preset_config
from selfreward_lite.models import unsloth as U
from selfreward_lite.models.adapters import FOLDED, TRAINABLE
from selfreward_lite.models.generation import generate, render_chat
from selfreward_lite.models.hf import load_stack


def cfg_for_test(tmp_path, **kw):
    # a tiny random-weight Llama: what is checked here is this project's folding and swapping, not the model
    return preset_config("cpu", model=tiny_chatml(tmp_path), dtype="float32", lora_r=4, lora_alpha=8, dpo_epochs=1.0,
                         dpo_batch_size=1, train_micro_batch_size=1, **kw)


def mlp_kernels(lm):
    return ["forward" in layer.mlp.__dict__ for layer in lm.model.get_base_model().model.layers]


PAIRS = [{"id": "a", "prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "France is big."}]


def test_stack_folds_kernels_swap_and_dpo_reference_is_m_t(tmp_path, fake_unsloth):
    from selfreward_lite.loop.train import train_dpo

    cfg = cfg_for_test(tmp_path)
    dirs = []
    for i in range(2):
        random_adapter(cfg, list(dirs), tmp_path / f"a{i}", seed=i)
        dirs.append(tmp_path / f"a{i}")
    hf = load_stack(cfg, dirs)  # M_t through the HF backend: the stack itself
    ids = hf.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        stacked = hf.model(**ids).logits

    lm = U.load_stack(cfg, dirs, train_new=True)
    kwargs = fake_unsloth.calls[0][1]
    assert kwargs["load_in_4bit"] is False and kwargs["fix_tokenizer"] is False
    assert lm.backend == "unsloth" and lm.adapter_names == [FOLDED, TRAINABLE]
    assert set(lm.model.peft_config) == {FOLDED, TRAINABLE}  # the separate copies are gone
    assert lm.model.peft_config[FOLDED].r == 8 and lm.model.peft_config[FOLDED].lora_dropout == 0.0
    assert ("patch_peft_model", [FOLDED]) in fake_unsloth.calls  # kernels installed on the single adapter

    # Sampling: the folded adapter alone, fused kernels on, computing exactly the stack.
    U.sampling_mode(lm)
    assert lm.model.active_adapters == [FOLDED] and all(mlp_kernels(lm))
    assert lm.tokenizer.padding_side == "left" and fake_unsloth.calls[-1] == ("for_inference",)
    with torch.no_grad():
        assert torch.allclose(lm.model(**ids).logits, stacked, atol=1e-3, rtol=0)

    # Training: folded M_t + the new adapter; the single-adapter kernels are swapped out.
    U.training_mode(lm)
    assert lm.model.active_adapters == [FOLDED, TRAINABLE] and not any(mlp_kernels(lm))
    assert fake_unsloth.calls[-1][0] == "for_training"
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    result = train_dpo(cfg, lm, PAIRS)
    changed = {n for n, p in lm.model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and all(f".{TRAINABLE}." in n for n in changed)
    assert abs(result["first_loss"] - 0.6931) < 1e-3
    prompts = [[{"role": "user", "content": p["prompt"]}] for p in PAIRS]
    chosen = completion_logprobs(hf, prompts, [[{"role": "assistant", "content": p["chosen"]}] for p in PAIRS])
    for p, c in zip(PAIRS, chosen):
        assert abs(result["ref_logps"][p["id"]][0] - c) < 1e-3  # the reference is M_t, the stack

    # Back to sampling: kernels restored, batched generation with several samples per prompt.
    U.sampling_mode(lm)
    assert lm.model.active_adapters == [FOLDED] and all(mlp_kernels(lm))
    texts = [render_chat(lm.tokenizer, [{"role": "user", "content": "Name a color."}])]
    out = generate(lm, texts, 2, temperature=0.7, top_p=0.9, max_new_tokens=2, batch_size=4, seed=0)
    assert len(out[0]) == 2


def test_m1_uses_get_peft_model_and_keeps_fused_kernels(tmp_path, fake_unsloth):
    lm = U.load_stack(cfg_for_test(tmp_path), [], train_new=True)
    assert lm.adapter_names == [TRAINABLE]
    assert ("get_peft_model", 4) in fake_unsloth.calls
    U.training_mode(lm)
    assert all(mlp_kernels(lm))  # one active adapter: Unsloth's fused kernels stay
    with pytest.raises(RuntimeError, match="M_t's adapters"):
        U.sampling_mode(lm)
