"""Random-weight causal LMs with real architectures whose sampled answers END (with EOS).

A model with random weights almost never samples its EOS token (1 in ~50k-128k per step), so
every answer would run to the token budget: such candidates cannot enter preference pairs
(a truncated answer is not a preference), and the timings of a round would be those of a
model that never stops. This module builds a random model and then edits only tensors that
bitsandbytes leaves unquantised (embeddings, LM head, RMSNorm weights), so the behaviour
survives 4-bit NF4 quantisation unchanged:

1. One hidden dimension `k` (the last) becomes a constant "bias" feature: every input
   embedding has the value `c` there, and the decoder layers do not read it (their RMSNorm
   weights are 0 at `k`), so it reaches the final norm as a near-constant. `c` is set so that
   dimension carries `share` of the residual stream's energy at the final norm, which makes
   the normalised value h_k = c / rms(x) nearly the same at every position, whatever the size.
2. The LM head's column `k` then acts as a per-token logit bias: EOS gets +delta * h_k,
   special tokens other than EOS and ids beyond the tokenizer (the real vocabulary sizes are
   larger than the stand-in tokenizer's) get a large negative bias, so they are never sampled.
   (With tied embeddings the column is shared with the input side; the uniform part `c`
   shifts every logit equally and changes nothing.)
3. The final norm's weights get random signs (except at `k`). With tied embeddings and random
   layers the final hidden state points along the current token's own embedding, so a random
   tied model repeats its input token forever; random signs remove that self-alignment while
   keeping the spread of the logits.
4. `delta` is calibrated, not predicted: on teacher-forced random answers after a chat
   prompt, the probability of sampling EOS under the sampling settings (temperature, top-p,
   no top-k) is computed exactly for each position, and `delta` is bisected until the mean
   per-token EOS probability (the hazard) is `hazard`. A constant hazard h gives geometric
   answer lengths: h = 0.025 means a median of ~27 tokens and ~92% of answers ending within
   100 tokens. The model's generation_config sets top_k = 0 (HF's silent default top_k=50
   would otherwise change the hazard) and do_sample = True, which top_k = 0 requires.

`finish_rate` then measures what really happens when sampling. Nothing here imports srlite.
"""

from __future__ import annotations

from dataclasses import dataclass

TEMPERATURE, TOP_P = 0.7, 0.9  # the paper's candidate sampling (srlite's `temperature` / `top_p`)
HAZARD = 0.025  # per-token EOS probability when sampling an answer


