"""SFT without padding: each micro-batch's sequences laid end to end in one row (TRL's padding-free).

Why padding-free and not TRL's `packing` or `group_by_length`: padding-free keeps every batch
exactly as it was (the same examples, the same order, the same per-token loss over the completion
tokens: `num_items_in_batch` counts the same labels), only the padding goes. BFD `packing`
regroups examples into max_length bins (fewer, different optimizer steps than the configured
batch size) and `group_by_length` changes which examples share a batch: both change the training
itself. The layout: the micro-batch becomes one row with `position_ids` restarting at 0 for each
sequence and no attention mask; labels keep -100 outside the completion and at each sequence's
first token (so no sequence predicts the next one's start).

Attention must not cross sequence boundaries. transformers (5.x) builds a block-diagonal causal
mask from such `position_ids` for sdpa and eager (`masking_utils.find_packed_sequence_indices`,
only without a KV cache: the loss passes use_cache=False), but sdpa with an explicit mask over the
whole row computes all L^2 scores and leaves the fused causal kernel: measured on CPU, SFT got
*slower* than padded (benchmarks/sft_speed.py). So while training padding-free the model runs
`varlen_attention`: sdpa with is_causal=True on each sequence of the row (what flash-attention's
varlen kernel does, in plain torch, on CPU and GPU alike; sum of l_i^2 scores, no mask tensor).
Flash-attention-2, where installed, reads the `cu_seq_lens_*` the collator adds; Unsloth has its own
padding-free path (flash-attention varlen, xformers block-diagonal masks or sdpa masks, in its
`utils/packing.py`).

TRL 1.16 refuses `padding_free=True` with `max_length` set unless it packs (its guard for datasets
it does not prepare itself); it does truncate the datasets it prepares, so the trainer is built
padded (truncation to max_length, fully masked examples dropped) and the collator swapped after.
DPO: TRL 1.16's DPOTrainer has padding-free disabled ("temporarily unavailable"), so DPO pads.
"""

from __future__ import annotations


import contextlib

VARLEN = "srlite_varlen"  # the attention implementation used while training padding-free


def varlen_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, position_ids=None,
                     **kwargs):
    """Causal attention within each sequence of a padding-free row (batch 1, positions restart at 0).

    query (1, heads, L, d), key/value (1, kv_heads, L, d); returns (1, L, heads, d) as transformers'
    sdpa_attention_forward does. Anything else (a padded batch, a KV cache) is refused: this
    implementation gets no mask, so it must never see padding."""
    import torch
    import torch.nn.functional as F

    if (attention_mask is not None or position_ids is None or query.shape[0] != 1
            or query.shape[2] != key.shape[2] or dropout):
        raise RuntimeError("varlen_attention serves padding-free training rows only")
    length = query.shape[2]
    starts = (position_ids.reshape(-1)[:length] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = list(zip(starts, starts[1:] + [length]))
    out = torch.cat([
        F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                       scale=scaling, enable_gqa=query.shape[1] != key.shape[1])
        for a, b in bounds
    ], dim=2)
    return out.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def padding_free_attention(model):
    """Run `model` with varlen_attention inside the block, its own implementation restored after."""
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN, varlen_attention)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = base.config._attn_implementation
    base.set_attn_implementation(VARLEN)
    try:
        yield
    finally:
        base.set_attn_implementation(before)


def use_padding_free(trainer) -> None:
    """Switch a built SFTTrainer to padding-free micro-batches (its datasets are already truncated);
    its `train` then runs the model with `varlen_attention`."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trainer.data_collator = DataCollatorForLanguageModeling(
        pad_token_id=trainer.processing_class.pad_token_id,
        padding_free=True,
        pad_to_multiple_of=trainer.args.pad_to_multiple_of,
    )
    trainer.padding_free = True
    train = trainer.train

    def train_padding_free(*args, **kwargs):
        with padding_free_attention(trainer.model):
            return train(*args, **kwargs)

    trainer.train = train_padding_free


def supports_padding_free(model) -> bool:
    """The attention implementations that honour packed `position_ids` (see the module docstring)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return impl in ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
