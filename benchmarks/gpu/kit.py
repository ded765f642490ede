"""The GPU kit's driver: every figure of issue 12 in one command, on a GPU machine with no network.

On the GPU machine, from the repository root, with the folder `.gpukit/` (made by
benchmarks/gpu/prepare.sh) sent along and $OUT set, run.sh installs the wheels and calls:

    python3 benchmarks/gpu/kit.py --out $OUT/gpu_kit.json --log $OUT/gpu_kit.log --deadline EPOCH

CPU smoke run of the same driver (tiny architecture, no wheels, no cap; tests/integration/benchmarks/test_gpu_kit.py):

    python benchmarks/gpu/kit.py --smoke --out /tmp/gpu_kit_smoke.json

What it measures (the JSON's `parts`, in this order of importance):

- build: random-weight Llama-3.1-8B and Llama-3.2-1B architectures (gpu_fit.ARCHS; tiny in the
  smoke run) built on the device, side by side, with answers that end (randmodel.py: EOS
  calibrated to a per-token probability of 0.025 at T 0.7 / top-p 0.9), saved once in bf16 and
  once pre-quantised to 4-bit NF4 (what every later process loads: seconds, no re-quantisation),
  and a stand-in M1 adapter made on the in-memory model (the gpu preset's LoRA, random B); the
  1B also gets the finish rate of srlite's own sampler at the round's answer length. Records
  which native library bitsandbytes loaded.
- memory_8b: the 8B in 4-bit, M1 stacked and a new trainable adapter (a round's M_t), HF backend:
  peak GPU memory of one judging batch at the preset's gen_batch_size with the preset's longest
  prompts (rubric + a 512-token answer, 3 x 256-token judgments, every sequence to full length)
  and of DPO steps at max_length 1024 (micro-batch 2, gradient checkpointing). Target <= 20 GiB.
- round_hf: `srlite init` + `srlite iterate --rounds 1` on the 1B, backend hf: the gpu preset's
  4-bit, gradient checkpointing, LoRA, batch sizes and max_length, but a small round (8 prompts,
  4 candidates, 64-token answers and prompts, SFT on 8 + 8 seed records, one DPO epoch, no
  evaluation) judged by the deterministic stand-in benchmarks/gpu/kit_judge.py
  (`--set judge=python:...`; a random model cannot judge). Stage timings from manifest.json,
  pair counts, candidate finish rate, peak memory. Where srlite has no `judge` field, skipped.
- speed_hf: tokens/s of batched sampling (srlite's sampler, 16 prompts x 4 candidates = the
  preset's gen_batch_size of 64 sequences, 64 new tokens) vs one `generate` per sample (2
  samples): tokens/s is a rate, so short runs measure it, after a warm-up of the same path; EOS
  suppressed so every path does equal work. 1B and 8B. Target: batched >= 10x naive. Last, on the
  1B: the judging stage old vs new (internals.judging_stage: 10 random answers x the preset's 3
  judgments of up to 256 tokens, one batch; old = every prompt prefilled whole + HF `generate`, new =
  the rubric's KV cache + our decode loop; EOS allowed, so judgments end at the calibrated hazard).
  Target (issue 13): old / new >= 2x.
- speed_unsloth: the same on the Unsloth backend (target: >= 1.5x HF batched); or why not.
- round_unsloth: round_hf with backend unsloth.
- memory_8b_unsloth: memory_8b's judging batch and DPO steps on the Unsloth backend.

How it fits one call of the device tool (run.sh's whole run, install included, within
KIT_TOTAL_S = 480 s). Processes are few, because each start + model load costs: one worker per
backend loads each architecture once (M1 + a trainable adapter, as a round holds M_t) and runs
every measurement of that backend on it (sampling first, DPO last, as in a round), so the
memory and speed parts of a backend share a process. A global deadline decides: a step starts
only if the time left covers its minimum, inside a worker a task runs only if its estimate fits
(minus the time reserved for the round that ranks above it: the HF speed tasks leave room for
round_hf, the Unsloth memory tasks for round_unsloth; what is left out that way runs after that
round if time remains), and everything not run says "not run: time budget". Every process has a
hard timeout, every task in a worker too (the driver watches the worker's progress file and
kills a task that overruns; the tasks after it are retried in a fresh process unless they need
the same model). The JSON is rewritten after every step, so a kill keeps what finished.

Estimates (H100 80 GB, from first principles; each process is capped at 24 GiB). The 8B in 4-bit
is 5.7 GB (7.0 B NF4 weights = 3.5 GB + absmax, bf16 embeddings and LM head 2.1 GB), the 1B 1.0 GB.
At batch 1 a decode step is bandwidth bound at 5.7 GB / 3 TB/s ~ 2 ms, but HF generate through
32 layers of PEFT-wrapped Linear4bit costs ~30-40 ms of Python per step, which dominates (the 1B:
~15-20 ms); at batch 64 bitsandbytes dequantises every weight to bf16 first (~18 GB of traffic,
~6 ms), still under the Python overhead. So the batched/naive ratio is close to the batch size,
and short runs (64 tokens, 2 naive samples) measure the same rates as long ones.

| step (processes) | what | est. s | min s | cap s |
|---|---|---|---|---|
| install (run.sh) | pip --no-index of ~11 MiB of wheels into /tmp/site | 10 | | |
| build (8B, 1B side by side) | 8B: process + torch/transformers ~8; random init on the GPU + EOS calibration ~6; bf16 save, 16 GB to /dev/shm, ~12; M1 on the in-memory model ~3; 4-bit load of the bf16 files (quantised on the GPU) ~18; 4-bit save (5.7 GB) ~5. The 1B (~30 s, finish rate included) hides under it | 60 | 40 | 150 |
| hf worker: memory_8b + speed_hf | imports (transformers, peft, trl, datasets) + CUDA ~12; 8B load (5.7 GB from page cache) ~8; judging batch: 63 sequences x 256 steps at ~50 ms (bnb dequantises 3.5 GB -> 14 GB bf16 per step at batch > 1, ~6 ms at 3 TB/s, + ~35 ms of Python in 32 layers x 7 LoRA-wrapped projections) ~14; 8B batched 64 steps ~4, naive 128 steps at ~35 ms ~5; DPO: trainer + reference pass + 2 steps of 4 x 1024 tokens (~2.6e14 FLOP each with recompute) ~10; 1B load ~3, 1B speed ~4 | 65 | 30 | 160 |
| round_hf (init, iterate) | init ~3; iterate: imports ~10, M0 load ~3, SFT 1 step ~6, M1 load ~3, prompts + candidates (16 + 32 sequences x 64 steps at ~20 ms) ~5, DPO ~6, saves ~2 (H200, 2026-11-27: 84 s) | 85 | 30 | 130 |
| unsloth worker: speed_unsloth + memory_8b_unsloth | import unsloth + its patches ~20, first load's code generation + Triton JIT ~20; 8B load ~12 + speed ~8; judging batch ~12 and DPO ~12 (only if round_unsloth keeps its time); 1B load + speed ~10 | 100 | 45 | 200 |
| round_unsloth (init, iterate) | round_hf + the unsloth import (its caches now warm) + its first DPO step's compilation (H200: past 128 s) | 140 | 40 | 150 |
| leftovers_hf, leftovers_unsloth | what a reserve or a crash left out, after the round it made room for, if time remains | 0 | 20 | 150 |
| total | | ~450 of 480 (the HF worker's tasks measured 190 s on an H200: the deadline drops what does not fit) | | |

Every process is capped at --cap-gib (24) of GPU memory: the workers through gpu_fit, and the
srlite commands through benchmarks/gpu/site/sitecustomize.py (SRLITE_GPU_CAP_GIB).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import gc
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
TARGET_JUDGING_OLD_OVER_NEW = 2.0  # issue 13: the judging stage, old vs new
PARTS = ("build", "memory_8b", "round_hf", "speed_hf", "speed_unsloth", "round_unsloth", "memory_8b_unsloth")
LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate", "fsspec", "unsloth",
             "unsloth_zoo", "xformers", "triton", "huggingface_hub", "tokenizers")


@dataclass
class Step:
    est: float  # expected seconds
    min: float  # start only with at least this much time left
    cap: float  # hard timeout


@dataclass
class Profile:
    """Sizes, estimates and limits of one kit run: the GPU run, or the CPU smoke run."""

    smoke: bool
    big: str  # the architecture whose memory must fit
    small: str  # the architecture of the rounds
    dpo_length: int
    dpo_steps: int
    speed: dict  # internals.speed sizes
    judge_gen: dict  # response_tokens / judge_tokens (empty: the preset's)
    judging: dict  # internals.judging_stage sizes: items, response_tokens (judge_tokens: the preset's if absent)
    finish: dict  # finish-rate sample of the small model: prompts, max_new_tokens
    round_preset: str
    round_set: dict
    seed_records: int  # IFT and EFT records each for M1's SFT
    steps: dict  # step name -> Step
    worker_start: dict  # backend -> seconds to start a worker (imports, CUDA)
    load: dict  # "backend/arch" -> seconds to load M_t
    task_est: dict  # "backend/kind/arch" (or "backend/kind") -> seconds
    checkpoint: str = "4bit"  # which base folder the workers and rounds load
    hazard: float = 0.025  # per-token EOS probability of the random models' sampled answers
    extra: dict = field(default_factory=dict)


GPU = Profile(
    smoke=False, big="8b", small="1b", dpo_length=1024, dpo_steps=2,
    speed=dict(prompts=16, candidates=4, new_tokens=64, naive_samples=2),
    judge_gen={}, judging=dict(items=10, response_tokens=128), finish=dict(prompts=32, max_new_tokens=64),
    round_preset="gpu",
    round_set=dict(prompts_per_round=8, n_candidates=4, response_max_new_tokens=64, prompt_max_new_tokens=64,
                   judge_samples=1, judge_max_new_tokens=64, eval_each_round=False, sft_epochs=1.0, dpo_epochs=1.0,
                   seed=0),
    seed_records=8,
    steps=dict(build=Step(60, 40, 150), hf=Step(65, 30, 160), round_hf=Step(85, 30, 130),
               unsloth=Step(100, 45, 200), round_unsloth=Step(140, 40, 150), leftovers_hf=Step(30, 20, 150),
               leftovers_unsloth=Step(30, 20, 150)),
    worker_start=dict(hf=12, unsloth=40),
    load={"hf/8b": 8, "hf/1b": 3, "unsloth/8b": 12, "unsloth/1b": 6},
    # Measured on an H100 on 2026-11-26 (docs/benchmarks.md): Unsloth's first DPO step compiles each
    # decoder layer (60 s for one step on the 1B, against HF's 8.5 s), so its DPO gets its own estimate.
    # Task estimates from an H200 on 2026-11-27 (task seconds, warm-up included; the first-principles
    # ones were 4x low for the HF judging batch, and the HF worker ran past its cap in 1b_naive):
    # rounds from the same run (HF 84 s; Unsloth past 128 s, in its first DPO step).
    task_est={"hf/judge_batch": 65, "unsloth/judge_batch": 24, "hf/dpo": 28, "unsloth/dpo": 60, "batched/8b": 27,
              "batched/1b": 20, "naive/8b": 14, "naive/1b": 8,
              # not yet measured: two warm-ups + two passes of one 30-row batch running to its longest
              # judgment (~160 of 256 tokens at the hazard) at ~15 HF decode steps/s on the 1B
              "hf/judging": 45},
)
SMOKE = Profile(
    smoke=True, big="tiny", small="tiny", dpo_length=64, dpo_steps=1,
    speed=dict(prompts=4, candidates=2, new_tokens=4, naive_samples=1),
    judge_gen=dict(response_tokens=16, judge_tokens=4, items=2), judging=dict(items=2, response_tokens=8, judge_tokens=8),
    finish=dict(prompts=8, max_new_tokens=48),
    round_preset="cpu",
    round_set=dict(prompts_per_round=4, n_candidates=4, response_max_new_tokens=16, prompt_max_new_tokens=16,
                   prompt_shots=2, prompt_shots_generated=0, judge_samples=1, eval_each_round=False, sft_epochs=1.0,
                   lora_r=4, lora_alpha=8, seed=0),
    seed_records=3,
    steps=dict(build=Step(1, 1, 300), hf=Step(1, 1, 300), round_hf=Step(1, 1, 300), unsloth=Step(1, 1, 120),
               round_unsloth=Step(1, 1, 300), leftovers_hf=Step(1, 1, 300), leftovers_unsloth=Step(1, 1, 300)),
    worker_start=dict(hf=1, unsloth=1), load={}, task_est={},
    # 4-bit matmuls on CPU are slow and say nothing about CUDA: the smoke run's workers and rounds load
    # the bf16 folder; the build's finish rate still goes through srlite's loader on the 4-bit one.
    checkpoint="bf16",
    # short answers (hazard 0.1: ~80% of the base's 16-token candidates end; M1's SFT moves that, 3 of 6
    # ended in one run), 4 candidates for each of 4 prompts, so pairs form (truncated candidates never
    # enter pairs) with few tokens generated on a CPU
    hazard=0.1,
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


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class Task:
    """One measurement in a worker process."""

    name: str  # key in its part's "tasks"
    part: str
    kind: str  # judge_batch | batched | naive | dpo | judging
    arch: str
    est: float
    reserve: str | None = None  # a step that ranks above this task and must keep its time

    def spec(self, kit: "Kit", backend: str) -> dict:
        reserve_s = kit.p.steps[self.reserve].est if self.reserve else 0.0
        cap = 60.0 if kit.p.smoke else max(60.0, 3 * self.est + 30)
        return {"name": self.name, "part": self.part, "kind": self.kind, "arch": self.arch, "est": self.est,
                "reserve_s": reserve_s, "cap_s": cap, "load_est": kit.p.load.get(f"{backend}/{self.arch}", 0.0),
                "load_cap_s": 90.0 if not kit.p.smoke else 120.0}


class Kit:
    def __init__(self, args):
        self.args = args
        self.p = SMOKE if args.smoke else GPU
        self.out = Path(args.out).resolve()
        self.log = Path(args.log).resolve() if args.log else self.out.with_suffix(".log")
        self.work = Path(args.work or tempfile.mkdtemp(prefix="srlite-gpukit-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.tokenizer = Path(args.tokenizer).resolve() if args.tokenizer else None
        self.start = time.time()
        self.deadline = args.deadline or self.start + args.budget_s
        self.models: dict = {}  # arch -> {"4bit": dir, "bf16": dir, "m1": dir, "cal": calibration}
        self.unsloth_checkpoint = self.p.checkpoint
        self.unsloth_error: str | None = None
        self.tasks: dict = {p: {} for p in ("memory_8b", "speed_hf", "speed_unsloth", "memory_8b_unsloth")}
        self.processes: dict = {p: [] for p in self.tasks}
        self.leftover: dict = {"hf": [], "unsloth": []}
        self.report = {
            "kit": {"command": " ".join([Path(sys.executable).name, *sys.argv]), "mode": "smoke" if args.smoke else "gpu",
                    "deadline_s": round(self.deadline - self.start, 1), "cap_gib": args.cap_gib or None,
                    "work_dir": str(self.work), "install": json.loads(args.install) if args.install else None,
                    "base_versions": json.loads(args.base_versions) if args.base_versions else None,
                    "profile": {k: v for k, v in self.p.__dict__.items() if k not in ("steps", "extra")},
                    "steps": {k: v.__dict__ for k, v in self.p.steps.items()},
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "timeline": []},
            "device": "CPU (smoke run)" if args.smoke else None,
            "versions": versions(),
            "targets": {"memory_gib": TARGET_GIB, "batched_over_naive": TARGET_BATCHED_OVER_NAIVE,
                        "unsloth_over_hf": TARGET_UNSLOTH_OVER_HF, "judging_old_over_new": TARGET_JUDGING_OLD_OVER_NEW},
            "parts": {name: {"status": "not run", "error": "not reached"} for name in PARTS},
        }

    # --- bookkeeping -------------------------------------------------------------------------
    def left(self) -> float:
        return self.deadline - time.time()

    def elapsed(self) -> float:
        return time.time() - self.start

    def write(self) -> None:
        self.report["kit"]["elapsed_s"] = round(self.elapsed(), 1)
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(self.report, indent=1, default=str) + "\n", encoding="utf-8")
        tmp.replace(self.out)

    def say(self, msg: str) -> None:
        line = f"[gpu kit {self.elapsed():6.1f}s] {msg}"
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
            # unsloth's import raises when torchvision's compiled ops do not load; nothing here uses them
            "UNSLOTH_SKIP_TORCHVISION_CHECK": "1",
            "WANDB_DISABLED": "true",
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def spawn(self, label: str, argv: list, timeout: float, own_log: bool = False, watch=None, **env_extra) -> dict:
        """Run one process (its own session, output into the log); kill its group at the timeout, or
        when `watch()` (asked every second) returns a reason. With own_log (processes that run side
        by side) its output goes to its own file first."""
        log = self.work / f"{label}.log" if own_log else self.log
        with open(log, "w" if own_log else "a", encoding="utf-8") as f:
            f.write(f"\n===== {label}: {' '.join(map(str, argv))}\n")
            offset = f.tell()
        start = time.monotonic()
        killed = None
        with open(log, "a", encoding="utf-8") as f:
            proc = subprocess.Popen([str(a) for a in argv], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=ROOT, env=self.env(**env_extra), start_new_session=True)
            while True:
                try:
                    rc = proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() - start > timeout:
                    killed = f"ran past its {timeout:.0f} s limit"
                elif watch is not None:
                    killed = watch()
                if killed:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    rc = proc.wait()
                    break
        with open(log, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            tail = f.read()[-6000:]
        if own_log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(log.read_text(encoding="utf-8", errors="replace"))
        return {"rc": rc, "timed_out": killed is not None, "killed": killed,
                "seconds": round(time.monotonic() - start, 1), "tail": tail}

    def timeline(self, step: str, **info) -> None:
        self.report["kit"]["timeline"].append({"step": step, "at_s": round(self.elapsed(), 1), **info})

    def not_enough_time(self, step: str) -> str | None:
        s = self.p.steps[step]
        left = self.left()
        if left < s.min:
            return (f"not run: time budget ({max(0.0, left):.0f} s left of the kit's {self.deadline - self.start:.0f} s; "
                    f"this step needs at least {s.min:.0f} s, about {s.est:.0f} s)")
        return None

    # --- the run -----------------------------------------------------------------------------
    def run(self) -> dict:
        self.say(f"mode {'smoke' if self.p.smoke else 'gpu'}, {self.left():.0f} s to the deadline, work dir {self.work}")
        self.write()
        only = set(self.args.parts.split(",")) if self.args.parts else None
        for name in PARTS[1:]:
            if only and name not in only:
                self.report["parts"][name] = {"status": "not run", "error": "not selected (--parts)"}
        plan = [("build", self.step_build), ("hf", self.step_hf), ("round_hf", self.step_round_hf),
                ("leftovers_hf", lambda t: self.step_leftovers("hf", t)), ("unsloth", self.step_unsloth),
                ("round_unsloth", self.step_round_unsloth), ("leftovers_unsloth", lambda t: self.step_leftovers("unsloth", t))]
        for step, fn in plan:
            why = self.not_enough_time(step)
            if why:
                self.say(f"{step}: {why}")
                self.skip_step(step, why)
                self.write()
                continue
            timeout = min(self.p.steps[step].cap, self.left())
            start = time.time()
            try:
                fn(timeout)
            except Exception:
                self.step_error(step, short_error(traceback.format_exc()))
            self.timeline(step, seconds=round(time.time() - start, 1))
            self.assemble()
            self.write()
        self.assemble()
        self.summarise()
        self.write()
        return self.report

    def step_parts(self, step: str) -> list[str]:
        return {"build": ["build"], "hf": ["memory_8b", "speed_hf"], "round_hf": ["round_hf"],
                "unsloth": ["speed_unsloth", "memory_8b_unsloth"], "round_unsloth": ["round_unsloth"],
                "leftovers_hf": [], "leftovers_unsloth": []}[step]

    def skip_step(self, step: str, why: str) -> None:
        if step in ("hf", "unsloth"):
            for task in self.worker_tasks(step):
                self.tasks[task.part].setdefault(task.name, {"status": "not run", "error": why})
        elif step.startswith("leftovers_"):
            tasks = self.leftover[step.split("_", 1)[1]]
            for task in tasks:
                self.tasks[task.part][task.name] = {"status": "not run", "error": why}
            tasks.clear()
        else:
            for part in self.step_parts(step):
                if self.report["parts"][part].get("error") == "not reached":
                    self.report["parts"][part] = {"status": "not run", "error": why}

    def step_error(self, step: str, error: str) -> None:
        self.say(f"{step}: driver error {error[-300:]}")
        for part in self.step_parts(step):
            self.report["parts"][part] = {"status": "error", "error": f"kit driver error: {error}"}

    def selected(self, part: str) -> bool:
        return not self.args.parts or part in self.args.parts.split(",")

    def needs(self, *archs: str) -> str | None:
        missing = [a for a in dict.fromkeys(archs) if a not in self.models]
        return f"skipped: the {', '.join(missing)} model was not built (see parts.build)" if missing else None

    # --- build -------------------------------------------------------------------------------
    def step_build(self, timeout: float) -> None:
        self.say(f"build: start (timeout {timeout:.0f} s)")
        start = time.time()
        self.report["parts"]["build"] = res = self.build(timeout)
        res.setdefault("status", "error" if res.get("error") else "ok")
        res["seconds"] = round(time.time() - start, 1)
        self.say(f"build: {res['status']}" + (f" ({res['error'][:200]})" if res.get("error") else ""))

    def build(self, timeout: float) -> dict:
        tokenizer = self.tokenizer or self.work / "tokenizer"
        archs = list(dict.fromkeys([self.p.big, self.p.small]))
        procs = {}
        for i, arch in enumerate(archs):  # concurrently: mostly disk and quantisation, not a measurement
            spec = {"smoke": self.p.smoke, "arch": arch, "tokenizer": str(tokenizer), "out": str(self.work / f"model-{arch}"),
                    "make_tokenizer": self.tokenizer is None and i == 0, "hazard": self.p.hazard,
                    "finish": self.p.finish if arch == self.p.small else None}
            spec_file, result_file = self.work / f"build-{arch}.spec.json", self.work / f"build-{arch}.result.json"
            spec_file.write_text(json.dumps(spec))
            result_file.unlink(missing_ok=True)
            procs[arch] = (spec_file, result_file)
        with cf.ThreadPoolExecutor(len(archs)) as pool:
            futures = {arch: pool.submit(self.spawn, f"build-{arch}", [sys.executable, __file__, "--worker", "build", "--spec",
                                                                       procs[arch][0], "--result", procs[arch][1]], timeout,
                                         own_log=True)
                       for arch in archs}
            runs = {arch: f.result() for arch, f in futures.items()}
        out, errors = {"archs": {}}, []
        for arch in archs:
            res = _read_json(procs[arch][1]) or {}
            run = runs[arch]
            if run["timed_out"]:
                res["error"] = f"killed: {run['killed']} (finished steps are above)"
            elif run["rc"] != 0:
                res["error"] = f"exit code {run['rc']}: " + short_error(run["tail"])
            res["process_seconds"] = run["seconds"]
            out["archs"][arch] = res
            if res.get("error"):
                errors.append(f"{arch}: {res['error']}")
            if "dirs" in res and res.get("calibration"):  # the model folders and M1 exist
                self.models[arch] = {**res.pop("dirs"), "cal": res["calibration"]}
            if res.get("device") and not self.p.smoke:
                self.report["device"] = res["device"]
        if errors:
            out["status"], out["error"] = "error", "; ".join(errors)
        return out

    # --- the workers (memory and speed) -------------------------------------------------------
    def worker_tasks(self, backend: str) -> list[Task]:
        """Every measurement of one backend, in the order one process runs them: per architecture
        one load, sampling first, DPO last (as a round uses M_t)."""
        big, small, e = self.p.big, self.p.small, self.p.task_est
        mem, speed = ("memory_8b", "speed_hf") if backend == "hf" else ("memory_8b_unsloth", "speed_unsloth")
        judge = Task("judge_batch", mem, "judge_batch", big, e.get(f"{backend}/judge_batch", 1.0),
                     reserve=None if backend == "hf" else "round_unsloth")
        dpo = Task(f"dpo_{self.p.dpo_length}", mem, "dpo", big, e.get(f"{backend}/dpo", 1.0),
                   reserve=None if backend == "hf" else "round_unsloth")
        speed_reserve = "round_hf" if backend == "hf" else None

        def speed_tasks(arch: str) -> list[Task]:
            return [Task(f"{arch}_{how}", speed, how, arch, e.get(f"{how}/{arch}", 1.0), reserve=speed_reserve)
                    for how in ("batched", "naive")]

        # The 8B first, so nothing an earlier model left behind counts in its peak memory. Unsloth's
        # speed tasks come first (they rank above round_unsloth, its memory tasks below it).
        tasks = [judge, *speed_tasks(big), dpo] if backend == "hf" else [*speed_tasks(big), judge, dpo]
        if small != big:
            tasks += speed_tasks(small)
        if backend == "hf":  # the judging stage old vs new (the rubric cache is HF-only), last: it ranks lowest
            tasks.append(Task(f"{small}_judging", speed, "judging", small, e.get("hf/judging", 1.0),
                              reserve=speed_reserve))
        return [t for t in tasks if self.selected(t.part)]

    def step_hf(self, timeout: float) -> None:
        tasks = self.worker_tasks("hf")
        if (why := self.needs(*[t.arch for t in tasks])):
            for t in tasks:
                if t.arch not in self.models:
                    self.tasks[t.part][t.name] = {"status": "skipped", "error": why}
            tasks = [t for t in tasks if t.arch in self.models]
        self.run_worker("hf", tasks, timeout)

    def step_unsloth(self, timeout: float) -> None:
        tasks = self.worker_tasks("unsloth")
        if (why := self.needs(*[t.arch for t in tasks])):
            for t in tasks:
                if t.arch not in self.models:
                    self.tasks[t.part][t.name] = {"status": "skipped", "error": why}
            tasks = [t for t in tasks if t.arch in self.models]
        self.run_worker("unsloth", tasks, timeout)

    def step_leftovers(self, backend: str, timeout: float) -> None:
        tasks, self.leftover[backend] = self.leftover[backend], []
        if not tasks or (backend == "unsloth" and self.unsloth_error):
            return
        for t in tasks:
            t.reserve = None  # the round they made room for has run
        self.run_worker(backend, tasks, timeout, label="again")

    def run_worker(self, backend: str, tasks: list[Task], timeout: float, label: str = "") -> None:
        if not tasks:
            return
        name = f"worker-{backend}" + (f"-{label}" if label else "")
        spec_file, result_file, progress = (self.work / f"{name}.spec.json", self.work / f"{name}.result.json",
                                            self.work / f"{name}.progress.json")
        for f in (result_file, progress):
            f.unlink(missing_ok=True)
        spec = {"smoke": self.p.smoke, "backend": backend, "models": self.models, "deadline": self.deadline,
                "checkpoint": self.unsloth_checkpoint if backend == "unsloth" else self.p.checkpoint,
                "tasks": [t.spec(self, backend) for t in tasks], "progress": str(progress),
                "start_cap_s": 120.0 if self.p.smoke else 3 * self.p.worker_start[backend] + 30,
                "sizes": {"speed": self.p.speed, "judge_gen": self.p.judge_gen, "judging": self.p.judging,
                          "dpo_steps": self.p.dpo_steps}}
        spec_file.write_text(json.dumps(spec))
        self.say(f"{name}: start, {len(tasks)} tasks (timeout {timeout:.0f} s)")

        def watch() -> str | None:  # a task that overruns its own limit is killed with its process
            cur = _read_json(progress) or {}
            if cur.get("task") and time.time() - cur["started"] > cur["cap_s"]:
                return f"task {cur['task']} ran past its {cur['cap_s']:.0f} s limit"
            return None

        run = self.spawn(name, [sys.executable, __file__, "--worker", "tasks", "--spec", spec_file, "--result", result_file],
                         timeout, watch=watch)
        res = _read_json(result_file) or {}
        current = (_read_json(progress) or {}).get("task")
        info = {"process": name, "seconds": run["seconds"], "exit_code": run["rc"], "start_seconds": res.get("start_seconds"),
                "loads": res.get("loads"), "cap": res.get("cap"), "checkpoint": res.get("checkpoint")}
        if res.get("device") and not self.p.smoke:
            self.report["device"] = self.report["device"] or res["device"]
        if run["timed_out"]:
            info["killed"] = run["killed"]
        for part in dict.fromkeys(t.part for t in tasks):
            self.processes[part].append(info)
        if res.get("backend_error"):
            if backend == "unsloth":
                self.unsloth_error = res["backend_error"]
            for t in tasks:
                self.tasks[t.part][t.name] = {"status": "error", "error": f"{backend} backend unavailable: {res['backend_error']}"}
            self.say(f"{name}: backend unavailable: {res['backend_error'][:300]}")
            return
        if backend == "unsloth" and res.get("checkpoint"):
            self.unsloth_checkpoint = res["checkpoint"]
        done = res.get("tasks", {})
        if current == "(start)" or not res:  # died or hung before its first task: the same would happen again
            why = run["killed"] or f"the process died while starting (exit code {run['rc']})"
            if backend == "unsloth":
                self.unsloth_error = f"{why}: " + short_error(run["tail"], 800)
            for t in tasks:
                self.tasks[t.part][t.name] = {"status": "error", "error": f"{backend} worker: {why}: " + short_error(run["tail"], 800)}
            self.say(f"{name}: {why}")
            return
        dead_arch = None
        for t in tasks:
            if t.name in done:
                out = done[t.name]
                if out.get("status") == "not run" and t.reserve:  # made room for a round: after it, if time allows
                    self.leftover[backend].append(t)
                self.tasks[t.part][t.name] = out
            elif t.name == current or (current is None and dead_arch is None and run["rc"] != 0):
                why = run["killed"] or (f"the process died (exit code {run['rc']})" if run["rc"] else "no result")
                self.tasks[t.part][t.name] = {"status": "error", "error": f"{why}: " + short_error(run["tail"], 800)}
                dead_arch = t.arch
            elif t.arch == dead_arch:
                self.tasks[t.part][t.name] = {"status": "skipped", "error": f"skipped: task {current} died on this model"}
            else:
                self.leftover[backend].append(t)
                self.tasks[t.part][t.name] = {"status": "not run", "error": "not run: its worker stopped first (retried later)"}
        self.say(f"{name}: exit {run['rc']} in {run['seconds']} s" + (f" ({run['killed']})" if run["killed"] else ""))

    # --- rounds ------------------------------------------------------------------------------
    def step_round_hf(self, timeout: float) -> None:
        if self.selected("round_hf"):
            self.report["parts"]["round_hf"] = self.round_part("hf", timeout)

    def step_round_unsloth(self, timeout: float) -> None:
        if not self.selected("round_unsloth"):
            return
        if self.unsloth_error:
            self.report["parts"]["round_unsloth"] = {"status": "skipped",
                                                     "error": f"skipped: unsloth does not import here: {self.unsloth_error}"}
        elif self.report["parts"]["round_hf"].get("error") == JUDGE_MISSING:
            self.report["parts"]["round_unsloth"] = {"status": "skipped", "error": JUDGE_MISSING}
        else:
            self.report["parts"]["round_unsloth"] = self.round_part("unsloth", timeout)

    def round_part(self, backend: str, timeout: float) -> dict:
        self.say(f"round_{backend}: start (timeout {timeout:.0f} s)")
        start = time.time()
        try:
            res = self.round(backend, timeout)
        except Exception:
            res = {"status": "error", "error": short_error(traceback.format_exc())}
        res.setdefault("status", "error" if res.get("error") else "ok")
        res["seconds"] = round(time.time() - start, 1)
        self.say(f"round_{backend}: {res['status']} in {res['seconds']} s" + (f" ({res['error'][:200]})" if res.get("error") else ""))
        return res

    def round(self, backend: str, timeout: float) -> dict:
        small = self.p.small
        if (why := self.needs(small)):
            return {"status": "skipped", "error": why}
        import internals

        checkpoint = self.unsloth_checkpoint if backend == "unsloth" else self.p.checkpoint
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
        # init loads no model: no GPU memory cap there (it would start CUDA for nothing)
        run = self.spawn(f"round-{backend}-init", init, min(60, timeout), SRLITE_GPU_CAP_GIB="")
        out["init_seconds"] = run["seconds"]
        if run["rc"] != 0 or run["timed_out"]:
            if "unknown config key 'judge'" in run["tail"]:
                return {**out, "status": "skipped", "error": JUDGE_MISSING}
            return {**out, "status": "error", "error": "srlite init failed: " + (run["killed"] or short_error(run["tail"]))}
        run = self.spawn(f"round-{backend}-iterate", iterate, max(1.0, timeout - run["seconds"]),
                         SRLITE_KIT_PEAK_FILE=peak_file)
        out["iterate_seconds"] = run["seconds"]
        out.update(self.round_figures(run_dir))
        if peak_file.is_file():
            peaks = [json.loads(line) for line in peak_file.read_text().splitlines() if line.strip()]
            out["peak_reserved_gib"] = max((p["peak_reserved_gib"] for p in peaks), default=None)
        if run["timed_out"]:
            out["error"] = f"srlite iterate killed: {run['killed']} (finished stages above)"
        elif run["rc"] != 0:
            out["error"] = f"srlite iterate failed (exit {run['rc']}): " + short_error(run["tail"])
        return out

    @staticmethod
    def round_figures(run_dir: Path) -> dict:
        """What the run directory says: stage timings (manifest.json), the round's metrics."""
        manifest = _read_json(run_dir / "manifest.json") or {}
        cfg = _read_json(run_dir / "config.json") or {}
        metrics = _read_json(run_dir / "round1" / "metrics.json") or {}
        out = {"stage_seconds": {k: v.get("seconds") for k, v in manifest.get("stages", {}).items()},
               "config": {k: cfg.get(k) for k in ("backend", "judge", "quantize", "gradient_checkpointing", "lora_r",
                                                  "lora_alpha", "prompts_per_round", "n_candidates", "response_max_new_tokens",
                                                  "gen_batch_size", "max_length", "train_micro_batch_size", "top_k",
                                                  "repetition_penalty") if k in cfg},
               "libraries": manifest.get("libraries")}
        m1 = _read_json(run_dir / "m1" / "metrics.json")
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

    # --- the report --------------------------------------------------------------------------
    def assemble(self) -> None:
        """The worker parts from their tasks: ok when every task is, else the errors and reasons."""
        for part, tasks in self.tasks.items():
            if not self.selected(part):
                continue
            if not tasks:
                if part in ("speed_unsloth", "memory_8b_unsloth") and self.unsloth_error:
                    why = f"unsloth does not import here: {self.unsloth_error}"
                    self.report["parts"][part] = ({"status": "error", "error": why} if part == "speed_unsloth"
                                                  else {"status": "skipped", "error": f"skipped: {why}"})
                continue
            if part == "memory_8b_unsloth" and self.unsloth_error:
                self.report["parts"][part] = {"status": "skipped",
                                              "error": f"skipped: unsloth does not import here: {self.unsloth_error}"}
                continue
            if part == "speed_unsloth" and self.unsloth_error:
                self.report["parts"][part] = {"status": "error", "error": f"unsloth does not import here: {self.unsloth_error}",
                                              "processes": self.processes[part]}
                continue
            for t in tasks.values():
                if t.get("peak_reserved_gib") is not None and part.startswith("memory"):
                    t["within_target"] = t["peak_reserved_gib"] <= TARGET_GIB
            problems = [f"{n}: {t['error']}" for n, t in tasks.items() if t.get("error")]
            ran = [t for t in tasks.values() if t.get("status", "ok") == "ok" and not t.get("error")]
            failed = [t for t in tasks.values() if t.get("status") == "error"]
            res = {"status": "ok" if not problems else ("error" if ran or failed else "not run"),
                   "tasks": tasks, "processes": self.processes[part]}
            reasons = {t.get("error") for t in tasks.values()}
            if res["status"] == "not run" and len(reasons) == 1:  # one reason for all: say it once
                res["error"] = reasons.pop()
            elif problems:
                res["error"] = "; ".join(problems)
            if part.startswith("speed"):
                res["ratios"] = self.ratios(part)
            self.report["parts"][part] = res

    def ratios(self, part: str) -> dict:
        tasks, ratios = self.tasks[part], {}
        for arch in dict.fromkeys([self.p.small, self.p.big]):
            b, n = tasks.get(f"{arch}_batched", {}), tasks.get(f"{arch}_naive", {})
            if b.get("tokens_per_s") and n.get("tokens_per_s"):
                r = round(b["tokens_per_s"] / n["tokens_per_s"], 2)
                ratios[f"{arch}_batched_over_naive"] = {"ratio": r, "meets_target": r >= TARGET_BATCHED_OVER_NAIVE}
            hf = self.tasks["speed_hf"].get(f"{arch}_batched", {})
            if part == "speed_unsloth" and b.get("tokens_per_s") and hf.get("tokens_per_s"):
                r = round(b["tokens_per_s"] / hf["tokens_per_s"], 2)
                ratios[f"{arch}_unsloth_over_hf_batched"] = {"ratio": r, "meets_target": r >= TARGET_UNSLOTH_OVER_HF}
            r = tasks.get(f"{arch}_judging", {}).get("old_over_new")
            if r:
                ratios[f"{arch}_judging_old_over_new"] = {"ratio": r, "meets_target": r >= TARGET_JUDGING_OLD_OVER_NEW}
        return ratios

    def summarise(self) -> None:
        """The headline figures in one place (each also in its part)."""
        t = self.tasks
        dpo = f"dpo_{self.p.dpo_length}"
        s = {
            "dpo_peak_reserved_gib": t["memory_8b"].get(dpo, {}).get("peak_reserved_gib"),
            "judge_batch_peak_reserved_gib": t["memory_8b"].get("judge_batch", {}).get("peak_reserved_gib"),
            "unsloth_dpo_peak_reserved_gib": t["memory_8b_unsloth"].get(dpo, {}).get("peak_reserved_gib"),
            "unsloth_judge_batch_peak_reserved_gib": t["memory_8b_unsloth"].get("judge_batch", {}).get("peak_reserved_gib"),
        }
        for backend in ("hf", "unsloth"):
            sp = t[f"speed_{backend}"]
            for arch in dict.fromkeys([self.p.small, self.p.big]):
                for how in ("batched", "naive"):
                    s[f"{arch}_{backend}_{how}_tokens_per_s"] = sp.get(f"{arch}_{how}", {}).get("tokens_per_s")
                b, n = s[f"{arch}_{backend}_batched_tokens_per_s"], s[f"{arch}_{backend}_naive_tokens_per_s"]
                s[f"{arch}_{backend}_batched_over_naive"] = round(b / n, 2) if b and n else None
        for arch in dict.fromkeys([self.p.small, self.p.big]):
            u, h = s.get(f"{arch}_unsloth_batched_tokens_per_s"), s.get(f"{arch}_hf_batched_tokens_per_s")
            s[f"{arch}_unsloth_over_hf"] = round(u / h, 2) if u and h else None
        s[f"{self.p.small}_hf_judging_old_over_new"] = t["speed_hf"].get(f"{self.p.small}_judging", {}).get("old_over_new")
        for backend in ("hf", "unsloth"):
            r = self.report["parts"].get(f"round_{backend}", {})
            s[f"round_{backend}_seconds"] = (round(r["init_seconds"] + r["iterate_seconds"], 1)
                                             if r.get("completed") else None)
        s["not_run"] = sorted(f"{p}" for p, v in self.report["parts"].items() if v.get("status") == "not run")
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
    """Build one architecture: bf16 and pre-quantised 4-bit folders, the stand-in M1, (small) the finish rate."""
    import torch

    import internals
    import randmodel

    t0 = time.perf_counter()
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
    tok_dir = Path(spec["tokenizer"])
    if not (tok_dir / "tokenizer.json").is_file():
        if spec.get("make_tokenizer"):
            internals.save_embedded_tokenizer(tok_dir)
        else:  # another build process is writing it
            for _ in range(240):
                if (tok_dir / "tokenizer.json").is_file():
                    break
                time.sleep(0.5)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    dirs = {"bf16": str(out / "bf16"), "4bit": str(out / "4bit"), "m1": str(out / "m1")}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    result["start_seconds"] = round(time.perf_counter() - t0, 1)
    t = time.perf_counter()
    model, cal = randmodel.build(fit.ARCHS[spec["arch"]], tok, device=device, hazard=spec["hazard"])
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
    result["save_bf16_seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    cfg = fit.make_config(internals.fit_args(spec["smoke"]), Path(dirs["bf16"]), "hf")
    internals.make_m1(model, tok, cfg, Path(dirs["m1"]))  # after the save: PEFT wraps the model in place
    result["m1_seconds"] = round(time.perf_counter() - t, 1)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    _write(result_path, result)
    t = time.perf_counter()
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)  # what srlite's loader asks for
    kwargs = {"device_map": {"": 0}} if device == "cuda" else {}
    q = AutoModelForCausalLM.from_pretrained(dirs["bf16"], quantization_config=bnb, dtype=torch.bfloat16, **kwargs)
    result["bitsandbytes"] = internals.bitsandbytes_library()
    q.save_pretrained(dirs["4bit"])
    tok.save_pretrained(dirs["4bit"])
    del q
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    result["quantise_seconds"] = round(time.perf_counter() - t, 1)
    result["size_gib"] = {k: round(sum(f.stat().st_size for f in Path(v).rglob("*") if f.is_file()) / 1024**3, 2)
                          for k, v in dirs.items()}
    result["dirs"] = dirs  # usable from here on, even if the finish-rate sample below fails
    _write(result_path, result)
    if spec.get("finish"):
        t = time.perf_counter()
        result["finish_rate"] = internals.finish_rate(dirs, spec["smoke"], **spec["finish"])
        result["finish_rate"]["seconds"] = round(time.perf_counter() - t, 1)
        _write(result_path, result)
    done.write_text(json.dumps({"spec": spec, "result": result}, default=str))


