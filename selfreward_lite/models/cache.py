"""THE way to get a model: one cache, at most one model in memory, loaded through the backend choice.

The pipeline (M_t for sampling, judging and training), the end-of-round evaluation, `srlite eval`,
`srlite judge`, `srlite chat` and `srlite export` all ask a `ModelCache` for what they need; the
cache loads it through `backend.load_model`, so every model of a process comes from the backend
that process chose (see backend.py for why that matters). Asking for another model drops the one
held first: two 4-bit 7B models would not fit a 24 GB card.
"""

from __future__ import annotations

import dataclasses
import gc

from ..run.rundir import Run
from .adapters import LoadedModel
from .backend import for_sampling, for_training, load_merged, load_model, merges_for_sampling

EXPORT_DTYPES = ("auto", "bfloat16", "float16", "float32")  # auto: the base checkpoint's own dtype


class ModelCache:
    def __init__(self, run: Run):
        self.run = run
        self._key: tuple | None = None
        self._lm: LoadedModel | None = None

    def get(self, spec: int | str, *, train_new: bool = False) -> LoadedModel:
        """`spec` N: M_N of this run (M0 = the bare base model); a string: a local model folder (a base
        model without adapters, e.g. a fixed win-rate judge). With train_new, M_N + a fresh trainable
        adapter on top (B = 0, so still exactly M_N)."""
        key = ("model", spec, train_new)
        if key != self._key:
            self.release()
            if isinstance(spec, int):
                spec = self.run.check_model(spec, allow_base=True)
                cfg, adapters = self.run.cfg, self.run.adapters_of(spec) if spec > 0 else []
            else:
                cfg, adapters = dataclasses.replace(self.run.cfg, model=spec), []
            self._lm = load_model(cfg, adapters, train_new=train_new)
            self._key = key
        return self._lm

    def sampler(self, t: int) -> LoadedModel:
        """M_t for generation in a round (new prompts, candidates, self-judging).

        Base not quantized (HF backend): the stack merged into the weights (backend.load_merged), a
        model of its own; `trainer(t)` then loads the stack afresh. Unmerging in place would cost no
        load but is not exact (bf16 W + dW - dW != W), and keeping a merged copy next to the stack
        would double the memory; one reload per round is the cheap exact option. 4-bit base: the
        stack folded into one adapter on the model the trainer uses too (exact, a few MB)."""
        if t > 0 and merges_for_sampling(self.run.cfg):
            key = ("merged", t)
            if key != self._key:
                self.release()
                self._lm = load_merged(self.run.cfg, self.run.adapters_of(self.run.check_model(t)))
                self._key = key
            return self._lm
        return for_sampling(self.get(t, train_new=True))

    def trainer(self, t: int) -> LoadedModel:
        """M_t + a fresh trainable adapter, for SFT (t = 0: the base model) or DPO."""
        return for_training(self.get(t, train_new=True))

    def full_precision(self, t: int, dtype: str = "auto") -> LoadedModel:
        """M_t for export: the HF backend, the base in `dtype` (one of EXPORT_DTYPES), never 4-bit.

        This is the one place that chooses the HF backend whatever the config says: merging LoRA
        weights into a 4-bit base would round them, and Unsloth folds the stack as it loads it.
        In a process that already chose Unsloth it refuses (backend.prepare), so run it in a
        process of its own (`srlite export` is one).
        """
        key = ("full precision", t, dtype)
        if key != self._key:
            self.release()
            t = self.run.check_model(t)
            cfg = dataclasses.replace(self.run.cfg, quantize="none")
            self._lm = load_model(cfg, self.run.adapters_of(t), train_new=False, backend="hf", dtype=_torch_dtype(dtype))
            self._key = key
        return self._lm

    def release(self) -> None:
        """Drop the model held (the next `get` loads the one it needs)."""
        self._key, self._lm = None, None
        gc.collect()


def _torch_dtype(name: str):
    if name == "auto":
        return "auto"
    import torch

    return getattr(torch, name)
