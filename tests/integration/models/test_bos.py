"""Every sequence the model sees starts with exactly one BOS when the tokenizer uses one: the few-shot
self-instruction prompt (raw text), chat prompts, judge prompts, and SFT / DPO training inputs.

Tokenizers with Llama-3-like, Gemma-like and base-model (no chat template) BOS behaviour are built in
the test (tests/tiny_models.py), with a random-weight tiny Llama; the ids checked are those actually
fed to the model (a forward pre-hook). SmolLM2 (the embedded model) has a bos_token that it never
adds, and must see exactly what it saw before.
"""

import random

import pytest
from tiny_models import tiny_llama_dir

from selfreward_lite.config import preset_config
from selfreward_lite.judging import engine
from selfreward_lite.judging.rubric import load_rubric
from selfreward_lite.loop.padding_free import segments
from selfreward_lite.loop.self_instruction import few_shot_prompt
from selfreward_lite.models.generation import bos_id, generate, prompt_ids, render_chat
from selfreward_lite.models.hf import load_stack, load_tokenizer

SEEDS = ["Name a primary color.", "What is the capital of France?", "How many legs does a spider have?",
         "Give me three tips for writing a short story."]


def tiny_cfg(path, **kw):
    return preset_config("cpu", model=str(path), dtype="float32", lora_r=2, lora_alpha=4, **kw)


def feed_recorder(lm):
    """input_ids of every forward over more than one position (prefills, training steps), first real token on;
    a padding-free training row gives each of its sequences, a shared prompt start included (padding_free.segments)."""
    seen = []
    base = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if ids is None or ids.shape[1] < 2:
            return
        if mask is None and kwargs.get("position_ids") is not None and ids.shape[0] == 1:
            row, pos = ids[0].tolist(), kwargs["position_ids"][0].tolist()
            for a, b, root in segments(pos):
                seen.append(row[a:b] if a == root else row[root:root + pos[a]] + row[a:b])
            return
        for r in range(ids.shape[0]):
            row = ids[r] if mask is None or mask.dim() != 2 else ids[r][mask[r].bool()]
            seen.append(row.tolist())

    base.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def prompts_of_every_kind(lm):
    tok = lm.tokenizer
    few_shot = few_shot_prompt(SEEDS, [], 3, 0, random.Random(0))
    chat = render_chat(tok, [{"role": "user", "content": "Name a primary color."}])
    judge = engine.judge_text(lm, load_rubric("additive-compact"), {"prompt": "Name a color.", "response": "Red."})
    return {"few-shot": few_shot, "chat": chat, "judge": judge}


@pytest.mark.parametrize("kind", ["llama3", "gemma", "base"])
def test_generation_prompts_start_with_exactly_one_bos(tmp_path, kind):
    lm = load_stack(tiny_cfg(tiny_llama_dir(tmp_path / kind, kind)), [])
    bos = lm.tokenizer.bos_token_id
    assert bos is not None and bos_id(lm.tokenizer) == bos
    seen = feed_recorder(lm)
    for name, text in prompts_of_every_kind(lm).items():
        for n in (1, 2):  # one sample (HF's own prefill), several (our shared prefill)
            seen.clear()
            generate(lm, [text, text + " more"], n, temperature=0.7, top_p=0.9, max_new_tokens=2, batch_size=4, seed=0)
            assert seen, name
            for row in seen:
                assert row[0] == bos and row[1] != bos, (kind, name, n, row[:4])


def test_no_bos_tokenizer_is_left_alone(tmp_path):
    lm = load_stack(tiny_cfg(tiny_llama_dir(tmp_path / "none", "none")), [])
    assert bos_id(lm.tokenizer) is None
    for text in prompts_of_every_kind(lm).values():
        assert prompt_ids(lm.tokenizer, text) == lm.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_embedded_smollm2_is_unchanged(embedded):
    tok = load_tokenizer(preset_config("cpu"))
    # SmolLM2 names <|im_start|> as its bos_token but never adds it to plain text: it uses no BOS.
    assert tok.bos_token_id is not None and bos_id(tok) is None
    texts = [few_shot_prompt(SEEDS, [], 3, 0, random.Random(0)),
             render_chat(tok, [{"role": "user", "content": "Name a primary color."}])]
    for text in texts:
        assert prompt_ids(tok, text) == tok(text, add_special_tokens=False)["input_ids"]
    assert "bos_token" not in tok.chat_template  # its template was not touched


