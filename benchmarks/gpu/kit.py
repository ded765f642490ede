"""The GPU kit's driver: every figure of issue 12 in one command, on a GPU machine with no network.

On the GPU machine, from the repository root, with the folder `.gpukit/` (made by
benchmarks/gpu/prepare.sh) sent along and $OUT set, run.sh installs the wheels and calls:

    python3 benchmarks/gpu/kit.py --out $OUT/gpu_kit.json --log $OUT/gpu_kit.log --budget-s 450

CPU smoke run of the same driver (tiny architecture, no wheels, no cap; tests/test_gpu_kit.py):

    python benchmarks/gpu/kit.py --smoke --out /tmp/gpu_kit_smoke.json

Parts, most important first. Each runs in its own process(es) with a timeout; a part that fails
records its error and the next one runs; the JSON is rewritten after every part, so a kill
still leaves what finished. A part starts only if the time left covers its minimum.

- build: random-weight Llama-3.1-8B and Llama-3.2-1B architectures (gpu_fit.ARCHS; tiny in
  the smoke run) built on the device with answers that end (randmodel.py: EOS calibrated
  to a per-token probability of 0.025 at T 0.7 / top-p 0.9), saved once in bf16 and once
  pre-quantised to 4-bit NF4 (what every later process loads: seconds instead of a
  re-quantisation), plus gpu_fit's stand-in M1 adapter; records the calibration and the
  finish rate of srlite's own sampler (share of 128-token answers that end with EOS).
- memory_8b: the 8B model in 4-bit with the gpu preset's LoRA settings and a stacked M1, HF
  backend: peak GPU memory of DPO steps at max_length 1024 (gpu_fit task_dpo), of candidate
  sampling at the preset's gen_batch_size (gpu_fit task_gen, which also gives the 8B HF
  tokens/s), and of one judging batch at gen_batch_size with the preset's longest prompts
  (rubric + 512-token answer, 3 x 256-token judgments): targets <= 20 GiB.
- round_hf: `srlite init` + `srlite iterate --rounds 1` on the 1B model, backend hf, small
  round settings (16 prompts, 4 candidates, 128-token answers, SFT on 16 + 16 seed records,
  no evaluation) but the gpu preset's 4-bit, gradient checkpointing and LoRA; stage timings
  from manifest.json, pair counts, candidate finish rate, the judge, the process's peak memory.
  The judge is the deterministic stand-in benchmarks/gpu/kit_judge.py (`--set judge=python:...`);
  where srlite has no `judge` field yet, the part says so and is skipped.
- speed_hf: tokens/s of batched sampling vs one `generate` per sample (gpu_fit task_gen),
  HF backend, 1B and 8B (target: batched >= 10x naive).
- speed_unsloth: the same with the Unsloth backend (target: Unsloth batched >= 1.5x HF
  batched); if unsloth does not import, the reason.
- round_unsloth: round_hf with backend unsloth.
- memory_8b_unsloth: memory_8b's DPO and judging batch with the Unsloth backend.

Every process is capped at --cap-gib (24) of GPU memory: the workers through gpu_fit, and the
srlite commands through benchmarks/gpu/site/sitecustomize.py (SRLITE_GPU_CAP_GIB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
JUDGE = "python:benchmarks/gpu/kit_judge.py:score"
JUDGE_MISSING = "skipped: this srlite has no `judge` config field yet (`srlite init --set judge=...` was refused)"
TARGET_GIB = 20.0
TARGET_BATCHED_OVER_NAIVE = 10.0
TARGET_UNSLOTH_OVER_HF = 1.5
LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate", "unsloth",
             "unsloth_zoo", "xformers", "triton")


@dataclass
class Profile:
    """Sizes of one kit run: the GPU run, or the CPU smoke run."""

    smoke: bool
    big: str  # the architecture whose memory must fit
    small: str  # the architecture of the rounds
    dpo_length: int
    fit: dict  # gpu_fit argument values: prompts, candidates, new_tokens, naive_prompts, dpo_steps
    judge_gen: dict  # response_tokens / judge_tokens (empty: the preset's)
    finish: dict  # finish-rate sample: prompts, max_new_tokens
    round_preset: str
    round_set: dict
    seed_records: int  # IFT and EFT records each for M1's SFT
    parts: dict = field(default_factory=dict)  # name -> (minimum seconds to start, timeout)


GPU = Profile(
    smoke=False, big="8b", small="1b", dpo_length=1024,
    fit=dict(prompts=16, candidates=4, new_tokens=128, naive_prompts=1, dpo_steps=2),
    judge_gen={}, finish=dict(prompts=32, max_new_tokens=128),
    round_preset="gpu",
    round_set=dict(prompts_per_round=16, n_candidates=4, response_max_new_tokens=128, eval_each_round=False,
                   sft_epochs=1.0, seed=0),
    seed_records=16,
    parts=dict(build=(60, 240), memory_8b=(40, 150), round_hf=(45, 180), speed_hf=(30, 120),
               speed_unsloth=(45, 180), round_unsloth=(60, 180), memory_8b_unsloth=(40, 120)),
)
SMOKE = Profile(
    smoke=True, big="tiny", small="tiny", dpo_length=64,
    fit=dict(prompts=4, candidates=2, new_tokens=4, naive_prompts=1, dpo_steps=1),
    judge_gen=dict(response_tokens=16, judge_tokens=4), finish=dict(prompts=8, max_new_tokens=48),
    round_preset="cpu",
    round_set=dict(prompts_per_round=4, n_candidates=2, response_max_new_tokens=24, prompt_max_new_tokens=24,
                   judge_samples=1, eval_each_round=False, sft_epochs=1.0, lora_r=4, lora_alpha=8, seed=0),
    seed_records=4,
    parts=dict(build=(1, 300), memory_8b=(1, 300), round_hf=(1, 300), speed_hf=(1, 300), speed_unsloth=(1, 120),
               round_unsloth=(1, 300), memory_8b_unsloth=(1, 120)),
)


def versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def short_error(text: str, limit: int = 1200) -> str:
    """The informative end of a traceback or log tail."""
    text = text.strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):  # the last exception line and what follows it
        if "Error" in lines[i] or "error:" in lines[i] or "Exception" in lines[i]:
            text = "\n".join(lines[max(0, i - 2):])
            break
    return text[-limit:]


class Kit:
    def __init__(self, args):
        self.args = args
        self.p = SMOKE if args.smoke else GPU
        self.out = Path(args.out).resolve()
        self.log = Path(args.log).resolve() if args.log else self.out.with_suffix(".log")
        self.work = Path(args.work or tempfile.mkdtemp(prefix="srlite-gpukit-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.tokenizer = Path(args.tokenizer).resolve() if args.tokenizer else None
        self.start = time.monotonic()
        self.deadline = self.start + args.budget_s
        self.models: dict = {}  # arch -> {"4bit": dir, "bf16": dir, "m1": dir}
        self.unsloth_checkpoint = "4bit"
        self.report = {
            "kit": {"command": " ".join([Path(sys.executable).name, *sys.argv]), "mode": "smoke" if args.smoke else "gpu",
                    "budget_s": args.budget_s, "cap_gib": args.cap_gib or None, "work_dir": str(self.work),
                    "install": json.loads(args.install) if args.install else None,
                    "profile": {k: v for k, v in self.p.__dict__.items() if k != "parts"},
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
            "device": "CPU (smoke run)" if args.smoke else None,
            "versions": versions(),
            "targets": {"memory_gib": TARGET_GIB, "batched_over_naive": TARGET_BATCHED_OVER_NAIVE,
                        "unsloth_over_hf": TARGET_UNSLOTH_OVER_HF},
            "parts": {name: {"status": "not run", "error": "not reached"} for name in self.p.parts},
        }

    # --- bookkeeping -------------------------------------------------------------------------
    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write(self) -> None:
        self.report["kit"]["elapsed_s"] = round(time.monotonic() - self.start, 1)
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(self.report, indent=1, default=str) + "\n", encoding="utf-8")
        tmp.replace(self.out)

    def say(self, msg: str) -> None:
        line = f"[gpu kit {time.monotonic() - self.start:6.1f}s] {msg}"
        print(line, flush=True)
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def env(self, **extra) -> dict:
        env = dict(os.environ)
        paths = [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if self.args.cap_gib:
            paths.insert(0, str(HERE / "site"))  # sitecustomize.py: the cap in every Python process
            env["SRLITE_GPU_CAP_GIB"] = str(self.args.cap_gib)
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.update({
            "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",  # no network there
            "UNSLOTH_DISABLE_STATISTICS": "1", "UNSLOTH_COMPILE_LOCATION": str(self.work / "unsloth_compiled_cache"),
            "WANDB_DISABLED": "true",
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def spawn(self, label: str, argv: list[str], timeout: float, own_log: bool = False, **env_extra) -> dict:
        """Run one process (its own session, output into the log); kill its group at the timeout.
        With own_log (processes that run side by side) its output goes to its own file first."""
        log = self.work / f"{label}.log" if own_log else self.log
        with open(log, "w" if own_log else "a", encoding="utf-8") as f:
            f.write(f"\n===== {label}: {' '.join(map(str, argv))}\n")
            offset = f.tell()
        start = time.monotonic()
        with open(log, "a", encoding="utf-8") as f:
            proc = subprocess.Popen([str(a) for a in argv], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=ROOT, env=self.env(**env_extra), start_new_session=True)
            timed_out = False
            try:
                rc = proc.wait(timeout=max(1.0, timeout))
            except subprocess.TimeoutExpired:
                timed_out = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
        with open(log, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            tail = f.read()[-6000:]
        if own_log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(log.read_text(encoding="utf-8", errors="replace"))
        return {"rc": rc, "timed_out": timed_out, "seconds": round(time.monotonic() - start, 1), "tail": tail}

    def worker(self, label: str, kind: str, spec: dict, timeout: float) -> dict:
        """A worker process of this file; returns its result dict (partial if it was killed)."""
        spec_file = self.work / f"{label}.spec.json"
        result_file = self.work / f"{label}.result.json"
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        result_file.unlink(missing_ok=True)
        run = self.spawn(label, [sys.executable, __file__, "--worker", kind, "--spec", spec_file, "--result", result_file],
                         timeout)
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        result["process_seconds"] = run["seconds"]
        if run["timed_out"]:
            result["error"] = f"timed out after {run['seconds']:.0f} s (killed); finished tasks are kept"
        elif run["rc"] != 0:
            oom = "OutOfMemoryError" in run["tail"] or "out of memory" in run["tail"]
            result["error"] = ("out of memory: " if oom else f"exit code {run['rc']}: ") + short_error(run["tail"])
        return result

    # --- the run -----------------------------------------------------------------------------
    def run(self) -> dict:
        self.say(f"mode {'smoke' if self.p.smoke else 'gpu'}, budget {self.args.budget_s:.0f} s, work dir {self.work}")
        self.write()
        only = set(self.args.parts.split(",")) if self.args.parts else None
        for name, (minimum, timeout) in self.p.parts.items():
            if only and name not in only and name != "build":
                self.report["parts"][name] = {"status": "not run", "error": "not selected (--parts)"}
                continue
            left = self.left()
            if left < minimum:
                self.report["parts"][name] = {"status": "not run", "error": (
                    f"not run: {left:.0f} s of the {self.args.budget_s:.0f} s budget left, this part needs about {minimum} s")}
                self.say(f"{name}: not run (time)")
                self.write()
                continue
            self.say(f"{name}: start (timeout {min(timeout, left):.0f} s)")
            start = time.monotonic()
            try:
                res = getattr(self, f"part_{name}")(min(timeout, left))
            except Exception:
                res = {"status": "error", "error": short_error(traceback.format_exc())}
            res.setdefault("status", "error" if res.get("error") else "ok")
            if res["status"] != "ok" and not res.get("error"):
                res["error"] = res["status"]
            res["seconds"] = round(time.monotonic() - start, 1)
            self.report["parts"][name] = res
            self.say(f"{name}: {res['status']} in {res['seconds']} s" + (f" ({res['error'][:160]})" if res.get("error") else ""))
            self.write()
        self.summarise()
        self.write()
        return self.report

    def needs(self, *archs: str) -> str | None:
        missing = [a for a in archs if a not in self.models]
        return f"skipped: the {', '.join(missing)} model was not built (see parts.build)" if missing else None

    def fit_spec(self, backend: str, tasks: list[dict]) -> dict:
        return {"smoke": self.p.smoke, "backend": backend, "fit": self.p.fit, "judge_gen": self.p.judge_gen,
                "models": self.models, "tasks": tasks, "unsloth_checkpoint": self.unsloth_checkpoint}

    # --- parts -------------------------------------------------------------------------------
    def part_build(self, timeout: float) -> dict:
        tokenizer = self.tokenizer or self.work / "tokenizer"
        if self.tokenizer is None:  # the smoke run (and a GPU run without .gpukit/tokenizer) makes it here
            run = self.spawn("tokenizer", [sys.executable, __file__, "--save-tokenizer", tokenizer], min(timeout, 120))
            if run["rc"] != 0:
                return {"status": "error", "error": "could not save the tokenizer: " + short_error(run["tail"])}
        archs = list(dict.fromkeys([self.p.big, self.p.small]))
        procs = {}
        for arch in archs:  # concurrently: each is mostly disk and quantisation, not a measurement
            spec = {"smoke": self.p.smoke, "arch": arch, "tokenizer": str(tokenizer), "out": str(self.work / f"model-{arch}"),
                    "fit": self.p.fit, "finish": self.p.finish}
            spec_file, result_file = self.work / f"build-{arch}.spec.json", self.work / f"build-{arch}.result.json"
            spec_file.write_text(json.dumps(spec))
            result_file.unlink(missing_ok=True)
            procs[arch] = (spec_file, result_file)
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(len(archs)) as pool:
            futures = {arch: pool.submit(self.spawn, f"build-{arch}", [sys.executable, __file__, "--worker", "build", "--spec",
                                                                       procs[arch][0], "--result", procs[arch][1]], timeout,
                                         own_log=True)
                       for arch in archs}
            runs = {arch: f.result() for arch, f in futures.items()}
        out, errors = {"archs": {}}, []
        for arch in archs:
            result_file = procs[arch][1]
            res = json.loads(result_file.read_text()) if result_file.is_file() else {}
            run = runs[arch]
            if run["timed_out"]:
                res["error"] = f"timed out after {run['seconds']:.0f} s"
            elif run["rc"] != 0:
                res["error"] = f"exit code {run['rc']}: " + short_error(run["tail"])
            res["process_seconds"] = run["seconds"]
            out["archs"][arch] = res
            if res.get("error"):
                errors.append(f"{arch}: {res['error']}")
            if "dirs" in res:  # the model folders and M1 exist
                self.models[arch] = res.pop("dirs")
            if res.get("device") and not self.p.smoke:
                self.report["device"] = res["device"]
        if errors:
            out["status"], out["error"] = "error", "; ".join(errors)
        return out

    def part_memory_8b(self, timeout: float, backend: str = "hf") -> dict:
        if (why := self.needs(self.p.big)):
            return {"status": "skipped", "error": why}
        big = self.p.big
        tasks = [{"name": f"dpo_{self.p.dpo_length}", "kind": "dpo", "arch": big, "length": self.p.dpo_length},
                 {"name": "judge_batch", "kind": "judge_gen", "arch": big}]
        if backend == "hf":  # the candidate-sampling batch; it is also the 8B HF batched speed
            tasks.insert(1, {"name": "candidate_batch", "kind": "gen", "arch": big, "naive": False})
        res = self.worker(f"memory-{big}-{backend}", "tasks", self.fit_spec(backend, tasks), timeout)
        return self.verdict_memory(res)

    def part_memory_8b_unsloth(self, timeout: float) -> dict:
        if (why := self.unsloth_unavailable()):
            return {"status": "skipped", "error": why}
        return self.part_memory_8b(timeout, backend="unsloth")

    def verdict_memory(self, res: dict) -> dict:
        tasks = res.get("tasks", {})
        for t in tasks.values():
            if t.get("peak_reserved_gib") is not None:
                t["within_target"] = t["peak_reserved_gib"] <= TARGET_GIB
        failed = [f"{n}: {t['error']}" for n, t in tasks.items() if t.get("error")]
        if failed and not res.get("error"):
            res["error"] = "; ".join(failed)
        return res

    def part_speed_hf(self, timeout: float) -> dict:
        return self.speed("hf", timeout)

    def part_speed_unsloth(self, timeout: float) -> dict:
        return self.speed("unsloth", timeout)

    def speed(self, backend: str, timeout: float) -> dict:
        archs = list(dict.fromkeys([self.p.small, self.p.big]))
        if (why := self.needs(*archs)):
            return {"status": "skipped", "error": why}
        tasks = []
        for arch in archs:
            reuse = backend == "hf" and arch == self.p.big and self.hf_big_batched()
            if not reuse:
                tasks.append({"name": f"{arch}_batched", "kind": "gen", "arch": arch, "naive": False})
            tasks.append({"name": f"{arch}_naive", "kind": "gen", "arch": arch, "naive": True})
        res = self.worker(f"speed-{backend}", "tasks", self.fit_spec(backend, tasks), timeout)
        if backend == "unsloth" and res.get("backend_error"):
            return {**res, "status": "error", "error": f"unsloth does not import here: {res['backend_error']}"}
        if backend == "unsloth" and res.get("checkpoint"):
            self.unsloth_checkpoint = res["checkpoint"]
        tasks_out = res.setdefault("tasks", {})
        for arch in archs:
            if backend == "hf" and arch == self.p.big and f"{arch}_batched" not in tasks_out and self.hf_big_batched():
                tasks_out[f"{arch}_batched"] = {**self.hf_big_batched(), "from": "parts.memory_8b.tasks.candidate_batch"}
        ratios = {}
        for arch in archs:
            b, n = tasks_out.get(f"{arch}_batched", {}), tasks_out.get(f"{arch}_naive", {})
            if b.get("tokens_per_s") and n.get("tokens_per_s"):
                r = round(b["tokens_per_s"] / n["tokens_per_s"], 2)
                ratios[f"{arch}_batched_over_naive"] = {"ratio": r, "meets_target": r >= TARGET_BATCHED_OVER_NAIVE}
            hf = self.report["parts"].get("speed_hf", {}).get("tasks", {}).get(f"{arch}_batched", {})
            if backend == "unsloth" and b.get("tokens_per_s") and hf.get("tokens_per_s"):
                r = round(b["tokens_per_s"] / hf["tokens_per_s"], 2)
                ratios[f"{arch}_unsloth_over_hf_batched"] = {"ratio": r, "meets_target": r >= TARGET_UNSLOTH_OVER_HF}
        res["ratios"] = ratios
        failed = [f"{n}: {t['error']}" for n, t in tasks_out.items() if t.get("error")]
        if failed and not res.get("error"):
            res["error"] = "; ".join(failed)
        return res

    def hf_big_batched(self) -> dict | None:
        t = self.report["parts"].get("memory_8b", {}).get("tasks", {}).get("candidate_batch", {})
        return t if t.get("tokens_per_s") else None

    def unsloth_unavailable(self) -> str | None:
        speed = self.report["parts"].get("speed_unsloth", {})
        if speed.get("backend_error"):
            return f"skipped: unsloth does not import here: {speed['backend_error']}"
        return None

    def part_round_hf(self, timeout: float) -> dict:
        return self.round("hf", timeout)

    def part_round_unsloth(self, timeout: float) -> dict:
        if (why := self.unsloth_unavailable()):
            return {"status": "skipped", "error": why}
        if self.report["parts"].get("round_hf", {}).get("error") == JUDGE_MISSING:
            return {"status": "skipped", "error": JUDGE_MISSING}
        return self.round("unsloth", timeout)

    def round(self, backend: str, timeout: float) -> dict:
        small = self.p.small
        if (why := self.needs(small)):
            return {"status": "skipped", "error": why}
        import internals

        checkpoint = self.unsloth_checkpoint if backend == "unsloth" else "4bit"
        run_dir = self.work / f"round-{backend}"
        shutil.rmtree(run_dir, ignore_errors=True)
        seeds = self.work / "seed"
        seeds.mkdir(exist_ok=True)
        ift = internals.write_seed_subset("ift", self.p.seed_records, seeds / "ift.jsonl")
        eft = internals.write_seed_subset("eft_train", self.p.seed_records, seeds / "eft_train.jsonl")
        sets = {**self.p.round_set, "backend": backend, "judge": JUDGE}
        cli = [sys.executable, "-m", "selfreward_lite"]
        init = cli + ["init", "-d", run_dir, "--model", self.models[small][checkpoint], "--preset", self.p.round_preset,
                      "--ift", ift, "--eft", eft]
        for key, value in sets.items():
            init += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
        iterate = cli + ["iterate", "--rounds", "1", "-d", run_dir]
        out = {"backend": backend, "model": f"{small} ({checkpoint})", "judge": JUDGE,
               "commands": [" ".join(map(str, c[1:])).replace(str(self.work), "$WORK") for c in (init, iterate)]}
        peak_file = self.work / f"round-{backend}.peaks.jsonl"
        peak_file.unlink(missing_ok=True)
        run = self.spawn(f"round-{backend}-init", init, min(120, timeout), SRLITE_KIT_PEAK_FILE=peak_file)
        out["init_seconds"] = run["seconds"]
        if run["rc"] != 0 or run["timed_out"]:
            if "unknown config key 'judge'" in run["tail"]:
                return {**out, "status": "skipped", "error": JUDGE_MISSING}
            return {**out, "status": "error", "error": "srlite init failed: " + short_error(run["tail"])}
        run = self.spawn(f"round-{backend}-iterate", iterate, max(1.0, timeout - run["seconds"]),
                         SRLITE_KIT_PEAK_FILE=peak_file)
        out["iterate_seconds"] = run["seconds"]
        out.update(self.round_figures(run_dir))
        if peak_file.is_file():
            peaks = [json.loads(line) for line in peak_file.read_text().splitlines() if line.strip()]
            out["peak_reserved_gib"] = max((p["peak_reserved_gib"] for p in peaks), default=None)
        if run["timed_out"]:
            out["error"] = f"srlite iterate timed out after {run['seconds']:.0f} s (finished stages above)"
        elif run["rc"] != 0:
            out["error"] = f"srlite iterate failed (exit {run['rc']}): " + short_error(run["tail"])
        return out

    @staticmethod
    def round_figures(run_dir: Path) -> dict:
        """What the run directory says: stage timings (manifest.json), the round's metrics."""
        def read(path: Path):
            return json.loads(path.read_text()) if path.is_file() else None

        manifest = read(run_dir / "manifest.json") or {}
        cfg = read(run_dir / "config.json") or {}
        metrics = read(run_dir / "round1" / "metrics.json") or {}
        out = {"stage_seconds": {k: v.get("seconds") for k, v in manifest.get("stages", {}).items()},
               "config": {k: cfg.get(k) for k in ("backend", "judge", "quantize", "gradient_checkpointing", "lora_r",
                                                  "lora_alpha", "prompts_per_round", "n_candidates", "response_max_new_tokens",
                                                  "gen_batch_size", "max_length", "train_micro_batch_size") if k in cfg},
               "libraries": manifest.get("libraries")}
        m1 = read(run_dir / "m1" / "metrics.json")
        if m1:
            out["m1_sft"] = {k: m1.get(k) for k in ("steps", "records", "first_loss", "last_loss") if k in m1}
        if metrics:
            cands = metrics.get("candidates", {})
            out["prompts"] = metrics.get("prompts")
            out["candidates"] = cands
            if cands.get("total"):
                out["candidate_finish_rate"] = round(1 - cands.get("truncated", 0) / cands["total"], 3)
            out["judgments"] = {k: metrics.get("judgments", {}).get(k) for k in ("total", "parsed", "parse_rate", "unparsed")}
            out["pairs"] = metrics.get("pairs")
            out["dpo"] = metrics.get("dpo")
        out["completed"] = bool(metrics)
        return out

    def summarise(self) -> None:
        """The headline figures in one place (each also in its part)."""
        parts = self.report["parts"]
        mem = parts.get("memory_8b", {}).get("tasks", {})
        s = {
            "dpo_peak_reserved_gib": mem.get(f"dpo_{self.p.dpo_length}", {}).get("peak_reserved_gib"),
            "candidate_batch_peak_reserved_gib": mem.get("candidate_batch", {}).get("peak_reserved_gib"),
            "judge_batch_peak_reserved_gib": mem.get("judge_batch", {}).get("peak_reserved_gib"),
        }
        for backend in ("hf", "unsloth"):
            sp = parts.get(f"speed_{backend}", {})
            for arch in dict.fromkeys([self.p.small, self.p.big]):
                for how in ("batched", "naive"):
                    s[f"{arch}_{backend}_{how}_tokens_per_s"] = sp.get("tasks", {}).get(f"{arch}_{how}", {}).get("tokens_per_s")
                s[f"{arch}_{backend}_batched_over_naive"] = sp.get("ratios", {}).get(f"{arch}_batched_over_naive", {}).get("ratio")
        for arch in dict.fromkeys([self.p.small, self.p.big]):
            u, h = s.get(f"{arch}_unsloth_batched_tokens_per_s"), s.get(f"{arch}_hf_batched_tokens_per_s")
            s[f"{arch}_unsloth_over_hf"] = round(u / h, 2) if u and h else None
        for backend in ("hf", "unsloth"):
            r = parts.get(f"round_{backend}", {})
            s[f"round_{backend}_seconds"] = (round(r["init_seconds"] + r["iterate_seconds"], 1)
                                             if r.get("completed") else None)
        self.report["summary"] = s


