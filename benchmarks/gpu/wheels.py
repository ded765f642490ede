"""Wheels for the GPU machine: which ones, how to shrink them, and checks that pip will take them.

Used by benchmarks/gpu/prepare.sh (run it, not this, to make the kit):

    python benchmarks/gpu/wheels.py repack DOWNLOAD_DIR OUT_DIR     # the pinned wheels, repacked
    python benchmarks/gpu/wheels.py check OUT_DIR                   # RECORD complete, every hash right
    python benchmarks/gpu/wheels.py verify OUT_DIR --python python3.12   # pip --target install + imports

The GPU machine (Python 3.12, torch 2.11 + CUDA 13, transformers 5.17, peft, accelerate, pandas,
pyarrow, ...; no network) lacks what srlite's HF backend and the Unsloth backend import; `PINNED`
is that list, each entry with why. Deliberately NOT carried (read from unsloth 2026.10.9 /
unsloth_zoo 2026.10.9 source and METADATA, Nov 2026):
- xformers 0.0.35 (PyPI): its _C.so links libcudart.so.12, the machine's torch is cu130, so it
  cannot load; unsloth then falls back to PyTorch SDPA by itself (models/_utils.py catches
  ModuleNotFoundError: xformers = None), so leaving it out is the same path, without the risk
  of a half-loading FA3 build on H100 (unsloth issue #3963).
- torchao: imported only behind find_spec() for FP8 / QAT paths (kernels/utils.py, save.py).
- tyro, diffusers, json5, structlog, nest_asyncio, pydantic: declared, but imported only by
  unsloth's studio/ and CLI, or inside try/except for features we do not use.
- msgspec: only unsloth_zoo/vllm_lora_request.py (vLLM); hf_transfer: only find_spec() for
  downloads, and the machine is offline.
Every third-party module that `import unsloth` (its GPU path, _gpu_init.py), unsloth_zoo, trl,
datasets and bitsandbytes import outside try/except was listed from their source (a static walk
of module-level imports, Nov 2026): PIL, accelerate, filelock, fsspec, httpx, huggingface_hub,
jinja2, numpy, packaging, pandas, peft, psutil, pyarrow, regex, requests, torch, tqdm,
transformers, triton, typing_extensions, xxhash, yaml. All are on the GPU machine (its package
list) or carried here; xformers, torchao, vllm, flash_attn, fbgemm_gpu, openai, pydantic are
imported only inside try/except, mlx only on Apple silicon.
Repacking: bitsandbytes keeps only libbitsandbytes_cuda130.so (torch there is cu130) and the
CPU library; unsloth drops studio/ (its web app, 82 MB unpacked) and unsloth_cli/ (the
`unsloth` console command), neither imported by `import unsloth` or FastLanguageModel; the
console-script entry point goes with them. Every RECORD is rewritten with fresh hashes.
"""

from __future__ import annotations

import argparse
import base64
import csv
import fnmatch
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Rule:
    drop: list[str] = field(default_factory=list)  # fnmatch patterns on paths inside the wheel
    keep: list[str] = field(default_factory=list)  # exceptions to `drop`; each must match a file
    edits: dict = field(default_factory=dict)  # path pattern -> function(text) -> text


def _drop_console_script(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "unsloth_cli" not in line) + "\n"


def _drop_top_level(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() not in ("studio", "unsloth_cli")) + "\n"


# name==version, why it is needed there, how it is repacked
PINNED: list[tuple[str, str, Rule | None]] = [
    ("trl==1.15.0", "srlite's SFT/DPO trainers; 1.15 because unsloth 2026.10.9 pins trl<=1.15 (srlite allows >=1.15)", None),
    ("bitsandbytes==0.50.2", "4-bit NF4 loading (both backends)",
     Rule(drop=["bitsandbytes/libbitsandbytes_*.so"],
          keep=["bitsandbytes/libbitsandbytes_cuda130.so", "bitsandbytes/libbitsandbytes_cpu.so"])),
    ("datasets==4.8.5", "imported by srlite (model.quiet_libraries) and TRL; <5 for unsloth", None),
    ("dill==0.4.1", "datasets (needs <0.4.2)", None),
    ("multiprocess==0.70.19", "datasets (needs <0.70.20)", None),
    ("unsloth==2026.10.9", "the Unsloth backend",
     Rule(drop=["studio/*", "unsloth_cli/*"],
          edits={"*.dist-info/entry_points.txt": _drop_console_script, "*.dist-info/top_level.txt": _drop_top_level})),
    ("unsloth_zoo==2026.10.9", "imported by unsloth", None),
    ("fsspec==2026.2.0", "datasets 4.8.5 declares fsspec<=2026.2.0; the machine's own (newer, unknown) is shadowed "
     "by the version srlite's CPU tests run with", None),
    ("peft==0.21.2", "the version srlite is tested with (adapter stacking, cat folding); the machine's is unknown", None),
    ("cut_cross_entropy==25.1.1", "unsloth_zoo's fused loss (decides HAS_CUT_CROSS_ENTROPY at import)", None),
]

