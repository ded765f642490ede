"""Export M_t for use outside srlite, and a round's preference pairs for other trainers.

    srlite export --round 3 --out m3-export            # merged/ (16-bit HF model) + adapter/ (one LoRA)
    srlite export --round 3 --out m3-export --gguf f16 # ... + model-f16.gguf (needs llama.cpp)
    srlite export --round 1 --pairs round1-dpo.jsonl   # TRL prompt/chosen/rejected

An export folder:
  merged/       the stack merged into the base weights: a standard Hugging Face model folder
                (safetensors + tokenizer), loadable with AutoModelForCausalLM.from_pretrained.
                The base is loaded in its own precision (never 4-bit: merging into 4-bit
                weights rounds), so the merge is exact up to the chosen dtype.
  adapter/      the stack folded into one LoRA adapter (PEFT "cat", exact, rank = sum of
                ranks): a standard PEFT folder for PeftModel.from_pretrained(base, ...).
  model-*.gguf  optional, converted from merged/ by llama.cpp's convert_hf_to_gguf.py.
  export.json   what was exported, from which run and adapters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import SrliteError
from ..models.adapters import FOLDED, activate, fold_stack, merge_stack
from ..models.cache import EXPORT_DTYPES, ModelCache
from ..run.files import atomic_directory, read_jsonl, write_json, write_jsonl
from ..run.rundir import PAIRS, open_run
from ..version import __version__

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")  # what convert_hf_to_gguf.py writes directly
GGUF_CONVERTER = "convert_hf_to_gguf.py"
LLAMA_CPP_HELP = (
    "Get it with: git clone --depth 1 https://github.com/ggml-org/llama.cpp && "
    "pip install -r llama.cpp/requirements/requirements-convert_hf_to_gguf.txt, then pass --llama-cpp ./llama.cpp "
    "(or set LLAMA_CPP_DIR). A llama.cpp that Unsloth installed in ~/.unsloth/llama.cpp is found automatically. "
    "The merged model and the folded adapter need neither: run without --gguf."
)


def check_out_dir(out: Path, force: bool) -> Path:
    """Refuse to replace an existing non-empty folder unless forced."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise SrliteError(f"{out}: exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SrliteError(f"{out}: exists and is not empty. Choose another --out, or pass --force to replace it.")
    return out


def find_gguf_converter(llama_cpp: Path | None) -> Path:
    """llama.cpp's converter script, from --llama-cpp, $LLAMA_CPP_DIR, Unsloth's copy, ./llama.cpp or PATH."""
    places = [Path(p).expanduser() for p in (llama_cpp, os.environ.get("LLAMA_CPP_DIR")) if p]
    places += [Path.home() / ".unsloth" / "llama.cpp", Path("llama.cpp")]
    for place in places:
        if (place / GGUF_CONVERTER).is_file():
            return place / GGUF_CONVERTER
    on_path = shutil.which(GGUF_CONVERTER)
    if on_path:
        return Path(on_path)
    looked = ", ".join(str(p) for p in places)
    raise SrliteError(f"GGUF export needs llama.cpp's {GGUF_CONVERTER}, which is not in {looked} or on PATH. {LLAMA_CPP_HELP}")


