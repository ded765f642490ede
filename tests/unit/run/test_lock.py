"""One srlite process at a time per run directory."""

import subprocess
import sys
from dataclasses import asdict

from selfreward_lite.run.lock import run_lock


def test_run_lock_refuses_a_second_process(run):
    code = ("import sys; from selfreward_lite.run.rundir import open_run; from selfreward_lite.run.lock import run_lock\n"
            "try:\n    with run_lock(open_run(sys.argv[1])): pass\nexcept Exception as e: print(e)")
    with run_lock(run):
        out = subprocess.run([sys.executable, "-c", code, str(run.dir)], capture_output=True, text=True).stdout
    assert "another srlite process" in out
    assert asdict(run.cfg)  # the run is intact


def test_file_lock_waits_for_the_holder_and_refuses_when_asked_not_to(tmp_path):
    import threading
    import time

    import pytest

    from selfreward_lite.run.lock import file_lock

    path = tmp_path / "x.lock"
    order = []
    with file_lock(path):
        with pytest.raises(BlockingIOError):
            with file_lock(path, wait=False):
                pass

        def wait_then_note():
            with file_lock(path):
                order.append("waiter")

        waiter = threading.Thread(target=wait_then_note)
        waiter.start()
        time.sleep(0.3)
        order.append("holder")  # the waiter is still blocked
    waiter.join(timeout=10)
    assert order == ["holder", "waiter"]


def test_embedded_model_is_converted_once_when_two_commands_start_together(tmp_path, monkeypatch):
    """The second command waits for the first's conversion and uses it instead of converting again."""
    import threading
    import time

    from selfreward_lite.models import embedded
    from selfreward_lite.run.lock import file_lock

    monkeypatch.setenv("SRLITE_CACHE", str(tmp_path))
    target = embedded.embedded_cache_dir()

    def convert_again(*args):
        raise AssertionError("converted twice")

    monkeypatch.setattr(embedded, "atomic_directory", convert_again)
    got = []
    with file_lock(target.parent / f"{target.name}.lock"):  # the first command, converting
        second = threading.Thread(target=lambda: got.append(embedded.embedded_model_dir()))
        second.start()
        time.sleep(0.3)
        assert not got  # waiting
        target.mkdir()
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"")
    second.join(timeout=10)
    assert got == [target]
