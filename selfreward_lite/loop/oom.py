"""Out-of-memory back-off: halve the batch size and try the same work again.

The size that worked is recorded in the run's manifest ("batch_sizes") and reused by later
stages and on resume, so a run does not hit the same wall again after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import SrliteError

T = TypeVar("T")


def is_oom(error: BaseException) -> bool:
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return isinstance(error, (RuntimeError, MemoryError)) and "out of memory" in str(error).lower()


def free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def with_backoff(run, kind: str, configured: int, work: Callable[[int], T], on_retry=None) -> T:
    """Call `work(batch_size)`, halving the size on out-of-memory down to 1, then a clear error.

    `kind` is "generation" or "training"; the starting size is the configured one, or the
    smaller size recorded earlier in this run.
    """
    size = run.batch_size(kind, configured)
    while True:
        try:
            return work(size)
        except Exception as e:
            if not is_oom(e):
                raise
            free_memory()
            if size <= 1:
                raise SrliteError(
                    f"Out of memory during {kind} even at batch size 1. Lower max_length, "
                    "response_max_new_tokens or judge_max_new_tokens in config.json, or use a smaller model."
                ) from None
            size = max(1, size // 2)
            run.record_batch_size(kind, size)
            if on_retry:
                on_retry(size)
