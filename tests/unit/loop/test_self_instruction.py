import random

import pytest

from selfreward_lite.loop.self_instruction import (
    DROP_DUPLICATE, DROP_EMPTY, DROP_LONG, DROP_NEAR, DROP_SHORT, PromptFilter, extract_prompt,
    few_shot_prompt, rouge_l, tokens,
)


def test_rouge_l_values():
    assert rouge_l(tokens("a b c d"), tokens("a b c d")) == 1.0
    assert rouge_l(tokens("a b c d"), tokens("e f g")) == 0.0
    # LCS("a b c d", "a c d e") = 3 -> F = 2*3/(4+4)
    assert rouge_l(tokens("a b c d"), tokens("a c d e")) == pytest.approx(0.75)
    assert rouge_l([], tokens("a")) == 0.0


def make_filter(**kw):
    args = dict(min_words=3, max_words=12, max_rouge=0.7)
    args.update(kw)
    return PromptFilter(["How do I bake a loaf of sourdough bread at home?"], **args)


@pytest.mark.parametrize(
    "text, finished, reason",
    [
        ("", True, DROP_EMPTY),
        ("  ?! ", True, DROP_EMPTY),
        ("Why?", True, DROP_SHORT),
        ("word " * 13, True, DROP_LONG),
        ("Explain how tides work on the", False, DROP_LONG),  # cut off by the token budget
        ("how do I bake a loaf of SOURDOUGH bread at home", True, DROP_DUPLICATE),
        ("How do I bake a loaf of sourdough bread in my home?", True, DROP_NEAR),
        ("Write a haiku about autumn leaves falling.", True, None),
    ],
)
def test_filter_reasons(text, finished, reason):
    assert make_filter().reason_to_drop(text, finished) == reason


def test_filter_checks_against_kept_prompts_too():
    f = make_filter()
    assert f.offer("Write a haiku about autumn leaves falling.")
    assert not f.offer("Write a haiku about the autumn leaves falling.")
    assert f.dropped == {DROP_NEAR: 1}


def test_extract_prompt():
    assert extract_prompt(" Name three rivers in Africa.\nTask 10: more") == ("Name three rivers in Africa.", True)
    assert extract_prompt("Name three rivers") == ("Name three rivers", False)


def test_few_shot_prompt_mixes_seed_and_generated():
    seeds = [f"seed task number {i}" for i in range(20)]
    gen = ["generated task one", "generated task two", "generated task three"]
    text = few_shot_prompt(seeds, gen, shots=8, from_generated=2, rng=random.Random(0))
    lines = [line for line in text.splitlines() if line.startswith("Task")]
    assert len(lines) == 9 and lines[-1] == "Task 9:"
    assert sum("generated" in line for line in lines) == 2
    assert sum("seed" in line for line in lines) == 6
    # With no generated prompts yet, all shots come from the seeds.
    text = few_shot_prompt(seeds, [], shots=8, from_generated=2, rng=random.Random(0))
    assert sum("seed" in line for line in text.splitlines()) == 8
