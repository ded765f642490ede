"""`srlite init`: create a run directory. Nothing is loaded; every seed record is validated first."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..config import preset_config, save_config
from ..errors import SrliteError
from ..judging.judges import at_init
from ..judging.rubric import RUBRIC_TEMPLATE, build_judge_prompt, load_rubric, split_judge_prompt
from ..models.backend import cuda_available
from ..version import __version__
from .files import write_json, write_jsonl
from .records import load_messages
from .rundir import CONFIG, SEED_FILES, Run, check_run_dir, file_sha256, library_versions, now

SEED_FIELDS = {"ift": "ift_data", "eft_train": "eft_train_data", "eft_eval": "eft_eval_data"}


def create_run(run_dir: Path, *, preset: str = "auto", model: str | None = None, ift: str | None = None,
               eft: str | None = None, eft_eval: str | None = None, overrides: dict | None = None) -> Run:
    """Create a run: resolved config, validated seed copies, manifest.

    `preset` "auto" is "gpu" when CUDA is present, else "cpu". `overrides` (any config field, e.g.
    {"prompts_per_round": 64}) change the preset's values; `model` is the base model unless
    `overrides` names one; `ift`, `eft`, `eft_eval` are seed data (a JSONL file, recorded by its
    absolute path, or a Hugging Face dataset id).
    """
    run_dir = check_run_dir(run_dir)
    if (run_dir / CONFIG).exists():
        raise SrliteError(
            f"{run_dir}: a run already exists here (config.json). Continue it with `srlite iterate`, "
            "or choose another --run-dir."
        )
    if preset == "auto":
        preset = "gpu" if cuda_available() else "cpu"
    overrides = dict(overrides or {})
    if model is not None:
        overrides.setdefault("model", model)
    for kind, value in (("ift", ift), ("eft_train", eft), ("eft_eval", eft_eval)):
        if value is not None:
            overrides[SEED_FIELDS[kind]] = str(Path(value).resolve()) if Path(value).exists() else value
    cfg = preset_config(preset, **overrides)
    # Judge files and folders: recorded absolute, checked now (a python judge's file is imported).
    cfg = replace(cfg, judge=at_init(cfg.judge, "judge"), winrate_judge=at_init(cfg.winrate_judge, "winrate_judge"))
    # Validate every seed record before anything is written.
    seeds = {kind: load_messages(getattr(cfg, field), kind) for kind, field in SEED_FIELDS.items()}
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
        {"created": now(), "srlite_version": __version__, "seed": cfg.seed, "libraries": library_versions(),
         "seed_sha256": {kind: file_sha256(run.seed_path(kind)) for kind in SEED_FILES}, "stages": {}},
    )
    run.lock_path.touch()  # made here so that a failed `iterate` leaves the directory exactly as it was
    save_config(cfg, run.config_path)  # last: its presence marks a complete init
    return run


def rerender_judge_example(messages: list[dict], rubric: str) -> list[dict]:
    """Judge examples written with the paper's rubric are re-rendered with the run's rubric,
    so M1 learns to judge with exactly the prompt it will be given."""
    out = []
    for m in messages:
        parts = split_judge_prompt(m["content"], RUBRIC_TEMPLATE) if m["role"] == "user" else None
        out.append({**m, "content": build_judge_prompt(*parts, rubric)} if parts else m)
    return out
