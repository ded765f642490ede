"""The adapter stack: M_t is the base model with LoRA adapters m1..mt stacked (all active, all frozen).

For training round t, a fresh adapter named TRAINABLE ("default", TRL's convention) is added on
top; PEFT initialises its B matrix to zero, so at step 0 the stacked model is exactly M_t.
Both backends (hf.py, unsloth.py) build their stacks from these pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import SrliteError
from ..run.files import atomic_directory, write_json
from ..run.rundir import ADAPTER_CONFIG, ADAPTER_WEIGHTS

TRAINABLE = "default"  # name of the adapter being trained (TRL's convention)
FOLDED = "folded"  # name of the single adapter that an M_t stack is folded into


def transformers_model(model):
    """The transformers model under PEFT's wrapper (the model itself when it has none): where the
    config, the generation_config, the attention implementation and the decoder layers live."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass
class LoadedModel:
    model: object  # transformers model or PeftModel
    tokenizer: object
    adapter_names: list[str]  # active adapters, oldest first (TRAINABLE last when training)
    device: str
    dtype: object  # torch dtype of the (non-quantised) weights and compute
    backend: str = "hf"  # which loader made it: "hf" (hf.py) or "unsloth" (unsloth.py)
    init_seed: int | None = None  # the seed of the trainable adapter's random A (None: no trainable adapter)


def load_adapters(base, adapter_dirs: Sequence[Path]):
    """The frozen adapters m1..mt on `base` (safetensors only); returns (model, names)."""
    from peft import PeftModel

    model, names = base, []
    for i, d in enumerate(adapter_dirs, start=1):
        name = f"m{i}"
        if not (Path(d) / ADAPTER_CONFIG).is_file():
            raise SrliteError(f"{d}: adapter is missing (no {ADAPTER_CONFIG}); the run directory is incomplete.")
        if not (Path(d) / ADAPTER_WEIGHTS).is_file():
            # PEFT would fall back to a pickled adapter_model.bin, which can run arbitrary code.
            raise SrliteError(f"{d}: no {ADAPTER_WEIGHTS}; srlite loads weights only from safetensors files.")
        if i == 1:
            model = PeftModel.from_pretrained(base, str(d), adapter_name=name, is_trainable=False)
        else:
            model.load_adapter(str(d), adapter_name=name, is_trainable=False)
        names.append(name)
    return model, names


def activate(model, names: list[str], train_new: bool) -> None:
    """Make `names` the active adapter stack; only TRAINABLE (if training) requires grad."""
    model.base_model.set_adapter(names)
    for pname, p in model.named_parameters():
        p.requires_grad = train_new and f".{TRAINABLE}." in pname


def init_trainable(model, seed: int) -> None:
    """Initialise the trainable adapter: A random from `seed` (PEFT's default init), B = 0.

    Called right after the adapter is created (both backends) and again by `reset_trainable`, so
    the two draw exactly the same A (creating the layers consumes random numbers of its own)."""
    import torch
    from peft.tuners.lora import LoraLayer

    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, LoraLayer) and TRAINABLE in module.lora_A:
            module.reset_lora_parameters(TRAINABLE, init_lora_weights=True)


def reset_trainable(lm: LoadedModel, seed: int) -> None:
    """Put the trainable adapter back to its initial state (A random from `seed`, B = 0): M_t again.
    With `lm.init_seed` as the seed, exactly the state it was created in."""
    init_trainable(lm.model, seed)
    activate(lm.model, lm.adapter_names, train_new=True)


def fold_stack(lm: LoadedModel, name: str = FOLDED) -> LoadedModel:
    """Fold the frozen stack m1..mt into one LoRA adapter, exactly, and make it the only active one.

    PEFT's "cat" combination concatenates the A and B matrices (rank = sum of ranks), so
    B_f A_f = sum_i s_i B_i A_i: the folded model computes what the stack computes (up to float
    rounding), while kernels that need a single adapter can be used. The stack stays loaded.
    """
    names = [a for a in lm.adapter_names if a != TRAINABLE]
    if not names:
        return lm
    model = lm.model
    if name in model.peft_config:
        model.delete_adapter(name)
    model.add_weighted_adapter(names, [1.0] * len(names), name, combination_type="cat")
    activate(model, [name], train_new=False)
    model.eval()
    return LoadedModel(model, lm.tokenizer, [name], lm.device, lm.dtype, lm.backend, lm.init_seed)


def merge_stack(lm: LoadedModel):
    """M_t as a plain transformers model: every stacked adapter merged into the base weights.

    Exact only on non-quantised weights (merging into 4-bit weights rounds), so callers load the
    base with quantize "none". The returned model has no PEFT layers left.
    """
    names = [a for a in lm.adapter_names if a != TRAINABLE]
    if not names:
        return transformers_model(lm.model)
    return lm.model.merge_and_unload(adapter_names=names)


def save_adapter(lm: LoadedModel, out_dir: Path, meta_name: str, meta: dict) -> None:
    """Write the trainable adapter (only) and its metadata JSON to `out_dir`, atomically."""

    def build(tmp: Path) -> None:
        lm.model.save_pretrained(str(tmp), selected_adapters=[TRAINABLE])
        write_json(tmp / meta_name, meta)

    atomic_directory(Path(out_dir), build)
