"""Adapters stack, the DPO reference is exactly M_t, and only the new adapter trains.

Runs real DPO (TRL) in float32 on a tiny random-weight Llama (helpers.stack_cfg), so reference
log-probs can be compared to an independent computation to tight tolerance. The same stacking on the
embedded model runs in the e2e test's two rounds.
"""

import torch

from selfreward_lite.run.files import write_jsonl
from selfreward_lite.config import preset_config
from selfreward_lite.models.adapters import TRAINABLE, save_adapter
from selfreward_lite.models.hf import load_stack
from selfreward_lite.run.rundir import Run
from selfreward_lite.loop.stages import train_round_adapter

from helpers import STACK_PAIRS as PAIRS
from helpers import completion_logprobs, make_nonzero_m1, tree_digest
from helpers import stack_cfg as cfg_for_test

def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def logits(lm, text="The capital of France is"):
    ids = lm.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return lm.model(**ids).logits


def test_stacked_dpo_round(tmp_path):
    cfg = cfg_for_test(tmp_path)
    run = Run(tmp_path, cfg)
    make_nonzero_m1(cfg, run.m1_dir / "adapter")
    m1_files = tree_digest(run.m1_dir / "adapter")

    # Round 1 trains on top of M1; round 2 on top of M1 + round-1 adapter (two frozen adapters).
    for t in (1, 2):
        rd = run.round_dir(t)
        write_jsonl(rd / "pairs.jsonl", PAIRS)
        earlier = {str(d): tree_digest(d) for d in run.adapters_of(t)}

        lm = load_stack(cfg, run.adapters_of(t), train_new=True)
        assert lm.adapter_names == [f"m{i}" for i in range(1, t + 1)] + [TRAINABLE]
        before = params(lm.model)
        train_round_adapter(run, t, lm, rd / "pairs.jsonl", rd / "adapter")
        after = params(lm.model)

        # Only the new adapter's parameters changed; base and earlier adapters are untouched.
        changed = {n for n in before if not torch.equal(before[n], after[n])}
        assert changed, "training changed nothing"
        assert all(f".{TRAINABLE}." in n for n in changed), sorted(changed)[:5]
        assert any(f"lora_B.{TRAINABLE}." in n for n in changed)
        # Earlier adapters are byte-identical on disk.
        assert {str(d): tree_digest(d) for d in run.adapters_of(t)} == earlier
        assert tree_digest(run.m1_dir / "adapter") == m1_files

        # The DPO reference log-probs equal those of M_t computed independently.
        from selfreward_lite.run.files import read_json

        ref = read_json(rd / "adapter" / "dpo.json")["ref_logps"]
        m_t = load_stack(cfg, run.adapters_of(t))
        prompts = [[{"role": "user", "content": p["prompt"]}] for p in PAIRS]
        chosen = completion_logprobs(m_t, prompts, [[{"role": "assistant", "content": p["chosen"]}] for p in PAIRS])
        rejected = completion_logprobs(m_t, prompts, [[{"role": "assistant", "content": p["rejected"]}] for p in PAIRS])
        for p, c, r in zip(PAIRS, chosen, rejected):
            assert abs(ref[p["id"]][0] - c) < 1e-3 and abs(ref[p["id"]][1] - r) < 1e-3
        # ...and not those of the bare base model (what TRL would use by default).
        base_lm = load_stack(cfg, [])
        base_chosen = completion_logprobs(base_lm, prompts, [[{"role": "assistant", "content": p["chosen"]}] for p in PAIRS])
        assert max(abs(a - b) for a, b in zip(base_chosen, chosen)) > 1e-2

        # M_t+1 (rebuilt from disk) differs from M_t.
        m_next = load_stack(cfg, run.adapters_of(t + 1))
        assert not torch.allclose(logits(m_next), logits(m_t), atol=1e-4)
        # DPO moved the policy towards the chosen answers.
        dpo = read_json(rd / "adapter" / "dpo.json")
        assert abs(dpo["first_loss"] - 0.6931) < 1e-3  # policy == reference at step 0
        assert dpo["last_loss"] < dpo["first_loss"]
