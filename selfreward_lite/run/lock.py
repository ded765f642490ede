"""Locks between processes: one `srlite` process at a time per run directory (`run_lock`), one
conversion of the embedded model at a time (`file_lock`)."""

from __future__ import annotations

import contextlib
import os

from ..errors import SrliteError
from .rundir import Run


@contextlib.contextmanager
def file_lock(path, wait: bool = True):
    """Hold an exclusive flock on `path` (created if missing; released by the OS even after a kill)
    while the block runs. wait=False: BlockingIOError at once if another process holds it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(run: Run):
    """Hold the run's lock while the block runs: one srlite process at a time per run."""
    path = run.lock_path
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(path, wait=False))
        except BlockingIOError:
            raise SrliteError(
                f"{run.dir}: another srlite process is working on this run. Wait for it to finish, or stop "
                "it, before starting another."
            ) from None
        except OSError as e:
            raise SrliteError(f"{path}: cannot create the run's lock file ({e.strerror}); is the directory writable?") from None
        yield
