"""Our decode loop (models/decode.py) on the embedded model: greedy output is HF `generate`'s, token for
token, while finished rows leave the batch; stop strings and the recorded score-token probabilities
are those of the HF path. Seeded sampling, which does not need the embedded model's real endings, runs
on a tiny random-weight Llama (tiny_models.tiny_chatml)."""

import pytest
import torch

from selfreward_lite.config import preset_config
from selfreward_lite.models import decode as D
from selfreward_lite.models.adapters import transformers_model
from selfreward_lite.models.generation import generate, render_chat
from selfreward_lite.models.hf import load_stack
from tiny_models import tiny_chatml

QUESTIONS = ["Name a primary color.", "What is 2 + 2?", "Write two sentences about the sea at dusk.",
             "List three fruits.", "Say hello.", "Explain in one paragraph why the sky is blue."]


def texts_of(lm):
    return [render_chat(lm.tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]


def batch_sizes(lm):
    """The batch size of every forward pass of the base model."""
    seen = []
    transformers_model(lm.model).register_forward_hook(
        lambda m, args, kwargs, out: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
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


@pytest.mark.parametrize("top_k", [0, 5])
def test_sampling_is_seeded_and_follows_the_settings(tmp_path, monkeypatch, top_k):
    lm = load_stack(preset_config("cpu", model=tiny_chatml(tmp_path), dtype="float32"), [])
    texts = texts_of(lm)[:3]
    common = dict(temperature=0.8, top_p=0.9, top_k=top_k, max_new_tokens=16, batch_size=8)
    a = generate(lm, texts, 2, seed=3, **common)
    assert [[s.text for s in g] for g in a] == [[s.text for s in g] for g in generate(lm, texts, 2, seed=3, **common)]
    assert [[s.text for s in g] for g in a] != [[s.text for s in g] for g in generate(lm, texts, 2, seed=4, **common)]
    # rows whose few candidates hold less than top_p take HF's own warper
    monkeypatch.setattr(D, "NUCLEUS_CANDIDATES", 2)
    assert all(s.n_tokens > 0 for g in generate(lm, texts, 2, seed=3, **common) for s in g)


def test_the_fast_path_serves_exactly_our_settings():
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    ours = LogitsProcessorList([TemperatureLogitsWarper(0.7), TopPLogitsWarper(0.9)])
    assert D.sampler(ours, True).__name__ == "fast"
    assert D.sampler(ours, False).__name__ == "plain"  # greedy
    with_top_k = LogitsProcessorList([TemperatureLogitsWarper(0.7), TopKLogitsWarper(5), TopPLogitsWarper(0.9)])
    assert D.sampler(with_top_k, True).__name__ == "plain"


def test_nucleus_keeps_what_hf_top_p_keeps():
    """The fast top-p (models/decode.nucleus) keeps exactly the tokens HF's TopPLogitsWarper keeps, with
    their probabilities, whenever its candidates hold top_p; rows where they do not are flagged."""
    from transformers import TopPLogitsWarper

    from selfreward_lite.models.decode import nucleus

    torch.manual_seed(0)
    scores = torch.randn(64, 5000) * torch.linspace(0.5, 6.0, 64)[:, None]  # flat to peaked rows
    ids = torch.zeros(64, 1, dtype=torch.long)
    for top_p in (0.5, 0.9, 0.95):
        want = TopPLogitsWarper(top_p)(ids, scores.clone())
        weights, index, enough = nucleus(scores, top_p, 256)
        assert 0 < int(enough.sum()) < 64  # both kinds of row in the test
        for r in enough.nonzero().squeeze(1).tolist():
            kept = set(index[r][weights[r] > 0].tolist())
            assert kept == set(torch.isfinite(want[r]).nonzero().squeeze(1).tolist())
            probs = torch.softmax(want[r], dim=-1)
            assert torch.allclose(weights[r][weights[r] > 0] / weights[r].sum(), probs[index[r][weights[r] > 0]], atol=1e-6)
