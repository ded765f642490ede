"""Training: M1 by SFT on the seed data, M_t+1 by DPO on M_t's own preference pairs (TRL).

DPO on a stack of adapters needs care: TRL's DPOTrainer, given a PeftModel and no
ref_model, computes the reference with *all adapters disabled* (the bare base model), and
copies the "default" adapter into a "ref" adapter. Both are wrong for a stack: the
reference must be exactly M_t = base + adapters 1..t. We precompute the reference
log-probs before the first optimizer step, with the whole stack active and the new adapter
still at B = 0 (so the model *is* M_t), and train against those.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from typing import Callable

from .config import Config
from .errors import SrliteError
from .model import TRAINABLE, LoadedModel, activate


def _common_args(cfg: Config, lm: LoadedModel, out_dir: str, batch_size: int) -> dict:
    micro = min(cfg.train_micro_batch_size, batch_size)
    return dict(
        output_dir=out_dir,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=max(1, batch_size // micro),
        lr_scheduler_type="cosine",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_length=cfg.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=str(lm.dtype) == "torch.bfloat16",
        fp16=str(lm.dtype) == "torch.float16",
        use_cpu=lm.device == "cpu",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


@contextlib.contextmanager
def _no_tqdm():
    saved = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = saved


def _quiet(trainer) -> None:
    """The Trainer prints every log dict when tqdm is off; our progress bar is enough."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def _progress_callback(on_step: Callable[[int, int], None] | None):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if on_step:
                on_step(state.global_step, state.max_steps)

    return Progress()


