"""A real (tiny) DPO round reports how far it moved the model: reward accuracy, margin, Δ log p of
chosen and rejected under M_t+1 vs M_t, in metrics.json and the round table; a round that barely
moved says so. A tiny random-weight Llama (helpers.stack_cfg), float32, 4 separable pairs."""

from dataclasses import replace

import pytest

from selfreward_lite.loop.stages import summarize_round, train_round_adapter
from selfreward_lite.models.adapters import TRAINABLE, activate
from selfreward_lite.models.hf import load_stack
from selfreward_lite.run.files import read_json, write_json, write_jsonl
from selfreward_lite.run.rundir import Run

from helpers import STACK_PAIRS, completion_logprobs, make_nonzero_m1, stack_cfg


def _round_artifacts(run: Run, t: int) -> None:
    """Everything summarize_round reads besides the adapter (as the earlier stages would leave it)."""
    rd = run.round_dir(t)
    write_json(rd / "prompts_stats.json", {"generated": 4, "kept": 4, "dropped": {}})
    cands = [{"id": f"{p['id']}-c{k}", "prompt_id": p["id"], "prompt": p["prompt"], "response": p[side],
              "finished": True, "tokens": 8} for p in STACK_PAIRS for k, side in enumerate(("chosen", "rejected"))]
    write_jsonl(rd / "candidates.jsonl", cands)
    write_jsonl(rd / "judgments.jsonl", [
        {"id": f"{c['id']}-j0", "candidate_id": c["id"], "prompt_id": c["prompt_id"], "text": f"Score: {5 - 4 * (i % 2)}",
         "score": 5 - 4 * (i % 2), "parse": "ok"} for i, c in enumerate(cands)])
    write_jsonl(rd / "pairs.jsonl", STACK_PAIRS)
    write_json(rd / "pairs_stats.json", {"kept": 4, "dropped": {}})


def _train_round(tmp_path, **settings):
    cfg = replace(stack_cfg(tmp_path), **settings)
    run = Run(tmp_path, cfg)
    make_nonzero_m1(cfg, run.m1_dir / "adapter")
    _round_artifacts(run, 1)
    lm = load_stack(cfg, run.adapters_of(1), train_new=True)
    rd = run.round_dir(1)
    train_round_adapter(run, 1, lm, rd / "pairs.jsonl", rd / "adapter")
    return run, lm, summarize_round(run, 1, rd / "metrics.json")


def test_a_real_dpo_round_reports_its_movement(tmp_path):
    # a high LR for a few steps on pairs a model can separate: chosen must gain on rejected
    run, lm, metrics = _train_round(tmp_path, dpo_learning_rate=2e-3, dpo_epochs=3.0, warmup_ratio=0.1)
    d = metrics["dpo"]
    assert read_json(run.round_dir(1) / "metrics.json")["dpo"] == d
    assert d["delta_logp_chosen"] > d["delta_logp_rejected"]
    assert d["reward_margin"] > 0.05 and d["reward_accuracy"] >= 0.75
    assert d["delta_logp_per_token"] > 1e-3
    assert metrics["warnings"] == []
    # both training-log figures are kept, under their own names
    assert d["train_reward_accuracy"] is not None and d["train_reward_margin"] is not None

    # The Δ log p agree with an independent computation: the new adapter on vs off, after training.
    prompts = [[{"role": "user", "content": p["prompt"]}] for p in STACK_PAIRS]
    chosen = [[{"role": "assistant", "content": p["chosen"]}] for p in STACK_PAIRS]
    lm.model.eval()
    on = completion_logprobs(lm, prompts, chosen)
    activate(lm.model, [a for a in lm.adapter_names if a != TRAINABLE], train_new=False)
    off = completion_logprobs(lm, prompts, chosen)
    assert d["delta_logp_chosen"] == pytest.approx(sum(a - b for a, b in zip(on, off)) / len(on), abs=1e-3)
    moved = read_json(run.round_dir(1) / "adapter" / "dpo.json")["movement"]
    assert moved["reference_gap"] < 1e-3  # "off" is the reference DPO trained against: M_t

    # The round table shows them.
    from rich.console import Console

    from selfreward_lite.report.display import RichUI

    console = Console(record=True, width=200)
    RichUI(console).round_done(1, metrics, None)
    text = console.export_text()
    assert "Δ log p chosen / rejected" in text and f"{d['delta_logp_chosen']:.3f}" in text


def test_a_round_that_barely_moved_warns(tmp_path):
    _, _, metrics = _train_round(tmp_path, dpo_learning_rate=1e-8, dpo_epochs=1.0)
    assert metrics["dpo"]["delta_logp_per_token"] < 1e-3
    assert any("barely moved" in w for w in metrics["warnings"])
