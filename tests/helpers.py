"""Helpers shared by the tests (import them with `from helpers import ...`; tests/ is on sys.path)."""

from __future__ import annotations

from typing import Sequence


def _token_ids(tok, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def completion_logprobs(lm, prompts: Sequence[list[dict]], completions: Sequence[list[dict]],
                        batch_size: int = 8) -> list[float]:
    """Sum of log p(completion tokens | prompt) under the active model, tokenised as TRL does.

    Checks the DPO reference independently of the trainer.
    """
    import torch

    tok, model = lm.tokenizer, lm.model
    seqs = []
    for p, c in zip(prompts, completions):
        p_ids = _token_ids(tok, p, add_generation_prompt=True)
        full = _token_ids(tok, list(p) + list(c), add_generation_prompt=False)
        plen = 0
        while plen < min(len(p_ids), len(full)) and p_ids[plen] == full[plen]:
            plen += 1
        seqs.append((full, plen))
    out: list[float] = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        width = max(len(s) for s, _ in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (s, _) in enumerate(chunk):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(logits.device))[..., 0]
        for r, (s, plen) in enumerate(chunk):
            out.append(float(logp[r, plen - 1 : len(s) - 1].sum()))
    return out
