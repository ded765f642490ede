"""Checks before any model is loaded: a run that cannot finish should fail in a second, not
after an hour, and a run must never continue on inputs that contradict its finished work.

- layout: the run directory is writable and nothing in it points outside it;
- seed data: every record of the run's seed copies is valid, and unchanged since `init`;
- config drift: settings that finished artifacts depend on have not changed (see
  config.SAFE_TO_CHANGE / RUN_WIDE), unless the user forces it;
- disk: enough free space for the artifacts still to be written;
- judges: a fixed judge m<N> exists by the round it judges, a judge folder exists, a python judge's
  file imports and has its function (judging/judges.check_judges).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from ..config import RUN_WIDE, SAFE_TO_CHANGE, Config
from ..errors import SrliteError
from ..judging.judges import check_judges
from ..judging.rubric import load_rubric
from ..models.embedded import EMBEDDED, embedded_cache_dir
from .create import check_rendered
from .files import read_json, temporaries, write_json
from .records import load_records
from .rundir import ADAPTER, METRICS, SEED_FILES, Run, checkpoints_of, file_sha256, journal_of, now

MiB = 1024 * 1024


def preflight(run: Run, rounds: int, force: bool = False) -> None:
    check_layout(run)
    check_seeds(run)
    check_drift(run, force)
    check_disk(run, rounds)
    check_judges(run, rounds)


def check_layout(run: Run) -> None:
    root = run.dir.resolve()
    for entry in run.dir.iterdir():
        if entry.is_symlink() and not entry.resolve().is_relative_to(root):
            raise SrliteError(
                f"{entry}: is a link to {entry.resolve()}, outside the run directory. srlite only writes "
                "inside the run directory; replace the link with a folder."
            )
    try:
        with tempfile.NamedTemporaryFile(dir=run.dir, prefix=".write-test-"):
            pass
    except OSError as e:
        raise SrliteError(f"{run.dir}: the run directory is not writable ({e.strerror}).") from None


def check_seeds(run: Run) -> None:
    recorded = run.manifest().get("seed_sha256", {})
    for kind in SEED_FILES:
        path = run.seed_path(kind)
        records = load_records(str(path), kind)  # every record, with file/line/field in the error
        if kind.startswith("eft") and not started(run):
            check_rendered(records, load_rubric(run.cfg.rubric), run.cfg.rubric)
        if kind in recorded and file_sha256(path) != recorded[kind] and started(run):
            raise SrliteError(
                f"{path}: the seed data changed after the run started (its checksum differs from the one "
                "recorded at `srlite init`). Models of this run were trained on the old data; restore the "
                "file, or start a new run with `srlite init --ift/--eft ...`."
            )


def started(run: Run) -> bool:
    return run.snapshot_path(run.m1_dir).is_file()


def snapshot_config(run: Run, folder: Path) -> None:
    """Record the settings a model folder is made with (once, when its first stage starts)."""
    if not run.snapshot_path(folder).is_file():
        write_json(run.snapshot_path(folder), asdict(run.cfg))


def _changes(cfg: Config, snapshot_path: Path, fields) -> list[tuple[str, object, object]]:
    try:
        old = read_json(snapshot_path)
    except (OSError, json.JSONDecodeError):
        return []
    now = asdict(cfg)
    return [(k, old[k], now[k]) for k in sorted(fields) if k in old and old[k] != now[k]]


def check_drift(run: Run, force: bool) -> None:
    """Refuse to resume with settings that would make finished artifacts inconsistent."""
    checks = []  # (snapshot, fields, what depends on them)
    if started(run):
        checks.append((run.snapshot_path(run.m1_dir), RUN_WIDE, "every model of this run (M1 onwards)"))
    t = 1
    while run.round_dir(t).is_dir():
        rd = run.round_dir(t)
        if run.snapshot_path(rd).is_file() and not (rd / METRICS).is_file():
            fields = set(asdict(run.cfg)) - SAFE_TO_CHANGE
            checks.append((run.snapshot_path(rd), fields, f"round {t}, which is in progress"))
        t += 1
    problems = []
    for snapshot, fields, what in checks:
        for name, old, new in _changes(run.cfg, snapshot, fields):
            problems.append((snapshot, name, old, new, what))
    if not problems:
        return
    if not force:
        lines = "; ".join(f"{name}: {old!r} -> {new!r} (used by {what})" for _, name, old, new, what in problems)
        raise SrliteError(
            f"{run.config_path}: settings changed since finished work was made with them: {lines}. Continuing "
            "would mix artifacts made under different settings. Put the old values back in config.json, or "
            "start a new run; `srlite iterate --force` continues anyway (recorded in manifest.json). Batch "
            f"sizes and other speed settings ({', '.join(sorted(SAFE_TO_CHANGE))}) may change freely."
        )
    m = run.manifest()
    m.setdefault("forced_config_changes", []).append(
        {"at": now(), "changes": {name: [old, new] for _, name, old, new, _ in problems}}
    )
    write_json(run.manifest_path, m)
    for snapshot in {p[0] for p in problems}:
        write_json(snapshot, asdict(run.cfg))


def estimate_bytes(run: Run, rounds: int) -> int:
    """Rough upper bound of what is still to be written: adapters plus round artifacts."""
    cfg = run.cfg
    adapter = _adapter_bytes(cfg)
    per_round = adapter + cfg.prompts_per_round * cfg.n_candidates * (
        8 * cfg.response_max_new_tokens + cfg.judge_samples * 8 * cfg.judge_max_new_tokens + 1024
    )
    todo = rounds - run.completed_rounds()
    m1 = 0 if (run.m1_dir / ADAPTER).is_dir() else adapter
    return m1 + max(0, todo) * per_round + 20 * MiB  # slack: manifests, stats, temporaries


def _adapter_bytes(cfg: Config) -> int:
    """LoRA parameters (float32) from the model's config when it is a local folder, else a guess."""
    # Never convert the embedded model here: that would import transformers before the backend
    # (Unsloth must be imported first) and before the checks are done.
    folder = embedded_cache_dir() if cfg.model == EMBEDDED else Path(cfg.model)
    try:
        path = folder / "config.json"
        mc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError, SrliteError):
        mc = None
    if not mc or "hidden_size" not in mc:
        return 256 * MiB  # an 8B model at rank 16 on all linear layers is ~170 MB
    h, layers = mc["hidden_size"], mc.get("num_hidden_layers", 32)
    inter = mc.get("intermediate_size", 4 * h)
    heads = mc.get("num_attention_heads", 1)
    kv = h // heads * mc.get("num_key_value_heads", heads)
    dims = {"q_proj": h + h, "k_proj": h + kv, "v_proj": h + kv, "o_proj": h + h,
            "gate_proj": h + inter, "up_proj": h + inter, "down_proj": inter + h}
    per_layer = sum(dims.get(m, h + inter) for m in cfg.lora_target_modules)
    return 4 * cfg.lora_r * per_layer * layers


def check_disk(run: Run, rounds: int) -> None:
    need = estimate_bytes(run, rounds)
    free = shutil.disk_usage(run.dir).free
    if free < need:
        raise SrliteError(
            f"{run.dir}: not enough free disk space: about {need / MiB:.0f} MiB still to be written for "
            f"{rounds} round(s), {free / MiB:.0f} MiB free. Free some space or choose another --run-dir."
        )


def remove_stale_temporaries(out: Path) -> None:
    """What a killed process may leave next to an artifact: its temporaries (`.name.XXXX.tmp`
    files or folders), and its journal or training checkpoints once the artifact is complete."""
    if out.exists():  # complete: its journal and checkpoints are no longer needed
        shutil.rmtree(checkpoints_of(out), ignore_errors=True)
        journal_of(out).unlink(missing_ok=True)
    for tmp in temporaries(out):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


