"""Which library runs the model, decided in this one place so the stages never need to know.

- `hf`: transformers + PEFT (+ bitsandbytes 4-bit on CUDA), in `hf.py`. Runs everywhere.
- `unsloth`: Unsloth's FastLanguageModel (4-bit loading, fused LoRA kernels, fast batched
  generation), in `unsloth.py`. Needs a CUDA GPU and the `unsloth` extra.

A process chooses once (`prepare`) and keeps that choice: Unsloth patches the model code of
transformers for every instance (its attention calls `self.apply_qkv`, which only Unsloth-loaded
models have), so a plain HF model loaded after it would crash, and Unsloth must be imported before
the libraries it patches. Models are obtained through `cache.ModelCache`, which calls `load_model`.

The pipeline asks for "M_t for sampling/judging" (`for_sampling`) and "M_t + a new trainable
adapter" (`for_training`); both backends give the same guarantees (earlier adapters frozen, the
new one zero at start so the DPO reference is exactly M_t).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

from ..config import Config
from ..errors import SrliteError
from . import hf, unsloth
from .adapters import FOLDED, TRAINABLE, LoadedModel, activate, fold_stack, merge_stack

UNSLOTH_FIX = 'pip install "selfreward-lite[unsloth]"'
BACKENDS = ("hf", "unsloth")
_chosen: str | None = None  # the backend this process loads models with, once `prepare` has run


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def resolve_backend(cfg: Config) -> str:
    """"hf" or "unsloth"; `auto` takes unsloth only where it can run (CUDA and the package present)."""
    if cfg.backend == "hf":
        return "hf"
    cpu_only = cfg.device == "cpu" or not cuda_available()
    if cfg.backend == "auto":
        return "hf" if cpu_only or not _unsloth_installed() else "unsloth"
    if cpu_only:
        why = "device is 'cpu'" if cfg.device == "cpu" else "no CUDA GPU is visible"
        raise SrliteError(
            f"config: backend is 'unsloth' but {why}; Unsloth's kernels need a CUDA GPU. "
            "Fix: set backend to 'auto' or 'hf' in config.json (srlite init --set backend=auto), or run on a CUDA machine."
        )
    if not _unsloth_installed():
        raise SrliteError(
            "config: backend is 'unsloth' but the unsloth package is not installed. "
            f"Fix: {UNSLOTH_FIX} (or set backend to 'auto' or 'hf')."
        )
    return "unsloth"


def prepare(cfg: Config, backend: str | None = None) -> str:
    """Choose this process's backend (the config's, or `backend` when a caller needs a specific one)
    before any model library is imported; a process that chose one refuses the other."""
    global _chosen
    name = backend or resolve_backend(cfg)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}")
    if _chosen is not None and name != _chosen:
        raise SrliteError(
            f"This process already loads models with the {_chosen!r} backend and cannot also use {name!r}: "
            "Unsloth patches the model code of every model in a process. Run this in a new process "
            "(each srlite command is one)."
        )
    if name == "unsloth":
        unsloth.import_unsloth()  # first: it patches trl, peft and transformers
    _chosen = name
    return name


def load_model(cfg: Config, adapter_dirs: Sequence[Path], *, train_new: bool, backend: str | None = None,
               dtype=None) -> LoadedModel:
    """M_t = base + the adapters in `adapter_dirs` (frozen); with train_new, a zero-initialised trainable
    one on top. `backend` and `dtype` (a torch dtype, or "auto": the checkpoint's own) override the
    config's choice; a dtype override exists only on the HF backend."""
    if prepare(cfg, backend) == "unsloth":
        if dtype is not None:
            raise ValueError("the unsloth backend loads in the config's dtype only")
        return unsloth.load_stack(cfg, adapter_dirs, train_new=train_new)
    return hf.load_stack(cfg, adapter_dirs, train_new=train_new, dtype=dtype)


def merges_for_sampling(cfg: Config) -> bool:
    """Whether M_t samples as one merged model (HF backend, base not quantized), see `load_merged`."""
    return prepare(cfg) == "hf" and not hf.uses_4bit(cfg)


def load_merged(cfg: Config, adapter_dirs: Sequence[Path]) -> LoadedModel:
    """M_t for generation only: the stack merged into the base weights, a plain transformers model.

    A stack of t adapters costs t LoRA products per projection for every generated token; merged,
    none. Merging into non-quantized weights rounds once to the weights' dtype (a bf16 ulp), which
    is why it is used only there (4-bit: `for_sampling` folds instead). Nothing trains on it: the
    trainer loads the stack itself (ModelCache), so training still sees the exact unmerged M_t."""
    lm = hf.load_stack(cfg, adapter_dirs, train_new=False)
    merged = merge_stack(lm)
    merged.eval()
    return LoadedModel(merged, lm.tokenizer, [], lm.device, lm.dtype, "hf")


def for_sampling(lm: LoadedModel) -> LoadedModel:
    """M_t ready to generate: the frozen stack active, the trainable adapter off."""
    if lm.backend == "unsloth":
        return unsloth.sampling_mode(lm)
    frozen = [n for n in lm.adapter_names if n != TRAINABLE]
    if len(frozen) > 1:
        # One folded adapter (PEFT "cat", exact) instead of t: on a 4-bit base merging would round.
        if FOLDED in lm.model.peft_config:
            activate(lm.model, [FOLDED], train_new=False)
            return LoadedModel(lm.model, lm.tokenizer, [FOLDED], lm.device, lm.dtype, lm.backend)
        return fold_stack(LoadedModel(lm.model, lm.tokenizer, frozen, lm.device, lm.dtype, lm.backend))
    activate(lm.model, frozen, train_new=False)
    return lm


def for_training(lm: LoadedModel) -> LoadedModel:
    """M_t + the trainable adapter, all active, only the new adapter requiring grad."""
    if lm.backend == "unsloth":
        return unsloth.training_mode(lm)
    activate(lm.model, lm.adapter_names, train_new=True)
    if FOLDED in lm.model.peft_config:
        lm.model.delete_adapter(FOLDED)  # sampling's fold (inactive now); training runs on the stack itself
    return lm
