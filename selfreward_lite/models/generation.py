"""Batched sampling: every stage that makes text (prompts, candidates, judgments, eval answers,
verdicts, chat) goes through `generate`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

from ..run import seeds
from .adapters import LoadedModel


def render_chat(tok, messages: list[dict], add_generation_prompt: bool = True) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


@dataclass
class Sample:
    text: str
    finished: bool  # False when the token budget ran out first
    n_tokens: int


def generate(
    lm: LoadedModel,
    texts: Sequence[str],
    n: int,
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    stop_strings: Sequence[str] | None = None,
    on_batch: Callable[[int], None] | None = None,
    share_prefill: bool = True,
) -> list[list[Sample]]:
    """Sample `n` continuations of each rendered text, in left-padded batches.

    Up to `batch_size` sequences go through one `generate` call (batch_size // n texts, each
    with n samples); texts are sorted by length so a batch carries little padding. With
    share_prefill, each text's prompt is run through the model once and its KV cache copied
    to its n samples (`num_return_sequences` would prefill every copy). Call c of the batch
    loop draws from `seeds.generate_call(seed, c)`.
    """
    import torch

    tok, model = lm.tokenizer, lm.model
    tok.padding_side = "left"
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    per_call = max(1, batch_size // n)
    eos_ids = _eos_ids(lm)
    results: list[list[Sample]] = [[] for _ in texts]
    for call, start in enumerate(range(0, len(order), per_call)):
        idx = order[start : start + per_call]
        enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        prompt_len = enc["input_ids"].shape[1]
        torch.manual_seed(seeds.generate_call(seed, call))
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=eos_ids)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kwargs.update(do_sample=False)
        if stop_strings:
            kwargs.update(stop_strings=list(stop_strings), tokenizer=tok)
        with torch.inference_mode(), _batch_attention(lm):
            # Unsloth's fast decoding keeps its own KV cache: it gets num_return_sequences instead.
            if n > 1 and share_prefill and lm.backend == "hf":
                enc = _shared_prefill(model, enc, n)
            else:
                kwargs["num_return_sequences"] = n
            out = model.generate(**enc, **kwargs)
        new = out[:, prompt_len:].cpu()
        for row, seq in enumerate(new):
            ids = seq.tolist()
            stopped = next((k for k, t in enumerate(ids) if t in eos_ids), None)
            # A row that ended on a stop string is padded after it, like a row that hit EOS.
            kept = ids[:stopped] if stopped is not None else [t for t in ids if t != tok.pad_token_id]
            text = tok.decode(kept, skip_special_tokens=True)
            finished = stopped is not None or bool(stop_strings and any(s in text for s in stop_strings))
            results[idx[row // n]].append(Sample(text.strip(), finished, len(kept)))
        if on_batch:
            on_batch(len(idx))
    return results


@contextlib.contextmanager
def _batch_attention(lm: LoadedModel):
    """On CPU, SDPA with a left-padding mask takes a slow path: eager attention generates
    left-padded batches ~25% faster there (benchmarks/generation_speed.py). Training keeps SDPA."""
    base = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    before = base.config._attn_implementation
    if lm.device != "cpu" or before != "sdpa":
        yield
        return
    base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(before)


def _shared_prefill(model, enc: dict, n: int) -> dict:
    """Prefill all but the last prompt token once, then repeat inputs and cache n times."""
    ids, mask = enc["input_ids"], enc["attention_mask"]
    # Same positions as `generate` derives from a left-padded attention mask.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)
    return {
        "input_ids": ids.repeat_interleave(n, dim=0),
        "attention_mask": mask.repeat_interleave(n, dim=0),
        "past_key_values": cache,
    }


def _eos_ids(lm: LoadedModel) -> list[int]:
    ids = {lm.tokenizer.eos_token_id}
    gen_eos = lm.model.generation_config.eos_token_id
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    return sorted(i for i in ids if i is not None)
