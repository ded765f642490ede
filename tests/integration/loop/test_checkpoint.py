"""A killed DPO stage continues from its last checkpoint: only the new adapter is restored,
the reference is still exactly M_t, and the result matches an uninterrupted training (a tiny
random-weight Llama: helpers.stack_cfg)."""

import pytest
import torch

from selfreward_lite.models.adapters import TRAINABLE
from selfreward_lite.models.hf import load_stack
from selfreward_lite.loop.train import last_checkpoint, train_dpo
from helpers import STACK_PAIRS as PAIRS
from helpers import make_nonzero_m1
from helpers import stack_cfg as cfg_for_test


class Killed(Exception):
    pass


def new_adapter(lm):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters() if f".{TRAINABLE}." in n}


def test_dpo_resumes_from_checkpoint(tmp_path):
    cfg = cfg_for_test(tmp_path)
    cfg.checkpoint_steps, cfg.dpo_epochs = 1, 2.0  # 4 pairs, batch 2: 4 steps, a checkpoint after each
    make_nonzero_m1(cfg, tmp_path / "m1")

    lm = load_stack(cfg, [tmp_path / "m1"], train_new=True)
    whole = train_dpo(cfg, lm, PAIRS, checkpoint_dir=tmp_path / "ck_whole")
    want = new_adapter(lm)
    assert whole["steps"] == 4

    def die_at_3(step, total):
        if step == 3:
            raise Killed

    lm = load_stack(cfg, [tmp_path / "m1"], train_new=True)
    with pytest.raises(Killed):
        train_dpo(cfg, lm, PAIRS, on_step=die_at_3, checkpoint_dir=tmp_path / "ck")
    assert last_checkpoint(tmp_path / "ck").endswith("checkpoint-2")
    (tmp_path / "ck" / "checkpoint-9").mkdir()  # a checkpoint torn by a kill in mid-save is ignored

    lm = load_stack(cfg, [tmp_path / "m1"], train_new=True)  # a new process: fresh adapter, B = 0
    steps_seen = []
    resumed = train_dpo(cfg, lm, PAIRS, on_step=lambda s, n: steps_seen.append(s), checkpoint_dir=tmp_path / "ck")
    assert steps_seen == [3, 4] and resumed["steps"] == 4
    assert not (tmp_path / "ck" / "checkpoint-9").exists()
    for pid, logps in whole["ref_logps"].items():  # reference: M_t, not the checkpoint
        assert resumed["ref_logps"][pid] == pytest.approx(logps, abs=1e-4)
    got = new_adapter(lm)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-5), name
    assert lm.model.active_adapters == ["m1", TRAINABLE]
