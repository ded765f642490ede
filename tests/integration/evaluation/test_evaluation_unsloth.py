"""Under `backend: unsloth`, a round's evaluation loads its models through the Unsloth backend.

Unsloth patches the model code of every model in a process, so the end-of-round evaluation must not
load a plain HF model after the round's Unsloth-loaded M_t (before the model cache, it did). The
stand-in `unsloth` package (helpers.FakeFastLanguageModel) records every load; the HF loader is made
to fail; CUDA is declared present to the backend choice only (the models still run on CPU). What is
checked is which loader runs, not what the models say: a tiny random-weight Llama stands in.
"""

import json

import pytest
from helpers import EVAL_TINY, fake_round, make_nonzero_m1
from tiny_models import tiny_chatml

from selfreward_lite.loop.pipeline import run_round
from selfreward_lite.models import backend, hf
from selfreward_lite.run.create import create_run


def test_round_evaluation_loads_through_the_unsloth_backend(tmp_path, fake_unsloth, monkeypatch):
    settings = {**EVAL_TINY, "model": tiny_chatml(tmp_path), "dtype": "float32", "backend": "unsloth",
                "winrate_judge": "self"}
    run = create_run(tmp_path / "run", preset="cpu", overrides=settings)
    make_nonzero_m1(run.cfg, run.m1_dir / "adapter")  # stand-ins made before the process "chooses" its backend
    fake_round(run, 1)

    monkeypatch.setattr(backend, "_chosen", None)  # as in a fresh `srlite iterate` process
    monkeypatch.setattr(backend, "cuda_available", lambda: True)
    monkeypatch.setattr(backend, "_unsloth_installed", lambda: True)
    monkeypatch.setattr(hf, "load_stack", lambda *a, **kw: pytest.fail("a model was loaded with the HF backend"))
    run_round(run, 1)  # every artifact of round 1 exists but eval.json: only the evaluation runs

    ev = json.loads(run.eval_path(1).read_text())
    assert set(ev["judge_quality"]) == {"M1", "M2"} and ev["win_rate"]["judge"] == "M2"
    loads = [c for c in fake_unsloth.calls if c[0] == "from_pretrained"]
    assert len(loads) == 2  # M1, then M2 (which also judges M2 vs M1): each once, through Unsloth
    assert ("for_inference",) in fake_unsloth.calls and backend._chosen == "unsloth"
