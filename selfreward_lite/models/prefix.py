"""A shared prompt prefix run once: the judge rubric's KV cache, reused for every judgment of a stage.

Every judge prompt is the chat template's header, then the rubric, then the instruction and the
response. The tokens up to the end of the rubric are the same in every prompt, so their keys and
values are the same too: `build` runs them through the model once, and `prefill` starts each batch
from a copy of that cache, expanded to the batch, instead of recomputing it for every row.

Exact, not approximate. The prefix is token ids, and each batch uses only the longest run of them
that every row of the batch starts with (a tokenizer may merge the last rubric token with the text
after it; then one token fewer is shared), so a row's tokens are exactly those of the plain path.
The rows' suffixes are left-padded *inside* the suffix region: [prefix][pad…][suffix]. The attention
mask covers prefix + pad + suffix (the pads masked), so a real token attends to exactly the real
tokens before it, and the positions, derived from the mask as HF `generate` derives them
(cumsum − 1), are 0…p−1 for the prefix and p… for the suffix: the same as the same row left-padded
whole. tests/integration/models/test_prefix_cache.py checks the next-token logits against the
plain path on the embedded model.

Where it does not apply (`usable`), generation takes the plain path silently: the Unsloth backend
(its fast decoding builds its own KV cache from input_ids and takes no past_key_values from us), a
cache that is not a plain DynamicCache of full-attention layers (sliding-window layers keep only
their last tokens, so a copied prefix would not be theirs), and a prefix shorter than
`MIN_TOKENS` (not worth a second forward pass).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

MIN_TOKENS = 8


@dataclass
class PrefixCache:
    ids: list[int]  # the prefix's token ids (BOS included when the model uses one)
    cache: Any  # the model's DynamicCache for them, batch 1


def usable(lm) -> bool:
    """Only models our HF loader made (a stand-in without a backend takes the plain path)."""
    return getattr(lm, "backend", None) == "hf"


def build(lm, ids: list[int]) -> PrefixCache | None:
    """Run `ids` (the rendered prompt up to where prompts start to differ, as `generation.prompt_ids`
    encodes it) through `lm` once; call it inside generation's attention context. None where the plain
    path must be used (see the module doc)."""
    import torch

    if not usable(lm) or len(ids) < MIN_TOKENS:
        return None
    with torch.inference_mode():
        t = torch.tensor([ids], device=lm.model.device)
        out = lm.model(input_ids=t, attention_mask=torch.ones_like(t), use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    layers = getattr(cache, "layers", None)
    if type(cache).__name__ != "DynamicCache" or not layers or any(getattr(layer, "is_sliding", False) for layer in layers):
        return None
    return PrefixCache(list(ids), cache)


def shared_length(prefix: PrefixCache, rows: list[list[int]]) -> int:
    """How many leading prefix tokens every row starts with, leaving each row at least one token of its own."""
    m = len(prefix.ids)
    for r in rows:
        k = 0
        limit = min(m, len(r) - 1)
        while k < limit and r[k] == prefix.ids[k]:
            k += 1
        m = k
    return m


def prefill(model, prefix: PrefixCache, rows: list[list[int]], pad_id: int, n: int, device) -> dict | None:
    """The inputs of one `generate` call whose rows all start with the prefix: ids [prefix][pad…][suffix],
    their mask, and a KV cache holding the prefix (copied, expanded to the batch) and every suffix token
    but the last (HF's `generate` feeds that one); rows and cache repeated n times for n samples each.
    None when the batch shares fewer than MIN_TOKENS prefix tokens (use the plain path)."""
    import torch

    m = shared_length(prefix, rows)
    if m < MIN_TOKENS:
        return None
    b = len(rows)
    suffix = left_padded([r[m:] for r in rows], pad_id, device)
    head = torch.tensor([prefix.ids[:m]], dtype=torch.long, device=device).expand(b, m)
    ids = torch.cat([head, suffix["input_ids"]], dim=1)
    mask = torch.cat([torch.ones((b, m), dtype=torch.long, device=device), suffix["attention_mask"]], dim=1)
    cache = copy.copy(prefix.cache)
    cache.layers = [copy.copy(layer) for layer in prefix.cache.layers]
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, :m].expand(b, -1, -1, -1).contiguous()
        layer.values = layer.values[:, :, :m].expand(b, -1, -1, -1).contiguous()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as `generate` derives them from the mask
    if ids.shape[1] - 1 > m:
        model(input_ids=ids[:, m:-1], attention_mask=mask[:, :-1], position_ids=positions[:, m:-1],
              past_key_values=cache, use_cache=True, logits_to_keep=1)
    if n > 1:
        cache.batch_repeat_interleave(n)
        ids, mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)
    return {"input_ids": ids, "attention_mask": mask, "past_key_values": cache}


def left_padded(rows: list[list[int]], pad_id: int, device) -> dict:
    """input_ids and attention_mask of `rows`, left-padded to the longest."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
