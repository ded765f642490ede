"""benchmarks/gpu_fit.py works end to end (CPU smoke mode: tiny architecture, a few tokens).

The GPU figures themselves need a CUDA machine; see the script's docstring and docs/benchmarks.md.
"""

import json
import subprocess
import sys
from helpers import ROOT


def test_gpu_fit_smoke(tmp_path, embedded):
    out = tmp_path / "smoke.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_fit.py"), "--smoke", "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads(out.read_text())
    tiny = report["archs"]["tiny"]
    assert [d["max_length"] for d in tiny["dpo"]] == [64] and tiny["dpo"][0]["steps"] == 1
    for key in ("fast_batched", "hf_batched", "naive"):
        assert tiny[key]["tokens_per_s"] > 0, key
    assert tiny["naive"]["batch_size"] == 1 and tiny["fast_batched"]["batch_size"] > 1
    assert set(tiny["ratios"]) == {"fast_batched_over_naive", "fast_batched_over_hf_batched"}
    assert report["versions"]["torch"]
