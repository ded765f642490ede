"""One tiny round end to end as our GPU users run it, on CPU: the base model in 4-bit NF4
(bitsandbytes runs NF4 on CPU, slowly), the gpu preset's gradient checkpointing, stacked adapters.

M1 by SFT on the 4-bit base -> M1 writes prompts, samples candidates, judges them -> pairs -> DPO of a
new adapter on top of the frozen M1 adapter on the 4-bit base, with the reference checked to be
exactly M_t (an independent computation, tests/helpers.completion_logprobs) -> M2's stack folded into one adapter
(models/adapters.fold_stack, what the Unsloth backend samples with) computes what the stack computes.
Everything is as small as still takes every path: a tiny random-weight Llama (tiny_models; the paths
do not depend on what the model knows), 2 IFT + 1 EFT seed records (one SFT step), 1 prompt,
2 candidates, 1 judgment each, a few tokens, one DPO step. Two 4-bit loads (M0 + new adapter for SFT,
M1 + new adapter for the round) through the pipeline's ModelCache; the checks reuse the round's model.
NF4 on CPU is slow (every linear dequantises its weights on every call): on the embedded model this
took about 30 s on a 2-core machine, on the tiny one 5 s. Where bitsandbytes cannot run NF4 on this CPU
(not installed, or a version without its CPU backend) the test is skipped, saying why.

M1 is trained at a large SFT learning rate so that M1 and the bare base differ by far more than bf16
rounding: the reference check then tells "reference = M1" from "reference = base".

What this cannot execute on CPU (GPU-only pieces of the same paths): bitsandbytes' CUDA NF4 matmul
kernels and double-quant dequantisation on the GPU; `device_map={"": 0}` placement; bf16/fp16 autocast
on CUDA (fp16's grad scaler); torch.cuda.OutOfMemoryError from a real allocator (simulated in
tests/integration/loop/test_dpo_oom.py); Unsloth's FastLanguageModel, fused LoRA kernels, offloaded
("unsloth") gradient checkpointing, fast generation and compiled trainers (stand-in in
tests/integration/models/test_unsloth_backend.py). Those run in benchmarks/gpu_fit.py on a GPU.
"""

import pytest
import torch
from helpers import completion_logprobs
from tiny_models import tiny_chatml

from selfreward_lite.loop import stages
from selfreward_lite.loop.pipeline import build_m1
from selfreward_lite.models.adapters import TRAINABLE, LoadedModel, activate, fold_stack
from selfreward_lite.models.cache import ModelCache
from selfreward_lite.models.generation import render_chat
from selfreward_lite.run.create import create_run
from selfreward_lite.run.files import read_json, read_jsonl, write_jsonl
from selfreward_lite.run.records import load_messages

SETTINGS = dict(
    quantize="4bit", gradient_checkpointing=True,  # what the gpu preset runs
    lora_r=4, lora_alpha=8, sft_learning_rate=2e-2, sft_epochs=1.0, sft_batch_size=4, dpo_epochs=1.0, dpo_batch_size=2,
    train_micro_batch_size=4, max_length=512, checkpoint_steps=0, eval_each_round=False, ifeval_each_round=False,
    prompts_per_round=1, prompt_shots=3, prompt_shots_generated=0, prompt_max_new_tokens=12, prompt_max_attempts=2,
    n_candidates=2, response_max_new_tokens=8, judge_samples=1, judge_max_new_tokens=8, gen_batch_size=8)


def nf4_on_cpu_fails() -> str | None:
    """Why bitsandbytes cannot quantise to NF4 and multiply on this CPU, or None when it can."""
    try:
        import bitsandbytes as bnb
        from bitsandbytes import functional as F

        w = torch.randn(64, 64)
        q, state = F.quantize_4bit(w, quant_type="nf4", compress_statistics=True)  # double quant, as we load
        x = torch.randn(2, 64)
        y = bnb.matmul_4bit(x, q.t(), quant_state=state)
        if not torch.allclose(y, x @ F.dequantize_4bit(q, state).t(), atol=1e-3):
            return "its NF4 matmul disagrees with its own dequantised weights"
    except Exception as e:  # ImportError, or NotImplementedError / RuntimeError from a GPU-only build
        return f"{type(e).__name__}: {e}"
    return None


NF4_FAILS = nf4_on_cpu_fails()
pytestmark = pytest.mark.skipif(NF4_FAILS is not None, reason=f"bitsandbytes NF4 does not run on this CPU ({NF4_FAILS})")


def small_seed(tmp_path):
    def chars(m):
        return sum(len(x["content"]) for x in m)

    write_jsonl(tmp_path / "ift.jsonl", [{"messages": m} for m in sorted(load_messages("bundled", "ift"), key=chars)[:2]])
    write_jsonl(tmp_path / "eft.jsonl", [{"messages": m} for m in sorted(load_messages("bundled", "eft_train"), key=chars)[:1]])
    return tmp_path / "ift.jsonl", tmp_path / "eft.jsonl"


def logits(lm, text):
    ids = lm.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return lm.model(**ids).logits.float()


