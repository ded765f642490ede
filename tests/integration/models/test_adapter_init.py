"""Each round's new adapter starts from its own random A (seeds.adapter_init(seed, t)), and an
out-of-memory retry starts from exactly the first attempt's A (B = 0 both times), on both backends."""

import torch
from helpers import random_adapter
from tiny_models import tiny_llama_dir

from selfreward_lite.config import preset_config
from selfreward_lite.loop import stages
from selfreward_lite.models import unsloth as U
from selfreward_lite.models.adapters import TRAINABLE
from selfreward_lite.models.hf import load_stack
from selfreward_lite.run.rundir import Run


def lora(lm, which="A"):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters() if f"lora_{which}.{TRAINABLE}." in n}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def setup(tmp_path):
    cfg = preset_config("cpu", model=str(tiny_llama_dir(tmp_path / "m", "none")), dtype="float32", lora_r=2, lora_alpha=4)
    m1, r1 = tmp_path / "m1", tmp_path / "r1"
    random_adapter(cfg, [], m1, seed=1)
    random_adapter(cfg, [m1], r1, seed=2)
    return cfg, [m1, r1]


def test_each_round_has_its_own_a_and_a_retry_reproduces_it(tmp_path):
    cfg, (m1, r1) = setup(tmp_path)
    a = [lora(load_stack(cfg, dirs, train_new=True)) for dirs in ([], [m1], [m1, r1])]  # M1's SFT, rounds 1 and 2
    assert not same(a[0], a[1]) and not same(a[1], a[2]) and not same(a[0], a[2])
    assert same(lora(load_stack(cfg, [m1], train_new=True)), a[1])  # the same in every process

    # An OOM retry (stages._train_with_backoff) re-initialises to the first attempt's state.
    run = Run(tmp_path / "run", cfg)
    lm = load_stack(cfg, [m1], train_new=True)
    seen = []

    def train_with(c):
        seen.append((lora(lm, "A"), lora(lm, "B")))
        with torch.no_grad():  # the failed attempt had already moved the adapter
            for n, p in lm.model.named_parameters():
                if f".{TRAINABLE}." in n:
                    p.add_(0.5)
        if len(seen) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {}

    stages._train_with_backoff(run, lm, train_with)
    (a_first, b_first), (a_retry, b_retry) = seen
    assert same(a_first, a[1]) and same(a_retry, a_first)
    assert same(b_retry, b_first) and all(v.abs().max() == 0 for v in b_retry.values())


def test_unsloth_backend_draws_the_same_a_as_hf(tmp_path, fake_unsloth):
    cfg, (m1, r1) = setup(tmp_path)
    for dirs in ([], [m1], [m1, r1]):
        lm = U.load_stack(cfg, dirs, train_new=True)
        assert lm.init_seed == load_stack(cfg, dirs, train_new=True).init_seed
        assert same(lora(lm), lora(load_stack(cfg, dirs, train_new=True)))