def conversation_ids(tok, messages):
    """The ids of a whole conversation as the chat template writes it, nothing added: what TRL must feed."""
    return list(tok(render_chat(tok, messages, add_generation_prompt=False), add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("kind", ["llama3", "base"])
def test_sft_and_dpo_inputs_start_with_exactly_one_bos(tmp_path, kind):
    """TRL tokenises conversations with apply_chat_template (no special tokens added): the template
    must write BOS once, ours included (`base`: the ChatML default gets {{ bos_token }} in front).
    (TRL tokenises *plain-text* rows with the tokenizer's own call, which adds a BOS before the one a
    rendered text already carries: our rows are conversations, never rendered text.) Every SFT row
    (prompt + completion) and every DPO row (prompt + chosen, prompt + rejected, in the reference pass and
    in training) is fed exactly as the template writes it: one BOS, then the first header."""
    from selfreward_lite.loop.train import train_dpo, train_sft

    cfg = tiny_cfg(tiny_llama_dir(tmp_path / kind, kind), sft_epochs=1.0, sft_batch_size=2, dpo_epochs=1.0,
                   dpo_batch_size=2, train_micro_batch_size=2, checkpoint_steps=0)
    lm = load_stack(cfg, [], train_new=True)
    tok, bos = lm.tokenizer, lm.tokenizer.bos_token_id
    seen = feed_recorder(lm)
    records = [{"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": "Red."}]}
               for q in SEEDS[:2]]
    train_sft(cfg, lm, records)
    assert seen and all(row[0] == bos and row[1] != bos for row in seen), [r[:3] for r in seen]
    for r in records:
        expected = conversation_ids(tok, r["prompt"] + r["completion"])
        assert expected[0] == bos and expected[1] != bos and expected in seen, (expected[:3], [s[:3] for s in seen])

    lm = load_stack(cfg, [], train_new=True)  # DPO starts from a fresh adapter (B = 0)
    seen = feed_recorder(lm)
    pairs = [{"id": f"p{i}", "prompt": q, "chosen": "Paris.", "rejected": "A spider."} for i, q in enumerate(SEEDS[:2])]
    train_dpo(cfg, lm, pairs)  # the reference pass and the training steps
    assert len(seen) >= 2 and all(row[0] == bos and row[1] != bos for row in seen), [r[:3] for r in seen]
    for p in pairs:
        for side in ("chosen", "rejected"):
            expected = conversation_ids(tok, [{"role": "user", "content": p["prompt"]},
                                              {"role": "assistant", "content": p[side]}])
            assert expected[0] == bos and expected[1] != bos, expected[:3]
            assert seen.count(expected) >= 2, (side, expected[:3])  # the reference pass and a training step


def test_unsloth_backend_feeds_exactly_one_bos(tmp_path, fake_unsloth):
    """The same on the Unsloth backend's own paths (the stand-in `unsloth`): M1's SFT through
    get_peft_model, then a round on the folded M1: sampling (num_return_sequences, not our shared prefill)
    and DPO on folded M_t + the new adapter. (Unsloth's real trainer patch re-tokenises text datasets; it
    prints "We found double BOS tokens" whenever the chat template writes bos_token, and then adds none.)"""
    from helpers import random_adapter

    from selfreward_lite.loop.train import train_dpo, train_sft
    from selfreward_lite.models import unsloth as U

    cfg = tiny_cfg(tiny_llama_dir(tmp_path / "llama3", "llama3"), sft_epochs=1.0, sft_batch_size=2, dpo_epochs=1.0,
                   dpo_batch_size=2, train_micro_batch_size=2, checkpoint_steps=0)
    lm = U.training_mode(U.load_stack(cfg, [], train_new=True))
    tok, bos = lm.tokenizer, lm.tokenizer.bos_token_id
    assert lm.backend == "unsloth" and ("get_peft_model", 2) in fake_unsloth.calls
    seen = feed_recorder(lm)
    records = [{"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": "Red."}]}
               for q in SEEDS[:2]]
    train_sft(cfg, lm, records)
    for r in records:
        assert conversation_ids(tok, r["prompt"] + r["completion"]) in seen
    assert seen and all(row[0] == bos and row[1] != bos for row in seen), [r[:3] for r in seen]

    random_adapter(cfg, [], tmp_path / "m1", seed=1)
    lm = U.sampling_mode(U.load_stack(cfg, [tmp_path / "m1"], train_new=True))
    seen = feed_recorder(lm)
    for name, text in prompts_of_every_kind(lm).items():
        seen.clear()
        generate(lm, [text, text + " more"], 2, temperature=0.7, top_p=0.9, max_new_tokens=2, batch_size=4, seed=0)
        assert len(seen) >= 4 and all(row[0] == bos and row[1] != bos for row in seen), (name, [r[:3] for r in seen])

    U.training_mode(lm)
    seen.clear()
    pairs = [{"id": f"p{i}", "prompt": q, "chosen": "Paris.", "rejected": "A spider."} for i, q in enumerate(SEEDS[:2])]
    train_dpo(cfg, lm, pairs)
    assert all(row[0] == bos and row[1] != bos for row in seen), [r[:3] for r in seen]
    for p in pairs:
        for side in ("chosen", "rejected"):
            expected = conversation_ids(tok, [{"role": "user", "content": p["prompt"]},
                                              {"role": "assistant", "content": p[side]}])
            assert seen.count(expected) >= 2, (side, expected[:3])
