"""The judge rubric's KV cache, computed once and copied into every batch (models/prefix.py), is exact:
judge prompts of different lengths in one batch give the same next-token logits (float tolerance) with
and without it, greedy judgments are the same text, and the positions are those of the plain
left-padded path. On a tiny random-weight Llama (the embedded model's architecture, a ChatML template,
a byte-level BPE): exactness is a property of the cache code, not of the weights, and the embedded
model's 900-token judge prompts made this the suite's slowest model test. The judging stage's tests
(tests/integration/judging, the e2e run) take the same path on the embedded model; its tokenizer's
boundary with the rubric is checked here too."""

import torch

from selfreward_lite.config import preset_config
from selfreward_lite.judging import engine
from selfreward_lite.judging.rubric import load_rubric
from selfreward_lite.models import prefix as P
from selfreward_lite.models.generation import attention_for_generation, generate, prompt_ids, shared_prefix
from selfreward_lite.models.hf import load_stack
from tiny_models import tiny_chatml

ITEMS = [{"id": f"i{k}", "prompt": q, "response": r} for k, (q, r) in enumerate([
    ("Name a primary color.", "Red."),
    ("How do I boil an egg?", "Put the egg in boiling water for eight to ten minutes, then cool it in cold water."),
    ("What is 2 + 2?", "2 + 2 is 4, because adding two and two gives four."),
])]


def tiny_cfg(tmp_path):
    return preset_config("cpu", model=tiny_chatml(tmp_path), dtype="float32")


def rubric_prefix_and_rows(lm):
    """The rubric's prefix cache and ITEMS' judge prompts (texts, token rows), checked to share its tokens."""
    rubric = load_rubric("additive-compact")
    texts = [engine.judge_text(lm, rubric, it) for it in ITEMS]
    prefix = shared_prefix(lm, engine.rubric_prefix(lm, rubric))
    assert prefix is not None and len(prefix.ids) > 100  # chat header + the whole rubric
    rows = [prompt_ids(lm.tokenizer, t) for t in texts]
    m = P.shared_length(prefix, rows)
    assert len(prefix.ids) - 2 <= m <= len(prefix.ids)  # at most a token merged across the boundary
    return prefix, texts, rows


def test_prefix_cache_gives_the_plain_logits_and_texts(tmp_path):
    lm = load_stack(tiny_cfg(tmp_path), [])
    prefix, texts, rows = rubric_prefix_and_rows(lm)
    pad = lm.tokenizer.pad_token_id
    with torch.inference_mode(), attention_for_generation(lm):
        plain = P.left_padded(rows, pad, lm.model.device)
        positions = (plain["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        want = lm.model(**plain, position_ids=positions).logits[:, -1]
        ready = P.prefill(lm.model, prefix, rows, pad, 1, lm.model.device)
        mask = ready["attention_mask"]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        # every real token has the position it has in the plain path
        for i, r in enumerate(rows):
            assert pos[i][mask[i].bool()].tolist() == list(range(len(r)))
            assert ready["input_ids"][i][mask[i].bool()].tolist() == r
        assert ready["past_key_values"].get_seq_length() == ready["input_ids"].shape[1] - 1  # all but the last token
        got = lm.model(input_ids=ready["input_ids"][:, -1:], attention_mask=mask, position_ids=pos[:, -1:],
                       past_key_values=ready["past_key_values"]).logits[:, -1]
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    # the prefix's own cache is untouched by a batch: a second use gives the same
    common = dict(temperature=0, top_p=1.0, max_new_tokens=24, batch_size=8, seed=0)
    plain_texts = [g[0].text for g in generate(lm, texts, 1, **common)]
    assert [g[0].text for g in generate(lm, texts, 1, prefix=prefix, **common)] == plain_texts
    assert [g[0].text for g in generate(lm, texts, 1, prefix=prefix, **common)] == plain_texts
    # n samples per text: the same prefix path repeats rows and cache
    two = generate(lm, texts, 2, prefix=prefix, **common)
    assert [[s.text for s in g] for g in two] == [[t, t] for t in plain_texts]


def test_the_embedded_tokenizer_keeps_the_rubric_start_whole(embedded):
    """The token-level part on the real tokenizer: every judge prompt starts with the rubric prefix's
    tokens, but for at most a token merged across the boundary with the question."""
    rubric_prefix_and_rows(load_stack(preset_config("cpu", dtype="float32"), []))


def test_no_prefix_where_the_backend_cannot_take_it(tmp_path):
    lm = load_stack(tiny_cfg(tmp_path), [])
    lm.backend = "unsloth"  # its fast decoding builds its own cache: the plain path, silently
    assert shared_prefix(lm, engine.rubric_prefix(lm, load_rubric("additive-compact"))) is None
