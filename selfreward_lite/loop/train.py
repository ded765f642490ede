"""Training: M1 by SFT on the seed data, M_t+1 by DPO on M_t's own preference pairs (TRL).

DPO on a stack of adapters needs care: TRL's DPOTrainer, given a PeftModel and no
ref_model, computes the reference with *all adapters disabled* (the bare base model), and
copies the "default" adapter into a "ref" adapter. Both are wrong for a stack: the
reference must be exactly M_t = base + adapters 1..t. We precompute the reference
log-probs before the first optimizer step, with the whole stack active and the new adapter
still at B = 0 (so the model *is* M_t), and train against those. TRL's "ref" copy is removed on
every exit path, including an out-of-memory error inside its reference pass (then retried).

Both trainings check that the new adapter learns: a non-zero gradient at the first optimizer step
and a non-zero B at the end, else a clear error (Unsloth's fused LoRA kernels, if a stacked
training ever ran through them, would read only the first active adapter and train nothing).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..config import Config
from ..errors import SrliteError
from ..models.adapters import TRAINABLE, LoadedModel, activate
from ..run import interrupts, seeds
from ..run.rundir import ADAPTER_WEIGHTS
from ..run.tracking import trainer_logging, trainer_report_to
from . import dpo_diagnostics
from .padding_free import supports_padding_free, use_padding_free


def _common_args(cfg: Config, lm: LoadedModel, out_dir: str, batch_size: int, checkpoints: bool, log_dir=None) -> dict:
    micro = min(cfg.train_micro_batch_size, batch_size)
    saving = (
        {"save_strategy": "steps", "save_steps": cfg.checkpoint_steps, "save_total_limit": 1}
        if checkpoints and cfg.checkpoint_steps > 0 else {"save_strategy": "no"}
    )
    return dict(
        output_dir=out_dir,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=max(1, batch_size // micro),
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a fraction of the optimizer steps
        logging_steps=1,
        **saving,
        report_to=trainer_report_to(cfg, log_dir),
        run_name=Path(log_dir).name if log_dir else None,
        seed=seeds.training(cfg.seed),
        data_seed=seeds.training(cfg.seed),
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
            interrupts.check()  # Ctrl-C / SIGTERM: stop here; the adapter is only saved when complete
            if on_step:
                on_step(state.global_step, state.max_steps)

    return Progress()


# --- checkpoints: a killed training stage continues from its last saved step ----------------

def last_checkpoint(folder: Path | None) -> str | None:
    """The newest complete checkpoint (Trainer writes trainer_state.json last); incomplete ones,
    left by a kill in mid-save, are removed."""
    if folder is None or not folder.is_dir():
        return None
    complete = []
    for d in folder.glob("checkpoint-*"):
        if (d / "trainer_state.json").is_file() and (d / ADAPTER_WEIGHTS).is_file():
            complete.append(d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    return str(max(complete, key=lambda d: int(d.name.split("-")[-1]))) if complete else None


def _resumable(trainer_cls):
    """Checkpoints hold only the adapter being trained, and resuming loads only that adapter; a
    fractional warm-up is rounded down (see create_scheduler).

    (Trainer's own PEFT resume reloads every saved adapter and makes the first *active* one
    trainable and the only active one, which for a stack m1..mt + new would train m1.)
    """

    class Resumable(trainer_cls):
        def _save(self, output_dir=None, state_dict=None):
            output_dir = output_dir or self.args.output_dir
            self.accelerator.unwrap_model(self.model).save_pretrained(output_dir, selected_adapters=[TRAINABLE])

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            peft_model = self.accelerator.unwrap_model(model or self.model)
            weights = load_file(os.path.join(resume_from_checkpoint, ADAPTER_WEIGHTS))
            result = set_peft_model_state_dict(peft_model, weights, adapter_name=TRAINABLE)
            if result.unexpected_keys:
                raise RuntimeError(f"checkpoint {resume_from_checkpoint} does not match the adapter: "
                                   f"{list(result.unexpected_keys)[:3]}")
            activate(peft_model, self.srlite_names, train_new=True)

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            # transformers rounds a fractional warm-up *up*: at ratio 0.1 every training of 1-10 steps
            # gets one warm-up step, which runs at lr 0, so a 1-step training (a round with few pairs,
            # a small seed) learns nothing and fails the learning check. Round down: a warm-up shorter
            # than one step is none.
            if 0 < self.args.warmup_steps < 1:
                self.args.warmup_steps = int(self.args.warmup_steps * num_training_steps)
            return super().create_scheduler(num_training_steps, optimizer)

    Resumable.__name__ = Resumable.__qualname__ = f"Resumable{trainer_cls.__name__}"
    return Resumable


def _sft_trainer_class(device: str):
    from trl import SFTTrainer

    if device != "cpu":
        return _resumable(SFTTrainer)

    class CPUSFTTrainer(SFTTrainer):
        """On CPU, TRL's fused LM-head log-prob kernel runs in float32 tiles and halves throughput.
        This loss is the model's own causal-LM loss (summed over the completion tokens, divided by
        num_items_in_batch, as the model does), with the LM head run only at the positions whose
        next token is learned (`logits_to_keep`): the prompt positions (most of an EFT record) never
        get the 49k-vocabulary projection and softmax. Same loss, same gradients (tested)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch.nn.functional as F

            targets = inputs["labels"][:, 1:]  # position t predicts token t + 1
            keep = targets.ne(-100).any(dim=0).nonzero().flatten()  # positions any row learns from
            keys = ("input_ids", "attention_mask", "position_ids")
            # use_cache=False (as TRL's own compute_loss): no KV cache built in training, and the
            # padding-free layout needs it (padding_free.py).
            outputs = model(**{k: inputs[k] for k in keys if k in inputs}, use_cache=False, logits_to_keep=keep)
            logits = outputs.logits.float()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[:, keep].reshape(-1),
                                   ignore_index=-100, reduction="sum")
            loss = loss / (num_items_in_batch if num_items_in_batch is not None else targets.ne(-100).sum().clamp(min=1))
            outputs.loss = loss
            return (loss, outputs) if return_outputs else loss

    return _resumable(CPUSFTTrainer)


