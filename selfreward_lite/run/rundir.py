"""The run directory: config, manifest, seed data, and one folder per model/round.

    srlite-run/
      config.json        resolved config (every field)
      manifest.json      stages done (with timings), library versions, seeds
      seed/              validated copies of the IFT / EFT train / EFT eval seed data
      m1/                M1 = base + SFT adapter: adapter/ (+ sft.json), metrics.json
      round1/            M1 -> M2: prompts, candidates, judgments, pairs (JSONL),
                         adapter/ (+ dpo.json), metrics.json
      round2/ ...

M_t = base + m1/adapter + round1/adapter + ... + round(t-1)/adapter.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .. import __version__
from .files import read_json, write_json, write_jsonl
from ..config import Config, load_config, preset_config, save_config
from .records import load_messages
from ..errors import SrliteError

# Artifact names inside m1/ and roundN/ (stages.py writes them, status reads them).
PROMPTS, CANDIDATES, JUDGMENTS, PAIRS, ADAPTER, METRICS = (
    "prompts.jsonl", "candidates.jsonl", "judgments.jsonl", "pairs.jsonl", "adapter", "metrics.json",
)
LOCK = ".lock"  # flock()ed by the process working on the run
EVAL = "eval.json"  # roundN/eval.json: the end-of-round evaluation (evaluate.py); details cached under eval/
SEED_FILES = {"ift": "ift.jsonl", "eft_train": "eft_train.jsonl", "eft_eval": "eft_eval.jsonl"}
LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "unsloth", "selfreward-lite")


@dataclass
class Run:
    dir: Path
    cfg: Config

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def seed_path(self, kind: str) -> Path:
        return self.dir / "seed" / SEED_FILES[kind]

    @property
    def m1_dir(self) -> Path:
        return self.dir / "m1"

    def round_dir(self, t: int) -> Path:
        return self.dir / f"round{t}"

    def adapters_of(self, t: int) -> list[Path]:
        """Adapter folders whose stack is M_t (t >= 1)."""
        return [self.m1_dir / ADAPTER] + [self.round_dir(i) / ADAPTER for i in range(1, t)]

    def completed_rounds(self) -> int:
        t = 0
        while (self.round_dir(t + 1) / METRICS).is_file():
            t += 1
        return t

    # --- manifest ---
    def manifest(self) -> dict:
        return read_json(self.manifest_path) if self.manifest_path.is_file() else {}

    def record_stage(self, name: str, seconds: float) -> None:
        m = self.manifest()
        m.setdefault("stages", {})[name] = {"done_at": _now(), "seconds": round(seconds, 2)}
        m["libraries"] = library_versions()
        write_json(self.manifest_path, m)

    def batch_size(self, kind: str, configured: int) -> int:
        """The configured size, or the smaller one that out-of-memory back-off settled on."""
        recorded = self.manifest().get("batch_sizes", {}).get(kind)
        return min(configured, recorded) if recorded else configured

    def record_batch_size(self, kind: str, size: int) -> None:
        m = self.manifest()
        m.setdefault("batch_sizes", {})[kind] = size
        write_json(self.manifest_path, m)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_run_dir(path: Path) -> Path:
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise SrliteError(f"{path}: exists and is not a directory.")
    return path


def init_run(run_dir: Path, *, preset: str, overrides: dict) -> Run:
    """Create a run: resolved config, validated seed copies, manifest. Nothing is loaded."""
    run_dir = check_run_dir(run_dir)
    if (run_dir / "config.json").exists():
        raise SrliteError(
            f"{run_dir}: a run already exists here (config.json). Continue it with `srlite iterate`, "
            "or choose another --run-dir."
        )
    cfg = preset_config(preset, **overrides)
    # Validate every seed record before anything is written.
    seeds = {
        "ift": load_messages(cfg.ift_data, "ift"),
        "eft_train": load_messages(cfg.eft_train_data, "eft_train"),
        "eft_eval": load_messages(cfg.eft_eval_data, "eft_eval"),
    }
    from ..judging.rubric import load_rubric

    rubric = load_rubric(cfg.rubric)
    for kind in ("eft_train", "eft_eval"):
        seeds[kind] = [rerender_judge_example(m, rubric) for m in seeds[kind]]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SrliteError(f"{run_dir}: cannot create the run directory ({e.strerror}).") from None
    run = Run(run_dir, cfg)
    for kind, records in seeds.items():
        write_jsonl(run.seed_path(kind), [{"messages": m} for m in records])
    write_json(
        run.manifest_path,
        {"created": _now(), "srlite_version": __version__, "seed": cfg.seed, "libraries": library_versions(),
         "seed_sha256": {kind: file_sha256(run.seed_path(kind)) for kind in SEED_FILES}, "stages": {}},
    )
    (run_dir / LOCK).touch()  # made here so that a failed `iterate` leaves the directory exactly as it was
    save_config(cfg, run.config_path)  # last: its presence marks a complete init
    return run


def rerender_judge_example(messages: list[dict], rubric: str) -> list[dict]:
    """Judge examples written with the paper's rubric are re-rendered with the run's rubric,
    so M1 learns to judge with exactly the prompt it will be given."""
    from ..judging.rubric import RUBRIC_TEMPLATE, build_judge_prompt, split_judge_prompt

    out = []
    for m in messages:
        parts = split_judge_prompt(m["content"], RUBRIC_TEMPLATE) if m["role"] == "user" else None
        out.append({**m, "content": build_judge_prompt(*parts, rubric)} if parts else m)
    return out


def open_run(run_dir: Path) -> Run:
    run_dir = check_run_dir(run_dir)
    cfg = load_config(run_dir / "config.json")
    run = Run(run_dir, cfg)
    for kind in SEED_FILES:
        if not run.seed_path(kind).is_file():
            raise SrliteError(f"{run.seed_path(kind)}: seed file missing; the run directory is incomplete.")
    return run


def run_status(run: Run) -> dict:
    """What exists: M1, then each round's stages, with a few counts."""
    def count(path: Path) -> int | str | None:
        if path.is_file():
            with open(path, encoding="utf-8") as f:
                return sum(1 for line in f if line.strip())
        journal = path.with_name(path.name + ".partial")
        if not journal.is_file():
            return None
        if path.name == PROMPTS:  # its journal holds raw samples, not kept prompts
            return "in progress"
        finished = journal.read_bytes().count(b"\n")  # a torn last line has no newline yet
        return f"{finished} so far"

    m1 = run.m1_dir / METRICS
    rounds = []
    t = 1
    while run.round_dir(t).is_dir():
        rd = run.round_dir(t)
        rounds.append(
            {
                "round": t,
                "prompts": count(rd / PROMPTS),
                "candidates": count(rd / CANDIDATES),
                "judgments": count(rd / JUDGMENTS),
                "pairs": count(rd / PAIRS),
                "adapter": (rd / ADAPTER / "adapter_config.json").is_file(),
                "complete": (rd / METRICS).is_file(),
            }
        )
        t += 1
    return {
        "run_dir": str(run.dir),
        "model": run.cfg.model,
        "preset": run.cfg.preset,
        "m1": m1.is_file(),
        "m1_started": (run.m1_dir / "config.json").is_file(),  # settings snapshot: SFT has begun
        "rounds": rounds,
        "completed_rounds": run.completed_rounds(),
        "manifest": run.manifest(),
    }


