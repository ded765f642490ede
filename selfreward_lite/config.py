"""The run configuration: one typed object, saved resolved in the run directory.

`srlite init` picks a preset sized for the hardware (cpu: finishes 3 rounds on the embedded
model in minutes; gpu: the paper's settings where they fit a 24 GB card), writes every field
to `config.json`, and every later command reads that file back. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SrliteError
from .judging.spec import parse_judge_spec
from .run.files import write_json

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class Config:
    # --- model ---
    model: str = "embedded"  # "embedded" (bundled SmolLM2-135M-Instruct), a Hugging Face id, or a local path
    preset: str = "cpu"  # which preset filled the defaults: "cpu" or "gpu" (informational)
    quantize: str = "auto"  # "4bit" (NF4 via bitsandbytes), "none", or "auto" (4bit when CUDA is present)
    device: str = "auto"  # "auto", "cpu" or "cuda"
    backend: str = "auto"  # "unsloth" (CUDA + the unsloth extra: fused 4-bit LoRA kernels), "hf" (transformers + PEFT), or "auto" (unsloth where it can run)
    dtype: str = "auto"  # "auto" (bfloat16 on CUDA and on CPUs with native bf16, else float32), "bfloat16", "float32"
    trust_remote_code: bool = False  # allow model repos to run their own Python code (off: safety)
    seed: int = 0  # seeds every sampling and training stage (stage seeds derive from it)
    # --- seed data (JSONL path, Hugging Face dataset id, or "bundled") ---
    ift_data: str = "bundled"  # instruction-following seed: {"messages": [user, assistant]} per line
    eft_train_data: str = "bundled"  # judge-training seed: rubric prompt -> justification + "Score: N"
    eft_eval_data: str = "bundled"  # held-out judge examples, never trained on
    rubric: str = "additive-compact"  # judge prompt: "additive" (paper), "additive-compact" (same criteria, fewer tokens), or a file with {instruction} and {response}
    # --- LoRA ---
    lora_r: int = 8  # rank of each round's adapter
    lora_alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.1  # dropout on the LoRA path (paper: dropout 0.1)
    lora_target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))  # layers that get LoRA
    # --- M1: supervised fine-tuning on IFT + EFT ---
    sft_epochs: float = 2.0  # passes over the seed data
    sft_learning_rate: float = 3e-4  # peak LR, cosine decay (paper: 5.5e-6 full fine-tune; LoRA needs more)
    sft_batch_size: int = 8  # effective batch (micro batch x gradient accumulation); paper: 16
    # --- self-instruction (new prompts) ---
    prompts_per_round: int = 12  # new prompts wanted each round (after filtering)
    prompt_shots: int = 8  # examples in the few-shot prompt (paper: 8)
    prompt_shots_generated: int = 2  # of which taken from prompts generated earlier (paper: 2)
    prompt_temperature: float = 0.6  # paper: 0.6
    prompt_top_p: float = 0.9  # paper: 0.9
    prompt_max_new_tokens: int = 64  # a longer generated prompt is cut and then filtered as over-long
    prompt_min_words: int = 3  # shorter prompts are dropped
    prompt_max_words: int = 80  # longer prompts are dropped
    prompt_max_rouge: float = 0.7  # drop a prompt whose ROUGE-L F vs any seed/kept prompt is >= this
    prompt_max_attempts: int = 4  # generation attempts per wanted prompt before giving up
    # --- candidates ---
    n_candidates: int = 4  # responses sampled per prompt (paper: N = 4)
    temperature: float = 0.7  # paper: 0.7
    top_p: float = 0.9  # paper: 0.9
    top_k: int = 0  # sample only from the k most likely tokens, in every sampling stage; 0 = off (HF's default 50 and a model's own generation_config never apply)
    repetition_penalty: float = 1.0  # HF's repetition penalty in every sampling stage (> 1 discourages repeats); 1.0 = off
    response_max_new_tokens: int = 96  # token budget of a candidate response
    # --- judging ---
    judge: str = "self"  # who scores the round's candidates: "self" (M_t, the paper), "m<N>", a model folder, "python:FILE.py:FUNCTION" or "openai:BASE_URL#MODEL" (judging/spec.py)
    judge_samples: int = 2  # judgments per candidate, averaged (paper: 3)
    judge_temperature: float = 0.7  # sampling temperature of the judge
    judge_top_p: float = 0.9  # nucleus sampling of the judge
    judge_max_new_tokens: int = 96  # token budget of one judgment (a judgment stops at its "Score: N" line; one cut off by the budget is unparsed, "truncated")
    judge_scoring: str = "sampled"  # "sampled": judge_samples judgments per answer, their "Score: N" averaged (the paper); "expected": one justification, score = probability-weighted mean of the tokens 0-5 at its "Score:" (continuous; model judges only)
    judge_complete_score: bool = True  # a model judge's judgment that ends without a "Score: N" is continued from an appended "\nScore:" (a few tokens; recorded "completed"); false: it stays unparsed, "no score" (the paper)
    judge_min_parsed: int = 1  # a candidate needs at least this many parsed judgments (of judge_samples) to be ranked
    judge_concurrency: int = 4  # requests in flight at once to an openai: judge
    judge_timeout: float = 120.0  # seconds to connect, and to wait for each read, of one request to an openai: judge
    judge_max_retries: int = 5  # retries of one request to an openai: judge after a connection error, timeout, 429 or 5xx (exponential back-off)
    judge_api_key_env: str = "OPENAI_API_KEY"  # NAME of the environment variable holding an openai: judge's API key (unset: no key sent)
    # --- pairs ---
    pair_min_margin: float = 0.0  # keep a pair only if chosen - rejected mean score > this (ties always dropped)
    length_control_margin: float | None = None  # off (null); a number >= 0: the chosen answer is the shortest of those scoring within this of the best (Meta-Rewarding's length control)
    # --- DPO ---
    dpo_beta: float = 0.1  # paper: 0.1
    dpo_learning_rate: float = 2e-4  # peak LR, cosine decay (paper: 1e-6 full fine-tune; few pairs and LoRA need more)
    dpo_epochs: float = 2.0  # passes over the round's pairs
    dpo_batch_size: int = 4  # effective batch; paper: 16
    warmup_ratio: float = 0.0  # share of each training's (SFT, DPO) optimizer steps with a linear LR warm-up, in [0, 1), rounded down
    # --- memory / speed ---
    max_length: int = 1024  # longest training sequence in tokens (prompt + response)
    gen_batch_size: int = 32  # sequences per batched `generate` call
    train_micro_batch_size: int = 4  # sequences per forward/backward; the rest is gradient accumulation
    gradient_checkpointing: bool = False  # trade compute for memory (on for GPU)
    checkpoint_steps: int = 10  # save training state every N optimizer steps, so a killed SFT/DPO continues there (0: never)
    # --- tracking ---
    report_to: str = "none"  # log training curves and round metrics: "none", "tensorboard" or "wandb" (under run_dir/logs)
    # --- evaluation (srlite eval / report; evaluation/) ---
    eval_each_round: bool = True  # at the end of each round, measure judge quality and the win rate of M_t+1 vs M_t
    eval_questions: int = 2  # EFT eval questions (each with its ranked answers) used for judge quality; 0 = all
    eval_prompts: int = 4  # held-out prompts answered by each model for the win rate; 0 = all
    eval_prompts_data: str = "bundled"  # the held-out prompt set: "bundled" or a JSONL file of {"prompt": ...}
    eval_max_new_tokens: int = 64  # token budget of an eval answer and of a pairwise verdict
    winrate_judge: str = "m1"  # who judges M_t+1 vs M_t: a fixed model ("m<N>", a model folder), "python:...", "openai:...", or "self" (M_t+1: favours itself)
    # --- IFEval-format evaluation (evaluation/ifeval_run.py; needs the `ifeval` extra, lm-eval's verifiers) ---
    ifeval_each_round: bool = True  # at the end of each round, M_t and M_t+1 answer IFEval-format prompts (greedy) scored by program; skipped with a notice if lm-eval is missing
    ifeval_data: str = "bundled"  # IFEval-schema JSONL: "bundled" (76 held-out prompts written for srlite) or a path, e.g. google/IFEval's input_data.jsonl
    ifeval_prompts: int = 30  # prompts of ifeval_data each model answers, evenly spaced through the file; 0 = all
    ifeval_max_new_tokens: int = 128  # token budget of an IFEval answer (lm-eval uses 1280; a cut answer is scored as it stands)


# Resuming with changed settings (see preflight.check_drift): fields that only change speed,
# memory or where things run may change at any time; the fields every model of the run
# depends on are fixed once M1 exists; all others are fixed while a round is in progress
# (a round's artifacts must come from one setting) and may change between rounds.
SAFE_TO_CHANGE = frozenset({
    "preset", "device", "gen_batch_size", "train_micro_batch_size", "gradient_checkpointing", "checkpoint_steps",
    "backend", "report_to", "eval_each_round", "eval_questions", "eval_prompts", "eval_prompts_data", "eval_max_new_tokens",
    "winrate_judge",  # evaluations are cached under a hash of their settings, apart from the round's artifacts
    "ifeval_each_round", "ifeval_data", "ifeval_prompts", "ifeval_max_new_tokens",
    "judge_concurrency", "judge_timeout", "judge_max_retries", "judge_api_key_env",  # how an endpoint is reached
})
RUN_WIDE = frozenset({
    "model", "quantize", "dtype", "trust_remote_code", "seed", "ift_data", "eft_train_data", "eft_eval_data",
    "rubric", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "sft_epochs", "sft_learning_rate",
    "sft_batch_size", "max_length",
})

PRESETS: dict[str, dict[str, Any]] = {
    # Sized so `srlite init && srlite iterate --rounds 3` on the embedded model takes < 20 min on 2 cores.
    "cpu": {},
    # The paper's settings where they fit one 24 GB GPU with a 4-bit 7-8B model.
    "gpu": {
        "preset": "gpu",
        "rubric": "additive",
        "lora_r": 16,
        "lora_alpha": 32,
        # LoRA scale here is alpha/r = 2; recipes below at alpha/r = 1 take about twice our LR for the same step.
        "sft_epochs": 3.0,  # transformers/TRL default num_train_epochs; ~4.8k seed records / 16 = ~300 steps an epoch
        "sft_learning_rate": 1e-4,  # = 2e-4 at alpha/r 1: Oxen-AI/Self-Rewarding-Language-Models src/srlm/trainer.py (Mistral-7B LoRA SFT), TRL docs peft_integration ("~10x the full fine-tuning rate")
        "sft_batch_size": 16,
        "prompts_per_round": 512,
        "prompt_max_new_tokens": 128,
        "prompt_max_words": 200,
        "response_max_new_tokens": 512,
        "judge_samples": 3,
        "judge_max_new_tokens": 256,
        "dpo_learning_rate": 5e-5,  # Oxen-AI/Self-Rewarding-Language-Models scripts/05_dpo.py (Mistral-7B LoRA DPO, batch 16); 5e-6 (TRL scripts/dpo.py LoRA, Unsloth Zephyr-DPO notebook) assumes UltraFeedback's ~3.8k steps, we get ~20 an epoch (docs/benchmarks.md)
        "dpo_epochs": 3.0,  # Unsloth Zephyr (7B)-DPO notebook num_train_epochs=3; Oxen-AI SRLM 05_dpo.py (DPOConfig default 3)
        "dpo_batch_size": 16,
        "warmup_ratio": 0.1,  # Unsloth Zephyr (7B)-DPO notebook warmup_ratio=0.1 (Oxen-AI SRLM: 30 SFT / 50 DPO warm-up steps)
        "gen_batch_size": 32,  # measured (docs/benchmarks.md, GPU kit): 8B 4-bit judging at 64 peaked 23.07 GiB reserved (HF), OOM at 24 GiB (Unsloth)
        "train_micro_batch_size": 2,
        "gradient_checkpointing": True,
        "eval_questions": 0,
        "eval_prompts": 0,
        "eval_max_new_tokens": 512,
        "ifeval_prompts": 0,
        "ifeval_max_new_tokens": 1280,  # lm-eval's IFEval setting, so the figures compare with published ones
    },
}

_CHOICES = {
    "preset": ("cpu", "gpu"),
    "quantize": ("auto", "4bit", "none"),
    "device": ("auto", "cpu", "cuda"),
    "backend": ("auto", "unsloth", "hf"),
    "dtype": ("auto", "bfloat16", "float32"),
    "report_to": ("none", "tensorboard", "wandb"),
    "judge_scoring": ("sampled", "expected"),
}
_OPTIONAL_NUMBER = ("length_control_margin",)  # null (off) or a number >= 0
_POSITIVE = (
    "lora_r", "lora_alpha", "sft_batch_size", "prompts_per_round", "prompt_shots",
    "prompt_max_new_tokens", "prompt_max_words", "prompt_max_attempts", "n_candidates",
    "response_max_new_tokens", "judge_samples", "judge_max_new_tokens", "dpo_batch_size",
    "max_length", "gen_batch_size", "train_micro_batch_size", "sft_epochs", "dpo_epochs",
    "sft_learning_rate", "dpo_learning_rate", "dpo_beta", "temperature", "judge_temperature",
    "prompt_temperature", "eval_max_new_tokens", "ifeval_max_new_tokens", "judge_concurrency", "judge_timeout",
)


def preset_config(preset: str, **overrides: Any) -> Config:
    if preset not in PRESETS:
        raise SrliteError(f"Unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}.")
    values = {"preset": preset, **PRESETS[preset], **overrides}
    return config_from_dict(values, source="preset")


def config_from_dict(values: dict[str, Any], source: str) -> Config:
    """Build and validate a Config; `source` names the file in error messages."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SrliteError(f"{source}: unknown config key {key!r}.{hint}")
    cfg = Config(**values)
    for name, f in fields.items():
        value = getattr(cfg, name)
        default = getattr(Config(), name)
        expected = type(default)
        if name in _OPTIONAL_NUMBER:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise SrliteError(f"{source}: field {name!r} must be null (off) or a number >= 0, got {value!r}.")
            continue
        if expected is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif expected is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value) and value
        else:
            ok = type(value) is expected
        if not ok:
            raise SrliteError(
                f"{source}: field {name!r} must be {expected.__name__}"
                f"{' (non-empty list of strings)' if expected is list else ''}, got {value!r}."
            )
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise SrliteError(
                f"{source}: field {name!r} is {getattr(cfg, name)!r}; choose one of {', '.join(choices)}."
            )
    for name in _POSITIVE:
        if getattr(cfg, name) <= 0:
            raise SrliteError(f"{source}: field {name!r} must be > 0, got {getattr(cfg, name)!r}.")
    for name in ("prompt_top_p", "top_p", "judge_top_p", "prompt_max_rouge", "lora_dropout"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise SrliteError(f"{source}: field {name!r} must be between 0 and 1, got {getattr(cfg, name)!r}.")
    if cfg.n_candidates < 2:
        raise SrliteError(f"{source}: field 'n_candidates' must be at least 2 to form a pair.")
    if not 0 <= cfg.prompt_shots_generated <= cfg.prompt_shots:
        raise SrliteError(f"{source}: field 'prompt_shots_generated' must be between 0 and prompt_shots.")
    if cfg.prompt_min_words < 1 or cfg.prompt_min_words > cfg.prompt_max_words:
        raise SrliteError(f"{source}: field 'prompt_min_words' must be between 1 and prompt_max_words.")
    if cfg.checkpoint_steps < 0:
        raise SrliteError(f"{source}: field 'checkpoint_steps' must be >= 0 (0: no training checkpoints).")
    for name in ("eval_questions", "eval_prompts", "ifeval_prompts"):
        if getattr(cfg, name) < 0:
            raise SrliteError(f"{source}: field {name!r} must be >= 0 (0 = all), got {getattr(cfg, name)!r}.")
    for name in ("judge", "winrate_judge"):
        parse_judge_spec(getattr(cfg, name), f"{source}: field {name!r}")
    if cfg.judge_scoring == "expected" and parse_judge_spec(cfg.judge).external:
        raise SrliteError(f"{source}: judge_scoring 'expected' reads a model judge's score probabilities; "
                          f"the judge {cfg.judge!r} gives none. Use judge_scoring 'sampled' with it.")
    if cfg.judge_max_retries < 0:
        raise SrliteError(f"{source}: field 'judge_max_retries' must be >= 0.")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cfg.judge_api_key_env):
        # Never echo the value: it may be the key itself, pasted into the wrong field.
        raise SrliteError(f"{source}: field 'judge_api_key_env' must be the NAME of an environment variable "
                          "(e.g. OPENAI_API_KEY), not the key itself.")
    if cfg.top_k < 0:
        raise SrliteError(f"{source}: field 'top_k' must be >= 0 (0 = off), got {cfg.top_k!r}.")
    if cfg.repetition_penalty <= 0:
        raise SrliteError(f"{source}: field 'repetition_penalty' must be > 0 (1.0 = off), got {cfg.repetition_penalty!r}.")
    if not cfg.ifeval_data.strip():
        raise SrliteError(f"{source}: field 'ifeval_data' must be 'bundled' or the path of an IFEval-schema JSONL file.")
    if not 0 <= cfg.warmup_ratio < 1:
        raise SrliteError(f"{source}: field 'warmup_ratio' must be >= 0 and < 1, got {cfg.warmup_ratio!r}.")
    if cfg.pair_min_margin < 0:
        raise SrliteError(f"{source}: field 'pair_min_margin' must be >= 0.")
    if not 1 <= cfg.judge_min_parsed <= cfg.judge_samples:
        raise SrliteError(f"{source}: field 'judge_min_parsed' must be between 1 and judge_samples "
                          f"({cfg.judge_samples}), got {cfg.judge_min_parsed!r}.")
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    write_json(path, dataclasses.asdict(cfg))


def load_config(path: Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise SrliteError(f"{path}: no config file here. Run `srlite init` first (or pass --run-dir).")
    try:
        values = json.loads(path.read_text(encoding="utf-8-sig"))  # an editor's byte-order mark is fine
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        line = getattr(e, "lineno", "?")
        raise SrliteError(f"{path}, line {line}: not valid JSON ({e}).") from None
    if not isinstance(values, dict):
        raise SrliteError(f"{path}: the config must be a JSON object of field: value.")
    return config_from_dict(values, source=str(path))


def parse_overrides(items: list[str]) -> dict:
    """`--set key=value` options; values parse as JSON when they can (numbers, bools, lists)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SrliteError(f"--set {item!r}: expected key=value, e.g. --set prompts_per_round=8.")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