def worker_tasks(spec: dict, result_path: Path) -> None:
    """One backend's measurements: per architecture one load (M1 + a trainable adapter), then its
    tasks in order, each recorded as it finishes; a task whose estimate no longer fits before the
    deadline (minus its reserve) is not run. spec["progress"] tells the driver what runs now."""
    t0 = time.perf_counter()
    import internals

    backend, progress = spec["backend"], Path(spec["progress"])
    result: dict = {"backend": backend, "tasks": {}, "loads": {}}
    _write(result_path, result)
    _write(progress, {"task": "(start)", "started": time.time(), "cap_s": spec["start_cap_s"]})
    try:  # srlite's own check (CUDA, package present) and the import, before anything Unsloth patches
        internals.srlite("prepare")(internals.srlite("preset_config")("gpu", backend=backend))
    except Exception as e:
        result["backend_error"] = f"{type(e).__name__}: {e}"
        _write(result_path, result)
        _write(progress, {"task": None})
        return
    import torch

    fit = internals.gpu_fit()
    result["cap"] = fit.cap_memory()
    result["device"] = _device()
    if torch.cuda.is_available():  # CUDA context and cuBLAS handles: not part of the first timing
        x = torch.ones(1024, 1024, device="cuda", dtype=torch.bfloat16)
        (x @ x).sum().item()
    result["start_seconds"] = round(time.perf_counter() - t0, 1)
    checkpoint = spec["checkpoint"]
    sizes = spec["sizes"]
    lm = cfg = allow_eos = None
    held, failed = None, {}

    def load(arch: str):
        nonlocal checkpoint, allow_eos
        model = spec["models"][arch]
        t = time.perf_counter()
        refused = None
        try:
            lm, cfg = internals.load(model, checkpoint, backend, spec["smoke"])
        except Exception as e:
            if backend != "unsloth" or checkpoint != "4bit" or isinstance(e, torch.OutOfMemoryError):
                raise
            refused = f"{type(e).__name__}: {str(e)[:600]}"
        if refused:  # outside the except block, so the failed load's frames are gone before the next one
            # Unsloth may refuse a pre-quantised folder: the bf16 one, quantised at load, is the fallback.
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            lm, cfg = internals.load(model, "bf16", backend, spec["smoke"])
            result["checkpoint_4bit_error"] = refused
            checkpoint = result["checkpoint"] = "bf16"
        allow_eos = internals.suppress_eos(lm, model["cal"])
        result["loads"][arch] = {"seconds": round(time.perf_counter() - t, 1), "checkpoint": checkpoint}
        return lm, cfg

    def run(task: dict) -> dict:
        kind = task["kind"]
        if kind == "judge_batch":
            return internals.judge_batch(lm, cfg, **sizes["judge_gen"])
        if kind in ("batched", "naive"):
            return internals.speed(lm, cfg, naive=kind == "naive", **sizes["speed"])
        if kind == "dpo":
            return internals.dpo(lm, cfg, length=int(task["name"].split("_")[-1]), steps=sizes["dpo_steps"])
        if kind == "judging":
            return internals.judging_stage(lm, cfg, allow_eos=allow_eos, **sizes["judging"])
        raise ValueError(kind)

    for task in spec["tasks"]:
        name, arch = task["name"], task["arch"]
        if arch in failed:
            result["tasks"][name] = {"status": "skipped", "error": f"skipped: the {arch} model did not load ({failed[arch]})"}
            _write(result_path, result)
            continue
        need_load = held != arch
        est = task["est"] + (task["load_est"] if need_load else 0.0)
        left = spec["deadline"] - time.time() - task["reserve_s"]
        if left < est:
            kept = f", keeping {task['reserve_s']:.0f} s for a round" if task["reserve_s"] else ""
            result["tasks"][name] = {"status": "not run", "error": (
                f"not run: time budget ({left + task['reserve_s']:.0f} s left{kept}; needs about {est:.0f} s)")}
            _write(result_path, result)
            continue
        _write(progress, {"task": name, "started": time.time(), "cap_s": task["cap_s"] + (task["load_cap_s"] if need_load else 0)})
        start = time.perf_counter()
        try:
            if need_load:
                lm = cfg = None
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                held = None
                try:
                    lm, cfg = load(arch)
                except Exception as e:
                    failed[arch] = f"{type(e).__name__}: {str(e)[:400]}"
                    raise
                held = arch
            out = run(task)
            out["status"] = "ok"
        except Exception as e:
            oom = isinstance(e, torch.OutOfMemoryError)
            out = {"status": "error", "error": ("out of memory: " if oom else "") + f"{type(e).__name__}: {str(e)[:800]}",
                   "traceback": traceback.format_exc()[-1500:]}
        out["task_seconds"] = round(time.perf_counter() - start, 1)
        result["tasks"][name] = out
        _write(result_path, result)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    _write(progress, {"task": None})


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_kit.json", help="the JSON report (rewritten after every step)")
    ap.add_argument("--log", default=None, help="log of every process (default: next to --out, .log)")
    ap.add_argument("--smoke", action="store_true", help="CPU smoke run: tiny architecture, a few tokens, no cap")
    ap.add_argument("--deadline", type=float, default=None, help="Unix time by which the last step must end "
                    "(run.sh: its start + KIT_TOTAL_S, less the final write)")
    ap.add_argument("--budget-s", type=float, default=None, help="without --deadline: this many seconds from now "
                    "(default 450 on a GPU, 900 for --smoke)")
    ap.add_argument("--cap-gib", type=float, default=None, help="GPU memory cap of every process (default 24; 0: none)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (.gpukit/tokenizer); default: save the embedded one")
    ap.add_argument("--work", default=None, help="scratch folder for models and runs (default: a new temporary one)")
    ap.add_argument("--parts", default=None, help="comma-separated subset of the parts (build always runs)")
    ap.add_argument("--install", default=None, help=argparse.SUPPRESS)  # run.sh: JSON about the wheel install
    ap.add_argument("--base-versions", default=None, help=argparse.SUPPRESS)  # run.sh: the machine's own packages
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
