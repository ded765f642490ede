"""Out-of-memory back-off: halve the batch, record the size that worked, reuse it on resume."""

import pytest
import torch

from selfreward_lite.errors import SrliteError
from selfreward_lite.loop.oom import is_oom, with_backoff
from selfreward_lite.run.files import read_json
from selfreward_lite.run.rundir import open_run


def test_backoff_halves_records_and_reuses(run):
    tried = []

    def work(size):
        tried.append(size)
        if size > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return size

    assert with_backoff(run, "generation", 32, work) == 8
    assert tried == [32, 16, 8]
    assert read_json(run.manifest_path)["batch_sizes"] == {"generation": 8}
    tried.clear()
    assert with_backoff(open_run(run.dir), "generation", 32, work) == 8  # resumed: starts at 8
    assert tried == [8]


def test_backoff_floor_gives_clear_error_and_other_errors_pass(run):
    def always_oom(size):
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(SrliteError, match="even at batch size 1"):
        with_backoff(run, "training", 4, always_oom)
    with pytest.raises(ValueError):
        with_backoff(run, "training", 4, lambda s: (_ for _ in ()).throw(ValueError("bug")))
    assert is_oom(MemoryError("out of memory")) and not is_oom(RuntimeError("shape mismatch"))