def _trainer(trainer_cls, lm: LoadedModel, args, rows: list[dict], on_step):
    from datasets import Dataset

    return trainer_cls(model=lm.model, args=args, train_dataset=Dataset.from_list(rows), processing_class=lm.tokenizer,
                       callbacks=[_progress_callback(on_step), _learning_check(lm)])


# --- the new adapter must learn -------------------------------------------------------------

def _not_training(lm: LoadedModel, what: str) -> SrliteError:
    if lm.backend == "unsloth":
        cause = ("Unsloth's fused LoRA kernels read only the first active adapter, so a training on a stack that "
                 "runs through them never reaches the new one (models/unsloth.py swaps them out for a stacked "
                 "training; an Unsloth version that re-installs them defeats that). Fix: set backend to 'hf' in "
                 "config.json, which trains the same adapters without them")
    else:
        cause = "the new adapter is not active, or not trainable, in the forward pass"
    return SrliteError(
        f"The new adapter did not train: {what}. Likely cause: {cause}. Also possible: every training sequence "
        "lost its completion to max_length (raise max_length in config.json). Nothing was saved."
    )


def _trainable_params(lm: LoadedModel) -> list:
    return [p for name, p in lm.model.named_parameters() if f".{TRAINABLE}." in name]


def _learning_check(lm: LoadedModel):
    """At the first optimizer step, the new adapter must have received a non-zero gradient."""
    from transformers import TrainerCallback

    class LearningCheck(TrainerCallback):
        checked = False

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            if self.checked:
                return
            self.checked = True
            grads = [p.grad for p in _trainable_params(lm) if p.grad is not None]
            if not any(bool((g != 0).any()) for g in grads):
                got = "its gradients were all zero" if grads else "no gradient reached its parameters"
                raise _not_training(lm, f"at the first optimizer step {got}")

    return LearningCheck()


def _train_checked(trainer, lm: LoadedModel, checkpoint_dir: Path | None):
    """trainer.train(), then the new adapter's B must be non-zero (it starts at zero)."""
    try:
        result = trainer.train(resume_from_checkpoint=last_checkpoint(checkpoint_dir))
    except RuntimeError as e:
        if "does not require grad" not in str(e):
            raise
        raise _not_training(lm, "the loss does not depend on any of its parameters") from None
    if not any(bool((p != 0).any()) for name, p in lm.model.named_parameters() if f"lora_B.{TRAINABLE}." in name):
        raise _not_training(lm, "its B matrices are still zero after training, so it changes nothing")
    return result


def _output_dir(checkpoint_dir: Path | None, prefix: str):
    if checkpoint_dir is None:
        return tempfile.TemporaryDirectory(prefix=prefix)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(checkpoint_dir))


