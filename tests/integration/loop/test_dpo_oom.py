"""Out of memory inside DPO's reference pass: TRL has already added its "ref" adapter (a copy of the
new one) when the reference log-probs are computed, so the retry at half the micro-batch used to fail
with "adapter already exists". Now the round completes, with the reference still exactly M_t."""

import torch
from helpers import STACK_PAIRS, completion_logprobs, random_adapter
from tiny_models import tiny_llama_dir

from selfreward_lite.config import preset_config
from selfreward_lite.loop import stages, train
from selfreward_lite.models.hf import load_stack
from selfreward_lite.run.files import read_json, write_jsonl
from selfreward_lite.run.rundir import Run


def round_one_on_m1(tmp_path):
    """A run whose M1 is a random adapter (so round 1 trains on a stack) and whose round 1 has pairs."""
    cfg = preset_config("cpu", model=str(tiny_llama_dir(tmp_path / "m", "llama3")), dtype="float32", lora_r=2,
                        lora_alpha=4, dpo_epochs=1.0, dpo_batch_size=2, train_micro_batch_size=2, checkpoint_steps=0)
    run = Run(tmp_path / "run", cfg)
    random_adapter(cfg, [], run.m1_dir / "adapter", seed=1)
    pairs_file = run.round_dir(1) / "pairs.jsonl"
    write_jsonl(pairs_file, STACK_PAIRS)
    return cfg, run, pairs_file


def reference_oom(monkeypatch, reference_batches: list, fail) -> None:
    """The round's DPO trainer records (micro-batch size, adapters present) of every reference batch and
    raises CUDA's out-of-memory error inside the reference pass when `fail(len(reference_batches))`."""
    make_class = train._stacked_dpo_trainer_class

    def trainer_class():
        class OOMInReference(make_class()):
            def compute_ref_log_probs(self, model, inputs):
                peft_model = self.accelerator.unwrap_model(self.model)
                reference_batches.append((inputs["input_ids"].shape[0] // 2, sorted(peft_model.peft_config)))
                if fail(len(reference_batches)):
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.91 GiB")
                return super().compute_ref_log_probs(model, inputs)

        return OOMInReference

    monkeypatch.setattr(train, "_stacked_dpo_trainer_class", trainer_class)


def test_oom_in_reference_pass_retries_with_half_batch_and_reference_m_t(tmp_path, monkeypatch):
    cfg, run, pairs_file = round_one_on_m1(tmp_path)
    reference_batches = []
    reference_oom(monkeypatch, reference_batches, fail=lambda calls: calls == 1)
    lm = load_stack(cfg, run.adapters_of(1), train_new=True)
    stages.train_round_adapter(run, 1, lm, pairs_file, run.round_dir(1) / "adapter")

    assert reference_batches[0] == (2, ["default", "m1", "ref"])  # it failed where TRL's "ref" already existed
    assert {size for size, _ in reference_batches[1:]} == {1}  # retried at half the micro-batch
    assert read_json(run.manifest_path)["batch_sizes"]["training"] == 1
    assert sorted(lm.model.peft_config) == ["default", "m1"]  # no "ref" left behind
    dpo = read_json(run.round_dir(1) / "adapter" / "dpo.json")
    assert dpo["steps"] >= 1 and abs(dpo["first_loss"] - 0.6931) < 1e-3

    m_t = load_stack(cfg, run.adapters_of(1))  # the reference is still exactly M_t = base + m1
    prompts = [[{"role": "user", "content": p["prompt"]}] for p in STACK_PAIRS]
    for side, k in (("chosen", 0), ("rejected", 1)):
        expected = completion_logprobs(m_t, prompts, [[{"role": "assistant", "content": p[side]}] for p in STACK_PAIRS])
        for p, e in zip(STACK_PAIRS, expected):
            assert abs(dpo["ref_logps"][p["id"]][k] - e) < 1e-4


def test_oom_in_every_reference_pass_gives_a_clear_error_and_leaves_no_ref_adapter(tmp_path, monkeypatch):
    """The last exit path: out of memory at micro-batch 2, then at 1, inside the reference pass each time.
    The round stops with our clear error (not PEFT's "already exists"), and the model holds no "ref"."""
    import pytest

    from selfreward_lite.errors import SrliteError

    cfg, run, pairs_file = round_one_on_m1(tmp_path)
    reference_batches = []
    reference_oom(monkeypatch, reference_batches, fail=lambda calls: True)
    lm = load_stack(cfg, run.adapters_of(1), train_new=True)
    with pytest.raises(SrliteError, match="Out of memory during training even at batch size 1"):
        stages.train_round_adapter(run, 1, lm, pairs_file, run.round_dir(1) / "adapter")
    assert [size for size, _ in reference_batches] == [2, 1]
    assert sorted(lm.model.peft_config) == ["default", "m1"]
    assert not (run.round_dir(1) / "adapter" / "dpo.json").exists()


def test_oom_in_reference_pass_on_the_unsloth_backend(tmp_path, monkeypatch, fake_unsloth):
    """The same on the Unsloth backend (stand-in `unsloth`): M_t is the folded adapter, the new one is trained
    with Unsloth's fused kernels swapped out. The retry keeps that layout (the stand-in's kernel raises on two
    active adapters), completes at half the micro-batch with the reference = M_t, and sampling gets its
    kernels back afterwards."""
    from selfreward_lite.models import backend
    from selfreward_lite.models import unsloth as U
    from selfreward_lite.models.adapters import FOLDED, TRAINABLE

    cfg, run, pairs_file = round_one_on_m1(tmp_path)
    reference_batches = []
    reference_oom(monkeypatch, reference_batches, fail=lambda calls: calls == 1)
    lm = backend.for_training(U.load_stack(cfg, run.adapters_of(1), train_new=True))
    assert lm.backend == "unsloth" and lm.adapter_names == [FOLDED, TRAINABLE]
    stages.train_round_adapter(run, 1, lm, pairs_file, run.round_dir(1) / "adapter")

    assert reference_batches[0] == (2, sorted([FOLDED, TRAINABLE, "ref"]))
    assert {size for size, _ in reference_batches[1:]} == {1}
    assert sorted(lm.model.peft_config) == sorted([FOLDED, TRAINABLE])  # no "ref" left behind
    dpo = read_json(run.round_dir(1) / "adapter" / "dpo.json")
    assert dpo["steps"] >= 1 and abs(dpo["first_loss"] - 0.6931) < 1e-3
    m_t = load_stack(cfg, run.adapters_of(1))  # M_t through the HF backend: base + m1, unfolded
    prompts = [[{"role": "user", "content": p["prompt"]}] for p in STACK_PAIRS]
    for side, k in (("chosen", 0), ("rejected", 1)):
        expected = completion_logprobs(m_t, prompts, [[{"role": "assistant", "content": p[side]}] for p in STACK_PAIRS])
        for p, e in zip(STACK_PAIRS, expected):
            assert abs(dpo["ref_logps"][p["id"]][k] - e) < 1e-3
    U.sampling_mode(lm)  # the fused kernels are back and M_t samples
    assert lm.model.active_adapters == [FOLDED]
    assert all("forward" in layer.mlp.__dict__ for layer in lm.model.get_base_model().model.layers)