# --- worker processes ---------------------------------------------------------------------

def _write(path: Path, result: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(path)


def _device() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"name": "CPU", "torch": torch.__version__}
    p = torch.cuda.get_device_properties(0)
    return {"name": torch.cuda.get_device_name(0), "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "total_gib": round(p.total_memory / 1024**3, 2), "torch": torch.__version__, "cuda": torch.version.cuda}


def worker_build(spec: dict, result_path: Path) -> None:
    """Build one architecture: bf16 and pre-quantised 4-bit folders, the stand-in M1, the finish rate."""
    import torch

    import internals
    import randmodel

    fit = internals.gpu_fit()
    result: dict = {"arch": spec["arch"], "device": _device(), "cap": fit.cap_memory()}
    out = Path(spec["out"])
    done = out / "build.json"  # a later call on the same (warm) machine reuses a finished build
    if done.is_file():
        previous = json.loads(done.read_text())
        if previous.get("spec") == spec and all(Path(d).is_dir() for d in previous["result"]["dirs"].values()):
            _write(result_path, {**previous["result"], "device": result["device"], "cap": result["cap"],
                                 "reused": "built by an earlier call on this machine"})
            return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    dirs = {"bf16": str(out / "bf16"), "4bit": str(out / "4bit"), "m1": str(out / "m1")}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tok = AutoTokenizer.from_pretrained(spec["tokenizer"])
    t = time.perf_counter()
    model, cal = randmodel.build(fit.ARCHS[spec["arch"]], tok, device=device)
    result["calibration"] = cal.as_dict()
    params = sum(p.numel() for p in model.parameters())
    result["params_b"] = round(params / 1e9, 3)
    result["build_seconds"] = round(time.perf_counter() - t, 1)
    shm = Path("/dev/shm")
    if device == "cuda" and shm.is_dir() and shutil.disk_usage(shm).free > 1.5 * 2 * params:
        # the bf16 copy only feeds the quantisation (and Unsloth's fallback): RAM is faster than the disk
        dirs["bf16"] = str(shm / f"srlite-gpukit-{spec['arch']}-bf16")
        shutil.rmtree(dirs["bf16"], ignore_errors=True)
    _write(result_path, result)
    t = time.perf_counter()
    model.save_pretrained(dirs["bf16"])
    tok.save_pretrained(dirs["bf16"])
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    result["save_bf16_seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)  # what srlite's loader asks for
    kwargs = {"device_map": {"": 0}} if device == "cuda" else {}
    q = AutoModelForCausalLM.from_pretrained(dirs["bf16"], quantization_config=bnb, dtype=torch.bfloat16, **kwargs)
    q.save_pretrained(dirs["4bit"])
    tok.save_pretrained(dirs["4bit"])
    del q
    if device == "cuda":
        torch.cuda.empty_cache()
    result["quantise_seconds"] = round(time.perf_counter() - t, 1)
    result["size_gib"] = {k: round(sum(f.stat().st_size for f in Path(v).rglob("*") if f.is_file()) / 1024**3, 2)
                          for k, v in dirs.items() if k != "m1"}
    _write(result_path, result)
    args = internals.fit_args(spec["smoke"], **spec["fit"])
    t = time.perf_counter()
    fit.make_m1(args, Path(dirs["4bit"]), Path(dirs["m1"]))  # also: srlite's loader takes the 4-bit folder
    result["m1_seconds"] = round(time.perf_counter() - t, 1)
    result["dirs"] = dirs  # usable from here on, even if the finish-rate sample below fails
    _write(result_path, result)
    t = time.perf_counter()
    result["finish_rate"] = internals.finish_rate(args, Path(dirs["4bit"]), **spec["finish"])
    result["finish_rate"]["seconds"] = round(time.perf_counter() - t, 1)
    _write(result_path, result)
    done.write_text(json.dumps({"spec": spec, "result": result}, default=str))


def worker_tasks(spec: dict, result_path: Path) -> None:
    """gpu_fit / internals measurements on one backend, each recorded as it finishes."""
    import gc

    import internals

    backend = spec["backend"]
    result: dict = {"backend": backend, "tasks": {}}
    _write(result_path, result)
    try:  # srlite's own check (CUDA, package present), then the import, before anything Unsloth patches
        internals.srlite("prepare")(internals.srlite("preset_config")("gpu", backend=backend))
    except Exception as e:
        result["backend_error"] = f"{type(e).__name__}: {e}"
        _write(result_path, result)
        return
    import torch

    fit = internals.gpu_fit()
    result["cap"] = fit.cap_memory()
    if torch.cuda.is_available():  # CUDA context and cuBLAS handles: not part of the first timing
        x = torch.ones(1024, 1024, device="cuda", dtype=torch.bfloat16)
        (x @ x).sum().item()
    args = internals.fit_args(spec["smoke"], **spec["fit"])
    checkpoint = spec.get("unsloth_checkpoint", "4bit") if backend == "unsloth" else "4bit"

    def run(task: dict, ckpt: str) -> dict:
        model = spec["models"][task["arch"]]
        model_dir, m1 = Path(model[ckpt]), Path(model["m1"])
        if task["kind"] == "dpo":
            return fit.task_dpo(args, model_dir, m1, task["length"], backend)
        if task["kind"] == "gen":
            return fit.task_gen(args, model_dir, m1, backend, naive=task["naive"])
        if task["kind"] == "judge_gen":
            return internals.judge_generation(args, model_dir, m1, backend, **spec["judge_gen"])
        raise ValueError(task["kind"])

    for task in spec["tasks"]:
        start = time.perf_counter()
        try:
            out = run(task, checkpoint)
        except Exception as e:
            oom = isinstance(e, torch.OutOfMemoryError)
            out = {"error": ("out of memory: " if oom else "") + f"{type(e).__name__}: {str(e)[:800]}"}
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if backend == "unsloth" and checkpoint == "4bit" and not oom:
                # Unsloth may refuse a pre-quantised folder: the bf16 one, quantised at load, is the fallback.
                try:
                    first = out["error"]
                    out = {**run(task, "bf16"), "checkpoint": "bf16", "checkpoint_4bit_error": first}
                    checkpoint = result["checkpoint"] = "bf16"
                except Exception as e2:
                    out = {"error": f"{out['error']} (and with the bf16 folder: {type(e2).__name__}: {str(e2)[:400]})"}
                    gc.collect()
        out["task_seconds"] = round(time.perf_counter() - start, 1)
        result["tasks"][task["name"]] = out
        _write(result_path, result)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_kit.json", help="the JSON report (rewritten after every part)")
    ap.add_argument("--log", default=None, help="log of every process (default: next to --out, .log)")
    ap.add_argument("--smoke", action="store_true", help="CPU smoke run: tiny architecture, a few tokens, no cap")
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting parts after this many seconds "
                    "(default 450 on a GPU, 900 for --smoke)")
    ap.add_argument("--cap-gib", type=float, default=None, help="GPU memory cap of every process (default 24; 0: none)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (.gpukit/tokenizer); default: save the embedded one")
    ap.add_argument("--work", default=None, help="scratch folder for models and runs (default: a new temporary one)")
    ap.add_argument("--parts", default=None, help="comma-separated subset of the parts (build always runs)")
    ap.add_argument("--install", default=None, help=argparse.SUPPRESS)  # run.sh: JSON about the wheel install
    ap.add_argument("--save-tokenizer", default=None, help="write the embedded tokenizer's files to this folder and exit")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 900.0 if args.smoke else 450.0
    if args.cap_gib is None:
        args.cap_gib = 0 if args.smoke else 24
    return args


def main(argv=None) -> None:
    args = parse(argv)
    sys.path[:0] = [str(HERE), str(ROOT)]  # the kit's modules; the package from this tree
    if args.save_tokenizer:
        import internals

        print(json.dumps(internals.save_embedded_tokenizer(Path(args.save_tokenizer))))
        return
    if args.worker:
        spec = json.loads(Path(args.spec).read_text())
        {"build": worker_build, "tasks": worker_tasks}[args.worker](spec, Path(args.result))
        return
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("No CUDA GPU here: the kit's figures need one. Use --smoke for a CPU run of the driver.")
    report = Kit(args).run()
    print(json.dumps(report.get("summary", {}), indent=1))


if __name__ == "__main__":
    main()
