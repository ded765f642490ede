"""The HF backend: transformers + PEFT (+ bitsandbytes 4-bit NF4), on every machine.

`load_stack` builds M_t from the base model and the adapter stack (adapters.py); the Unsloth
backend (unsloth.py) reuses the tokenizer and the device/dtype choices made here. Heavy imports
happen inside functions so `srlite --help` stays instant.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

from ..config import Config
from ..errors import SrliteError
from ..run import seeds
from .adapters import TRAINABLE, LoadedModel, activate, init_trainable, load_adapters
from .embedded import resolve_model_path
from .generation import bos_id

# A plain ChatML template for models that ship without one.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def quiet_libraries() -> None:
    """Our own progress bars replace the libraries' per-step prints and bars."""
    import logging

    # bitsandbytes warns at import on CPU about an optional kernels package it does not need.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def resolve_device(cfg: Config) -> str:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SrliteError("config: device is 'cuda' but no CUDA GPU is visible. Set device to 'auto' or 'cpu'.")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def resolve_dtype(cfg: Config):
    """bfloat16 where the hardware has it natively (2-3x faster than float32 on such CPUs)."""
    import torch

    if cfg.dtype == "float32":
        return torch.float32
    if cfg.dtype == "bfloat16":
        return torch.bfloat16
    if resolve_device(cfg) == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def uses_4bit(cfg: Config) -> bool:
    return cfg.quantize == "4bit" or (cfg.quantize == "auto" and resolve_device(cfg) == "cuda")


def load_tokenizer(cfg: Config):
    from transformers import AutoTokenizer

    path = resolve_model_path(cfg.model)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except Exception as e:
        raise SrliteError(f"Could not load the tokenizer of {cfg.model!r}: {type(e).__name__}: {e}") from None
    if tok.pad_token is None:
        # Padding is masked out everywhere, so reusing EOS is safe.
        tok.pad_token = tok.eos_token
    if not tok.chat_template:
        tok.chat_template = DEFAULT_CHAT_TEMPLATE
    _chat_starts_with_bos(tok)
    tok.padding_side = "left"
    return tok


def _chat_starts_with_bos(tok) -> None:
    """A tokenizer that puts BOS before plain text (Llama-3, Mistral, Gemma) expects it before chat
    text too. Their own templates write it; one that does not (our ChatML default on a base model)
    gets `{{ bos_token }}` in front, so generation (models/generation.prompt_ids) and TRL's SFT/DPO
    tokenisation (apply_chat_template, which adds no special tokens) both see exactly one."""
    bos = bos_id(tok)
    if bos is None or not isinstance(tok.chat_template, str):
        return
    try:
        text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    except Exception:  # a template with its own rules about roles: leave it as it is
        return
    if tok(text, add_special_tokens=False)["input_ids"][:1] != [bos]:
        tok.chat_template = "{{ bos_token }}" + tok.chat_template


def load_base(cfg: Config, dtype=None):
    """The base model; `dtype` overrides the config's (a torch dtype, or "auto": the checkpoint's own)."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(cfg)
    dtype = dtype or resolve_dtype(cfg)
    kwargs: dict = {"trust_remote_code": cfg.trust_remote_code, "use_safetensors": True, "dtype": dtype}
    if uses_4bit(cfg):
        if importlib.util.find_spec("bitsandbytes") is None:
            raise SrliteError("4-bit loading needs bitsandbytes: pip install bitsandbytes (or set quantize to 'none').")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    path = resolve_model_path(cfg.model)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as e:
        raise SrliteError(
            f"Could not load model {cfg.model!r}: {e}. Use a local path or a Hugging Face id that is "
            "cached or reachable; weights must be in safetensors format."
        ) from None
    except ValueError as e:
        if "trust_remote_code" not in str(e):
            raise
        raise SrliteError(
            f"Model {cfg.model!r} needs its own Python code to load. srlite does not run code from model "
            "repositories unless you ask: review that code, then set trust_remote_code to true in config.json."
        ) from None
    return model


def load_stack(cfg: Config, adapter_dirs: Sequence[Path], train_new: bool = False, dtype=None) -> LoadedModel:
    """M_t = base + adapters (frozen); with train_new, a zero-initialised trainable adapter on top.

    `dtype` overrides the config's compute dtype (export loads the base in its own precision).
    """
    quiet_libraries()  # before peft, which imports bitsandbytes
    from peft import LoraConfig, get_peft_model

    base = load_base(cfg, dtype)
    tok = load_tokenizer(cfg)
    model, names = load_adapters(base, adapter_dirs)
    init_seed = None
    if train_new:
        # The new adapter of round t = len(adapter_dirs) (0: M1's): its own random A, the same in every process.
        init_seed = seeds.adapter_init(cfg.seed, len(adapter_dirs))
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type="CAUSAL_LM",
        )
        if names:
            model.add_adapter(TRAINABLE, lora)
        else:
            model = get_peft_model(base, lora, adapter_name=TRAINABLE)
        init_trainable(model, init_seed)
        names.append(TRAINABLE)
    if names:
        activate(model, names, train_new)
    model.eval()
    return LoadedModel(model, tok, names, resolve_device(cfg), base.dtype if dtype else resolve_dtype(cfg),
                       init_seed=init_seed)