@dataclass
class Calibration:
    dim: int
    constant: float
    h_k_min: float
    h_k_max: float
    delta: float
    hazard: float
    hazard_p10: float
    hazard_p90: float
    positions: int
    suppressed_ids: int

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def build(spec: dict, tokenizer, *, device: str = "cpu", seed: int = 0, hazard: float = HAZARD):
    """A random-weight model of `spec` (gpu_fit.ARCHS format) in bf16 on `device`, answers ending.

    Returns (model, Calibration).
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    spec = dict(spec)
    kind = spec.pop("kind", "llama")
    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[kind]
    config = config_cls(**spec, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with torch.device(device):  # random init on the GPU takes seconds; built in bf16 directly (8B: 16 GB, not 32)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.eval()
    gen = model.generation_config
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id
    # No silent top-k (HF applies top_k=50 unless the generation config says otherwise): the hazard is
    # calibrated for temperature + top-p. (top_k=0 is only valid next to do_sample=True, as real
    # instruct models ship it; srlite passes do_sample explicitly anyway.)
    gen.do_sample, gen.top_k = True, 0
    cal = make_answers_end(model, tokenizer, hazard=hazard, seed=seed)
    return model, cal


def _final_norm(model):
    return model.get_decoder().norm


def _layer_norms(model, hidden: int):
    """RMSNorm weights of the decoder layers that act on the residual stream (size = hidden)."""
    for layer in model.get_decoder().layers:
        for module in layer.modules():
            w = getattr(module, "weight", None)
            if w is not None and "norm" in type(module).__name__.lower() and w.ndim == 1 and w.shape[0] == hidden:
                yield w


def calibration_batch(tokenizer, n: int = 8, answer_tokens: int = 48, seed: int = 0):
    """Chat prompts followed by random ordinary tokens (what a random model writes); returns
    (input_ids, index of the first answer-predicting position)."""
    import torch

    questions = ["Give me three names for a cat.", "How do I boil an egg?", "Explain what a prime number is.",
                 "Write a haiku about rain.", "What is the capital of France?", "Summarise the water cycle.",
                 "Suggest a name for a bakery.", "Why is the sky blue?"]
    rows = []
    for i in range(n):
        msgs = [{"role": "user", "content": questions[i % len(questions)]}]
        if tokenizer.chat_template:
            ids = tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
            ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        else:
            ids = tokenizer(msgs[0]["content"])["input_ids"]
        rows.append(ids)
    width = min(len(r) for r in rows)
    rows = [r[-width:] for r in rows]  # same length, no padding needed
    usable = ordinary_ids(tokenizer)
    g = torch.Generator().manual_seed(seed)
    answer = usable[torch.randint(len(usable), (n, answer_tokens), generator=g)]
    return torch.cat([torch.tensor(rows), answer], dim=1), width - 1


def ordinary_ids(tokenizer):
    import torch

    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special])


def _sampling_probs(logits, temperature: float, top_p: float):
    """Per-row sampling distribution after temperature and top-p, as HF's warpers compute it
    (the reference for `_eos_probability`, used by the tests)."""
    import torch

    scores = logits / temperature
    sorted_logits, sorted_idx = torch.sort(scores, descending=False, dim=-1)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cum <= (1 - top_p)
    remove_sorted[..., -1:] = False  # keep at least one
    remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
    return scores.masked_fill(remove, float("-inf")).softmax(dim=-1)


def _eos_probability(logits, eos: int, h, temperature: float, top_p: float):
    """f(delta) = P(sample EOS) per row when EOS's logit is raised by delta * h (temperature, then
    top-p as in HF's TopPLogitsWarper). The other tokens are sorted once, so each call costs a
    binary search per row instead of a sort of the vocabulary."""
    import torch

    scores = logits.double() / temperature
    e0 = scores[:, eos].clone()
    others = torch.cat([scores[:, :eos], scores[:, eos + 1 :]], dim=1)
    shift = others.max(dim=1, keepdim=True).values
    asc = torch.sort(others - shift, dim=1).values.contiguous()
    cum = asc.exp().cumsum(dim=1).contiguous()  # ascending partial sums of the others' mass
    zero = torch.zeros(len(asc), 1, dtype=cum.dtype, device=cum.device)
    cum0 = torch.cat([zero, cum], dim=1)  # cum0[:, j] = mass of the j smallest others
    h = h.double() / temperature

    def prob(delta: float):
        e = (e0 + delta * h - shift[:, 0]).unsqueeze(1)
        w = e.exp()
        total = cum[:, -1:] + w
        cut = (1 - top_p) * total  # the smallest tokens are removed while their cumulative mass <= cut
        below = torch.searchsorted(asc, e)  # others smaller than EOS come before it in ascending order
        eos_removed = cum0.gather(1, below) + w <= cut
        removed_n = torch.minimum(torch.searchsorted(cum, cut, right=True), below)
        removed = cum0.gather(1, removed_n)
        p = (w / (total - removed)).squeeze(1)
        return p.masked_fill(eos_removed.squeeze(1), 0.0)

    return prob


def _stream_writers(model, hidden: int):
    """Weights of the decoder layers' linear maps that write into the residual stream (o_proj, down_proj)."""
    import torch

    for layer in model.get_decoder().layers:
        for module in layer.modules():
            if isinstance(module, torch.nn.Linear) and module.out_features == hidden:
                yield module.weight


