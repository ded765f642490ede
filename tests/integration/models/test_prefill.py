"""Generation never computes full-vocabulary logits over the prompt: the LM head scores one position
per forward, in our shared prefill (which needs only the KV cache) and in HF's own prefill
(`logits_to_keep=1`). At judge length with Llama-3's 128k vocabulary the full logits of a judging
batch would be ~6 GB (benchmarks/generation_memory.py)."""

import pytest
from tiny_models import tiny_llama_dir

from selfreward_lite.config import preset_config
from selfreward_lite.judging import engine
from selfreward_lite.judging.rubric import load_rubric
from selfreward_lite.models.generation import generate
from selfreward_lite.models.hf import load_stack


@pytest.mark.parametrize("n", [1, 3])  # 1: HF's prefill only; 3: our shared prefill, then HF's
def test_lm_head_scores_one_position_per_forward(tmp_path, n):
    lm = load_stack(preset_config("cpu", model=str(tiny_llama_dir(tmp_path / "m", "llama3")), dtype="float32"), [])
    lengths = []
    lm.model.lm_head.register_forward_hook(lambda module, args, out: lengths.append(args[0].shape[1]))
    items = [{"prompt": "Name a primary color.", "response": "Red is a primary color. " * k} for k in (1, 4)]
    texts = [engine.judge_text(lm, load_rubric("additive"), it) for it in items]
    generate(lm, texts, n, temperature=0.7, top_p=0.9, max_new_tokens=4, batch_size=8, seed=0)
    assert lengths and set(lengths) == {1}, lengths
