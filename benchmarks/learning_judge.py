"""The `python:` judge of benchmarks/learning_check.py: it rewards short answers, a property that
IFEval's own verifier checks (`length_constraints:number_words`, relation "less than").

    srlite init --set judge=python:benchmarks/learning_judge.py:under_40

An answer of fewer than LIMIT words scores 5. A longer one scores at most 4, falling linearly to 0
at 2.5 x LIMIT words, so among a prompt's candidates the shorter long answer still wins and pairs
form even when no candidate is short. An empty answer scores 0 (otherwise the cheapest way to be
short). Words are counted as lm-eval's `count_words` counts them (regex \\w+), so "score 5" and
"passes the verifier" are the same thing. Self-contained: srlite imports this file by path.
"""

import re

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """lm-eval's IFEval word count: nltk.tokenize.RegexpTokenizer(r"\\w+")."""
    return len(_WORD.findall(text))


def words_under(limit: int):
    """A judge function rewarding answers of fewer than `limit` words."""

    def score(prompt: str, response: str) -> float:
        words = count_words(response)
        if words == 0:
            return 0.0
        if words < limit:
            return 5.0
        return round(max(0.0, 4.0 * (1 - (words - limit) / (1.5 * limit))), 2)

    score.__name__ = f"under_{limit}"
    return score


under_40 = words_under(40)  # the full learning check
under_12 = words_under(12)  # its reduced version (answers of a few dozen tokens)
