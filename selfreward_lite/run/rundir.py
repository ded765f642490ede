"""The run directory: every path and file name in it is spelled here, and only here.

    srlite-run/
      config.json        resolved config (every field)
      manifest.json      stages done (with timings), library versions, seeds, batch sizes
      .lock              flock()ed by the process working on the run (lock.py)
      seed/              validated copies of the IFT / EFT train / EFT eval seed data
      m1/                M1 = base + SFT adapter: config.json (the settings it was made with),
                         adapter/ (+ sft.json), metrics.json
      round1/            M1 -> M2: config.json, prompts.jsonl (+ prompts_stats.json),
                         candidates.jsonl, judgments.jsonl, pairs.jsonl (+ pairs_stats.json),
                         adapter/ (+ dpo.json), metrics.json, eval.json
      round2/ ...
      eval/              cached evaluations: m<N>/judge_quality-<key>.json (+ .jsonl),
                         m<N>/responses-<key>.jsonl, winrate-m<new>-vs-m<old>-<key>.json (+ .jsonl),
                         m<N>/ifeval_answers-<key>.jsonl, m<N>/ifeval-<key>.json (+ .jsonl),
                         ifeval-m<new>-vs-m<old>-<key>.json
      judge/             `srlite judge`: <input name>-m<N>/ judgments.jsonl, scores.jsonl, summary.json
      logs/              TensorBoard / W&B: m1-sft/, round<N>-dpo/, rounds/
      report/            `srlite report`: report.md, report.json, *.png

While a stage runs, next to its artifact: `<artifact>.partial` (its journal), `adapter.checkpoints/`
(training state) and `.<name>.<random>.tmp` (atomic writes in progress, files.py).

M_t = base + m1/adapter + round1/adapter + ... + round(t-1)/adapter.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, load_config
from ..errors import SrliteError
from .files import read_json, write_json

CONFIG, MANIFEST, LOCK = "config.json", "manifest.json", ".lock"
SEED_DIR = "seed"
SEED_FILES = {"ift": "ift.jsonl", "eft_train": "eft_train.jsonl", "eft_eval": "eft_eval.jsonl"}
M1_DIR = "m1"
# Artifacts inside m1/ and roundN/ (the stages write them; a model folder's config.json is CONFIG).
PROMPTS, CANDIDATES, JUDGMENTS, PAIRS, ADAPTER, METRICS = (
    "prompts.jsonl", "candidates.jsonl", "judgments.jsonl", "pairs.jsonl", "adapter", "metrics.json",
)
PROMPTS_STATS, PAIRS_STATS = "prompts_stats.json", "pairs_stats.json"
EVAL = "eval.json"  # roundN/eval.json: the end-of-round evaluation
SFT_SUMMARY, DPO_SUMMARY = "sft.json", "dpo.json"  # training summaries, inside the adapter folder
# The files of an adapter folder (PEFT's names).
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
JOURNAL_SUFFIX, CHECKPOINTS_SUFFIX = ".partial", ".checkpoints"
EVAL_DIR, JUDGE_DIR, LOGS_DIR, REPORT_DIR = "eval", "judge", "logs", "report"
# `srlite judge` writes these into its output folder (judge/<input>-m<N>/, or --out): JUDGMENTS and
JUDGE_SCORES, JUDGE_SUMMARY = "scores.jsonl", "summary.json"
# `srlite report` writes these (and plots.py's PNGs) into its output folder (report/, or --out).
REPORT_MD, REPORT_JSON = "report.md", "report.json"
LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "unsloth", "selfreward-lite")


def journal_of(artifact: Path) -> Path:
    """The journal a stage appends finished records to until `artifact` is complete."""
    return artifact.with_name(artifact.name + JOURNAL_SUFFIX)


def stats_of(artifact: Path) -> Path:
    """The counts written next to an artifact (what was kept and why the rest was dropped)."""
    return artifact.with_name({PROMPTS: PROMPTS_STATS, PAIRS: PAIRS_STATS}[artifact.name])


def checkpoints_of(adapter: Path) -> Path:
    """Training checkpoints of an adapter stage, kept until the adapter itself is written."""
    return adapter.with_name(adapter.name + CHECKPOINTS_SUFFIX)


def cache_key(*parts) -> str:
    """Short hash of everything a cached evaluation depends on (data bytes, settings)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:10]


