"""generation.StopOnText: a row ends once its *generated* text holds a stop string, however the
tokens split it; the prompt is never looked at."""

import torch

from selfreward_lite.models.generation import StopOnText


class CharTok:
    """One character per token; id 0 is a special (pad) token that decodes to nothing."""

    def batch_decode(self, rows, skip_special_tokens=True):
        return ["".join(chr(i) for i in row.tolist() if i) for row in rows]


def ids(*rows):
    width = max(len(r) for r in rows)
    return torch.tensor([[0] * (width - len(r)) + [ord(c) for c in r] for r in rows])


def test_stops_on_generated_text_only():
    prompt = ["Q: rate it.\nScore: 3\n", "Q: rate it.\nxxxxxxxxx"]  # same length; row 0's prompt holds a stop string
    stop = StopOnText(CharTok(), ["Score: 3\n", "Score: 4\n"], prompt_len=len(prompt[0]))
    assert stop(ids(*prompt), None).tolist() == [False, False]
    assert stop(ids(prompt[0] + "Good.", prompt[1] + "Fine. Score: 4"), None).tolist() == [False, False]
    assert stop(ids(prompt[0] + "Good.", prompt[1] + "Fine. Score: 4\n"), None).tolist() == [False, True]
    # the newest token may run past the stop string ("\n\n", ".\n" in real vocabularies)
    assert stop(ids(prompt[0] + "Fine. Score: 3\n\n", prompt[1] + "Fine."), None).tolist() == [True, False]
