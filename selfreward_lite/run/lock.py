"""One `srlite` process at a time per run directory."""

from __future__ import annotations

import contextlib
import os

from ..errors import SrliteError
from .rundir import Run


@contextlib.contextmanager
def run_lock(run: Run):
    """Hold the run's lock (flock, released by the OS even after a kill) while the block runs."""
    import fcntl

    path = run.lock_path
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise SrliteError(f"{path}: cannot create the run's lock file ({e.strerror}); is the directory writable?") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SrliteError(
                f"{run.dir}: another srlite process is working on this run. Wait for it to finish, or stop "
                "it, before starting another."
            ) from None
        yield
    finally:
        os.close(fd)
