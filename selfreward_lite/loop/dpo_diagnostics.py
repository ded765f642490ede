"""Did a round's DPO move the model? M_t+1 vs M_t on the round's own pairs, measured after training.

For every pair the summed log-probability of the chosen and of the rejected completion (completion
tokens only, tokenised and truncated exactly as DPO trained on them: the trainer's own dataset and
collator) is computed twice after training: with the new adapter on (M_t+1) and off (M_t). From the
differences Δ = log p_M_t+1 − log p_M_t come DPO's implicit rewards β·Δ, and so

- reward accuracy: the share of pairs whose chosen reward exceeds the rejected one;
- reward margin: the mean of β·(Δ chosen − Δ rejected);
- Δ log p chosen / rejected: the mean change of each side (DPO may lower both; what matters is the gap);
- Δ log p per token: the mean |Δ| per completion token, over both sides: how much the model changed.

Unlike the figures in the training log (each measured on a batch *before* its own update, with dropout
on), these describe the saved adapter on all pairs, so a round that barely moved is visible.
"""

from __future__ import annotations

from ..models.adapters import TRAINABLE, activate

# A round "barely moved" the model below either threshold (each warns, in metrics and the terminal):
# - mean |Δ log p| per completion token < 1e-3 nats: every token's probability changed by < 0.1 % on
#   average; even a 500-token answer then changes by < 0.5 nats, an implicit reward β·Δ < 0.05.
MIN_DELTA_PER_TOKEN = 1e-3
# - reward margin < 0.05: M_t+1 prefers chosen over rejected with an implied probability
#   σ(margin) < 51.25 % (M_t: 50 %); the DPO loss on the pairs is still > 0.669 (ln 2 = 0.693), i.e.
#   reward accuracy at chance with a margin of about zero: the preferences were not learned.
MIN_MARGIN = 0.05


def pair_logps(trainer, lm, names: list[str], batch_size: int) -> dict[str, tuple[float, float, int, int]]:
    """pair id -> (log p chosen, log p rejected, chosen tokens, rejected tokens) under the adapters `names`.

    Uses the trainer's dataset and collator (so the same tokens as training) and the model's fused
    log-prob head, as the reference pass does; the model is left with the training stack active."""
    import torch
    from torch.utils.data import DataLoader

    ds = trainer.train_dataset
    loader = DataLoader(ds, batch_size=batch_size, collate_fn=trainer.data_collator, shuffle=False)
    model = trainer.model
    was_training = model.training
    model.eval()  # dropout off
    activate(lm.model, names, train_new=False)
    out = []
    try:
        for batch in loader:
            batch = trainer._prepare_inputs(batch)
            kwargs = {k: v for k, v in batch.items()
                      if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps", "pair_id")}
            kwargs["use_cache"] = False
            mask = batch["completion_mask"]
            labels = batch["input_ids"].masked_fill(mask == 0, -100)
            with torch.no_grad(), trainer.accelerator.autocast():
                per_token = model(**kwargs, labels=labels, fused_lm_head=True).log_probs
            shift_mask = mask[..., 1:]
            per_token = per_token[:, -shift_mask.size(1):].float() * shift_mask
            logp_c, logp_r = per_token.sum(dim=1).chunk(2, dim=0)
            n_c, n_r = shift_mask.sum(dim=1).chunk(2, dim=0)
            out += [(float(a), float(b), int(c), int(d)) for a, b, c, d in zip(logp_c, logp_r, n_c, n_r)]
    finally:
        activate(lm.model, lm.adapter_names, train_new=True)
        model.train(was_training)
    return dict(zip(ds["pair_id"], out))


def measure(trainer, lm, beta: float, batch_size: int) -> dict:
    """The movement figures of a finished DPO training (see module doc); the new adapter is TRAINABLE."""
    new = pair_logps(trainer, lm, list(lm.adapter_names), batch_size)
    old = pair_logps(trainer, lm, [a for a in lm.adapter_names if a != TRAINABLE], batch_size)
    ref = dict(zip(trainer.train_dataset["pair_id"],
                   zip(trainer.train_dataset["ref_chosen_logps"], trainer.train_dataset["ref_rejected_logps"])))
    rows = [(new[k][0] - old[k][0], new[k][1] - old[k][1], old[k][2], old[k][3]) for k in new]
    figures = movement_figures(rows, beta)
    # M_t measured now vs the reference DPO trained against (also M_t): ~0 up to float rounding.
    figures["reference_gap"] = max((max(abs(old[k][0] - c), abs(old[k][1] - r)) for k, (c, r) in ref.items()),
                                   default=None)
    return figures


def movement_figures(rows: list[tuple[float, float, int, int]], beta: float) -> dict:
    """rows: per pair (Δ log p chosen, Δ log p rejected, chosen tokens, rejected tokens), Δ = M_t+1 − M_t."""
    n = len(rows)
    if not n:
        figures = {"pairs": 0, "reward_accuracy": None, "reward_margin": None, "delta_logp_chosen": None,
                   "delta_logp_rejected": None, "delta_logp_per_token": None}
        return {**figures, "warnings": movement_warnings(figures)}
    tokens = sum(nc + nr for _, _, nc, nr in rows)
    figures = {
        "pairs": n,
        "reward_accuracy": sum(dc > dr for dc, dr, _, _ in rows) / n,
        "reward_margin": beta * sum(dc - dr for dc, dr, _, _ in rows) / n,
        "delta_logp_chosen": sum(dc for dc, _, _, _ in rows) / n,
        "delta_logp_rejected": sum(dr for _, dr, _, _ in rows) / n,
        "delta_logp_per_token": sum(abs(dc) + abs(dr) for dc, dr, _, _ in rows) / max(1, tokens),
    }
    return {**figures, "warnings": movement_warnings(figures)}


def movement_warnings(f: dict) -> list[str]:
    """The rule (thresholds and their reasons above): a warning per way the round failed to move the model."""
    if not f.get("pairs"):
        return ["DPO moved nothing: no pair was measured (every pair lost its completion to max_length?)."]
    out = []
    hint = ("Raise dpo_learning_rate or dpo_epochs in config.json (benchmarks/dpo_settings.py compares "
            "settings on a round's pairs).")
    if f["delta_logp_per_token"] < MIN_DELTA_PER_TOKEN:
        out.append(f"DPO barely moved the model: mean |Δ log p| per completion token {f['delta_logp_per_token']:.2g} "
                   f"nats < {MIN_DELTA_PER_TOKEN:g} (M_t+1 ≈ M_t). {hint}")
    if f["reward_margin"] < MIN_MARGIN:
        out.append(f"DPO did not learn the round's preferences: reward margin {f['reward_margin']:.3g} < "
                   f"{MIN_MARGIN:g} (reward accuracy {f['reward_accuracy']:.0%}; chance is 50%). {hint}")
    return out
