"""Model loading: defaults for tokenizers without pad token or chat template, 4-bit NF4 on CPU,
and a model built from a config (no download)."""

import json
import shutil

import pytest

from selfreward_lite.config import preset_config
from selfreward_lite.errors import SrliteError
from selfreward_lite.models.generation import generate, render_chat
from selfreward_lite.models.hf import DEFAULT_CHAT_TEMPLATE, load_stack, load_tokenizer


@pytest.fixture
def bare_model_dir(tmp_path, embedded):
    """A tiny random Llama built from a config, with the embedded tokenizer stripped of its
    pad token and chat template."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(embedded)
    cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size = 2, 64, 128
    cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim = 4, 2, 16
    cfg.pad_token_id = None
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedded / name, tmp_path / name)
    tc = json.loads((tmp_path / "tokenizer_config.json").read_text())
    tc.pop("chat_template", None)
    tc["pad_token"] = None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tc))
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    return tmp_path


def test_missing_pad_and_chat_template_get_defaults(bare_model_dir):
    cfg = preset_config("cpu", model=str(bare_model_dir), dtype="float32")
    tok = load_tokenizer(cfg)
    assert tok.pad_token == tok.eos_token
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE
    lm = load_stack(cfg, [], train_new=True)
    text = render_chat(lm.tokenizer, [{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n")
    out = generate(lm, [text], 2, temperature=0.7, top_p=0.9, max_new_tokens=5, batch_size=4, seed=0)
    assert len(out) == 1 and len(out[0]) == 2


def test_4bit_nf4_on_cpu(embedded):
    lm = load_stack(preset_config("cpu", quantize="4bit"), [], train_new=True)
    linear = lm.model.base_model.model.model.layers[0].mlp.down_proj.base_layer
    assert type(linear).__name__ == "Linear4bit"
    text = render_chat(lm.tokenizer, [{"role": "user", "content": "Say hello."}])
    (samples,) = generate(lm, [text], 1, temperature=0, top_p=1.0, max_new_tokens=6, batch_size=1, seed=0)
    assert samples[0].n_tokens > 0


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(SrliteError, match="Could not load"):
        load_tokenizer(preset_config("cpu", model=str(tmp_path / "no-such-model")))
