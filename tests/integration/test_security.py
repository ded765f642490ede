"""Security basics: no remote code unless asked, weights only from safetensors, no secrets in
output, no writes outside the run directory (see also test_resume_units's link test)."""

import json
import subprocess
import sys

import pytest
import torch

from selfreward_lite.config import Config, preset_config
from selfreward_lite.errors import SrliteError


def tiny_llama_dir(path):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)
    model = LlamaForCausalLM(cfg)
    path.mkdir()
    model.config.save_pretrained(path)
    return model


def test_remote_code_is_off_by_default():
    assert Config().trust_remote_code is False
    assert preset_config("gpu").trust_remote_code is False


def test_pickled_weights_are_refused(tmp_path):
    from selfreward_lite.models.hf import load_base

    model = tiny_llama_dir(tmp_path / "m")
    torch.save(model.state_dict(), tmp_path / "m" / "pytorch_model.bin")  # pickle: could run code on load
    with pytest.raises(SrliteError, match="safetensors"):
        load_base(preset_config("cpu", model=str(tmp_path / "m"), quantize="none"))


def test_model_needing_remote_code_is_refused_with_advice(tmp_path):
    from selfreward_lite.models.hf import load_base

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(
        {"model_type": "my_custom", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                                                 "AutoModelForCausalLM": "modeling_custom.CustomModel"}}))
    (tmp_path / "m" / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(SrliteError, match="trust_remote_code"):
        load_base(preset_config("cpu", model=str(tmp_path / "m"), quantize="none"))


def test_pickled_adapter_is_refused(tmp_path, embedded):
    from selfreward_lite.models.hf import load_stack

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(SrliteError, match="only from safetensors"):
        load_stack(preset_config("cpu"), [adapter])


def test_no_locals_or_secrets_in_output(tmp_path):
    from selfreward_lite import cli

    assert cli.app.pretty_exceptions_show_locals is False
    env = {"HF_TOKEN": "hf_SECRET_do_not_print", "WANDB_API_KEY": "wandb_SECRET", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "selfreward_lite", "iterate", "-d", str(tmp_path / "none")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "SECRET" not in r.stdout + r.stderr
