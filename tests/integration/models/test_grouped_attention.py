"""grouped_attention (models/attention.py) computes what eager attention computes, without
copying the KV cache per query head: the same logits for a left-padded prefill and for decode steps
with a cache, on the embedded model (SmolLM2: 9 query heads on 3 key/value heads) and on a tiny
random-weight Llama (4 on 2), and the model's own implementation is back afterwards."""

import pytest
import torch
from tiny_models import tiny_llama_dir

from selfreward_lite.config import preset_config
from selfreward_lite.models.attention import NAME, for_generation
from selfreward_lite.models.hf import load_stack


def logits_of(model, steps: int = 3):
    """Last-position logits of a left-padded prefill, then of `steps` decode steps with the cache."""
    torch.manual_seed(0)
    ids = torch.randint(5, 200, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    mask[1, :2] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    got = [out.logits[:, -1]]
    for k in range(steps):
        nxt = torch.randint(5, 200, (3, 1))
        mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], 1)
        pos = pos[:, -1:] + 1
        out = model(input_ids=nxt, attention_mask=mask, position_ids=pos, past_key_values=out.past_key_values,
                    use_cache=True)
        got.append(out.logits[:, -1])
    return torch.stack(got)


@pytest.mark.parametrize("which", ["embedded", "tiny"])
def test_same_logits_as_eager(which, tmp_path, request):
    if which == "embedded":
        request.getfixturevalue("embedded")
        cfg = preset_config("cpu", dtype="float32")
    else:
        cfg = preset_config("cpu", model=str(tiny_llama_dir(tmp_path / "m", "none")), dtype="float32")
    lm = load_stack(cfg, [])
    base = lm.model
    groups = base.config.num_attention_heads // base.config.num_key_value_heads
    assert groups > 1  # the case that matters: several query heads per key/value head
    before = base.config._attn_implementation
    with torch.inference_mode():
        base.set_attn_implementation("eager")
        want = logits_of(base)
        base.set_attn_implementation(before)
        with for_generation(lm):
            assert base.config._attn_implementation == NAME
            got = logits_of(base)
    assert base.config._attn_implementation == before
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_what_it_does_not_do_goes_to_the_models_own_eager():
    """Gemma-2 soft-caps its attention logits and alternates sliding-window layers (both in the
    attention kwargs): those calls go to Gemma-2's own eager attention, so the logits stay eager's."""
    from types import SimpleNamespace

    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=8, sliding_window=6, attn_logit_softcapping=5.0,
                       attn_implementation="eager")
    model = Gemma2ForCausalLM(cfg).eval()
    with torch.inference_mode():
        want = logits_of(model)
        with for_generation(SimpleNamespace(model=model, device="cpu")):
            assert model.config._attn_implementation == NAME
            got = logits_of(model)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()
