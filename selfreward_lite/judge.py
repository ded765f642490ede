"""LLM-as-a-Judge: the additive 5-point rubric of Yuan et al. (2024) and score parsing.

A judgment whose score cannot be parsed is *unparsed*: it is recorded as such and never
turned into a number (public implementations silently map it to 0 or -1, which then
becomes a "rejected" answer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


def build_judge_prompt(instruction: str, response: str, template: str = RUBRIC_TEMPLATE) -> str:
    """The user message that asks the model to judge `response` to `instruction`."""
    # str.replace, not str.format: user text may contain braces.
    return template.replace("{instruction}", instruction.strip()).replace(
        "{response}", response.strip()
    )
