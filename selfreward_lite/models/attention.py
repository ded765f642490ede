"""Attention implementations we run a model with for a while: `switched` (the one way to do it), and
grouped attention for batched generation on CPU (`for_generation`; padding-free training switches to
loop/padding_free.varlen_attention the same way).

Grouped attention is eager attention's arithmetic without copying the KV cache.

Decoding a judgment reads a cache of ~600 tokens per row at every step. HF's eager attention first
expands the cache to one copy per query head (`repeat_kv`: 3 copies on SmolLM2 / Llama-3's 4 on 8B,
grouped-query attention), then multiplies one query row at a time: a profile of one decode step
(embedded model, batch 32, 600 cached tokens) spent 29 % in that copy and 36 % in the multiplies,
more than in every linear layer together (15 %). Here the query heads that share a key/value head
are multiplied against it together, as one [heads per group × d] block: no copy, 3-4× fewer, larger
matrix products. The mask, the scaling, the float32 softmax and the order of operations are eager's,
so the result is the same up to float rounding (tests/integration/models/test_grouped_attention.py).

SDPA is not the answer on CPU: with a padding mask it takes its unfused path and was slower still
than eager (307 vs 167 ms per step, same case). GPUs keep the model's own implementation.
"""

from __future__ import annotations

import contextlib
import sys

from .adapters import transformers_model

NAME = "srlite_grouped"


def grouped_attention(module, query, key, value, attention_mask, scaling: float | None = None, dropout: float = 0.0,
                      **kwargs):
    """eager_attention_forward's result (attn_output [b, q, heads, d], weights) with the heads of a group
    multiplied together; anything eager does beyond that (soft-capping, sinks, sliding windows in the
    kwargs, a mask per head) goes to the model's own eager attention."""
    import torch

    if (dropout or kwargs.get("softcap") or kwargs.get("s_aux") is not None or kwargs.get("sliding_window")
            or (attention_mask is not None and attention_mask.shape[1] != 1)):
        eager = sys.modules[type(module).__module__].eager_attention_forward  # the modeling file's own
        return eager(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    b, heads, q, d = query.shape
    kv_heads, s = key.shape[1], key.shape[2]
    g = heads // kv_heads
    scaling = d ** -0.5 if scaling is None else scaling  # eager's default
    # head h uses key/value head h // g (repeat_kv's order), so a group's queries are contiguous
    weights = torch.matmul(query.reshape(b, kv_heads, g * q, d), key.transpose(2, 3)) * scaling
    weights = weights.view(b, kv_heads, g, q, s)
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, None, :, :s]
    weights = torch.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights.view(b, kv_heads, g * q, s), value).view(b, heads, q, d)
    return out.transpose(1, 2).contiguous(), weights.view(b, heads, q, s)


@contextlib.contextmanager
def switched(model, name: str, attention, mask=None):
    """Inside the block, `model` (PEFT-wrapped or not) runs `attention` registered as `name` (with
    `mask`, a transformers mask function, for the masks it is given; None: none are built for it);
    its own implementation is restored after."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(name, attention)
    if mask is not None:
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, mask)
    base = transformers_model(model)
    before = base.config._attn_implementation
    base.set_attn_implementation(name)
    try:
        yield
    finally:
        base.set_attn_implementation(before)


@contextlib.contextmanager
def for_generation(lm):
    """On CPU, generate with grouped_attention (the mask eager's); elsewhere, the model's own."""
    if lm.device != "cpu" or transformers_model(lm.model).config._attn_implementation not in ("sdpa", "eager"):
        yield
        return
    from transformers.masking_utils import eager_mask

    with switched(lm.model, NAME, grouped_attention, eager_mask):
        yield