def export_model(run_dir: Path, t: int | None, out: Path, *, dtype: str = "auto", gguf: str | None = None,
                 llama_cpp: Path | None = None, force: bool = False) -> dict:
    """Write M_t as merged/ + adapter/ (+ a GGUF file) under `out`, atomically; returns export.json's content."""
    run = open_run(run_dir)
    t = run.check_model(t)
    if dtype not in EXPORT_DTYPES:
        raise SrliteError(f"--dtype {dtype!r}: choose one of {', '.join(EXPORT_DTYPES)}.")
    if gguf is not None and gguf not in GGUF_TYPES:
        raise SrliteError(f"--gguf {gguf!r}: choose one of {', '.join(GGUF_TYPES)} (K-quants: run llama.cpp's llama-quantize on the result).")
    out = check_out_dir(out, force)
    converter = find_gguf_converter(llama_cpp) if gguf else None  # before any heavy work
    adapters = run.adapters_of(t)
    info: dict = {"model": f"M{t}", "base": run.cfg.model, "adapters": [str(a) for a in adapters],
                  "run_dir": str(run.dir.resolve()), "files": {}}

    models = ModelCache(run)

    def build(tmp: Path) -> None:
        # The HF backend, never 4-bit: merging LoRA into quantised weights is lossy.
        lm = models.full_precision(t, dtype)
        stack = list(lm.adapter_names)
        info["dtype"] = str(lm.dtype).removeprefix("torch.")
        folded = fold_stack(lm)
        folded.model.save_pretrained(str(tmp / "_adapter"), selected_adapters=[FOLDED])
        # PEFT saves an adapter not named "default" in a subfolder of that name.
        (tmp / "_adapter" / FOLDED).rename(tmp / "adapter")
        shutil.rmtree(tmp / "_adapter")
        lm.tokenizer.save_pretrained(str(tmp / "adapter"))
        info["files"]["adapter"] = "adapter"
        info["adapter_rank"] = lm.model.peft_config[FOLDED].r
        activate(lm.model, stack, train_new=False)
        lm.model.delete_adapter(FOLDED)
        merged = merge_stack(lm)
        merged.save_pretrained(str(tmp / "merged"))
        lm.tokenizer.save_pretrained(str(tmp / "merged"))
        info["files"]["merged"] = "merged"
        del merged, lm, folded
        models.release()
        if converter:
            name = f"model-{gguf}.gguf"
            _convert_gguf(converter, tmp / "merged", tmp / name, gguf)
            info["files"]["gguf"] = name
        info["srlite_version"] = __version__
        write_json(tmp / "export.json", info)

    atomic_directory(out, build)
    return info


def _convert_gguf(converter: Path, merged: Path, out_file: Path, outtype: str) -> None:
    cmd = [sys.executable, str(converter), str(merged), "--outfile", str(out_file), "--outtype", outtype]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not out_file.is_file():
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise SrliteError(f"GGUF conversion failed ({' '.join(cmd)}):\n{tail}\n{LLAMA_CPP_HELP}")


def trl_pair(pair: dict) -> dict:
    """One pairs.jsonl record in TRL's conversational preference format."""
    return {
        "prompt": [{"role": "user", "content": pair["prompt"]}],
        "chosen": [{"role": "assistant", "content": pair["chosen"]}],
        "rejected": [{"role": "assistant", "content": pair["rejected"]}],
    }


def export_pairs(run_dir: Path, t: int, out_file: Path, force: bool = False) -> int:
    """Round t's preference pairs (made and judged by M_t) as TRL prompt/chosen/rejected JSONL."""
    run = open_run(run_dir)
    src = run.round_dir(t) / PAIRS
    if not src.is_file():
        raise SrliteError(f"{src}: round {t} has no pairs yet; `srlite status` shows which rounds have them.")
    out_file = Path(out_file).expanduser()
    if out_file.exists() and not force:
        raise SrliteError(f"{out_file}: exists. Choose another file, or pass --force to replace it.")
    rows = [trl_pair(p) for p in read_jsonl(src)]
    write_jsonl(out_file, rows)
    return len(rows)


def export(run_dir: Path, t: int | None, *, out: Path | None = None, pairs: Path | None = None, dtype: str = "auto",
           gguf: str | None = None, llama_cpp: Path | None = None, force: bool = False,
           say=lambda text: None, news=lambda text: None) -> None:
    """`srlite export`: round t's pairs to `pairs` and/or M_t to `out` (t None: the newest model); `say`
    gets the results, `news` progress and hints."""
    if out is None and pairs is None:
        raise SrliteError("Nothing to export: pass --out DIR (the model) and/or --pairs FILE (round N's pairs).")
    if pairs is not None:
        if t is None:
            raise SrliteError("--pairs needs --round N (the round whose pairs to export).")
        say(f"Wrote {export_pairs(run_dir, t, pairs, force=force)} pairs of round {t} to {pairs} (TRL prompt/chosen/rejected).")
    if out is not None:
        news("Loading and merging the adapter stack ...")
        info = export_model(run_dir, t, out, dtype=dtype, gguf=gguf, llama_cpp=llama_cpp, force=force)
        say(f"Exported {info['model']} ({info['dtype']}) to {out}: " + ", ".join(f"{k} -> {v}" for k, v in info["files"].items()))
        if gguf is None:
            news("No GGUF written (add --gguf f16; it needs llama.cpp's convert_hf_to_gguf.py).")
