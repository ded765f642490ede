"""Batched sampling: every stage that makes text (prompts, candidates, judgments, eval answers,
verdicts, chat) goes through `generate`.

What the model sees and how it samples are decided here, explicitly:
- every prompt starts with exactly one BOS token when the tokenizer uses one (`prompt_ids`): chat
  text rendered by a template that emits BOS keeps its one, raw text (the few-shot
  self-instruction prompt) gets one, and nothing gets two; SmolLM2 and Qwen use none;
- every sampling setting is passed to HF `generate` in a GenerationConfig built from our settings
  only (`generation_config`), so neither HF's defaults (top_k = 50) nor the model's own
  generation_config.json (Qwen: top_k 20, repetition_penalty 1.05) apply silently.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..run import seeds
from .adapters import LoadedModel, transformers_model
from .decode import decode, usable as decode_usable
from .attention import for_generation as attention_for_generation
from .prefix import PrefixCache, build as build_prefix, left_padded, prefill as prefix_prefill, usable as prefix_usable


def render_chat(tok, messages: list[dict], add_generation_prompt: bool = True) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def bos_id(tok) -> int | None:
    """The BOS token the model expects at the start of every sequence, or None when it uses none.

    A tokenizer "uses" BOS when its own encoding of plain text starts with it (Llama-3, Mistral,
    Gemma) or its chat template writes `bos_token`. Having a bos_token is not enough: SmolLM2's is
    <|im_start|>, which its plain encoding does not add and its template writes only as the start
    of a turn; Qwen has none.
    """
    bos = tok.bos_token_id
    if bos is None:
        return None
    plain = tok("a", add_special_tokens=True)["input_ids"]
    template = tok.chat_template if isinstance(tok.chat_template, str) else ""
    return bos if plain[:1] == [bos] or "bos_token" in template else None


def prompt_ids(tok, text: str, bos: int | None | str = "auto") -> list[int]:
    """The token ids of a prompt as the model sees it: exactly one BOS first when the tokenizer uses
    one (`bos_id`; pass it when known), whether or not `text` (chat-rendered, or raw) carries it."""
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    bos = bos_id(tok) if bos == "auto" else bos
    if bos is None:
        return ids
    while ids and ids[0] == bos:
        ids = ids[1:]
    return [bos] + ids


def sampling_settings(*, temperature: float, top_p: float, top_k: int = 0, repetition_penalty: float = 1.0,
                      max_new_tokens: int) -> dict:
    """Every setting that decides which tokens `generate` draws, explicit; recorded as is (round
    metrics, eval cache keys). temperature 0 = greedy; top_k 0 and repetition_penalty 1.0 = off;
    the rest of what HF could apply (min_p, typical_p, epsilon/eta cutoffs, n-gram blocking, ...) off."""
    sample = temperature > 0
    return {
        "do_sample": sample,
        "temperature": temperature if sample else 1.0,
        "top_p": top_p if sample else 1.0,
        "top_k": top_k if sample else 0,
        "min_p": None,
        "typical_p": 1.0,
        "epsilon_cutoff": 0.0,
        "eta_cutoff": 0.0,
        "repetition_penalty": repetition_penalty,
        "encoder_repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "num_beams": 1,
        "max_new_tokens": max_new_tokens,
        "min_length": 0,  # no minimum (min_new_tokens would add a no-op MinLength processor)
    }


def generation_config(settings: dict, *, eos_ids: list[int], pad_id: int | None, bos: int | None,
                      num_return_sequences: int = 1):
    """A GenerationConfig of our settings only (used in place of the model's own during `generate`)."""
    from transformers import GenerationConfig

    return GenerationConfig(**settings, eos_token_id=eos_ids, pad_token_id=pad_id, bos_token_id=bos,
                            num_return_sequences=num_return_sequences, use_cache=True,
                            return_dict_in_generate=False, output_scores=False, output_logits=False)


@dataclass
class Sample:
    text: str
    finished: bool  # False when the token budget ran out first
    n_tokens: int
    token_ids: list[int] | None = None  # the generated ids (with `score_tokens`)
    step_probs: Any = None  # with `score_tokens`: tensor [n_tokens, len(score_tokens)], each step's probabilities of them


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
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    stop_strings: Sequence[str] | None = None,
    on_batch: Callable[[int], None] | None = None,
    share_prefill: bool = True,
    prefix: PrefixCache | None = None,
    score_tokens: Sequence[int] | None = None,
    drop_finished: bool = True,
) -> list[list[Sample]]:
    """Sample `n` continuations of each rendered text, in left-padded batches.

    Up to `batch_size` sequences go through one `generate` call (batch_size // n texts, each
    with n samples); texts are sorted by length so a batch carries little padding. With
    share_prefill, each text's prompt is run through the model once and its KV cache copied
    to its n samples (`num_return_sequences` would prefill every copy). Call c of the batch
    loop draws from `seeds.generate_call(seed, c)`. Every prompt starts with exactly one BOS when
    the tokenizer uses one (`prompt_ids`); every sampling setting is ours (`sampling_settings`).

    `prefix` (from `shared_prefix`): the KV cache of the start the texts share, copied into each
    batch instead of recomputed (models/prefix.py; exact). `score_tokens`: record, at every generated
    step, the model's own probabilities (softmax of its logits, before any sampling setting) of these
    token ids (Sample.step_probs), for reading a score's distribution (judging/expected.py).
    `drop_finished` (HF backend): our decode loop, in which a finished row leaves the batch
    (models/decode.py); False: HF's `generate`, every row to the end of the batch's longest.
    """
    import torch

    tok, model = lm.tokenizer, lm.model
    tok.padding_side = "left"
    bos = bos_id(tok)
    encoded = [prompt_ids(tok, t, bos) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    per_call = max(1, batch_size // n)
    eos_ids = _eos_ids(lm)
    settings = sampling_settings(temperature=temperature, top_p=top_p, top_k=top_k,
                                 repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens)
    prefix = prefix if prefix is not None and lm.backend == "hf" else None
    own_loop = drop_finished and decode_usable(lm)  # finished rows leave the batch (models/decode.py)
    shared = lm.backend == "hf" and (prefix is not None or (n > 1 and share_prefill))
    # Unsloth's fast decoding keeps its own KV cache: it gets num_return_sequences instead.
    gen_cfg = generation_config(settings, eos_ids=eos_ids, pad_id=tok.pad_token_id, bos=bos,
                                num_return_sequences=1 if shared or own_loop else n)
    extra = {}
    if lm.backend == "unsloth":
        extra["pad_token_id"] = tok.pad_token_id  # Unsloth's generate wrapper sets its own pad id unless given one
    results: list[list[Sample]] = [[] for _ in texts]
    for call, start in enumerate(range(0, len(order), per_call)):
        idx = order[start : start + per_call]
        rows = [encoded[i] for i in idx]
        enc = left_padded(rows, tok.pad_token_id, model.device)
        torch.manual_seed(seeds.generate_call(seed, call))
        probs: list = []
        with torch.inference_mode(), attention_for_generation(lm), _only_our_settings(model, gen_cfg), \
                _recording(model, None if own_loop else score_tokens, probs):
            if shared:
                ready = prefix_prefill(model, prefix, rows, tok.pad_token_id, n, model.device) if prefix else None
                enc = ready if ready is not None else _shared_prefill(model, enc, n) if n > 1 else enc
            prompt_len = enc["input_ids"].shape[1]
            stop = StopOnText(tok, stop_strings, prompt_len) if stop_strings else None
            if own_loop:
                if n > 1 and not shared:
                    enc = {k: v.repeat_interleave(n, dim=0) for k, v in enc.items()}
                decoded = decode(model, enc, gen_cfg, eos_ids=eos_ids, max_new_tokens=max_new_tokens, stop=stop,
                                 score_tokens=score_tokens)
                new, probs = [d.ids for d in decoded], [d.step_probs for d in decoded]
            else:
                if stop is not None:
                    from transformers import StoppingCriteriaList

                    extra["stopping_criteria"] = StoppingCriteriaList([stop])
                probs.clear()  # only the steps of `generate`
                out = model.generate(**enc, generation_config=gen_cfg, **extra)
                new = out[:, prompt_len:].cpu().tolist()
                probs = [[p[row] for p in probs] for row in range(len(new))] if score_tokens is not None else []
        for row, ids in enumerate(new):
            stopped = next((k for k, t in enumerate(ids) if t in eos_ids), None)
            # A row that ended on a stop string is padded after it, like a row that hit EOS.
            kept = ids[:stopped] if stopped is not None else [t for t in ids if t != tok.pad_token_id]
            text = tok.decode(kept, skip_special_tokens=True)
            finished = stopped is not None or bool(stop_strings and any(s in text for s in stop_strings))
            sample = Sample(text.strip(), finished, len(kept))
            if score_tokens is not None:
                sample.token_ids = kept
                sample.step_probs = torch.stack(probs[row][: len(kept)]) if kept else None
            results[idx[row // n]].append(sample)
        if on_batch:
            on_batch(len(idx))
    return results


def shared_prefix(lm: LoadedModel, text: str) -> PrefixCache | None:
    """The KV cache of `text`, the rendered start every prompt of a stage shares (the judge's chat
    header and rubric), for `generate(prefix=...)`; None where the plain path must be used."""
    if not prefix_usable(lm):
        return None
    with attention_for_generation(lm):
        return build_prefix(lm, prompt_ids(lm.tokenizer, text))


@contextlib.contextmanager
def _recording(model, token_ids: Sequence[int] | None, out: list):
    """While active, each forward pass appends the probabilities of `token_ids` at its last position
    ([batch, len(token_ids)], from the model's final logits) to `out`; nothing without token_ids."""
    if token_ids is None:
        yield
        return
    import torch

    ids = torch.tensor(list(token_ids))

    def hook(module, args, output):
        logits = output.logits[:, -1].float()
        out.append(torch.softmax(logits, dim=-1)[:, ids.to(logits.device)].cpu())

    handle = transformers_model(model).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def _only_our_settings(model, gen_cfg):
    """HF's `generate` fills every setting left unset from the model's own generation_config (and
    PEFT re-reads it); with ours in its place during the call, nothing is inherited."""
    base = transformers_model(model)
    saved = base.generation_config
    base.generation_config = gen_cfg
    try:
        yield
    finally:
        base.generation_config = saved


def _shared_prefill(model, enc: dict, n: int) -> dict:
    """Prefill all but the last prompt token once, then repeat inputs and cache n times.

    Only the cache is needed: `logits_to_keep=1` makes the LM head score one position instead of
    every prompt position (full-vocabulary logits for a judging batch would be ~6 GB with
    Llama-3's 128k vocabulary; benchmarks/generation_memory.py). HF's own prefill inside
    `generate` keeps one position too."""
    ids, mask = enc["input_ids"], enc["attention_mask"]
    # Same positions as `generate` derives from a left-padded attention mask.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], use_cache=True,
                logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)
    return {
        "input_ids": ids.repeat_interleave(n, dim=0),
        "attention_mask": mask.repeat_interleave(n, dim=0),
        "past_key_values": cache,
    }


class StopOnText:
    """Ends a row once its generated text contains one of `stop_strings` (the prompt is never looked
    at). It does what transformers' `stop_strings=` does, without its scan of the whole vocabulary on
    every `generate` call (its cache is keyed on `get_vocab()`'s order, which changes from call to
    call for fast tokenizers: 4-13 s per call on the embedded model's 49k vocabulary, measured)."""

    def __init__(self, tok, stop_strings: Sequence[str], prompt_len: int):
        self.tok, self.stop_strings, self.start = tok, tuple(stop_strings), prompt_len
        # A stop string that ends in the newest token lies within its last len(s) + 1 tokens.
        self.window = max(len(s) for s in self.stop_strings) + 1

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        tail = input_ids[:, max(self.start, input_ids.shape[1] - self.window):]
        texts = self.tok.batch_decode(tail, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop_strings) for t in texts], dtype=torch.bool,
                            device=input_ids.device)


def _eos_ids(lm: LoadedModel) -> list[int]:
    ids = {lm.tokenizer.eos_token_id}
    gen_eos = transformers_model(lm.model).generation_config.eos_token_id
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    return sorted(i for i in ids if i is not None)
