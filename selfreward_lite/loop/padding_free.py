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
mask from such `position_ids` for sdpa and eager (`masking_utils.find_packed_sequence_indices`),
and flash-attention reads the sequence boundaries (`cu_seq_lens_*`) the collator adds. sdpa is the
default and the fastest on CPU; on GPU flash-attention-2, where installed, skips the masked blocks
(Unsloth uses flash-attention or xformers' block-diagonal masks for its own padding-free batches).

TRL 1.16 refuses `padding_free=True` with `max_length` set unless it packs (its guard for datasets
it does not prepare itself); it does truncate the datasets it prepares, so the trainer is built
padded (truncation to max_length, fully masked examples dropped) and the collator swapped after.
DPO: TRL 1.16's DPOTrainer has padding-free disabled ("temporarily unavailable"), so DPO pads.
"""

from __future__ import annotations


def use_padding_free(trainer) -> None:
    """Switch a built SFTTrainer to padding-free micro-batches (its datasets are already truncated)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trainer.data_collator = DataCollatorForLanguageModeling(
        pad_token_id=trainer.processing_class.pad_token_id,
        padding_free=True,
        pad_to_multiple_of=trainer.args.pad_to_multiple_of,
    )
    trainer.padding_free = True


def supports_padding_free(model) -> bool:
    """The attention implementations that honour packed `position_ids` (see the module docstring)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return impl in ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
