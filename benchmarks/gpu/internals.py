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
    "for_training": "selfreward_lite.models.backend",
    "save_adapter": "selfreward_lite.models.adapters",
    "LoadedModel": "selfreward_lite.models.adapters",
    "TRAINABLE": "selfreward_lite.models.adapters",
    "train_dpo": "selfreward_lite.loop.train",
    "bundled_path": "selfreward_lite.run.records",
    "first_user_text": "selfreward_lite.run.records",
    "load_messages": "selfreward_lite.run.records",
    "judge_text": "selfreward_lite.judging.engine",
    "judge_items": "selfreward_lite.judging.engine",
    "load_rubric": "selfreward_lite.judging.rubric",
}


def srlite(name: str):
    """srlite's `name` (a function, class or constant), from its module in `_WHERE`; says where to
    fix the table if it moved."""
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


# --- measurements (in the kit's worker processes) ------------------------------------------
# Each takes a model loaded once per process and architecture (`load`), the way a round holds M_t:
# M1 stacked, a new trainable adapter on top (inactive while sampling), so sampling, judging and
# DPO run on the same loaded model one after the other, as in `srlite iterate`.

def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bitsandbytes_library() -> dict:
    """Which native library bitsandbytes loaded (libbitsandbytes_cuda130.so on torch cu130), or its error."""
    try:
        from bitsandbytes import cextension

        lib = cextension.lib  # its __getattr__ answers every name with a stub: read __dict__ only
        dll = vars(lib).get("_lib")
        return {"backend": cextension.BNB_BACKEND, "class": type(lib).__name__,
                "library": Path(dll._name).name if dll is not None else None, "error": vars(lib).get("error_msg")}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def make_m1(model, tokenizer, cfg, out: Path) -> None:
    """A stand-in M1 adapter (srlite's LoRA settings, random non-zero B) made on the in-memory model,
    saved the way srlite saves adapters. Call it after the base is saved: PEFT wraps `model` in place."""
    import torch
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
    trainable = srlite("TRAINABLE")
    peft_model = get_peft_model(model, lora, adapter_name=trainable)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if f"lora_B.{trainable}." in name:
                p.normal_(0, 0.01)
    lm = srlite("LoadedModel")(peft_model, tokenizer, [trainable], str(model.device), model.dtype)
    srlite("save_adapter")(lm, out, "stand_in.json", {"stand_in": True})


def load(model: dict, checkpoint: str, backend: str, smoke: bool):
    """M_t as a round holds it: the base (`checkpoint`: the pre-quantised "4bit" folder or "bf16"),
    the stand-in M1 frozen, a new trainable adapter on top. Returns (lm, cfg)."""
    fit = gpu_fit()
    cfg = fit.make_config(fit_args(smoke), Path(model[checkpoint]), backend)
    return srlite("load_model")(cfg, [Path(model["m1"])], train_new=True), cfg


def suppress_eos(lm, calibration: dict):
    """Make the loaded model never sample EOS, so every measured sequence runs to its full length
    whatever srlite's sampler passes to `generate` (min_new_tokens included): push EOS's LM-head
    weight on randmodel's constant feature 40 nats below every other token. That weight stays bf16
    in 4-bit models (bitsandbytes does not quantise the LM head); only this process's copy changes.
    Returns `allow_eos(allowed: bool)`, which puts the calibrated weight back (answers end at
    randmodel's hazard, as a real judge's do) or suppresses EOS again."""
    import torch

    base = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    head = base.get_output_embeddings().weight
    k, eos = calibration["dim"], lm.tokenizer.eos_token_id
    calibrated = head[eos, k].item()
    suppressed = head[:, k].min().item() - 40.0 / calibration["h_k_min"]

    def allow_eos(allowed: bool) -> None:
        with torch.no_grad():
            head[eos, k] = calibrated if allowed else suppressed

    allow_eos(False)
    return allow_eos


def _ordinary_ids(tok) -> list[int]:
    special = set(tok.all_special_ids)  # a property that rebuilds its list on every access: read it once
    return [i for i in range(len(tok)) if i not in special]


def _questions() -> list[str]:
    return [srlite("first_user_text")(m) for m in srlite("load_messages")("bundled", "ift")]


