"""Ctrl-C and SIGTERM: stop at the next safe point, keep everything finished.

While `graceful_stop()` is active, the first SIGINT or SIGTERM only sets a flag; the long
stages call `check()` between chunks of work (and the trainers at each step), which raises
`Interrupted` there. A second signal interrupts at once (KeyboardInterrupt): journals and
atomic writes make that safe too, it only loses the chunk in progress.
"""

from __future__ import annotations

import contextlib
import signal

_requested: list[int] = []  # signal numbers received, in order


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def check() -> None:
    if _requested:
        raise Interrupted(_requested[0])


@contextlib.contextmanager
def graceful_stop(on_first_signal=None):
    """Install the handlers; `on_first_signal(signum)` may tell the user what happens next."""

    def handler(signum, frame):
        _requested.append(signum)
        if len(_requested) > 1:
            raise KeyboardInterrupt
        if on_first_signal:
            on_first_signal(signum)

    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if sig == signal.SIGINT and current == signal.SIG_IGN:
            continue  # started in the background with Ctrl-C ignored: keep it that way
        saved[sig] = current
        signal.signal(sig, handler)
    _requested.clear()
    try:
        yield
    finally:
        for sig, h in saved.items():
            signal.signal(sig, h)
        _requested.clear()