DIST_INFO = "*.dist-info/"


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_name(spec: str) -> tuple[str, str]:
    name, _, version = spec.partition("==")
    return name.replace("-", "_").lower(), version


def find_wheel(download: Path, spec: str) -> Path:
    """The one downloaded wheel of `spec` (name==version); fails loudly on none or several."""
    name, version = wheel_name(spec)
    found = [p for p in download.glob("*.whl") if p.name.lower().startswith(f"{name}-{version}-")]
    if len(found) != 1:
        raise SystemExit(f"{download}: expected exactly one wheel of {spec}, found {[p.name for p in found] or 'none'}")
    return found[0]


def _dist_info(names: list[str]) -> str:
    records = [n for n in names if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(records) != 1:
        raise ValueError(f"expected one top-level *.dist-info/RECORD, found {records}")
    return records[0].rsplit("/", 1)[0]


def repack(src: Path, out_dir: Path, rule: Rule | None) -> dict:
    """Copy `src` into `out_dir` under the same name, minus `rule.drop` (except `rule.keep`),
    with `rule.edits` applied and a RECORD listing every file with its sha256 and size.
    Returns what was done (sizes, dropped files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / src.name
    if rule is None:  # nothing to change: the wheel as published, byte for byte
        shutil.copyfile(src, out)
        return {"wheel": out.name, "bytes_before": src.stat().st_size, "bytes_after": out.stat().st_size,
                "files_dropped": 0, "dropped": []}
    tmp = out.with_name(out.name + ".tmp")
    dropped: list[str] = []
    used_keep, used_drop, used_edit = set(), set(), set()
    with zipfile.ZipFile(src) as zin:
        names = zin.namelist()
        info_dir = _dist_info(names)
        record = f"{info_dir}/RECORD"
        rows = []
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
            for info in zin.infolist():
                name = info.filename
                if name == record:
                    continue
                if not name.startswith(info_dir + "/"):
                    drops = [p for p in rule.drop if fnmatch.fnmatchcase(name, p)]
                    keeps = [p for p in rule.keep if fnmatch.fnmatchcase(name, p)]
                    used_drop.update(drops)
                    used_keep.update(keeps)
                    if drops and not keeps:
                        if not name.endswith("/"):
                            dropped.append(name)
                        continue
                data = zin.read(info)
                for pattern, edit in rule.edits.items():
                    if fnmatch.fnmatchcase(name, pattern):
                        data = edit(data.decode("utf-8")).encode("utf-8")
                        used_edit.add(pattern)
                new = zipfile.ZipInfo(name, date_time=info.date_time)
                new.external_attr = info.external_attr  # file modes (executables, .so)
                new.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(new, data)
                if not name.endswith("/"):
                    rows.append([name, record_hash(data), str(len(data))])
            rows.append([record, "", ""])
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(rows)
            zout.writestr(zipfile.ZipInfo(record, date_time=(2026, 1, 1, 0, 0, 0)), buf.getvalue())
    stale = ([f"drop {p}" for p in rule.drop if p not in used_drop] + [f"keep {p}" for p in rule.keep if p not in used_keep]
             + [f"edit {p}" for p in rule.edits if p not in used_edit])
    if stale:
        tmp.unlink()
        raise SystemExit(f"{src.name}: repack rules that match nothing (a different wheel than expected?): {stale}")
    tmp.replace(out)
    return {"wheel": out.name, "bytes_before": src.stat().st_size, "bytes_after": out.stat().st_size,
            "files_dropped": len(dropped), "dropped": sorted({d.split("/")[0] + "/" + (d.split("/")[1] if "/" in d else "")
                                                              for d in dropped})[:20]}


def check(wheel: Path) -> list[str]:
    """What pip would find wrong: files missing from RECORD, RECORD entries missing, bad hashes or sizes."""
    problems = []
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        info_dir = _dist_info(names)
        record = f"{info_dir}/RECORD"
        rows = {r[0]: r for r in csv.reader(io.StringIO(z.read(record).decode("utf-8"))) if r}
        for name in names:
            if name not in rows:
                problems.append(f"{name}: not in RECORD")
            elif name != record:
                data = z.read(name)
                _, digest, size = rows[name]
                if digest != record_hash(data) or size != str(len(data)):
                    problems.append(f"{name}: hash or size differs from RECORD")
        problems += [f"{n}: in RECORD, not in the wheel" for n in rows if n not in names]
        if zipfile.ZipFile(wheel).testzip() is not None:
            problems.append("corrupt zip member")
    return problems


PIP_TARGET = ["-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade", "--target"]

# What can be imported without torch (then with torch, if the Python has one).
IMPORTS_NO_TORCH = ["dill", "multiprocess", "fsspec", "datasets"]
IMPORTS_TORCH = ["bitsandbytes", "peft", "trl", "cut_cross_entropy", "unsloth"]  # unsloth_zoo: only through unsloth


def verify(wheels: Path, python: str) -> dict:
    """Install every wheel with run.sh's exact pip command into a fresh folder with `python`, check
    each one's top-level packages landed there, then import what this Python can."""
    out: dict = {"python": subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                                          text=True, check=True).stdout.strip()}
    target = Path(tempfile.mkdtemp(prefix="gpukit-site-"))
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    r = subprocess.run([python, *PIP_TARGET, str(target), *files], capture_output=True, text=True)
    out["pip_install"] = "ok" if r.returncode == 0 else (r.stdout + r.stderr)[-2000:]
    if r.returncode != 0:
        return out
    landed = {}
    for f in files:
        with zipfile.ZipFile(f) as z:
            tops = {n.split("/")[0] for n in z.namelist() if not n.split("/")[0].endswith((".dist-info", ".data"))}
        landed[Path(f).name] = all((target / t).exists() for t in tops)
    out["installed"] = landed
    env = {**os.environ, "PYTHONPATH": str(target)}
    has_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, env=env).returncode == 0
    out["torch"] = has_torch
    imports = {}
    for mod in dict.fromkeys(IMPORTS_NO_TORCH + (IMPORTS_TORCH if has_torch else [])):
        r = subprocess.run([python, "-c", f"import {mod}; print(getattr({mod}, '__version__', ''))"], capture_output=True,
                           text=True, env={**env, "UNSLOTH_DISABLE_STATISTICS": "1", "HF_HUB_OFFLINE": "1"}, timeout=600)
        imports[mod] = "ok " + r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else (
            "ok" if r.returncode == 0 else "FAILED: " + (r.stderr.strip().splitlines() or ["?"])[-1][-300:])
    out["imports"] = imports
    if not has_torch:
        out["not_verified"] = [m for m in IMPORTS_TORCH if m not in IMPORTS_NO_TORCH] + ["(no torch for this Python)"]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("repack", help="repack the pinned wheels found in DOWNLOAD into OUT")
    r.add_argument("download", type=Path)
    r.add_argument("out", type=Path)
    c = sub.add_parser("check", help="check every wheel's RECORD in DIR")
    c.add_argument("dir", type=Path)
    v = sub.add_parser("verify", help="install DIR's wheels with pip --target and import them")
    v.add_argument("dir", type=Path)
    v.add_argument("--python", default=sys.executable)
    sub.add_parser("specs", help="print the pinned name==version list (for pip download)")
    args = ap.parse_args(argv)
    if args.cmd == "specs":
        print(" ".join(spec for spec, _, _ in PINNED))
    elif args.cmd == "repack":
        done = [dict(repack(find_wheel(args.download, spec), args.out, rule), spec=spec, why=why)
                for spec, why, rule in PINNED]
        problems = {d["wheel"]: check(args.out / d["wheel"]) for d in done}
        problems = {k: v for k, v in problems.items() if v}
        if problems:
            raise SystemExit(f"repacked wheels fail the RECORD check: {problems}")
        (args.out / "wheels.json").write_text(json.dumps(done, indent=1) + "\n")
        for d in done:
            print(f"{d['wheel']:<60} {d['bytes_before'] / 2**20:7.2f} MiB -> {d['bytes_after'] / 2**20:6.2f} MiB")
    elif args.cmd == "check":
        problems = {p.name: check(p) for p in sorted(args.dir.glob("*.whl"))}
        bad = {k: v for k, v in problems.items() if v}
        print(json.dumps(bad or {"ok": sorted(problems)}, indent=1))
        if bad:
            raise SystemExit(1)
    elif args.cmd == "verify":
        print(json.dumps(verify(args.dir, args.python), indent=1))


if __name__ == "__main__":
    main()
