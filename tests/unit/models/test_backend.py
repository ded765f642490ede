"""Backend selection (auto | unsloth | hf) and the clear errors when Unsloth cannot run."""

import pytest

from selfreward_lite.models import backend
from selfreward_lite.config import preset_config
from selfreward_lite.errors import SrliteError


def machine(monkeypatch, cuda: bool, unsloth: bool):
    monkeypatch.setattr(backend, "cuda_available", lambda: cuda)
    monkeypatch.setattr(backend, "_unsloth_installed", lambda: unsloth)


@pytest.mark.parametrize("cuda, unsloth, device, expected", [
    (False, False, "auto", "hf"),
    (False, True, "auto", "hf"),  # Unsloth's CPU fallback is not the fast path
    (True, False, "auto", "hf"),
    (True, True, "auto", "unsloth"),
    (True, True, "cpu", "hf"),
])
def test_auto_picks_unsloth_only_where_it_runs(monkeypatch, cuda, unsloth, device, expected):
    machine(monkeypatch, cuda, unsloth)
    assert backend.resolve_backend(preset_config("cpu", device=device)) == expected


def test_hf_is_always_available(monkeypatch):
    machine(monkeypatch, True, True)
    assert backend.resolve_backend(preset_config("gpu", backend="hf")) == "hf"


def test_unsloth_without_cuda_is_a_clear_error(monkeypatch):
    machine(monkeypatch, False, True)
    with pytest.raises(SrliteError, match="need a CUDA GPU") as e:
        backend.resolve_backend(preset_config("cpu", backend="unsloth"))
    assert "backend to 'auto' or 'hf'" in str(e.value)
    machine(monkeypatch, True, True)
    with pytest.raises(SrliteError, match="device is 'cpu'"):
        backend.resolve_backend(preset_config("cpu", backend="unsloth", device="cpu"))


def test_unsloth_without_the_package_names_the_fix(monkeypatch):
    machine(monkeypatch, True, False)
    with pytest.raises(SrliteError, match="not installed") as e:
        backend.resolve_backend(preset_config("gpu", backend="unsloth"))
    assert 'pip install "selfreward-lite[unsloth]"' in str(e.value)


def test_this_machine_resolves_auto_to_hf():
    # CI machines have no CUDA GPU: auto must fall back to the HF backend, whatever is installed.
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert backend.resolve_backend(preset_config("cpu")) == "hf"


def test_a_process_keeps_the_backend_it_chose(monkeypatch):
    """Unsloth patches model code process-wide: after it, no plain HF model (export's) may load, and back."""
    monkeypatch.setattr(backend, "_chosen", None)  # as in a fresh process
    machine(monkeypatch, False, False)
    cfg = preset_config("cpu")
    assert backend.prepare(cfg) == "hf"
    assert backend.prepare(cfg, backend="hf") == "hf"  # export's explicit choice agrees
    with pytest.raises(SrliteError, match="already loads models with the 'hf' backend"):
        backend.prepare(cfg, backend="unsloth")
    monkeypatch.setattr(backend, "_chosen", "unsloth")  # as after Unsloth loaded the round's models
    with pytest.raises(SrliteError, match="cannot also use 'hf'.*new process"):
        backend.prepare(cfg, backend="hf")


def test_backend_field_is_validated():
    with pytest.raises(SrliteError, match="backend"):
        preset_config("cpu", backend="fast")


def test_import_failure_is_a_clear_error(monkeypatch):
    import builtins

    from selfreward_lite.models import unsloth as unsloth_backend

    real_import = builtins.__import__

    def no_unsloth(name, *args, **kwargs):
        if name == "unsloth":
            raise NotImplementedError("Unsloth cannot find any torch accelerator? You need a GPU.")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_unsloth)
    with pytest.raises(SrliteError, match="could not import unsloth") as e:
        unsloth_backend.import_unsloth()
    assert "selfreward-lite[unsloth]" in str(e.value) and "'hf'" in str(e.value)


def test_trl_115_on_cpu_is_a_clear_error(monkeypatch):
    """The unsloth extra pins trl 1.15, whose DPO kernel is Triton-only: on CPU, say so and name the fix."""
    import importlib.metadata
    import sys

    from selfreward_lite.models.adapters import LoadedModel
    from selfreward_lite.loop.train import _check_trl_runs_here

    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.15.0" if name == "trl" else real(name))
    lm = LoadedModel(None, None, [], "cpu", None)
    with pytest.raises(SrliteError, match=r'pip install "trl>=1.16"'):
        _check_trl_runs_here(lm)
    _check_trl_runs_here(LoadedModel(None, None, [], "cuda", None))  # fine on a GPU


def test_cli_reports_unusable_backend_without_traceback(tmp_path):
    import os
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    env = {**os.environ, "SRLITE_RUN_DIR": str(tmp_path / "run")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "selfreward_lite", *a], capture_output=True,  # noqa: E731
                                    text=True, env=env, timeout=120)
    assert run("init", "--preset", "cpu", "--set", "backend=unsloth").returncode == 0
    r = run("iterate", "--rounds", "1")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "backend is 'unsloth'" in out and "Traceback" not in out
