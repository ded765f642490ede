"""SFT's padding-free micro-batches: loss only on assistant tokens, and the same loss as padded.

On a tiny random-weight Llama with a ChatML template (tiny_models.tiny_chatml): collation, masks and
losses are mechanics, and the embedded model's compute made these among the slowest model tests. The
batch, mask and loss test also runs on the embedded model, for its real tokenizer and template."""

import contextlib

import pytest
import torch

from helpers import _token_ids
from tiny_models import tiny_chatml
from selfreward_lite.config import preset_config
from selfreward_lite.loop.padding_free import padding_free_attention, segments, use_padding_free
from selfreward_lite.models.hf import load_stack

RECORDS = [
    ("What is 2 + 2?", "4."),
    ("Name three colours of the rainbow, one per line.", "Red\nOrange\nYellow"),
    ("Say hello.", "Hello! How can I help you today?"),
    ("Give a one-word synonym for 'big'.", "Large."),
]


def collated(tmp_path, records, model: str = "tiny"):
    """(model, rows, the padded batch, the padding-free batch) of `records` as train_sft's SFTTrainer collates
    them, on the tiny Llama or (model="embedded") the embedded model and its real tokenizer."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg = preset_config("cpu", dtype="float32", **({"model": tiny_chatml(tmp_path)} if model == "tiny" else {}))
    lm = load_stack(cfg, [], train_new=True)
    rows = [{"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": a}]}
            for q, a in records]
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_length=cfg.max_length,
                     completion_only_loss=True, use_cpu=True, report_to="none", disable_tqdm=True)
    trainer = SFTTrainer(model=lm.model, args=args, train_dataset=Dataset.from_list(rows), processing_class=lm.tokenizer)
    examples = [trainer.train_dataset[i] for i in range(len(rows))]
    padded = trainer.data_collator(examples)
    use_padding_free(trainer)
    packed = trainer.data_collator(examples)
    return lm, rows, padded, packed


@pytest.mark.parametrize("model", ["tiny", "embedded"])  # the embedded model: SmolLM2's tokenizer and template
def test_padding_free_batch_masks_and_loss(tmp_path, request, model):
    if model == "embedded":
        request.getfixturevalue("embedded")
    lm, rows, padded, packed = collated(tmp_path, RECORDS, model)

    # One row, no padding, no attention mask; positions restart at each sequence.
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] == 1
    assert packed["input_ids"].shape[1] == int(padded["attention_mask"].sum()) < padded["input_ids"].numel()
    # The labels cover exactly each record's assistant turn (its tokens after the generation prompt).
    starts = (packed["position_ids"][0] == 0).nonzero().flatten().tolist() + [packed["input_ids"].shape[1]]
    for (a, b), row in zip(zip(starts, starts[1:]), rows):
        full = _token_ids(lm.tokenizer, row["prompt"] + row["completion"], False)
        prompt = _token_ids(lm.tokenizer, row["prompt"], True)
        labels = packed["labels"][0, a:b]
        assert packed["input_ids"][0, a:b].tolist() == full
        assert labels[: len(prompt)].eq(-100).all()
        assert labels[len(prompt):].tolist() == full[len(prompt):]

    # The same loss as the padded batch (float32: rounding only); without use_cache=False the
    # model would build a KV cache and attend across sequences (see padding_free.py).
    lm.model.eval()
    with torch.no_grad():
        loss_padded = lm.model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                               labels=padded["labels"], use_cache=False).loss
        loss_packed = lm.model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                               labels=packed["labels"], use_cache=False).loss
    assert int(padded["labels"].ne(-100).sum()) == int(packed["labels"].ne(-100).sum())
    assert torch.allclose(loss_packed, loss_padded, atol=1e-4, rtol=0), (loss_packed, loss_padded)
    # What training runs: causal attention within each sequence (varlen_attention), no mask tensor.
    with padding_free_attention(lm.model), torch.no_grad():
        loss_varlen = lm.model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                               labels=packed["labels"], use_cache=False).loss
    assert torch.allclose(loss_varlen, loss_padded, atol=1e-4, rtol=0), (loss_varlen, loss_padded)
    assert lm.model.get_base_model().config._attn_implementation != "srlite_varlen"  # restored


RUBRIC = ("Review the user's question and the corresponding response using the additive 5-point scoring "
          "system described below. Points are accumulated based on the satisfaction of each criterion. ")
SHARED = [
    (RUBRIC + "User: What is 2 + 2? Response: 4.", "The answer is right and brief. Score: 4"),
    (RUBRIC + "User: Say hello. Response: Hi.", "Friendly, but minimal. Score: 3"),
    ("Give a one-word synonym for 'big'.", "Large."),
    (RUBRIC + "User: Name a colour. Response: Table.", "Not a colour. Score: 0"),
]


def test_shared_prompt_starts_give_the_same_loss_and_gradients(tmp_path):
    """Records that begin with the same prompt (the rubric) share one computed start; the loss and
    the gradient of every trainable parameter are those of the padded batch (float32 rounding)."""
    lm, _, padded, shared = collated(tmp_path, SHARED)

    laid_apart = int(padded["attention_mask"].sum())
    assert shared["input_ids"].shape[1] < laid_apart - 2 * 32  # the rubric start is laid once, not three times
    assert int(shared["labels"].ne(-100).sum()) == int(padded["labels"].ne(-100).sum())  # the same labels
    roots = [s for s in segments(shared["position_ids"][0].tolist()) if s[0] == s[2]]
    assert len(roots) == 2  # the rubric start (with its first branch) and the synonym record

    def loss_and_grads(**inputs):
        lm.model.zero_grad()
        loss = lm.model(**inputs, use_cache=False).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in lm.model.named_parameters() if p.grad is not None}

    lm.model.eval()  # no dropout: the two passes must compute the same function
    for p in lm.model.parameters():  # B starts at zero, so give it values: gradients then reach A as well
        if p.requires_grad:
            p.data.normal_(0, 0.02)
    want_loss, want = loss_and_grads(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                                     labels=padded["labels"])
    with padding_free_attention(lm.model):
        got_loss, got = loss_and_grads(input_ids=shared["input_ids"], position_ids=shared["position_ids"],
                                       labels=shared["labels"])
    assert torch.allclose(got_loss, want_loss, atol=1e-5, rtol=0), (got_loss, want_loss)
    assert want and set(got) == set(want)
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-5, rtol=1e-3), name


def test_cpu_sft_loss_projects_only_learned_positions_and_equals_the_models_loss(tmp_path):
    """train_sft's CPU loss runs the LM head only where a completion token is predicted; the loss and
    the gradients are those of the model's own causal-LM loss, padded and padding-free."""
    from selfreward_lite.loop.train import _sft_trainer_class

    lm, _, padded, packed = collated(tmp_path, SHARED)
    lm.model.eval()
    for p in lm.model.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.02)
    loss_of = _sft_trainer_class("cpu").compute_loss
    n = int(padded["labels"][:, 1:].ne(-100).sum())
    for batch in (padded, packed):
        with (padding_free_attention(lm.model) if batch is packed else contextlib.nullcontext()):
            lm.model.zero_grad()
            want = lm.model(**batch, use_cache=False).loss
            want.backward()
            want_grads = {k: p.grad.clone() for k, p in lm.model.named_parameters() if p.grad is not None}
            lm.model.zero_grad()
            loss, outputs = loss_of(None, lm.model, dict(batch), return_outputs=True, num_items_in_batch=n)
            loss.backward()
        assert outputs.logits.shape[1] < batch["input_ids"].shape[1] // 2  # prompts are most of these rows
        assert torch.allclose(loss, want, atol=1e-5, rtol=0), (loss, want)
        for k, g in want_grads.items():
            assert torch.allclose(dict(lm.model.named_parameters())[k].grad, g, atol=1e-5, rtol=1e-3), k