def parse_overrides(items: list[str]) -> dict:
    """`key=value` strings from the CLI; values parse as JSON when they can (numbers, bools, lists)."""
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


@contextlib.contextmanager
def run_lock(run: Run):
    """One `srlite` process at a time per run directory (released by the OS even after a kill)."""
    import fcntl

    path = run.dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise SrliteError(f"{path}: cannot create the run's lock file ({e.strerror}); is the directory writable?") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SrliteError(
                f"{run.dir}: another srlite process is working on this run. Wait for it to finish, or stop "
                "it, before starting another."
            ) from None
        yield
    finally:
        os.close(fd)

def newest_model(run: Run) -> int:
    """t of the newest M_t whose adapters all exist (1 = after SFT); 0 when M1 is not trained yet."""
    if not (run.m1_dir / ADAPTER / "adapter_config.json").is_file():
        return 0
    t = 1
    while (run.round_dir(t) / ADAPTER / "adapter_config.json").is_file():
        t += 1
    return t


def model_round(run: Run, t: int | None, allow_base: bool = False) -> int:
    """Check that M_t exists (t None: the newest); M0, the bare base model, only with allow_base."""
    newest = newest_model(run)
    if t is None:
        if newest == 0 and not allow_base:
            raise SrliteError(f"{run.dir}: no trained model yet (M1 is trained by `srlite iterate`).")
        return newest
    lowest = 0 if allow_base else 1
    if t < lowest or t > newest:
        have = f"M{lowest}..M{newest}" if newest >= lowest else "none yet (M1 is trained by `srlite iterate`)"
        raise SrliteError(f"{run.dir}: there is no M{t}; models available: {have}. (M1 = after SFT, M(t+1) = after round t.)")
    return t