@dataclass
class Run:
    dir: Path
    cfg: Config

    # --- the run's own files ---
    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    @property
    def lock_path(self) -> Path:
        return self.dir / LOCK

    def seed_path(self, kind: str) -> Path:
        return self.dir / SEED_DIR / SEED_FILES[kind]

    # --- model folders: m1/ and roundN/ ---
    @property
    def m1_dir(self) -> Path:
        return self.dir / M1_DIR

    def round_dir(self, t: int) -> Path:
        return self.dir / f"round{t}"

    @staticmethod
    def snapshot_path(folder: Path) -> Path:
        """The settings a model folder was made with (written when its first stage starts)."""
        return folder / CONFIG

    @property
    def sft_summary_path(self) -> Path:
        return self.m1_dir / ADAPTER / SFT_SUMMARY

    def dpo_summary_path(self, t: int) -> Path:
        return self.round_dir(t) / ADAPTER / DPO_SUMMARY

    def prompts_stats_path(self, t: int) -> Path:
        return stats_of(self.round_dir(t) / PROMPTS)

    def pairs_stats_path(self, t: int) -> Path:
        return stats_of(self.round_dir(t) / PAIRS)

    def eval_path(self, t: int) -> Path:
        return self.round_dir(t) / EVAL

    def adapters_of(self, t: int) -> list[Path]:
        """Adapter folders whose stack is M_t (t >= 1)."""
        return [self.m1_dir / ADAPTER] + [self.round_dir(i) / ADAPTER for i in range(1, t)]

    def completed_rounds(self) -> int:
        t = 0
        while (self.round_dir(t + 1) / METRICS).is_file():
            t += 1
        return t

    # --- which models exist: the one lookup ---
    def model_exists(self, t: int) -> bool:
        """M0 (the bare base model) always; M_t when every adapter of its stack is on disk."""
        return t == 0 or (t > 0 and all((d / ADAPTER_CONFIG).is_file() for d in self.adapters_of(t)))

    def newest_model(self) -> int:
        """t of the newest M_t on disk (1 = after SFT); 0 when M1 is not trained yet."""
        t = 0
        while self.model_exists(t + 1):
            t += 1
        return t

    def check_model(self, t: int | None, allow_base: bool = False) -> int:
        """t if M_t exists (None: the newest); M0, the bare base model, only with allow_base."""
        newest = self.newest_model()
        if t is None:
            if newest == 0 and not allow_base:
                raise SrliteError(f"{self.dir}: no trained model yet (M1 is trained by `srlite iterate`).")
            return newest
        lowest = 0 if allow_base else 1
        if lowest <= t <= newest:
            return t
        have = (f"M{lowest}..M{newest}" if newest > lowest else f"M{newest}" if newest == lowest
                else "none yet (M1 is trained by `srlite iterate`)")
        if t > newest:
            how = "`srlite iterate` trains it" if t == 1 else f"`srlite iterate --rounds {t - 1}` makes it"
            why = f"M{t} does not exist yet: {how} (M1 = after SFT, M(t+1) = after round t)"
        else:
            why = "M0, the bare base model, is not one of them here"
        raise SrliteError(f"{self.dir}: there is no M{t}; models available: {have}. {why}.")

    # --- cached evaluations, `srlite judge`, logs, report ---
    def judge_quality_path(self, n: int, key: str) -> Path:
        return self.dir / EVAL_DIR / f"m{n}" / f"judge_quality-{key}.json"

    def responses_path(self, n: int, key: str) -> Path:
        return self.dir / EVAL_DIR / f"m{n}" / f"responses-{key}.jsonl"

    def win_rate_path(self, new: int, old: int, key: str) -> Path:
        return self.dir / EVAL_DIR / f"winrate-m{new}-vs-m{old}-{key}.json"

    def ifeval_answers_path(self, n: int, key: str) -> Path:
        return self.dir / EVAL_DIR / f"m{n}" / f"ifeval_answers-{key}.jsonl"

    def ifeval_path(self, n: int, key: str) -> Path:
        """M_n's IFEval-format scores (summary; per-prompt verdicts in the .jsonl next to it)."""
        return self.dir / EVAL_DIR / f"m{n}" / f"ifeval-{key}.json"

    def ifeval_comparison_path(self, new: int, old: int, key: str) -> Path:
        return self.dir / EVAL_DIR / f"ifeval-m{new}-vs-m{old}-{key}.json"

    def judge_dir(self, input_name: str, judge: int | str) -> Path:
        """`srlite judge`'s output for M_n (judge an int), or for another judge named by its label."""
        name = f"m{judge}" if isinstance(judge, int) else re.sub(r"[^A-Za-z0-9._-]+", "_", judge)
        return self.dir / JUDGE_DIR / f"{input_name}-{name}"

    @property
    def logs_dir(self) -> Path:
        return self.dir / LOGS_DIR

    def training_log_dir(self, t: int) -> Path:
        """Trainer curves: M1's SFT (t = 0) or round t's DPO."""
        return self.logs_dir / ("m1-sft" if t == 0 else f"round{t}-dpo")

    @property
    def round_metrics_log_dir(self) -> Path:
        return self.logs_dir / "rounds"

    @property
    def report_dir(self) -> Path:
        return self.dir / REPORT_DIR

    # --- manifest ---
    def manifest(self) -> dict:
        return read_json(self.manifest_path) if self.manifest_path.is_file() else {}

    def record_stage(self, name: str, seconds: float) -> None:
        m = self.manifest()
        m.setdefault("stages", {})[name] = {"done_at": now(), "seconds": round(seconds, 2)}
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


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict:
    from importlib import metadata  # slow to import (~50 ms): not for `srlite --help`

    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_run_dir(path: Path) -> Path:
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise SrliteError(f"{path}: exists and is not a directory.")
    return path


def open_run(run_dir: Path) -> Run:
    """The run in `run_dir`, with its config read and checked (nothing else is loaded)."""
    run_dir = check_run_dir(run_dir)
    run = Run(run_dir, load_config(run_dir / CONFIG))
    for kind in SEED_FILES:
        if not run.seed_path(kind).is_file():
            raise SrliteError(f"{run.seed_path(kind)}: seed file missing; the run directory is incomplete.")
    return run
