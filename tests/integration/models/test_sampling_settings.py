"""Sampling does what the config says: HF's defaults (top_k 50) and the model's own generation_config
(here top_k 20, repetition_penalty 1.3, min_p 0.1, greedy, max_length 20, as a Qwen-style
generation_config.json would set) never apply. The logits processors HF actually builds are
inspected, for the HF backend and for the stand-in Unsloth path (num_return_sequences)."""

import json

import pytest
from helpers import random_adapter
from tiny_models import tiny_llama_dir

from selfreward_lite.config import preset_config
from selfreward_lite.models import unsloth as U
from selfreward_lite.models.generation import generate, render_chat, sampling_settings
from selfreward_lite.models.hf import load_stack

MODEL_OWN = {"top_k": 20, "repetition_penalty": 1.3, "do_sample": False, "max_length": 20, "temperature": 0.2,
             "top_p": 0.5, "min_p": 0.1, "no_repeat_ngram_size": 2}


@pytest.fixture
def opinionated_model(tmp_path):
    """A tiny model whose generation_config.json has opinions (written as a hub file would be)."""
    d = tiny_llama_dir(tmp_path / "model", "none")
    path = d / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **MODEL_OWN}))
    return d


def spy_processors(lm):
    """(generation config, [(processor class, its main setting)]) of every HF generate call."""
    base = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    calls = []
    original = base._get_logits_processor

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        gen_cfg = kwargs.get("generation_config", args[0] if args else None)
        calls.append((gen_cfg, [(type(p).__name__, _setting(p)) for p in out]))
        return out

    base._get_logits_processor = spy
    return calls


def _setting(p):
    for attr in ("penalty", "temperature", "top_k", "top_p", "min_p"):
        if hasattr(p, attr):
            value = getattr(p, attr)
            return round(float(value), 4) if not isinstance(value, int) else value
    return None


def run_generate(lm, n, **kw):
    text = render_chat(lm.tokenizer, [{"role": "user", "content": "Name a primary color."}])
    return generate(lm, [text], n, max_new_tokens=30, batch_size=4, seed=0, **kw)


def check(lm, n):
    calls = spy_processors(lm)
    own = lm.model.get_base_model().generation_config if hasattr(lm.model, "get_base_model") else lm.model.generation_config
    before = own.to_dict()

    run_generate(lm, n, temperature=0.7, top_p=0.9)  # the config's defaults: top_k 0, repetition_penalty 1.0
    gen_cfg, procs = calls[-1]
    assert procs == [("TemperatureLogitsWarper", 0.7), ("TopPLogitsWarper", 0.9)]
    assert gen_cfg.do_sample is True and gen_cfg.max_new_tokens == 30 and gen_cfg.top_k == 0

    run_generate(lm, n, temperature=0.7, top_p=0.9, top_k=5, repetition_penalty=1.2)
    assert calls[-1][1] == [("RepetitionPenaltyLogitsProcessor", 1.2), ("TemperatureLogitsWarper", 0.7),
                            ("TopKLogitsWarper", 5), ("TopPLogitsWarper", 0.9)]

    run_generate(lm, 1, temperature=0, top_p=0.9)  # greedy: nothing at all
    gen_cfg, procs = calls[-1]
    assert procs == [] and gen_cfg.do_sample is False

    assert own.to_dict() == before  # the model's own generation_config is put back untouched
    assert own.top_k == 20  # (it still has its opinions; they were just not used)


def test_hf_backend_applies_only_our_settings(opinionated_model):
    lm = load_stack(preset_config("cpu", model=str(opinionated_model), dtype="float32"), [])
    check(lm, n=2)  # n > 1: our shared prefill, then HF generate


def test_unsloth_path_applies_only_our_settings(tmp_path, opinionated_model, fake_unsloth):
    cfg = preset_config("cpu", model=str(opinionated_model), dtype="float32", lora_r=2, lora_alpha=4)
    random_adapter(cfg, [], tmp_path / "a1", seed=1)
    lm = U.load_stack(cfg, [tmp_path / "a1"], train_new=False)
    assert lm.backend == "unsloth"
    check(lm, n=2)  # num_return_sequences on this path


def test_recorded_settings_are_explicit():
    s = sampling_settings(temperature=0.7, top_p=0.9, max_new_tokens=64)
    assert s["top_k"] == 0 and s["repetition_penalty"] == 1.0 and s["do_sample"] is True and s["min_p"] is None
    assert s["typical_p"] == 1.0 and s["no_repeat_ngram_size"] == 0 and s["num_beams"] == 1
