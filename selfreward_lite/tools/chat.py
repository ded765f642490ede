"""Talk to M_t: one-shot (`srlite chat --prompt "..."`) or a multi-turn session.

    srlite chat                 # the newest model, interactive; /exit or Ctrl-D quits
    srlite chat --round 1       # M1 (after SFT); --round 0 is the bare base model
    srlite chat --prompt "Name three uses of vinegar." --temperature 0

The conversation is rendered with the model's chat template, as in training and sampling.
Input and output are passed in as functions, so the session runs the same under a terminal,
a pipe or a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import SrliteError
from ..models import generation
from ..models.cache import ModelCache
from ..run import seeds
from ..run.rundir import open_run

EXIT_COMMANDS = ("/exit", "/quit")
RESET_COMMAND = "/reset"


@dataclass
class ChatSettings:
    temperature: float  # 0 = greedy
    top_p: float
    max_new_tokens: int
    system: str | None = None  # optional system message at the start of every conversation
    top_k: int = 0  # the run's top_k (0 = off)
    repetition_penalty: float = 1.0  # the run's repetition_penalty (1.0 = off)


def settings_from(cfg, temperature: float | None = None, top_p: float | None = None,
                  max_new_tokens: int | None = None, system: str | None = None) -> ChatSettings:
    """The run's candidate-sampling settings, with any overrides; validated."""
    s = ChatSettings(
        temperature=cfg.temperature if temperature is None else temperature,
        top_p=cfg.top_p if top_p is None else top_p,
        max_new_tokens=cfg.response_max_new_tokens if max_new_tokens is None else max_new_tokens,
        system=system,
        top_k=cfg.top_k,
        repetition_penalty=cfg.repetition_penalty,
    )
    if s.temperature < 0:
        raise SrliteError(f"--temperature must be >= 0 (0 = greedy), got {s.temperature}.")
    if not 0 < s.top_p <= 1:
        raise SrliteError(f"--top-p must be in (0, 1], got {s.top_p}.")
    if s.max_new_tokens <= 0:
        raise SrliteError(f"--max-new-tokens must be > 0, got {s.max_new_tokens}.")
    return s


class Chat:
    """M_t and a conversation history."""

    def __init__(self, lm, settings: ChatSettings, seed: int, max_length: int):
        self.lm, self.settings, self.seed, self.max_length = lm, settings, seed, max_length
        self.history: list[dict] = []
        self.turns = 0

    def reset(self) -> None:
        self.history = []

    def reply(self, user_text: str) -> str:
        self.history.append({"role": "user", "content": user_text})
        text = self._rendered()
        s = self.settings
        (sample,), = generation.generate(self.lm, [text], 1, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                         repetition_penalty=s.repetition_penalty,
                                         max_new_tokens=s.max_new_tokens, batch_size=1,
                                         seed=seeds.chat_turn(self.seed, self.turns))
        self.turns += 1
        self.history.append({"role": "assistant", "content": sample.text})
        return sample.text

    def _rendered(self) -> str:
        """The conversation as the model sees it; the oldest turns go when it would not fit."""
        system = [{"role": "system", "content": self.settings.system}] if self.settings.system else []
        budget = self.max_length - self.settings.max_new_tokens
        while True:
            text = generation.render_chat(self.lm.tokenizer, system + self.history)
            fits = len(generation.prompt_ids(self.lm.tokenizer, text)) <= budget
            if fits or len(self.history) <= 1:
                return text
            self.history = self.history[2:]  # drop the oldest user/assistant exchange


def load_chat(run_dir: Path, t: int | None, settings_overrides: dict) -> tuple[Chat, int]:
    """M_t (newest when t is None) ready to chat; returns (chat, t)."""
    run = open_run(run_dir)
    t = run.check_model(t, allow_base=True)
    settings = settings_from(run.cfg, **settings_overrides)
    lm = ModelCache(run).get(t)
    return Chat(lm, settings, seed=run.cfg.seed, max_length=run.cfg.max_length), t


def chat_loop(chat: Chat, read_line: Callable[[], str | None], write: Callable[[str], None]) -> int:
    """Read user turns until /exit, /quit or end of input (read_line returns None or raises
    EOFError, as `input` does); returns turns answered."""
    answered = 0
    while True:
        try:
            line = read_line()
        except EOFError:
            line = None
        if line is None or line.strip() in EXIT_COMMANDS:
            return answered
        text = line.strip()
        if not text:
            continue
        if text == RESET_COMMAND:
            chat.reset()
            write("(conversation cleared)")
            continue
        write(chat.reply(text))
        answered += 1
