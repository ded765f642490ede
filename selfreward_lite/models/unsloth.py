"""The Unsloth backend: FastLanguageModel 4-bit loading, fused LoRA kernels, batched generation.

Chosen by `backend.resolve_backend` (CUDA + `pip install "selfreward-lite[unsloth]"`); the HF
backend (`hf.py`) stays the fallback, and both produce interchangeable adapters (a run can
resume on either). Only this module imports unsloth, and it does so before trl/peft/transformers
(`import_unsloth`, called by `backend.prepare` at the start of a run).

How M_t is laid out, and the Unsloth quirks this handles (unsloth 2026.10.x):
- Unsloth's fused LoRA kernels read exactly one active adapter (with more they raise). The frozen
  stack m1..mt is therefore folded into one adapter, exactly (`adapters.fold_stack`: PEFT "cat",
  rank = sum of ranks), and the separate copies are dropped. Sampling and judging run on that
  single adapter with the fused kernels (`sampling_mode`).
- Training M_t+1 needs the folded M_t (frozen) and the new adapter active together. There the
  fused kernels are swapped for Unsloth's plain projection path, which calls PEFT's multi-adapter
  LoRA forward, and swapped back for sampling (`_kernel_state`). M1's SFT (no stack) keeps them.
  The new adapter starts with B = 0, so at step 0 the model is exactly M_t and the DPO reference
  computed by `loop.train.StackedDPOTrainer` is M_t, as with the HF backend.
- `get_peft_model` refuses a second adapter on a PeftModel: it creates M1's adapter only; on a
  stack the new adapter is added with PEFT's `add_adapter` (named "default", as both expect).
- Unsloth's trainer patch ignores a `peft_config` passed to a trainer: none is ever passed, the
  adapter exists before the trainer is built.
- `for_inference` / `for_training` / `patch_peft_model` flip the padding side of the tokenizer
  Unsloth returns. We use our own tokenizer (`hf.load_tokenizer`, same as the HF backend, no
  `fix_tokenizer`, so the vocabulary is never resized) and reset its side after every switch.
- Version pins: unsloth 2026.10.9 needs trl<=1.15, transformers<=5.17, datasets<5, torch<2.15;
  pyproject.toml allows trl>=1.15 so the `unsloth` extra resolves (see docs/benchmarks.md).
Errors from generation and training (torch.cuda.OutOfMemoryError included) propagate unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..config import Config
from ..errors import SrliteError
from ..run import seeds
from .adapters import (FOLDED, TRAINABLE, LoadedModel, activate, fold_stack, init_trainable, load_adapters,
                       transformers_model)
from .embedded import resolve_model_path
from .hf import load_tokenizer, quiet_libraries, resolve_device, resolve_dtype, uses_4bit

# Judge prompts (rubric + question + answer) plus the judgment outgrow max_length (a training
# limit); Unsloth sizes its RoPE cache from max_seq_length, so give generation room.
MIN_SEQ_LENGTH = 4096
_ABSENT = object()
# Where Unsloth's patch_peft_model installs its fused LoRA kernels, per decoder layer.
_KERNEL_SLOTS = (("self_attn", "apply_qkv"), ("self_attn", "apply_o"), ("mlp", "forward"))


def import_unsloth():
    """Import unsloth (first: it patches trl, peft and transformers) and return FastLanguageModel."""
    try:
        import unsloth  # noqa: F401
        from unsloth import FastLanguageModel
    except Exception as e:  # unsloth raises several kinds at import time (no GPU, version mismatch)
        raise SrliteError(
            f"The unsloth backend could not import unsloth: {type(e).__name__}: {e}. "
            'Fix: pip install "selfreward-lite[unsloth]" on a machine with a CUDA GPU, '
            "or set backend to 'hf' in config.json."
        ) from None
    return FastLanguageModel


def gradient_checkpointing_mode(cfg: Config):
    """Unsloth's offloaded checkpointing ("unsloth") when asked for, else off."""
    return "unsloth" if cfg.gradient_checkpointing else False


def lora_kwargs(cfg: Config) -> dict:
    return dict(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules), bias="none")


