"""A `python:` judge: a verifiable reward instead of an LLM's opinion.

    srlite init --set judge=python:examples/python_judge.py:score         # the round's judge
    srlite eval --judge python:examples/python_judge.py:score             # or the win rate's

srlite calls score(prompt, response) once per answer and expects a number in [0, 5] (int or float),
or None when the answer cannot be scored (recorded as unparsed, never as a 0). A number out of range,
anything else returned, or an exception is recorded as unparsed too, with the reason. The file is
imported once per process; keep it self-contained (it is not on sys.path, so import only installed
packages). It must not depend on a seed: srlite asks once per answer.

This one rewards answers of 20 to 60 words that end in a full stop: a length band and a format,
both checkable without a judge model.
"""


def score(prompt: str, response: str) -> float | None:
    words = len(response.split())
    if words == 0:
        return None
    in_band = 20 <= words <= 60
    closeness = 1.0 if in_band else max(0.0, 1 - min(abs(words - 20), abs(words - 60)) / 40)
    return round(4 * closeness + (1.0 if response.rstrip().endswith(".") else 0.0), 2)
