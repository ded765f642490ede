"""Expected-score judging (judging/expected.py): the score is the probability-weighted mean of the
digits 0..5 at the step that wrote the final score's digit; an unparsed judgment stays unparsed."""

import pytest
import torch

from selfreward_lite.config import preset_config
from selfreward_lite.errors import SrliteError
from selfreward_lite.judging import engine
from selfreward_lite.judging.expected import SCORE_STOP_STRINGS, ScoreReader, digit_step, digit_tokens
from selfreward_lite.models.generation import Sample


class CharTok:
    """One character per token (id = code point); id 0 is unknown."""
    unk_token_id = 0

    def convert_tokens_to_ids(self, form):
        return ord(form) if len(form) == 1 else 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def sample(text, probs_at_digit, finished=True):
    """A generated judgment whose every step puts `probs_at_digit` (over 0..5) on the digits."""
    tok = CharTok()
    ids = tok(text)["input_ids"]
    reader = ScoreReader.for_tokenizer(tok)
    steps = torch.full((len(ids), len(reader.token_ids)), 1 / 6)
    steps[digit_step(tok, ids)] = torch.tensor(probs_at_digit)
    return Sample(text, finished, len(ids), token_ids=ids, step_probs=steps)


def test_digit_tokens_and_step():
    tok = CharTok()
    assert digit_tokens(tok) == {d: [48 + d] for d in range(6)}
    ids = tok("Good. Score: 2 then Score: 4")["input_ids"]
    assert "Good. Score: 2 then Score: 4"[digit_step(tok, ids)] == "4"  # the final score's digit
    assert digit_step(tok, tok("no score here")["input_ids"]) is None


def test_expected_score_is_the_probability_weighted_mean():
    tok, reader = CharTok(), ScoreReader.for_tokenizer(CharTok())
    s = sample("Relevant, useful. Score: 4", [0, 0, 0, 0.25, 0.5, 0.25])
    assert reader.score(tok, s) == (pytest.approx(4.0), "ok", True)
    s = sample("Relevant. Score: 3", [0, 0, 0.2, 0.6, 0.2, 0.0])
    assert reader.score(tok, s)[0] == pytest.approx(3.0)
    # probabilities left on other tokens are renormalised away: only 0..5 count
    s = sample("Relevant. Score: 5", [0, 0, 0, 0, 0.1, 0.3])
    assert reader.score(tok, s)[0] == pytest.approx((4 * 0.1 + 5 * 0.3) / 0.4)


def test_unparsed_and_truncated_judgments_stay_unparsed():
    tok, reader = CharTok(), ScoreReader.for_tokenizer(CharTok())
    assert reader.score(tok, sample("Score: 4", [0, 0, 0, 0, 1, 0], finished=False)) == (None, "truncated", False)
    s = Sample("It is fine.", True, 11, token_ids=CharTok()("It is fine.")["input_ids"], step_probs=torch.zeros(11, 6))
    assert reader.score(tok, s) == (None, "no score", False)
    # no recorded probabilities: the written integer, flagged as not expected
    assert reader.score(tok, Sample("Score: 2", True, 8)) == (2.0, "ok", False)


def test_records_config_and_stop_strings():
    cfg = preset_config("cpu", judge_scoring="expected")
    assert engine.samples_per_answer(cfg) == 1 and engine.samples_per_answer(preset_config("cpu")) == 2
    assert engine.sampling(cfg)["stop_strings"] == list(SCORE_STOP_STRINGS) == [f"Score: {n}" for n in range(6)]
    recs = engine.parse_judgments({"id": "a"}, [sample("Fine. Score: 4", [0, 0, 0, 0.5, 0.5, 0])],
                                  ScoreReader.for_tokenizer(CharTok()), CharTok())
    assert recs == [{"item_id": "a", "sample": 0, "text": "Fine. Score: 4", "finished": True, "score": pytest.approx(3.5),
                     "parse": "ok", "expected": True}]
    with pytest.raises(SrliteError, match="judge_scoring"):
        preset_config("cpu", judge_scoring="mean")
    with pytest.raises(SrliteError, match="gives none"):
        preset_config("cpu", judge_scoring="expected", judge="openai:http://localhost:8000/v1#m")


def test_a_completion_is_read_after_its_lead():
    """A completed judgment's generated part is only the number; "Score:" came from the cue (engine.complete_scores)."""
    tok, reader = CharTok(), ScoreReader.for_tokenizer(CharTok())
    ids = tok(" 4")["input_ids"]
    assert digit_step(tok, ids, lead="Score:") == 1 and digit_step(tok, ids) is None
    steps = torch.full((2, 6), 1 / 6)
    steps[1] = torch.tensor([0, 0, 0, 0.5, 0.5, 0])
    assert reader.score(tok, Sample(" 4", True, 2, token_ids=ids, step_probs=steps), lead="Score:") == (
        pytest.approx(3.5), "ok", True)
