"""No leakage into evaluation: the held-out texts are collected in one place, and the bundled
training data (IFT seed prompts, EFT-train questions) stays below the prompt filter's ROUGE-L
threshold against every held-out text (eval prompts, EFT-eval questions, IFEval held-out prompts)."""

import json

from selfreward_lite.config import Config
from selfreward_lite.evaluation.heldout import eft_questions, heldout_prompts, ifeval_heldout_path, ifeval_prompts
from selfreward_lite.evaluation.winrate import bundled_eval_prompts, load_eval_prompts
from selfreward_lite.judging.rubric import RUBRIC_TEMPLATE
from selfreward_lite.loop.self_instruction import rouge_l, tokens
from selfreward_lite.run.create import create_run
from selfreward_lite.run.records import first_user_text, load_messages


def bundled_train_texts():
    return ([("IFT seed", first_user_text(m)) for m in load_messages("bundled", "ift")]
            + [("EFT-train question", q) for q in eft_questions(load_messages("bundled", "eft_train"), RUBRIC_TEMPLATE)])


def bundled_heldout_texts():
    return ([("eval prompt", p["prompt"]) for p in load_eval_prompts(bundled_eval_prompts())]
            + [("EFT-eval question", q) for q in eft_questions(load_messages("bundled", "eft_eval"), RUBRIC_TEMPLATE)]
            + [("IFEval held-out prompt", p) for p in ifeval_prompts()])  # [] until that file is bundled


def test_no_bundled_train_text_is_near_a_heldout_text():
    """Every (train, held-out) pair, ROUGE-L F below the filter threshold (before: an eval prompt
    "Give me three tips for taking sharper photos with a phone camera" was 0.73 from an IFT seed)."""
    threshold = Config().prompt_max_rouge
    train, heldout = bundled_train_texts(), bundled_heldout_texts()
    assert len(train) > 150 and len(heldout) > 40
    scored = [(rouge_l(tokens(a), tokens(b)), ka, a, kb, b) for ka, a in train for kb, b in heldout]
    top = max(scored)
    print(f"max ROUGE-L train/held-out over {len(scored)} pairs: {top[0]:.3f} ({top[1]} {top[2]!r} vs {top[3]} {top[4]!r})")
    assert top[0] < threshold, top


def test_heldout_prompts_collects_every_heldout_set(tmp_path, monkeypatch):
    run = create_run(tmp_path / "run", preset="cpu", overrides={})
    texts = heldout_prompts(run)
    eval_prompts = [p["prompt"] for p in load_eval_prompts(bundled_eval_prompts())]
    assert run.cfg.eval_prompts < len(eval_prompts) and set(eval_prompts) <= set(texts)  # the whole file, not the per-round cut
    questions = eft_questions(load_messages("bundled", "eft_eval"), RUBRIC_TEMPLATE)
    assert questions and set(questions) <= set(texts)  # found through the run's (compact) rubric
    assert len(texts) == len(set(texts))

    # The IFEval held-out prompts join as soon as the file is there.
    ifeval = tmp_path / "ifeval_heldout.jsonl"
    ifeval.write_text(json.dumps({"key": 1, "prompt": "Write a limerick about a cat in all capital letters.",
                                  "instruction_id_list": ["change_case:english_capital"], "kwargs": [{}]}) + "\n")
    monkeypatch.setattr("selfreward_lite.evaluation.heldout.ifeval_heldout_path", lambda: ifeval)
    assert "Write a limerick about a cat in all capital letters." in heldout_prompts(run)

    # A user's eval prompt file replaces the bundled one.
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"prompt": "How do I descale a kettle?"}) + "\n")
    run2 = create_run(tmp_path / "run2", preset="cpu", overrides={"eval_prompts_data": str(mine)})
    texts2 = heldout_prompts(run2)
    assert "How do I descale a kettle?" in texts2 and not set(eval_prompts) & set(texts2)


def test_ifeval_heldout_file_location():
    assert ifeval_heldout_path().name == "ifeval_heldout.jsonl" and ifeval_heldout_path().parent.name == "data"
