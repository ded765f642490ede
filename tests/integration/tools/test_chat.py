"""`srlite chat`: one-shot and multi-turn, driven through the CLI (in process) with stdin."""

import pytest
import torch
from helpers import invoke

from selfreward_lite.models.adapters import TRAINABLE, save_adapter
from selfreward_lite.models.hf import load_stack
from selfreward_lite.run.create import create_run
from selfreward_lite.tools.chat import load_chat

GREEDY = {"temperature": 0.0, "top_p": None, "max_new_tokens": 8, "system": None}


def srlite(*args, stdin=""):
    return invoke(*args, input=stdin)


@pytest.fixture(scope="module")
def run_with_m1(tmp_path_factory, embedded):
    """A run whose M1 adapter is a random stand-in (no training needed to test chatting)."""
    run = create_run(tmp_path_factory.mktemp("chat") / "run", preset="cpu", overrides={"dtype": "float32"})
    lm = load_stack(run.cfg, [], train_new=True)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in lm.model.named_parameters():
            if f"lora_B.{TRAINABLE}." in name:
                p.normal_(0, 0.02)
    save_adapter(lm, run.m1_dir / "adapter", "stand_in.json", {})
    return run


def test_chat_session_keeps_history_and_stops_at_exit(run_with_m1):
    chat, t = load_chat(run_with_m1.dir, None, GREEDY)
    assert t == 1  # the newest model
    first = chat.reply("Hello! Who are you?")
    second = chat.reply("Say that again, shorter.")
    assert [m["role"] for m in chat.history] == ["user", "assistant", "user", "assistant"]

    r = srlite("chat", "-d", str(run_with_m1.dir), "--temperature", "0", "--max-new-tokens", "8",
               stdin="Hello! Who are you?\n\nSay that again, shorter.\n/exit\nThis is never answered.\n")
    assert r.returncode == 0, r.stderr
    assert "Chatting with M1" in r.stderr
    assert r.stdout.strip() == f"{first}\n{second}".strip()  # two answers, same as the library's, then /exit

    r = srlite("chat", "-d", str(run_with_m1.dir), "--round", "1", "--temperature", "0", "--max-new-tokens", "8",
               "--prompt", "Hello! Who are you?")
    assert r.returncode == 0 and r.stdout.strip() == first.strip()


def test_chat_reset_eof_and_bad_round(run_with_m1):
    r = srlite("chat", "-d", str(run_with_m1.dir), "--round", "0", "--max-new-tokens", "4", stdin="Hi\n/reset\n")
    assert r.returncode == 0 and "(conversation cleared)" in r.stdout  # ends at end of input
    r = srlite("chat", "-d", str(run_with_m1.dir), "--round", "3", "--prompt", "Hi")
    assert r.returncode == 2 and "there is no M3; models available: M0..M1" in r.stderr and "Traceback" not in r.stderr


def test_chat_drops_oldest_turns_that_do_not_fit(run_with_m1):
    chat, _ = load_chat(run_with_m1.dir, 1, {**GREEDY, "max_new_tokens": 4})
    chat.max_length = 70  # room for about one exchange besides the template's system prompt
    for i in range(3):
        chat.reply(f"Message number {i}: tell me something about the number {i}.")
    assert [m["role"] for m in chat.history][::2] == ["user"] * (len(chat.history) // 2)
    assert len(chat.history) < 6  # the oldest exchanges were dropped
    assert chat.history[-2]["content"].startswith("Message number 2")
    budget = chat.max_length - 4
    assert len(chat.lm.tokenizer(chat._rendered(), add_special_tokens=False)["input_ids"]) <= budget