def _sft_trainer_class(device: str):
    from trl import SFTTrainer

    if device != "cpu":
        return SFTTrainer

    class CPUSFTTrainer(SFTTrainer):
        """On CPU, TRL's fused LM-head log-prob kernel scores every position (prompt included)
        in float32 and halves throughput; the model's own causal-LM loss on the same labels
        (-100 outside the completion) is the same loss, twice as fast."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            keys = ("input_ids", "attention_mask", "labels", "position_ids")
            outputs = model(**{k: inputs[k] for k in keys if k in inputs}, num_items_in_batch=num_items_in_batch)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

    return CPUSFTTrainer


def train_sft(cfg: Config, lm: LoadedModel, records: list[dict], on_step=None) -> dict:
    """Supervised fine-tuning of the trainable adapter; records are TRL prompt/completion dicts.

    The loss covers the completion (the assistant turn) only.
    """
    from datasets import Dataset
    from trl import SFTConfig

    with tempfile.TemporaryDirectory(prefix="srlite-sft-") as tmp:
        args = SFTConfig(
            **_common_args(cfg, lm, tmp, cfg.sft_batch_size),
            num_train_epochs=cfg.sft_epochs,
            learning_rate=cfg.sft_learning_rate,
            completion_only_loss=True,
        )
        trainer = _sft_trainer_class(lm.device)(
            model=lm.model,
            args=args,
            train_dataset=Dataset.from_list(records),
            processing_class=lm.tokenizer,
            callbacks=[_progress_callback(on_step)],
        )
        _quiet(trainer)
        activate(lm.model, lm.adapter_names, train_new=True)
        result = trainer.train()
    lm.model.eval()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "log": trainer.state.log_history,
    }


def _stacked_dpo_trainer_class():
    import torch
    from trl import DPOTrainer

    class StackedDPOTrainer(DPOTrainer):
        """DPOTrainer whose reference is the active adapter stack at step 0, i.e. exactly M_t."""

        srlite_names: list[str] = []

        def compute_ref_log_probs(self, model, inputs):
            peft_model = self.accelerator.unwrap_model(self.model)
            active = list(peft_model.base_model.active_adapters)
            if active != self.srlite_names:
                raise RuntimeError(f"reference pass with adapters {active}, expected {self.srlite_names}")
            for name, p in peft_model.named_parameters():
                if f"lora_B.{TRAINABLE}." in name and p.abs().max() != 0:
                    raise RuntimeError("reference pass after the new adapter left zero: it would not be M_t")
            model_kwargs = {k: v for k, v in inputs.items() if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
            model_kwargs["use_cache"] = False
            labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
            with torch.no_grad(), self.accelerator.autocast():
                per_token = model(**model_kwargs, labels=labels, fused_lm_head=True).log_probs
            per_token = per_token[:, -inputs["completion_mask"][..., 1:].size(1) :]
            return per_token.sum(dim=1).chunk(2, dim=0)

    return StackedDPOTrainer


def _check_trl_runs_here(lm: LoadedModel) -> None:
    """TRL 1.15 (what the unsloth extra pins) computes DPO log-probs with a Triton-only kernel that
    fails on CPU, unless unsloth was imported first (its CPU fallback patches it); 1.16 has a CPU path."""
    import sys
    from importlib.metadata import version

    from packaging.version import Version

    if lm.device == "cpu" and Version(version("trl")) < Version("1.16") and "unsloth" not in sys.modules:
        raise SrliteError(
            f"DPO on CPU needs trl>=1.16 (installed: trl {version('trl')}, which the unsloth extra pins for "
            'CUDA machines). Fix: pip install "trl>=1.16" (the unsloth extra is for CUDA GPUs only).'
        )


def train_dpo(cfg: Config, lm: LoadedModel, pairs: list[dict], on_step=None) -> dict:
    """DPO of the trainable adapter on top of the frozen stack; returns metrics and reference log-probs."""
    from datasets import Dataset
    from trl import DPOConfig

    _check_trl_runs_here(lm)
    if not pairs:
        raise SrliteError("No preference pairs to train on.")
    if lm.adapter_names[-1:] != [TRAINABLE]:
        raise RuntimeError("train_dpo needs a model loaded with train_new=True")
    rows = [
        {
            "pair_id": p["id"],
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        }
        for p in pairs
    ]
    trainer_cls = _stacked_dpo_trainer_class()
    trainer_cls.srlite_names = list(lm.adapter_names)
    with tempfile.TemporaryDirectory(prefix="srlite-dpo-") as tmp:
        args = DPOConfig(
            **_common_args(cfg, lm, tmp, cfg.dpo_batch_size),
            num_train_epochs=cfg.dpo_epochs,
            learning_rate=cfg.dpo_learning_rate,
            beta=cfg.dpo_beta,
            precompute_ref_log_probs=True,
            precompute_ref_batch_size=cfg.train_micro_batch_size,
            remove_unused_columns=False,
        )
        with _no_tqdm():  # TRL's reference pass has its own tqdm bar, switched off only by this variable
            trainer = trainer_cls(
                model=lm.model,
                args=args,
                train_dataset=Dataset.from_list(rows),
                processing_class=lm.tokenizer,
                callbacks=[_progress_callback(on_step)],
            )
        # TRL copied our new adapter into a "ref" adapter it would use as reference; we never
        # do (the reference log-probs were precomputed from M_t), so drop it.
        if "ref" in lm.model.peft_config:
            lm.model.delete_adapter("ref")
        _quiet(trainer)
        activate(lm.model, lm.adapter_names, train_new=True)
        ds = trainer.train_dataset
        ref = {
            pid: (float(c), float(r))
            for pid, c, r in zip(ds["pair_id"], ds["ref_chosen_logps"], ds["ref_rejected_logps"])
        }
        trainer.train()
    lm.model.eval()
    log = trainer.state.log_history
    steps = [h for h in log if "loss" in h]

    def mean_of(key: str, rows: list[dict]) -> float | None:
        vals = [h[key] for h in rows if key in h and h[key] is not None and not math.isnan(h[key])]
        return sum(vals) / len(vals) if vals else None

    last = steps[-max(1, len(steps) // 4) :]  # the last quarter of training
    return {
        "steps": trainer.state.global_step,
        "pairs_trained": len(ds),
        "first_loss": steps[0]["loss"] if steps else None,
        "last_loss": mean_of("loss", last),
        "reward_margin": mean_of("rewards/margins", last),
        "reward_accuracy": mean_of("rewards/accuracies", last),
        "ref_logps": ref,
        "log": log,
    }
