"""The chat loop's commands and end of input, with a stand-in session (no model)."""

import pytest

from selfreward_lite.tools.chat import chat_loop


class Echo:
    def __init__(self):
        self.turns, self.resets = [], 0

    def reply(self, text):
        self.turns.append(text)
        return f"echo {text}"

    def reset(self):
        self.resets += 1


@pytest.mark.parametrize("end", ["eof-none", "eof-raise", "/exit"])
def test_chat_loop_answers_until_end_of_input(end):
    lines = iter(["hello", "  ", "/reset", "again"])
    written = []

    def read_line():
        line = next(lines, None)
        if line is None and end == "eof-raise":
            raise EOFError  # what `input` does at Ctrl-D
        return end if line is None and end == "/exit" else line

    session = Echo()
    assert chat_loop(session, read_line, written.append) == 2
    assert session.turns == ["hello", "again"] and session.resets == 1
    assert written == ["echo hello", "(conversation cleared)", "echo again"]
