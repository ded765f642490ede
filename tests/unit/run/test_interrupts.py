"""Ctrl-C / SIGTERM: the first signal asks for a stop at the next safe point, the second stops at once."""

import pytest

from selfreward_lite.run import interrupts


def test_first_signal_only_requests_a_stop(tmp_path):
    import os
    import signal

    seen = []
    with interrupts.graceful_stop(seen.append):
        interrupts.check()
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
        with pytest.raises(interrupts.Interrupted) as e:
            interrupts.check()
        assert e.value.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # second signal: stop at once
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
