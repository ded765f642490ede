"""Which library runs the model, decided in this one place so the stages never need to know.

- `hf`: transformers + PEFT (+ bitsandbytes 4-bit on CUDA), in `selfreward_lite.model`. Runs everywhere.
- `unsloth`: Unsloth's FastLanguageModel (4-bit loading, fused LoRA kernels, fast batched
  generation), in `selfreward_lite.unsloth_backend`. Needs a CUDA GPU and the `unsloth` extra.

The pipeline asks for "M_t for sampling/judging" (`for_sampling`) and "M_t + a new trainable
adapter" (`for_training`) on the model that `load_model` returns; both backends give the same
guarantees (earlier adapters frozen, the new one zero at start so the DPO reference is exactly M_t).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

from ..config import Config
from ..errors import SrliteError

UNSLOTH_FIX = 'pip install "selfreward-lite[unsloth]"'


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def resolve_backend(cfg: Config) -> str:
    """"hf" or "unsloth"; `auto` takes unsloth only where it can run (CUDA and the package present)."""
    if cfg.backend == "hf":
        return "hf"
    cpu_only = cfg.device == "cpu" or not _cuda_available()
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


def prepare(cfg: Config) -> str:
    """Resolve the backend before any model library is imported (Unsloth must patch them first)."""
    name = resolve_backend(cfg)
    if name == "unsloth":
        from .unsloth import import_unsloth

        import_unsloth()
    return name


def load_model(cfg: Config, adapter_dirs: Sequence[Path], train_new: bool = True):
    """M_t = base + the adapters in `adapter_dirs` (frozen); with train_new, a zero-initialised trainable one on top."""
    if prepare(cfg) == "unsloth":
        from .unsloth import load_stack
    else:
        from .hf import load_stack
    return load_stack(cfg, adapter_dirs, train_new=train_new)


def for_sampling(lm):
    """M_t ready to generate: the frozen stack active, the trainable adapter off."""
    if lm.backend == "unsloth":
        from .unsloth import sampling_mode

        return sampling_mode(lm)
    from .hf import TRAINABLE, activate

    activate(lm.model, [n for n in lm.adapter_names if n != TRAINABLE], train_new=False)
    return lm


def for_training(lm):
    """M_t + the trainable adapter, all active, only the new adapter requiring grad."""
    if lm.backend == "unsloth":
        from .unsloth import training_mode

        return training_mode(lm)
    from .hf import activate

    activate(lm.model, lm.adapter_names, train_new=True)
    return lm
