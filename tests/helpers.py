"""Helpers shared by the tests: `from helpers import ...` (tests/ is on sys.path: its conftest.py is there).

- `invoke`: the CLI in process (Typer's CliRunner); `srlite`: the CLI in a subprocess, for what
  needs a process of its own (signals, kills, a fresh interpreter, its environment);
- `tree_digest`: to check that a failed command left a folder exactly as it was;
- stand-in adapters (`random_adapter`, `make_nonzero_m1`), the DPO test pairs, and
  `completion_logprobs`, an independent computation of the DPO reference;
- `FakeFastLanguageModel` / `install_fake_unsloth`: a stand-in for the `unsloth` package on CPU.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import traceback
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

TESTS = Path(__file__).resolve().parent
BAD_INPUTS = TESTS / "bad_inputs"
FIXTURES = TESTS / "fixtures"
ROOT = TESTS.parent


# --- the CLI ----------------------------------------------------------------------------------

def invoke(*args, input: str | None = None, env: dict | None = None):
    """Run `srlite ARGS` in this process; returns (returncode, stdout, stderr) like subprocess.run.

    An exception that escaped the CLI is appended to stderr as a traceback, so `"Traceback" not in
    stderr` means what it means for a real process.
    """
    from typer.testing import CliRunner

    from selfreward_lite.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=stderr)


def srlite(*args, env=None, timeout=120, **kw):
    """Run the real CLI in a subprocess (`python -m selfreward_lite ...`)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "selfreward_lite", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, check=False, **kw)


def write_lines(path, lines):
    """A JSONL file: each line a string as is, or an object as JSON."""
    import json

    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def tensorboard_scalars(folder) -> dict:
    """tag -> [(step, value)] of the TensorBoard event files in `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tree_digest(path: Path) -> dict:
    """sha256 of every file under `path`, by relative name."""
    path = Path(path)
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# --- stand-in models and adapters -------------------------------------------------------------

def random_adapter(cfg, below, out, seed, std=0.05, meta_name="stand_in.json", meta=None):
    """A stand-in for a trained adapter on top of `below`: B drawn at random so it changes the model."""
    import torch

    from selfreward_lite.models.adapters import TRAINABLE, save_adapter
    from selfreward_lite.models.hf import load_stack

    lm = load_stack(cfg, below, train_new=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in lm.model.named_parameters():
            if f"lora_B.{TRAINABLE}." in name:
                p.normal_(0, std)
    save_adapter(lm, out, meta_name, {"seed": seed} if meta is None else meta)


def make_nonzero_m1(cfg, out):
    """Stand-in for the SFT adapter: a LoRA adapter with random non-zero B."""
    random_adapter(cfg, [], out, seed=0, std=0.02, meta_name="sft.json", meta={"stand_in": True})


# A round's preference pairs (prompt, chosen, rejected), for the pairs export.
PAIRS_QA = [
    ("What is the boiling point of water at sea level?", "100 degrees Celsius (212 °F).", "It depends, maybe 50."),
    ("Name a primary color.", "Red.", "Purple is a primary color of light and paint alike, and so is green."),
    ("How many legs does a spider have?", "Eight.", "Six, like all insects."),
    ("Translate 'thank you' into French.", "Merci.", "Gracias."),
]

# DPO on a stack: four short pairs, and settings that train them in a few seconds.
STACK_PAIRS = [
    {"id": f"r-p{i}-pair", "prompt": q, "chosen": good, "rejected": bad}
    for i, (q, good, bad) in enumerate([
        ("What is the capital of France?", "The capital of France is Paris.", "France is a country in Europe with many cities."),
        ("Name a primary color.", "Red is a primary color.", "Colors are nice."),
        ("How many legs does a spider have?", "A spider has eight legs.", "Spiders are insects with six legs."),
        ("What is 3 + 4?", "3 + 4 = 7.", "It is probably 12."),
    ])
]


def stack_cfg(folder: Path):
    """Settings for DPO on a stack, on a tiny random-weight Llama (tiny_models.tiny_chatml) in `folder`:
    the stacking, reference and checkpoint mechanics do not depend on what the model knows, and each
    step costs milliseconds instead of the embedded model's seconds."""
    from tiny_models import tiny_chatml

    from selfreward_lite.config import preset_config

    return preset_config("cpu", model=tiny_chatml(folder), dtype="float32", dpo_epochs=2.0, dpo_batch_size=2,
                         train_micro_batch_size=2, dpo_learning_rate=5e-4, lora_r=4, lora_alpha=8)


