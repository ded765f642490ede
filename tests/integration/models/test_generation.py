"""Batched generation: shared prefill is exact, results map back to inputs. On a tiny random-weight
Llama (tiny_models.tiny_chatml): greedy texts of near-uniform logits change with any wrong cache or row."""

from selfreward_lite.config import preset_config
from selfreward_lite.models.generation import generate, render_chat
from selfreward_lite.models.hf import load_stack
from tiny_models import tiny_chatml

QUESTIONS = ["What is the capital of Italy?", "Name two fruits.", "Write one sentence about the sea and the sky at dusk."]


def test_shared_prefill_matches_plain_generate(tmp_path):
    lm = load_stack(preset_config("cpu", model=tiny_chatml(tmp_path), dtype="float32"), [])
    texts = [render_chat(lm.tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]
    common = dict(temperature=0, top_p=1.0, max_new_tokens=12, batch_size=8, seed=0)  # greedy: deterministic
    shared = generate(lm, texts, 2, share_prefill=True, **common)
    plain = generate(lm, texts, 1, **common)  # one full prefill per text (HF allows no greedy n > 1)
    assert [[s.text for s in g] for g in shared] == [[g[0].text] * 2 for g in plain]
    # Each result belongs to its own prompt, whatever the length-sorted batch order was.
    alone = [generate(lm, [t], 1, **common)[0][0].text for t in texts]
    assert [g[0].text for g in plain] == alone
    assert all(0 < g[0].n_tokens <= 12 for g in shared)
