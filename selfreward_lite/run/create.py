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
from .records import load_records
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
    records = {kind: load_records(getattr(cfg, field), kind) for kind, field in SEED_FIELDS.items()}
    rubric = load_rubric(cfg.rubric)
    seeds = {kind: [m for _, m in rows] for kind, rows in records.items()}
    for kind in ("eft_train", "eft_eval"):
        seeds[kind] = [rerender_judge_example(m, rubric, where, cfg.rubric) for where, m in records[kind]]
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


def judge_prompt_index(messages: list[dict]) -> int:
    """The judge prompt of a judge example: the user message its final judgment answers."""
    return max(i for i, m in enumerate(messages) if m["role"] == "user")


def rerender_judge_example(messages: list[dict], rubric: str, where: str, rubric_name: str) -> list[dict]:
    """A judge example with exactly the run's rubric, so M1 learns to judge with exactly the prompt
    it will be given: one written with the run's rubric is kept, one written with the paper's
    rubric is re-rendered with the run's; any other is an error naming `where` (file and line)."""
    i = judge_prompt_index(messages)
    content = messages[i]["content"]
    if split_judge_prompt(content, rubric) is not None:
        return messages
    parts = split_judge_prompt(content, RUBRIC_TEMPLATE)
    if parts is None:
        raise SrliteError(
            f"{where}, field 'messages[{i}].content': this judge prompt is written neither with the run's rubric "
            f"({rubric_name!r}) nor with the paper's additive rubric, so it cannot be re-rendered and M1 would learn to "
            "judge with a prompt it is never given. Write the judge examples with one of the two (the template with "
            "the question and the answer filled in), or set the rubric (--set rubric=FILE) to the template they use."
        )
    return [*messages[:i], {**messages[i], "content": build_judge_prompt(*parts, rubric)}, *messages[i + 1:]]


def check_rendered(records: list[tuple[str, list[dict]]], rubric: str, rubric_name: str) -> None:
    """Every judge example of a seed copy uses the run's rubric (the copies are re-rendered at `init`;
    a rubric changed in config.json afterwards would make M1 learn the wrong prompt)."""
    for where, messages in records:
        i = judge_prompt_index(messages)
        if split_judge_prompt(messages[i]["content"], rubric) is None:
            raise SrliteError(
                f"{where}, field 'messages[{i}].content': not written with the run's rubric ({rubric_name!r}); the "
                "seed copies were rendered with the rubric config.json had at `srlite init`. Restore that rubric, or "
                "start a new run with `srlite init --set rubric=...`."
            )
