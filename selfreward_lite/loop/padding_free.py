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
varlen kernel does, in plain torch, on CPU and GPU alike; sum of l_i^2 scores, no mask tensor),
whatever implementation the model was loaded with (flash-attention's `cu_seq_lens_*` from the
collator would not describe rows with shared prompt starts, so they are dropped). Unsloth has its own
padding-free path (flash-attention varlen, xformers block-diagonal masks or sdpa masks, in its
`utils/packing.py`); this module serves the HF backend.

TRL 1.16 refuses `padding_free=True` with `max_length` set unless it packs (its guard for datasets
it does not prepare itself); it does truncate the datasets it prepares, so the trainer is built
padded (truncation to max_length, fully masked examples dropped) and the collator swapped after.
DPO: TRL 1.16's DPOTrainer has padding-free disabled ("temporarily unavailable"), so DPO pads.
"""

from __future__ import annotations

from ..models.attention import switched

VARLEN = "srlite_varlen"  # the attention implementation used while training padding-free


MIN_SHARED = 32  # tokens: a shorter common start of two prompts is not worth sharing


def segments(position_ids: list[int]) -> list[tuple[int, int, int]]:
    """(start, end, root) of each segment of a padding-free row: a segment starts where positions
    do not go on by one; one starting at position 0 is a root (a sequence, or a shared prompt start
    followed by its first branch), one starting at position s > 0 is a branch whose keys are the
    first s tokens of the latest root and then its own (share_prompt_prefixes)."""
    bounds, root = [], 0
    for i, p in enumerate(position_ids):
        if i == 0 or p != position_ids[i - 1] + 1:
            if p == 0:
                root = i
            elif i - root < p:
                raise RuntimeError(f"branch at {i} continues position {p} of a root only {i - root} long")
            bounds.append([i, None, root])
    for k, b in enumerate(bounds):
        b[1] = bounds[k + 1][0] if k + 1 < len(bounds) else len(position_ids)
    return [tuple(b) for b in bounds]


def varlen_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, position_ids=None,
                     **kwargs):
    """Causal attention within each sequence of a padding-free row (batch 1), a branch also
    attending to the shared prompt start it continues (`segments`).

    query (1, heads, L, d), key/value (1, kv_heads, L, d); returns (1, L, heads, d) as transformers'
    sdpa_attention_forward does. Anything else (a padded batch, a KV cache) is refused: this
    implementation gets no mask, so it must never see padding."""
    import torch
    import torch.nn.functional as F

    if (attention_mask is not None or position_ids is None or query.shape[0] != 1
            or query.shape[2] != key.shape[2] or dropout):
        raise RuntimeError("varlen_attention serves padding-free training rows only")
    pos = position_ids.reshape(-1)[: query.shape[2]].tolist()
    gqa = query.shape[1] != key.shape[1]
    parts = []
    for a, b, root in segments(pos):
        q, k, v = query[:, :, a:b], key[:, :, a:b], value[:, :, a:b]
        if a == root:  # a sequence (or a shared start and its first branch): plain causal
            parts.append(F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=gqa))
            continue
        shared = pos[a]  # the branch's keys: the root's first `shared` tokens, then its own
        k = torch.cat([key[:, :, root:root + shared], k], dim=2)
        v = torch.cat([value[:, :, root:root + shared], v], dim=2)
        mask = torch.ones(b - a, shared + b - a, dtype=torch.bool, device=q.device).tril(diagonal=shared)
        parts.append(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling, enable_gqa=gqa))
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def share_prompt_prefixes(batch: dict, min_shared: int = MIN_SHARED) -> dict:
    """Lay sequences of a padding-free row that begin with the same prompt tokens (EFT records all
    begin with the rubric) as one shared start and a branch each: the start is computed once and
    every branch attends to it, so the logits of every completion token are the same as laid
    separately (the same loss, the same gradients: the start's share of them is summed once).

    Only a start inside every member's prompt (labels -100) is shared, so no label moves; each
    branch keeps its positions (start length onwards). Written here because TRL shares no prefixes
    in training; the attention is `varlen_attention`."""
    import torch

    ids, pos, labels = (batch[k][0].tolist() for k in ("input_ids", "position_ids", "labels"))
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(ids)]
    seqs = [(ids[a:b], labels[a:b]) for a, b in zip(starts, starts[1:])]
    groups: dict[tuple, list[int]] = {}
    for n, (s, _) in enumerate(seqs):
        groups.setdefault(tuple(s[:min_shared]) if len(s) > min_shared else ("alone", n), []).append(n)
    out_ids, out_pos, out_labels = [], [], []
    shared_any = False
    for members in groups.values():
        shared = 0
        if len(members) > 1:
            first = seqs[members[0]][0]
            limit = min(next((i for i, x in enumerate(seqs[m][1]) if i and x != -100), len(seqs[m][1])) - 1
                        for m in members)  # stay inside every prompt
            while shared < limit and all(seqs[m][0][shared] == first[shared] for m in members):
                shared += 1
        if shared < min_shared:
            for m in members:
                s, lab = seqs[m]
                out_ids += s; out_labels += lab; out_pos += list(range(len(s)))
            continue
        shared_any = True
        s, lab = seqs[members[0]]
        out_ids += s[:shared]; out_labels += lab[:shared]; out_pos += list(range(shared))
        for m in members:
            s, lab = seqs[m]
            out_ids += s[shared:]; out_labels += [-100] + lab[shared + 1:]; out_pos += list(range(shared, len(s)))
    if not shared_any:
        return batch
    row = {"input_ids": out_ids, "position_ids": out_pos, "labels": out_labels}
    # cu_seq_lens_* / max_length_* describe the old layout (flash-attention's); varlen_attention reads positions
    rest = {k: v for k, v in batch.items() if k not in row and not k.startswith(("cu_seq_lens", "max_length"))}
    return {**rest, **{k: torch.tensor([v], dtype=batch[k].dtype) for k, v in row.items()}}


def padding_free_attention(model):
    """Run `model` with varlen_attention inside the block, its own implementation restored after."""
    return switched(model, VARLEN, varlen_attention)


def use_padding_free(trainer) -> None:
    """Switch a built SFTTrainer to padding-free micro-batches (its datasets are already truncated);
    its `train` then runs the model with `varlen_attention`."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collate = DataCollatorForLanguageModeling(
        pad_token_id=trainer.processing_class.pad_token_id,
        padding_free=True,
        pad_to_multiple_of=trainer.args.pad_to_multiple_of,
    )
    # padding to a multiple would add a segment of pad positions: only then are starts not shared
    trainer.data_collator = (collate if trainer.args.pad_to_multiple_of
                             else lambda examples: share_prompt_prefixes(collate(examples)))
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
