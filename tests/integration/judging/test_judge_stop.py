"""A judgment ends at its conclusion: on the embedded model and its real tokenizer, generation with
the judge's stop strings ends right after a complete "Score: N" line and counts as finished, while
the same text left to run into the token budget is unfinished, hence "truncated" (never scored)."""

from selfreward_lite.config import preset_config
from selfreward_lite.judging.engine import sampling
from selfreward_lite.judging.rubric import JUDGE_STOP_STRINGS, parse_judgment
from selfreward_lite.models.generation import generate
from selfreward_lite.models.hf import load_stack

# A pattern even a 135M model continues greedily with "Score: 3\n" again and again.
TEXT = "The answer is relevant and correct.\nScore: 3\nThe answer is relevant and correct.\nScore: 3\n" * 3


def test_judgment_stops_after_its_score_line_and_is_finished(embedded):
    lm = load_stack(preset_config("cpu", dtype="float32"), [])
    common = dict(temperature=0, top_p=1.0, max_new_tokens=40, batch_size=4, seed=0)
    [[stopped]] = generate(lm, [TEXT], 1, stop_strings=list(JUDGE_STOP_STRINGS), **common)
    assert stopped.finished and stopped.text.endswith("Score: 3") and stopped.n_tokens < 40
    assert parse_judgment(stopped.text, stopped.finished).score == 3
    [[runaway]] = generate(lm, [TEXT], 1, **common)
    assert not runaway.finished and runaway.n_tokens == 40 and "Score: 3" in runaway.text
    assert parse_judgment(runaway.text, runaway.finished).status == "truncated"


def test_the_judge_samples_with_the_stop_strings():
    assert sampling(preset_config("cpu"))["stop_strings"] == [f"Score: {n}\n" for n in range(6)]
