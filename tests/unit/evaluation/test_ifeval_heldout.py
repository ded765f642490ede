"""The bundled held-out set selfreward_lite/data/ifeval_heldout.jsonl."""

import importlib.util
import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from selfreward_lite.loop.self_instruction import PromptFilter, rouge_l, tokens

DATA = Path(str(resources.files("selfreward_lite") / "data"))
HELDOUT = DATA / "ifeval_heldout.jsonl"
SEED_FILES = ("ift_seed.jsonl", "eval_prompts.jsonl", "eft_train.jsonl", "eft_eval.jsonl")
NEAR_DUPLICATE = 0.7    # the pipeline's threshold (config max_rouge)
OUR_CEILING = 0.5       # what this set promises: well below it


def _heldout_rows():
    return [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]


def _seed_prompts():
    """Every prompt of the bundled seeds; for judge (EFT) examples also the question inside the rubric."""
    out = []
    for name in SEED_FILES:
        for n, line in enumerate((DATA / name).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if "prompt" in rec:
                text = rec["prompt"]
            else:
                text = next(m["content"] for m in rec["messages"] if m["role"] == "user")
            out.append((f"{name}:{n}", text))
            question = re.search(r"\nUser: (.*?)\n<response>", text, re.S)
            if question:
                out.append((f"{name}:{n} (question)", question.group(1)))
    return out


def test_size_and_coverage():
    rows = _heldout_rows()
    assert len(rows) >= 60
    types = Counter(i for r in rows for i in r["instruction_id_list"])
    assert len(types) >= 15
    assert min(types.values()) >= 2                      # every covered type is seen more than once
    assert len({r["key"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert all(len(r["prompt"].split()) <= 60 for r in rows)          # short everyday tasks


def test_no_prompt_is_near_a_seed_prompt():
    """All pairs (held-out prompt, seed prompt), with the package's own ROUGE-L."""
    seeds = [(where, tokens(text), Counter(tokens(text))) for where, text in _seed_prompts()]
    assert len(seeds) > 250
    worst = (0.0, None, None)
    pairs = 0
    for row in _heldout_rows():
        toks = tokens(row["prompt"])
        counts = Counter(toks)
        for where, seed_toks, seed_counts in seeds:
            pairs += 1
            # LCS <= the multiset intersection, so this bounds ROUGE-L F1 from above: a pair whose
            # bound cannot beat the worst score so far needs no LCS (the long judge rubrics).
            bound = 2 * sum((counts & seed_counts).values()) / (len(toks) + len(seed_toks))
            if bound <= worst[0]:
                continue
            score = rouge_l(toks, seed_toks)
            if score > worst[0]:
                worst = (score, row["key"], where)
    assert pairs == len(_heldout_rows()) * len(seeds)
    assert worst[0] < OUR_CEILING, f"held-out prompt {worst[1]} has ROUGE-L {worst[0]:.2f} with {worst[2]}"
    # And the pipeline's own filter would not call any of them a near duplicate of the seeds.
    f = PromptFilter([t for _, t in _seed_prompts()], min_words=1, max_words=10_000, max_rouge=NEAR_DUPLICATE)
    assert [r["key"] for r in _heldout_rows() if f.reason_to_drop(r["prompt"])] == []


needs_lm_eval = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None,
                                   reason="needs the ifeval extra: pip install 'selfreward-lite[ifeval]'")


@needs_lm_eval
def test_loads_strict_and_every_verifier_runs():
    from selfreward_lite.evaluation import ifeval

    records = ifeval.load_heldout()          # strict: no argument is replaced by a random value
    assert len(records) == len(_heldout_rows()) and all(not r.notes for r in records)
    dummies = ["", "ok", "Hello, world. This is a reply!", "* one\n* two\n\n***\n\nP.S. end",
               '```json\n{"a": [1, 2]}\n```', "ALL CAPS HERE.", "<<t>>\nSECTION 1\nx\n\nSECTION 2\ny"]
    for answer in dummies:
        results = ifeval.score_responses(records, [answer] * len(records))
        assert all(len(r.strict) == len(r.instruction_id_list) for r in results)


@needs_lm_eval
def test_no_conflicting_instructions():
    from lm_eval.tasks.ifeval import instructions_registry as reg

    conflicts = reg.conflict_make({k: set(v) for k, v in reg.INSTRUCTION_CONFLICTS.items()})
    for row in _heldout_rows():
        ids = row["instruction_id_list"]
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                assert b not in conflicts[a], f"prompt {row['key']}: {a} conflicts with {b}"


@needs_lm_eval
def test_hand_written_answers_pass():
    """The prompts can be followed: a hand-written answer passes strict for a sample of them."""
    from selfreward_lite.evaluation import ifeval

    by_key = {r.key: r for r in ifeval.load_heldout()}
    answers = {
        5001: "eggs on toast with a little butter. a cup of tea on the side. that is all i need.",
        5005: "WE ARE THE TIGERS AND WE NEVER GIVE UP. PLAY HARD, PASS THE BALL AND SCORE THE WINNING GOAL!",
        5011: "Put cheese between two slices of bread and eat it.",
        5014: "Wipe it with a rag. Oil it every month. Happy riding!",
        5018: '"Sort your waste and give old things a second life."',
        5021: "<<Rain on Glass>>\nGrey drops tap the window while buses hum below.",
        5024: '{"apple": "red", "banana": "yellow", "grape": "purple"}',
        5027: "* Keep a bottle on your desk.\n* Drink a glass with every meal.\n* Set a reminder every hour.",
        5037: "My answer is no.",
        5040: "Come to my party on [date] at [address]!",
        5043: "Dear Sam, I love painting and chess.\nP.S. Write soon!",
        5046: "Wrap up in a warm blanket and sip hot cocoa by the window.",
        5049: "Tomato soup is my favorite soup. A warm soup on a cold day is the best.",
        5052: "A cat is a small animal with soft whiskers, sharp claws and bright eyes.",
        5058: "Buenos días. Que tengas un día maravilloso y lleno de alegría.",
        5060: "Rain water carries salt from rocks into the sea.",
        5065: "Call him Shelly.",
        5069: "A new puppy needs food, water and a warm bed.\n\nFinally, give it lots of love and short walks.",
        5071: "Sky Dancer\n******\nRuby Wing",
        5074: "Name a vegetable that is green. Broccoli is green.",
    }
    for key, answer in answers.items():
        result = ifeval.score_response(by_key[key], answer)
        assert result.prompt_strict, (key, by_key[key].instruction_id_list, result.strict)
