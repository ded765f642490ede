"""The one module of the GPU kit that reaches into srlite's internals and benchmarks/gpu_fit.py.

Everything else in the kit drives srlite through its command line. `_WHERE` names, for each
srlite function the kit needs, the module it lives in (the subpackage layout of issue 9:
models/, run/, judging/, ...); re-pointing the kit after a move means editing that table only.
Heavy imports happen inside functions.
"""

from __future__ import annotations

import importlib
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_WHERE = {
    "preset_config": "selfreward_lite.config",
    "embedded_model_dir": "selfreward_lite.models.embedded",
    "generate": "selfreward_lite.models.generation",
    "render_chat": "selfreward_lite.models.generation",
    "load_model": "selfreward_lite.models.backend",
    "for_sampling": "selfreward_lite.models.backend",
    "prepare": "selfreward_lite.models.backend",
    "bundled_path": "selfreward_lite.run.records",
    "first_user_text": "selfreward_lite.run.records",
    "load_messages": "selfreward_lite.run.records",
    "judge_text": "selfreward_lite.judging.engine",
    "load_rubric": "selfreward_lite.judging.rubric",
}


def srlite(name: str):
    """srlite's `name`, from its module in `_WHERE`; says where to fix the table if it moved."""
    module = _WHERE[name]
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):  # the module itself is gone
            raise ImportError(f"selfreward_lite has no module {module} (for {name!r}); update _WHERE in {__file__}") from e
        raise
    except AttributeError:
        raise ImportError(f"{module} has no {name!r}; update _WHERE in {__file__}") from None


def gpu_fit():
    """benchmarks/gpu_fit.py as a module (its measurement tasks are reused as they are)."""
    bench = str(ROOT / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import gpu_fit

    return gpu_fit


def fit_args(smoke: bool, **values):
    """gpu_fit's argument namespace, with the kit's sizes."""
    args = gpu_fit().parse(["--smoke"] if smoke else [])
    for key, value in values.items():
        setattr(args, key, value)
    return args


# --- data --------------------------------------------------------------------------------

def save_embedded_tokenizer(out: Path) -> list[str]:
    """The embedded model's tokenizer (SmolLM2's, with srlite's EOS/pad fixes), files only, no weights."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(srlite("embedded_model_dir")())
    out.mkdir(parents=True, exist_ok=True)
    return [Path(p).name for p in tok.save_pretrained(str(out))]


def write_seed_subset(kind: str, n: int, out: Path) -> Path:
    """The first `n` records of a bundled seed file ("ift" or "eft_train"), for a short SFT."""
    lines = [line for line in Path(srlite("bundled_path")(kind)).read_text(encoding="utf-8").splitlines() if line.strip()]
    out.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return out


def preset(name: str) -> dict:
    import dataclasses

    return dataclasses.asdict(srlite("preset_config")(name))


# --- measurements (each in a worker process) ----------------------------------------------

def finish_rate(args, model_dir: Path, prompts: int, max_new_tokens: int) -> dict:
    """How srlite's own batched sampler ends answers on the bare base (no adapter), with the
    round's candidate settings (temperature / top-p of the preset)."""
    fit = gpu_fit()
    cfg = fit.make_config(args, model_dir, "hf")
    lm = srlite("load_model")(cfg, [], train_new=False)
    questions = [srlite("first_user_text")(m) for m in srlite("load_messages")("bundled", "ift")][:prompts]
    texts = [srlite("render_chat")(lm.tokenizer, [{"role": "user", "content": q}]) for q in questions]
    samples = srlite("generate")(lm, texts, 1, temperature=cfg.temperature, top_p=cfg.top_p,
                                 max_new_tokens=max_new_tokens, batch_size=cfg.gen_batch_size, seed=0)
    flat = [s for group in samples for s in group]
    lengths = sorted(s.n_tokens for s in flat)
    return {"sampler": "srlite generate (hf backend, base model)", "samples": len(flat), "max_new_tokens": max_new_tokens,
            "temperature": cfg.temperature, "top_p": cfg.top_p, "finished": sum(s.finished for s in flat),
            "finish_rate": round(sum(s.finished for s in flat) / len(flat), 3), "median_tokens": lengths[len(lengths) // 2],
            "mean_tokens": round(sum(lengths) / len(lengths), 1)}


def judge_generation(args, model_dir: Path, m1: Path, backend: str, *, response_tokens: int | None = None,
                     judge_tokens: int | None = None) -> dict:
    """Peak memory and speed of one judging batch at the preset's gen_batch_size: the preset's
    rubric around a question and an answer of `response_tokens` (default: the preset's
    response_max_new_tokens), `judge_samples` judgments of `judge_tokens` (default:
    judge_max_new_tokens) each, every one run to full length. The longest prompts a round
    generates from, so the generation memory that must fit."""
    import torch

    fit = gpu_fit()
    cfg = fit.make_config(args, model_dir, backend)
    response_tokens = response_tokens or cfg.response_max_new_tokens
    judge_tokens = judge_tokens or cfg.judge_max_new_tokens
    lm = srlite("for_sampling")(srlite("load_model")(cfg, [m1], train_new=False))
    tok = lm.tokenizer
    rubric = srlite("load_rubric")(cfg.rubric)
    n = cfg.judge_samples
    items = max(1, cfg.gen_batch_size // n)  # one full batch: gen_batch_size // n prompts x n samples
    rng = random.Random(0)
    vocab = [i for i in range(len(tok)) if i not in tok.all_special_ids]
    questions = [srlite("first_user_text")(m) for m in srlite("load_messages")("bundled", "ift")]
    texts = [srlite("judge_text")(lm, rubric, {"prompt": questions[i % len(questions)],
                                               "response": tok.decode([rng.choice(vocab) for _ in range(response_tokens)])})
             for i in range(items)]
    prompt_tokens = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    lm.model.generation_config.min_new_tokens = judge_tokens  # every judgment runs to full length
    fit.reset_peak()
    start = time.perf_counter()
    srlite("generate")(lm, texts, n, temperature=cfg.judge_temperature, top_p=cfg.judge_top_p,
                       max_new_tokens=judge_tokens, batch_size=cfg.gen_batch_size, seed=0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"backend": lm.backend, "sequences": items * n, "batch_size": cfg.gen_batch_size, "judge_samples": n,
            "prompt_tokens_mean": round(sum(prompt_tokens) / len(prompt_tokens)), "prompt_tokens_max": max(prompt_tokens),
            "new_tokens": judge_tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(items * n * judge_tokens / seconds, 1), **fit.peak()}