def _token_ids(tok, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def completion_logprobs(lm, prompts: Sequence[list[dict]], completions: Sequence[list[dict]],
                        batch_size: int = 8) -> list[float]:
    """Sum of log p(completion tokens | prompt) under the active model, tokenised as TRL does.

    Checks the DPO reference independently of the trainer.
    """
    import torch

    tok, model = lm.tokenizer, lm.model
    seqs = []
    for p, c in zip(prompts, completions):
        p_ids = _token_ids(tok, p, add_generation_prompt=True)
        full = _token_ids(tok, list(p) + list(c), add_generation_prompt=False)
        plen = 0
        while plen < min(len(p_ids), len(full)) and p_ids[plen] == full[plen]:
            plen += 1
        seqs.append((full, plen))
    out: list[float] = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        width = max(len(s) for s, _ in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (s, _) in enumerate(chunk):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(logits.device))[..., 0]
        for r, (s, plen) in enumerate(chunk):
            out.append(float(logp[r, plen - 1 : len(s) - 1].sum()))
    return out


# Evaluation settings small enough for seconds on CPU.
EVAL_TINY = dict(lora_r=4, lora_alpha=8, judge_samples=2, judge_max_new_tokens=12, eval_questions=1, eval_prompts=2,
                 eval_max_new_tokens=12, gen_batch_size=8, ifeval_prompts=3, ifeval_max_new_tokens=12)


def fake_round(run, t):
    """Round t's artifacts up to a (stand-in) adapter, as if the stages had run."""
    import shutil

    from selfreward_lite.loop.stages import summarize_round
    from selfreward_lite.run.files import write_json, write_jsonl

    rd = run.round_dir(t)
    write_jsonl(rd / "prompts.jsonl", [{"id": f"r{t}-p0000", "prompt": "Name a fruit."}])
    write_json(rd / "prompts_stats.json", {"generated": 3, "kept": 1, "dropped": {"too short": 1, "near duplicate": 1}})
    cands = [{"id": f"r{t}-p0000-c{k}", "prompt_id": f"r{t}-p0000", "prompt": "Name a fruit.", "response": r,
              "finished": True, "tokens": 3} for k, r in enumerate(["An apple.", "Car."])]
    write_jsonl(rd / "candidates.jsonl", cands)
    write_jsonl(rd / "judgments.jsonl", [
        {"id": f"{c['id']}-j0", "candidate_id": c["id"], "prompt_id": c["prompt_id"], "text": f"Score: {s}",
         "score": s, "parse": "ok"} for c, s in zip(cands, (4, 1))])
    write_jsonl(rd / "pairs.jsonl", [{"id": f"r{t}-p0000-pair", "prompt": "Name a fruit.", "chosen": "An apple.",
                                      "rejected": "Car.", "chosen_score": 4.0, "rejected_score": 1.0}])
    write_json(rd / "pairs_stats.json", {"kept": 1, "dropped": {"tie (best == worst score)": 2}})
    shutil.copytree(run.m1_dir / "adapter", rd / "adapter")  # a second random adapter would cost another model load
    log = [{"step": s, "loss": 0.69 - 0.05 * s, "rewards/margins": 0.02 * s} for s in (1, 2, 3)]
    write_json(rd / "adapter" / "dpo.json", {"steps": 3, "first_loss": 0.64, "last_loss": 0.54, "reward_margin": 0.06,
                                             "reward_accuracy": 1.0, "log": log})
    summarize_round(run, t, rd / "metrics.json")


# --- a stand-in for the `unsloth` package -----------------------------------------------------

def fused_mlp(self, x):
    """Stand-in for Unsloth's fused LoRA MLP kernel: one active adapter or an error, as in Unsloth."""
    if len(self.gate_proj.active_adapters) != 1:
        raise ValueError("Unsloth: LoRA parameter extraction requires a single active adapter.")
    return type(self).forward(self, x)


class FakeFastLanguageModel:
    """Loads with transformers and, like Unsloth's fused LoRA kernels, installs an MLP forward that
    raises when more than one adapter is active; records every call."""

    calls: list = []

    @staticmethod
    def from_pretrained(model_name, **kwargs):
        from transformers import AutoModelForCausalLM

        FakeFastLanguageModel.calls.append(("from_pretrained", kwargs))
        return AutoModelForCausalLM.from_pretrained(model_name, dtype=kwargs["dtype"]), "unsloth's tokenizer"

    @staticmethod
    def get_peft_model(model, r, target_modules, lora_alpha, lora_dropout, bias, use_gradient_checkpointing,
                       random_state):
        from peft import LoraConfig, get_peft_model

        FakeFastLanguageModel.calls.append(("get_peft_model", r))
        config = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules,
                            bias=bias, task_type="CAUSAL_LM")
        return FakeFastLanguageModel.patch_peft_model(get_peft_model(model, config), use_gradient_checkpointing)

    @staticmethod
    def patch_peft_model(model, use_gradient_checkpointing):
        FakeFastLanguageModel.calls.append(("patch_peft_model", list(model.active_adapters)))
        for layer in model.get_base_model().model.layers:
            layer.mlp.forward = types.MethodType(fused_mlp, layer.mlp)
        model._unsloth_gradient_checkpointing = use_gradient_checkpointing
        return model

    @staticmethod
    def for_inference(model):
        FakeFastLanguageModel.calls.append(("for_inference",))
        model.eval()
        return model

    @staticmethod
    def for_training(model, use_gradient_checkpointing=None):
        FakeFastLanguageModel.calls.append(("for_training", use_gradient_checkpointing))
        model.train()
        return model


def install_fake_unsloth(monkeypatch):
    """Make `import unsloth` give the stand-in (for this test); returns FakeFastLanguageModel."""
    module = types.ModuleType("unsloth")
    module.FastLanguageModel = FakeFastLanguageModel
    FakeFastLanguageModel.calls = []
    monkeypatch.setitem(sys.modules, "unsloth", module)
    return FakeFastLanguageModel
