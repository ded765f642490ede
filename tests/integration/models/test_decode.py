"""Our decode loop (models/decode.py) on the embedded model: greedy output is HF `generate`'s, token for
token, while finished rows leave the batch; stop strings and the recorded score-token probabilities
are those of the HF path."""

import torch

from selfreward_lite.config import preset_config
from selfreward_lite.models.generation import generate, render_chat
from selfreward_lite.models.hf import load_stack

QUESTIONS = ["Name a primary color.", "What is 2 + 2?", "Write two sentences about the sea at dusk.",
             "List three fruits.", "Say hello.", "Explain in one paragraph why the sky is blue."]


def texts_of(lm):
    return [render_chat(lm.tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]


def batch_sizes(lm):
    """The batch size of every forward pass of the base model."""
    seen = []
    base = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    base.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    return seen


def test_greedy_matches_hf_generate_while_finished_rows_leave(embedded):
    lm = load_stack(preset_config("cpu", dtype="float32"), [])
    texts = texts_of(lm)
    common = dict(temperature=0, top_p=1.0, max_new_tokens=40, batch_size=8, seed=0)
    hf = generate(lm, texts, 1, drop_finished=False, **common)
    sizes = batch_sizes(lm)
    ours = generate(lm, texts, 1, **common)
    assert [[(s.text, s.finished, s.n_tokens) for s in g] for g in ours] == \
        [[(s.text, s.finished, s.n_tokens) for s in g] for g in hf]
    finished = sum(g[0].finished for g in hf)
    assert 0 < finished < len(texts)  # some rows end early, some run to the budget: the case that matters
    assert sizes[0] == len(texts) and sizes[-1] < len(texts)  # the batch shrank as rows ended
    assert sum(sizes) == sum(g[0].n_tokens + (1 if g[0].finished else 0) for g in hf)  # one row-step per token drawn
    # n samples per text through the shared prefill, and the prefix-free plain path with n > 1
    two = generate(lm, texts, 2, **common)
    assert [[s.text for s in g] for g in two] == [[g[0].text] * 2 for g in hf]
    plain_two = generate(lm, texts, 2, share_prefill=False, **common)
    assert [[s.text for s in g] for g in plain_two] == [[g[0].text] * 2 for g in hf]


def test_stop_strings_and_score_probabilities_match_hf(embedded):
    lm = load_stack(preset_config("cpu", dtype="float32"), [])
    texts = texts_of(lm)
    digits = [lm.tokenizer.convert_tokens_to_ids(str(d)) for d in range(6)]
    common = dict(temperature=0, top_p=1.0, max_new_tokens=30, batch_size=8, seed=0, stop_strings=["."],
                  score_tokens=digits)
    hf = generate(lm, texts, 1, drop_finished=False, **common)
    ours = generate(lm, texts, 1, **common)
    assert [g[0].text for g in ours] == [g[0].text for g in hf]
    assert any(g[0].finished and g[0].text.endswith(".") for g in ours)  # a row ended on the stop string
    for a, b in zip(ours, hf):
        assert a[0].token_ids == b[0].token_ids
        assert torch.allclose(a[0].step_probs, b[0].step_probs, atol=1e-5)


def test_sampling_is_seeded_and_follows_the_settings(embedded):
    lm = load_stack(preset_config("cpu", dtype="float32"), [])
    texts = texts_of(lm)[:3]
    common = dict(temperature=0.8, top_p=0.9, top_k=5, max_new_tokens=16, batch_size=8)
    a = generate(lm, texts, 2, seed=3, **common)
    assert [[s.text for s in g] for g in a] == [[s.text for s in g] for g in generate(lm, texts, 2, seed=3, **common)]
    assert [[s.text for s in g] for g in a] != [[s.text for s in g] for g in generate(lm, texts, 2, seed=4, **common)]