def finish_rate(model: dict, smoke: bool, prompts: int, max_new_tokens: int) -> dict:
    """How srlite's own batched sampler ends answers on the bare 4-bit base (no adapter), with the
    round's candidate settings (temperature / top-p of the preset)."""
    fit = gpu_fit()
    cfg = fit.make_config(fit_args(smoke), Path(model["4bit"]), "hf")
    lm = srlite("load_model")(cfg, [], train_new=False)
    texts = [srlite("render_chat")(lm.tokenizer, [{"role": "user", "content": q}]) for q in _questions()[:prompts]]
    samples = srlite("generate")(lm, texts, 1, temperature=cfg.temperature, top_p=cfg.top_p,
                                 max_new_tokens=max_new_tokens, batch_size=cfg.gen_batch_size, seed=0)
    flat = [s for group in samples for s in group]
    lengths = sorted(s.n_tokens for s in flat)
    return {"sampler": "srlite generate (hf backend, 4-bit base)", "samples": len(flat),
            "max_new_tokens": max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
            "finished": sum(s.finished for s in flat), "finish_rate": round(sum(s.finished for s in flat) / len(flat), 3),
            "median_tokens": lengths[len(lengths) // 2], "mean_tokens": round(sum(lengths) / len(lengths), 1)}


def _random_answers(tok, items: int, response_tokens: int) -> list[dict]:
    """`items` judging items: the kit's questions in turn, each answered by `response_tokens` random
    ordinary tokens (seeded: the same items in every process)."""
    rng = random.Random(0)
    vocab = _ordinary_ids(tok)
    questions = _questions()
    return [{"id": f"a{i}", "prompt": questions[i % len(questions)],
             "response": tok.decode([rng.choice(vocab) for _ in range(response_tokens)])} for i in range(items)]


def judge_batch(lm, cfg, *, response_tokens: int | None = None, judge_tokens: int | None = None,
                items: int | None = None) -> dict:
    """Peak memory and speed of one judging batch at the preset's gen_batch_size: the preset's
    rubric around a question and an answer of `response_tokens` (default: the preset's
    response_max_new_tokens), `judge_samples` judgments of `judge_tokens` (default:
    judge_max_new_tokens) each, every one run to full length (`suppress_eos`). The longest prompts
    a round generates from, so the generation memory that must fit. (`items`: fewer prompts than a
    full batch, for the CPU smoke run.)"""
    fit = gpu_fit()
    response_tokens = response_tokens or cfg.response_max_new_tokens
    judge_tokens = judge_tokens or cfg.judge_max_new_tokens
    lm = srlite("for_sampling")(lm)
    tok = lm.tokenizer
    rubric = srlite("load_rubric")(cfg.rubric)
    n = cfg.judge_samples
    items = items or max(1, cfg.gen_batch_size // n)  # one full batch: gen_batch_size // n prompts x n samples
    texts = [srlite("judge_text")(lm, rubric, a) for a in _random_answers(tok, items, response_tokens)]
    prompt_tokens = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    lm.model.generation_config.min_new_tokens = judge_tokens  # where the sampler still reads it
    fit.reset_peak()
    start = time.perf_counter()
    samples = srlite("generate")(lm, texts, n, temperature=cfg.judge_temperature, top_p=cfg.judge_top_p,
                                 max_new_tokens=judge_tokens, batch_size=cfg.gen_batch_size, seed=0)
    _sync()
    seconds = time.perf_counter() - start
    made = [s.n_tokens for group in samples for s in group]
    return {"backend": lm.backend, "sequences": items * n, "batch_size": cfg.gen_batch_size, "judge_samples": n,
            "prompt_tokens_mean": round(sum(prompt_tokens) / len(prompt_tokens)), "prompt_tokens_max": max(prompt_tokens),
            "new_tokens": judge_tokens, "full_length": all(m == judge_tokens for m in made), "seconds": round(seconds, 2),
            "tokens_per_s": round(sum(made) / seconds, 1), **fit.peak()}


def judging_stage(lm, cfg, *, allow_eos, items: int, response_tokens: int, judge_tokens: int | None = None) -> dict:
    """The judging stage old vs new (benchmarks/judging_stage.py's two ends, on the GPU): `items`
    answers of `response_tokens` random tokens, each judged `judge_samples` times with the preset's
    rubric, sampling settings and gen_batch_size through srlite's `judge_items`. Old: every prompt
    prefilled whole, HF's `generate` (a batch runs until its longest row ends); new: the rubric's KV
    cache computed once and copied into every batch, our decode loop (a finished row leaves the batch).
    EOS is allowed for this task (`suppress_eos`'s switch): judgments end at randmodel's calibrated
    hazard, as answers of different lengths do, which is where the decode loop gains. No score
    completion in either (random text never writes "Score: N": every judgment would be completed).
    Each after a warm-up of the same path on two items."""
    import dataclasses

    bench = str(ROOT / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    from judging_stage import generation_as

    judge_items = srlite("judge_items")
    cfg = dataclasses.replace(cfg, judge_scoring="sampled", judge_complete_score=False,
                              judge_max_new_tokens=judge_tokens or cfg.judge_max_new_tokens)
    lm = srlite("for_sampling")(lm)
    tok = lm.tokenizer
    rubric = srlite("load_rubric")(cfg.rubric)
    answers = _random_answers(tok, items, response_tokens)
    lm.model.generation_config.min_new_tokens = None
    variants = {"old": (False, False), "new": (True, True)}  # (rubric cache, finished rows leave)
    result = {"backend": lm.backend, "items": items, "judge_samples": cfg.judge_samples,
              "batch_size": cfg.gen_batch_size, "judge_max_new_tokens": cfg.judge_max_new_tokens}
    allow_eos(True)
    try:
        for name, (cache, drop) in variants.items():
            with generation_as(drop_finished=drop, grouped=True):
                judge_items(lm, cfg, rubric, answers[:2], seed=1, prefix_cache=cache)  # warm-up
                _sync()
                start = time.perf_counter()
                records = judge_items(lm, cfg, rubric, answers, seed=0, prefix_cache=cache)
                _sync()
            result[f"{name}_seconds"] = round(time.perf_counter() - start, 2)
            result[f"{name}_cut_at_budget"] = sum(r["parse"] == "truncated" for r in records)
        result["judgments"] = len(records)
    finally:
        allow_eos(False)
    result["old_over_new"] = round(result["old_seconds"] / result["new_seconds"], 2)
    return result


def speed(lm, cfg, *, naive: bool, prompts: int, candidates: int, new_tokens: int, naive_samples: int) -> dict:
    """Tokens/s of sampling `candidates` answers to each of `prompts` chat prompts, `new_tokens`
    each (EOS suppressed: equal work on every path): batched through srlite's sampler at the
    preset's gen_batch_size, or naive, one `generate` call per sample over the first
    `naive_samples` samples (its rate does not depend on how many). Both after a short warm-up
    of the same path (CUDA kernels, Triton/compile caches), so the rate is the steady one."""
    import torch

    fit = gpu_fit()
    lm = srlite("for_sampling")(lm)
    tok, model = lm.tokenizer, lm.model
    texts = [srlite("render_chat")(tok, [{"role": "user", "content": q}]) for q in _questions()[:prompts]]
    model.generation_config.min_new_tokens = None

    def naive_call(text: str, new: int) -> int:
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
                                 max_new_tokens=new, pad_token_id=tok.pad_token_id)
        return out.shape[1] - enc["input_ids"].shape[1]

    def batched(new: int) -> list[int]:
        samples = srlite("generate")(lm, texts, candidates, temperature=cfg.temperature, top_p=cfg.top_p,
                                     max_new_tokens=new, batch_size=cfg.gen_batch_size, seed=0)
        return [s.n_tokens for group in samples for s in group]

    warm = time.perf_counter()
    naive_call(texts[0], 4) if naive else batched(4)
    _sync()
    warm = time.perf_counter() - warm
    fit.reset_peak()
    start = time.perf_counter()
    if naive:
        made = [naive_call(texts[(i // candidates) % len(texts)], new_tokens) for i in range(naive_samples)]
    else:
        made = batched(new_tokens)
    _sync()
    seconds = time.perf_counter() - start
    return {"backend": lm.backend, "naive": naive, "sequences": len(made), "new_tokens": new_tokens,
            "batch_size": 1 if naive else cfg.gen_batch_size, "full_length": all(m == new_tokens for m in made),
            "seconds": round(seconds, 2), "warmup_seconds": round(warm, 2), "tokens_per_s": round(sum(made) / seconds, 1),
            **fit.peak()}


def dpo(lm, cfg, *, length: int, steps: int) -> dict:
    """Peak memory of DPO optimizer steps through srlite's `train_dpo` at max_length `length`, the
    preset's micro-batch and gradient checkpointing, every sequence `length` tokens (gpu_fit's
    task_dpo, on the model this process already holds)."""
    import dataclasses

    fit = gpu_fit()
    micro = cfg.train_micro_batch_size  # one optimizer step per micro-batch here
    cfg = dataclasses.replace(cfg, max_length=length, dpo_epochs=1.0, dpo_learning_rate=1e-5, dpo_batch_size=micro)
    lm = srlite("for_training")(lm)
    tok = lm.tokenizer
    rng = random.Random(length)
    vocab = _ordinary_ids(tok)

    def words(n: int) -> str:  # text of about n tokens; TRL truncates the pair to exactly max_length
        return tok.decode([rng.choice(vocab) for _ in range(n)])

    pairs = [{"id": f"p{i}", "prompt": words(length // 4), "chosen": words(length), "rejected": words(length)}
             for i in range(micro * steps)]
    fit.reset_peak()
    start = time.perf_counter()
    result = srlite("train_dpo")(cfg, lm, pairs)
    _sync()
    return {"backend": lm.backend, "max_length": length, "micro_batch": micro, "steps": result["steps"],
            "seconds": round(time.perf_counter() - start, 2), "gradient_checkpointing": cfg.gradient_checkpointing,
            **fit.peak()}
