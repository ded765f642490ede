"""LLM-as-a-Judge: the additive 5-point rubric of Yuan et al. (2024) and score parsing.

A judgment whose score cannot be parsed is *unparsed*: it is recorded as such and never
turned into a number (public implementations silently map it to 0 or -1, which then
becomes a "rejected" answer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SrliteError

# The paper's additive prompt (Fig. 2), which reached 65.1% pairwise accuracy against 26.6%
# for a multiple-choice prompt. {instruction} and {response} are filled in.
RUBRIC_TEMPLATE = """Review the user's question and the corresponding response using the additive 5-point scoring system described below. Points are accumulated based on the satisfaction of each criterion:
- Add 1 point if the response is relevant and provides some information related to the user's inquiry, even if it is incomplete or contains some irrelevant content.
- Add another point if the response addresses a substantial portion of the user's question, but does not completely resolve the query or provide a direct answer.
- Award a third point if the response answers the basic elements of the user's question in a useful way, regardless of whether it seems to have been written by an AI Assistant or if it has elements typically found in blogs or search results.
- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, addressing the user's question directly and comprehensively, and is well-organized and helpful, even if there is slight room for improvement in clarity, conciseness or focus.
- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI Assistant, without extraneous information, reflecting expert knowledge, and demonstrating a high-quality, engaging, and insightful answer.

User: {instruction}
<response>{response}</response>

After examining the user's instruction and the response:
- Briefly justify your total score, up to 100 words.
- Conclude with the score using the format: "Score: <total points>"
Remember to assess from the AI Assistant perspective, utilizing web search knowledge as necessary. To evaluate the response in alignment with this additive scoring model, we'll systematically attribute points based on the outlined criteria."""


# The same five additive criteria in a third of the tokens: the CPU preset's default, since
# judge prompts dominate the cost of M1's SFT and of the judging stage on a small machine.
COMPACT_TEMPLATE = """Score the response to the user's question with the additive 5-point system: add 1 point for each criterion it meets.
1. It is relevant and gives some information related to the question.
2. It addresses a substantial part of the question.
3. It answers the basic elements of the question in a useful way.
4. It is clearly written from an AI Assistant's perspective, direct, comprehensive, well organised and helpful.
5. It is impeccably tailored to the question, without extraneous information, expert, engaging and insightful.

User: {instruction}
<response>{response}</response>

Briefly justify your total score, up to 100 words, then conclude with "Score: <total points>"."""

RUBRICS = {"additive": RUBRIC_TEMPLATE, "additive-compact": COMPACT_TEMPLATE}


def build_judge_prompt(instruction: str, response: str, template: str = RUBRIC_TEMPLATE) -> str:
    """The user message that asks the model to judge `response` to `instruction`."""
    # str.replace, not str.format: user text may contain braces.
    return template.replace("{instruction}", instruction.strip()).replace(
        "{response}", response.strip()
    )


# "Score: 4", "**Score:** 4", "score = 4/5", "Score: 4 points". The last match wins: the rubric
# asks the judge to *conclude* with the score, and earlier mentions are often sub-totals.
_SCORE_RE = re.compile(r"score\s*\**\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
MAX_SCORE = 5

# Where a judgment ends: right after a complete score line in the format the rubric asks for.
# Without them a judge that wrote its "Score: N" and kept talking until the token budget ran out
# would be unfinished, hence "truncated" and unparsed, though it had concluded. (A judgment that
# ends at EOS ends there anyway; other spellings, e.g. "**Score:** 4", still end at EOS.)
JUDGE_STOP_STRINGS = tuple(f"Score: {n}\n" for n in range(MAX_SCORE + 1))


TRUNCATED = "truncated"  # the judgment ran out of tokens before it ended
NO_SCORE = "no score"  # the judgment ended without a score line


@dataclass(frozen=True)
class ParsedScore:
    score: int | None  # None when unparsed
    status: str  # "ok", "no score", "out of range", "not an integer", "truncated"


def parse_score(text: str) -> ParsedScore:
    """The judge's final `Score: N`, or an unparsed result that says why."""
    matches = _SCORE_RE.findall(text or "")
    if not matches:
        return ParsedScore(None, NO_SCORE)
    raw = matches[-1]
    value = float(raw)
    if not value.is_integer():
        return ParsedScore(None, "not an integer")
    if not 0 <= value <= MAX_SCORE:
        return ParsedScore(None, "out of range")
    return ParsedScore(int(value), "ok")


def parse_judgment(text: str, finished: bool) -> ParsedScore:
    """The score of a generated judgment. One cut off by the token budget is unparsed ("truncated")
    even when it contains a `Score: N`: that number may be a sub-total or an opening guess, not
    the conclusion the rubric asks for. (A judgment ends at EOS or right after a complete
    "Score: N" line, see JUDGE_STOP_STRINGS, so a concluded judgment is finished.)"""
    return parse_score(text) if finished else ParsedScore(None, TRUNCATED)


def split_judge_prompt(text: str, template: str = RUBRIC_TEMPLATE) -> tuple[str, str] | None:
    """(instruction, response) if `text` is `template` filled in, else None."""
    head, rest = template.split("{instruction}")
    middle, tail = rest.split("{response}")
    if not (text.startswith(head) and text.endswith(tail)):
        return None
    body = text[len(head) : len(text) - len(tail)]
    instruction, sep, response = body.partition(middle)
    return (instruction, response) if sep else None


def load_rubric(rubric: str) -> str:
    """The judge template: a named rubric ("additive", "additive-compact") or a file with both placeholders."""
    if rubric in RUBRICS:
        return RUBRICS[rubric]
    p = Path(rubric).expanduser()
    if not p.is_file():
        raise SrliteError(f"{p}: rubric is neither {' nor '.join(map(repr, RUBRICS))} nor an existing file.")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the prompt
    except UnicodeDecodeError:
        raise SrliteError(f"{p}: rubric file is not valid UTF-8.") from None
    for placeholder in ("{instruction}", "{response}"):
        if placeholder not in text:
            raise SrliteError(f"{p}: rubric file must contain the placeholder {placeholder}.")
    return text


def mean_score(scores: list[int | None]) -> float | None:
    """Mean of the parsed judgments of one candidate; None if none parsed."""
    parsed = [s for s in scores if s is not None]
    return sum(parsed) / len(parsed) if parsed else None
