"""The model cache: the one way to get a model, through the backend choice, one model at a time."""

from types import SimpleNamespace

import pytest

from selfreward_lite.errors import SrliteError
from selfreward_lite.models import cache as cache_mod
from selfreward_lite.models.cache import ModelCache


@pytest.fixture
def loads(monkeypatch):
    """Record what the cache asks the backend for, instead of loading anything."""
    calls = []

    def load_model(cfg, adapter_dirs, *, train_new, backend=None, dtype=None):
        calls.append({"model": cfg.model, "adapters": [d.parent.name for d in adapter_dirs], "train_new": train_new,
                      "backend": backend, "dtype": dtype, "quantize": cfg.quantize})
        return SimpleNamespace(backend=backend or "hf", adapter_names=[], model=None)

    monkeypatch.setattr(cache_mod, "load_model", load_model)
    return calls


def trained(run, t):
    """Pretend M1..M_t exist (an adapter folder needs only its config to count)."""
    for d in run.adapters_of(t):
        d.mkdir(parents=True, exist_ok=True)
        (d / "adapter_config.json").write_text("{}")


def test_one_model_at_a_time_through_the_backend(run, loads):
    trained(run, 2)
    models = ModelCache(run)
    m2 = models.get(2)
    assert models.get(2) is m2 and len(loads) == 1  # kept while the same model is asked for
    assert loads[0] == {"model": "embedded", "adapters": ["m1", "round1"], "train_new": False, "backend": None,
                        "dtype": None, "quantize": "auto"}
    models.get(1)
    assert loads[-1]["adapters"] == ["m1"] and models._lm is not m2  # the other one was dropped first
    models.get(0, train_new=True)  # M0 + a new adapter: what M1's SFT trains
    assert loads[-1] == {**loads[0], "adapters": [], "train_new": True}
    models.get("/models/judge")  # a local model folder, no adapters
    assert loads[-1]["model"] == "/models/judge" and loads[-1]["adapters"] == []
    with pytest.raises(SrliteError, match="there is no M3"):
        models.get(3)
    models.release()
    assert models._lm is None


def test_export_takes_the_hf_backend_in_full_precision(run, loads):
    trained(run, 2)
    ModelCache(run).full_precision(2, "auto")
    assert loads == [{"model": "embedded", "adapters": ["m1", "round1"], "train_new": False, "backend": "hf",
                      "dtype": "auto", "quantize": "none"}]
    with pytest.raises(SrliteError, match="M0, the bare base model"):
        ModelCache(run).full_precision(0)