def train_sft(cfg: Config, lm: LoadedModel, records: list[dict], on_step=None, checkpoint_dir: Path | None = None,
              log_dir=None, padding_free: bool = True) -> dict:
    """Supervised fine-tuning of the trainable adapter; records are TRL prompt/completion dicts.

    The loss covers the completion (the assistant turn) only. With `checkpoint_dir`, training
    state is saved every cfg.checkpoint_steps steps and a later call continues from it. With
    `report_to` set, the training curves go to `log_dir`. Micro-batches are padding-free on the HF
    backend (`padding_free.py`: the same batches and loss, no padding); False: padded, as before.
    """
    from trl import SFTConfig

    with _output_dir(checkpoint_dir, "srlite-sft-") as tmp, trainer_logging(cfg, log_dir):
        args = SFTConfig(
            **_common_args(cfg, lm, tmp, cfg.sft_batch_size, checkpoint_dir is not None, log_dir),
            num_train_epochs=cfg.sft_epochs,
            learning_rate=cfg.sft_learning_rate,
            completion_only_loss=True,
        )
        trainer_cls = _sft_trainer_class(lm.device)
        trainer_cls.srlite_names = list(lm.adapter_names)
        trainer = _trainer(trainer_cls, lm, args, records, on_step)
        if padding_free and lm.backend == "hf" and supports_padding_free(lm.model):
            use_padding_free(trainer)
        _quiet(trainer)
        activate(lm.model, lm.adapter_names, train_new=True)
        result = _train_checked(trainer, lm, checkpoint_dir)
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
    from importlib import metadata

    from packaging.version import Version

    if lm.device == "cpu" and Version(metadata.version("trl")) < Version("1.16") and "unsloth" not in sys.modules:
        raise SrliteError(
            f"DPO on CPU needs trl>=1.16 (installed: trl {metadata.version('trl')}, which the unsloth extra pins for "
            'CUDA machines). Fix: pip install "trl>=1.16" (the unsloth extra is for CUDA GPUs only).'
        )


def train_dpo(cfg: Config, lm: LoadedModel, pairs: list[dict], on_step=None, checkpoint_dir: Path | None = None,
              log_dir=None) -> dict:
    """DPO of the trainable adapter on top of the frozen stack; returns metrics and reference log-probs.

    The reference log-probs are computed before any checkpoint is loaded, from the fresh
    adapter (B = 0), so a resumed DPO trains against exactly M_t too."""
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
    trainer_cls = _resumable(_stacked_dpo_trainer_class())
    trainer_cls.srlite_names = list(lm.adapter_names)
    with _output_dir(checkpoint_dir, "srlite-dpo-") as tmp, trainer_logging(cfg, log_dir):
        args = DPOConfig(
            **_common_args(cfg, lm, tmp, cfg.dpo_batch_size, checkpoint_dir is not None, log_dir),
            num_train_epochs=cfg.dpo_epochs,
            learning_rate=cfg.dpo_learning_rate,
            beta=cfg.dpo_beta,
            precompute_ref_log_probs=True,
            precompute_ref_batch_size=cfg.train_micro_batch_size,
            remove_unused_columns=False,
        )
        try:
            with _no_tqdm():  # TRL's reference pass has its own tqdm bar, switched off only by this variable
                trainer = _trainer(trainer_cls, lm, args, rows, on_step)
        finally:
            # TRL copied our new adapter into a "ref" adapter it would use as reference; we never do
            # (the reference log-probs are precomputed from M_t), so drop it, also when the trainer's
            # reference pass failed (out of memory: the retry would otherwise meet "already exists").
            if "ref" in lm.model.peft_config:
                lm.model.delete_adapter("ref")
        _quiet(trainer)
        activate(lm.model, lm.adapter_names, train_new=True)
        ds = trainer.train_dataset
        ref = {
            pid: (float(c), float(r))
            for pid, c, r in zip(ds["pair_id"], ds["ref_chosen_logps"], ds["ref_rejected_logps"])
        }
        _train_checked(trainer, lm, checkpoint_dir)
        lm.model.eval()
        movement = dpo_diagnostics.measure(trainer, lm, cfg.dpo_beta, cfg.train_micro_batch_size)
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
        "movement": movement,  # M_t+1 vs M_t on these pairs, after training (dpo_diagnostics.py)
        "ref_logps": ref,
        "log": log,
    }