def test_one_round_on_a_4bit_base_with_gradient_checkpointing_and_stacked_adapters(tmp_path):
    ift, eft = small_seed(tmp_path)
    model = tiny_chatml(tmp_path, hidden_size=64, intermediate_size=128)  # whole NF4 blocks
    run = create_run(tmp_path / "run", preset="cpu", ift=str(ift), eft=str(eft), overrides={**SETTINGS, "model": model})
    models = ModelCache(run)

    # M1: SFT of the first adapter on the 4-bit base, gradient checkpointing on.
    build_m1(run, models=models)
    base = models.trainer(0).model.get_base_model()
    assert base.is_loaded_in_4bit and base.is_gradient_checkpointing
    assert type(base.model.layers[0].mlp.down_proj.base_layer).__name__ == "Linear4bit"
    assert read_json(run.sft_summary_path)["steps"] == 1

    # Round 1 with M1 (4-bit base + m1 frozen + a new trainable adapter): prompts, candidates, judging.
    rd = run.round_dir(1)
    lm = models.sampler(1)
    assert lm.adapter_names == ["m1", TRAINABLE] and lm.model.active_adapters == ["m1"]
    stages.create_prompts(run, 1, lm, rd / "prompts.jsonl")
    if not read_jsonl(rd / "prompts.jsonl"):  # 12 tokens rarely finish a task; the stage itself ran
        write_jsonl(rd / "prompts.jsonl", [{"id": "r1-p0000", "prompt": "Name three fruits that are red."}])
    stages.sample_candidates(run, 1, lm, rd / "prompts.jsonl", rd / "candidates.jsonl")
    cands = read_jsonl(rd / "candidates.jsonl")
    assert len(cands) == 2 * len(read_jsonl(rd / "prompts.jsonl")) and all(c["tokens"] > 0 for c in cands)
    stages.judge_candidates(run, 1, lm, rd / "candidates.jsonl", rd / "judgments.jsonl")
    assert len(read_jsonl(rd / "judgments.jsonl")) == len(cands)
    stages.build_pairs(run, 1, rd / "candidates.jsonl", rd / "judgments.jsonl", rd / "pairs.jsonl")
    pairs = read_jsonl(rd / "pairs.jsonl")
    if not pairs:  # 8 judge tokens cannot reach "Score: N": DPO trains on the real candidates instead
        a, b = cands[0], cands[1]
        pairs = [{"id": f"{a['prompt_id']}-pair", "prompt_id": a["prompt_id"], "prompt": a["prompt"],
                  "chosen": a["response"], "rejected": b["response"] + " (no)"}]
        write_jsonl(rd / "pairs.jsonl", pairs)

    # DPO of the new adapter on top of M1, on the 4-bit base.
    m1_bytes = (run.m1_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    assert models.trainer(1) is lm  # the round's one model, now with the new adapter trainable (no second load)
    stages.train_round_adapter(run, 1, lm, rd / "pairs.jsonl", rd / "adapter")
    stages.summarize_round(run, 1, rd / "metrics.json")
    dpo = read_json(run.dpo_summary_path(1))
    assert dpo["steps"] == 1 and abs(dpo["first_loss"] - 0.6931) < 2e-2
    assert (run.m1_dir / "adapter" / "adapter_model.safetensors").read_bytes() == m1_bytes  # M1 frozen
    assert read_json(rd / "metrics.json")["sampling"]["judging"]["top_k"] == 0

    # The reference was exactly M_t = M1: recomputed independently (tests/helpers) with m1 alone active, and
    # nearer to that than to the bare base by a wide margin (bf16 rounding differs with batch shape).
    prompts = [[{"role": "user", "content": p["prompt"]}] for p in pairs]
    for side, k in (("chosen", 0), ("rejected", 1)):
        completions = [[{"role": "assistant", "content": p[side]}] for p in pairs]
        activate(lm.model, ["m1"], train_new=False)
        expected = completion_logprobs(lm, prompts, completions)
        with lm.model.disable_adapter():
            bare = completion_logprobs(lm, prompts, completions)
        for p, e, b in zip(pairs, expected, bare):
            ref = dpo["ref_logps"][p["id"]][k]
            assert abs(ref - e) <= 0.02 * max(1.0, abs(e)), (side, ref, e)
            assert abs(ref - e) < abs(ref - b) / 3, (side, "reference nearer the base than M1", ref, e, b)

    # M2 = base + m1 + round 1's adapter (loaded back from disk as m2), folded into one adapter: the same model.
    activate(lm.model, ["m1"], train_new=False)
    lm.model.load_adapter(str(rd / "adapter"), adapter_name="m2", is_trainable=False)
    m2 = LoadedModel(lm.model, lm.tokenizer, ["m1", "m2"], lm.device, lm.dtype)
    activate(m2.model, m2.adapter_names, train_new=False)
    text = render_chat(lm.tokenizer, [{"role": "user", "content": "Name a primary color."}])
    stacked = logits(m2, text)
    activate(m2.model, ["m2", "m1"], train_new=False)  # the same sum, rounded in the other order: the noise floor
    noise = (logits(m2, text) - stacked).abs().mean()
    folded_lm = fold_stack(m2)
    assert folded_lm.model.active_adapters == ["folded"] and folded_lm.model.peft_config["folded"].r == 8
    folded = logits(folded_lm, text)
    # In bf16 the stack adds two rounded LoRA deltas per layer and the fold one: equal up to rounding.
    assert (folded - stacked).abs().mean() <= 2 * noise + 1e-3 * stacked.abs().mean(), (folded - stacked).abs().mean()