def load_stack(cfg: Config, adapter_dirs: Sequence[Path], train_new: bool = True) -> LoadedModel:
    """M_t through FastLanguageModel: the stack folded into one frozen adapter (+ a new trainable one)."""
    FastLanguageModel = import_unsloth()
    quiet_libraries()
    from peft import LoraConfig

    gc_mode = gradient_checkpointing_mode(cfg)
    init_seed = seeds.adapter_init(cfg.seed, len(adapter_dirs))  # round t = len(adapter_dirs)'s new adapter
    try:
        model, _unsloth_tok = FastLanguageModel.from_pretrained(
            model_name=resolve_model_path(cfg.model),
            max_seq_length=max(cfg.max_length, MIN_SEQ_LENGTH),
            dtype=resolve_dtype(cfg),
            load_in_4bit=uses_4bit(cfg),
            trust_remote_code=cfg.trust_remote_code,
            use_gradient_checkpointing=gc_mode,
            random_state=init_seed,
            fix_tokenizer=False,
        )
    except OSError as e:
        raise SrliteError(
            f"Could not load model {cfg.model!r}: {e}. Use a local path or a Hugging Face id that is "
            "cached or reachable; weights must be in safetensors format."
        ) from None
    tok = load_tokenizer(cfg)
    plain = _kernel_state(model)  # Unsloth's unfused projection path, as loaded
    lm = LoadedModel(model, tok, [], resolve_device(cfg), resolve_dtype(cfg), backend="unsloth")

    model, stack = load_adapters(model, adapter_dirs)
    if stack:
        lm = fold_stack(LoadedModel(model, tok, stack, lm.device, lm.dtype, backend="unsloth"))
        for name in stack:
            model.delete_adapter(name)  # the folded adapter computes exactly what they did
        _inference_only(model, FOLDED)

    names = list(lm.adapter_names)
    if train_new:
        if stack:
            model.add_adapter(TRAINABLE, LoraConfig(task_type="CAUSAL_LM", **lora_kwargs(cfg)))
        else:
            model = FastLanguageModel.get_peft_model(
                model, **lora_kwargs(cfg), use_gradient_checkpointing=gc_mode, random_state=init_seed
            )
        init_trainable(model, init_seed)  # the same A as the HF backend's, and as an OOM retry's reset
        names.append(TRAINABLE)
    if stack:
        # Install the fused kernels with the folded adapter as the only active one.
        activate(model, [FOLDED], train_new=False)
        patch = getattr(FastLanguageModel, "patch_peft_model", None)  # absent on Unsloth's CPU fallback
        if patch is not None:
            model = patch(model, use_gradient_checkpointing=gc_mode)
    model._srlite_kernels = {"plain": plain, "fused": _kernel_state(model)}
    lm = LoadedModel(model, tok, names, lm.device, lm.dtype, backend="unsloth", init_seed=init_seed if train_new else None)
    if names:
        activate(model, names, train_new=train_new)
    return sampling_mode(lm) if stack and not train_new else lm


def _inference_only(model, name: str) -> None:
    """The folded adapter never trains: no dropout on it (Unsloth fuses only dropout-free LoRA)."""
    import torch

    model.peft_config[name].lora_dropout = 0.0
    for module in model.modules():
        drop = getattr(module, "lora_dropout", None)
        if isinstance(drop, torch.nn.ModuleDict) and name in drop:
            drop[name] = torch.nn.Identity()


def sampling_mode(lm: LoadedModel) -> LoadedModel:
    """M_t = the folded adapter alone, fused kernels on, Unsloth's inference mode (left padding)."""
    from unsloth import FastLanguageModel

    frozen = [n for n in lm.adapter_names if n != TRAINABLE]
    if not frozen:
        raise RuntimeError("sampling needs M_t's adapters; this model has none loaded")
    activate(lm.model, frozen, train_new=False)
    _use_kernels(lm.model, fused=True)
    FastLanguageModel.for_inference(lm.model)
    lm.tokenizer.padding_side = "left"
    return lm


def training_mode(lm: LoadedModel) -> LoadedModel:
    """M_t + the new adapter; fused kernels only where a single adapter is active (M1's SFT)."""
    from unsloth import FastLanguageModel

    if lm.adapter_names[-1:] != [TRAINABLE]:
        raise RuntimeError("training needs a model loaded with train_new=True")
    activate(lm.model, lm.adapter_names, train_new=True)
    _use_kernels(lm.model, fused=len(lm.adapter_names) == 1)
    FastLanguageModel.for_training(lm.model, use_gradient_checkpointing=getattr(
        lm.model, "_unsloth_gradient_checkpointing", None))
    lm.tokenizer.padding_side = "left"  # as with the HF backend; TRL's collators pad on their own
    return lm


def _decoder_layers(model) -> list:
    inner = getattr(transformers_model(model), "model", None)
    return list(getattr(inner, "layers", []) or [])


def _kernel_state(model) -> list[list]:
    """What each decoder layer has in the slots where Unsloth installs fused LoRA kernels."""
    state = []
    for layer in _decoder_layers(model):
        row = []
        for module_name, attr in _KERNEL_SLOTS:
            module = getattr(layer, module_name, None)
            row.append(_ABSENT if module is None else module.__dict__.get(attr, _ABSENT))
        state.append(row)
    return state


def _set_kernel_state(model, state: list[list]) -> None:
    for layer, row in zip(_decoder_layers(model), state):
        for (module_name, attr), value in zip(_KERNEL_SLOTS, row):
            module = getattr(layer, module_name, None)
            if module is None:
                continue
            if value is _ABSENT:
                module.__dict__.pop(attr, None)
            else:
                module.__dict__[attr] = value


def _use_kernels(model, fused: bool) -> None:
    kernels = getattr(model, "_srlite_kernels", None)
    if kernels is not None:
        _set_kernel_state(model, kernels["fused" if fused else "plain"])
