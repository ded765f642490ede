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