def make_answers_end(model, tokenizer, *, hazard: float = HAZARD, temperature: float = TEMPERATURE,
                     top_p: float = TOP_P, seed: int = 0, n: int = 8) -> Calibration:
    """Edit `model` in place (see the module docstring) so that sampled answers end with EOS."""
    import torch

    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    tied = head.data_ptr() == emb.data_ptr()
    vocab, hidden = head.shape
    k = hidden - 1
    eos = tokenizer.eos_token_id
    device = emb.device
    ordinary = ordinary_ids(tokenizer).to(device)

    with torch.no_grad():
        for w in _layer_norms(model, hidden):
            w[k] = 0  # the layers never read the constant feature ...
        for w in _stream_writers(model, hidden):
            w[k].mul_(1e-3)  # ... and barely write to it (small, not 0: no all-zero quantisation blocks)
        g = torch.Generator().manual_seed(seed + 1)
        signs = (torch.randint(0, 2, (hidden,), generator=g) * 2 - 1).to(device, _final_norm(model).weight.dtype)
        signs[k] = 1
        _final_norm(model).weight.copy_(signs)
        # the constant: as large as a typical embedding row, so the first layer's inputs keep half their scale
        c = emb[ordinary][:, :k].float().norm(dim=1).median().item()
        emb[:, k] = c
        base = c if tied else 0.0  # with tied embeddings every logit gets the same c * h_k: no effect
        head[:, k] = base

    ids, first = calibration_batch(tokenizer, n=n, seed=seed)
    ids = ids.to(device)
    captured = {}
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda m, a: captured.__setitem__("h", a[0].detach()))
    try:
        def forward():
            with torch.inference_mode():
                logits = model(input_ids=ids).logits[:, first:].float()
            return logits, captured["h"][:, first:, k].float()  # h_k > 0 at every answer position

        logits, h_k = forward()
        # never sampled: special tokens other than EOS, and ids the (smaller) tokenizer does not have
        suppressed = sorted((set(tokenizer.all_special_ids) - {eos}) | set(range(len(tokenizer), vocab)))
        if h_k.min().item() <= 0:
            raise RuntimeError(f"the constant feature is not positive at every position (min h_k {h_k.min().item():.3g})")
        margin = 40.0 * temperature  # 40 nats below the rest after temperature
        with torch.no_grad():
            if suppressed:
                head[suppressed, k] = base - margin / h_k.min().item()
        logits, h_k = forward()
        # delta by bisection on the exact mean per-token EOS probability under sampling
        eos_prob = _eos_probability(logits.reshape(-1, vocab), eos, h_k.reshape(-1), temperature, top_p)
        lo, hi = 0.0, 1.0
        while eos_prob(hi).mean().item() < hazard and hi < 1e6:
            lo, hi = hi, hi * 2
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if eos_prob(mid).mean().item() < hazard else (lo, mid)
        delta = (lo + hi) / 2
        probs = eos_prob(delta)
        with torch.no_grad():
            head[eos, k] = base + delta
    finally:
        hook.remove()
    q = torch.quantile(probs.float().cpu(), torch.tensor([0.1, 0.9]))
    return Calibration(dim=k, constant=c, h_k_min=h_k.min().item(), h_k_max=h_k.max().item(), delta=delta,
                       hazard=probs.mean().item(), hazard_p10=q[0].item(), hazard_p90=q[1].item(),
                       positions=probs.numel(), suppressed_ids=len(suppressed))


def finish_rate(model, tokenizer, *, prompts: int = 16, max_new_tokens: int = 128, temperature: float = TEMPERATURE,
                top_p: float = TOP_P, seed: int = 0) -> dict:
    """Sample one answer per chat prompt with plain `generate`; how many end with EOS, and how long."""
    import torch

    ids, _ = calibration_batch(tokenizer, n=prompts, answer_tokens=0, seed=seed)
    ids = ids.to(model.device)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=temperature,
                             top_p=top_p, top_k=0, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    lengths, finished = [], 0
    for row in out[:, ids.shape[1]:].tolist():
        if tokenizer.eos_token_id in row:
            finished += 1
            lengths.append(row.index(tokenizer.eos_token_id))
        else:
            lengths.append(len(row))
    lengths.sort()
    return {"samples": len(lengths), "max_new_tokens": max_new_tokens, "finished": finished,
            "finish_rate": round(finished / len(lengths), 3), "median_tokens": lengths[len(lengths) // 2],
            "mean_tokens": round(sum(lengths) / len(lengths), 1), "temperature": temperature, "top_p": top_p}
