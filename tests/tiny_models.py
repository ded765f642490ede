"""Tiny models built in the test, without downloads: real tokenizer behaviour, random weights.

- `bos_tokenizer(kind)`: a byte-level BPE tokenizer (trained in milliseconds on a few sentences)
  that behaves like a real family's:
    "llama3"  <|begin_of_text|> added to plain text by the tokenizer, and written by the chat
              template ({{ bos_token }}<|start_header_id|>...);
    "gemma"   <bos> added to plain text, and written by a Gemma-style template
              ({{ bos_token }}<start_of_turn>user ...);
    "base"    <s> added to plain text, no chat template (a base model: srlite's ChatML default);
    "none"    no BOS at all (Qwen-like), ChatML template.
- `tiny_llama_dir(path, kind)`: that tokenizer and a random-weight LlamaForCausalLM of a few
  hundred thousand parameters saved as a model folder that `config.model` can name, so the real
  loaders (models/hf.py) load it; `generation_config` entries are written into it as asked.
- `tiny_chatml(folder)`: the embedded model's stand-in where a test checks mechanics (exactness of a
  cache, stacking, checkpoints, collation), not what the model knows: its architecture and ChatML
  template, at a thousandth of its compute per token.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Name a primary color. Red is a primary color.",
    "Below are tasks and questions that people asked an AI assistant. Write one new task.",
    "Review the user's question and the corresponding response using the additive 5-point scoring system.",
    "Score: 4. The response is relevant, clear and helpful. Task 1: Task 2: Task 3:",
    "How many legs does a spider have? A spider has eight legs. Spiders are not insects.",
    "user assistant system Hi hello Give me three tips for writing a short story.",
] * 4

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

KINDS = {
    # kind: (bos, eos, pad, other special tokens, chat template, does plain text get BOS)
    "llama3": ("<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>",
               ["<|start_header_id|>", "<|end_header_id|>"], LLAMA3_TEMPLATE, True),
    "gemma": ("<bos>", "<end_of_turn>", "<pad>", ["<start_of_turn>", "<eos>"], GEMMA_TEMPLATE, True),
    "base": ("<s>", "</s>", "<unk>", [], None, True),
    "none": (None, "<|im_end|>", "<|endoftext|>", ["<|im_start|>"], CHATML_TEMPLATE, False),
}


def bos_tokenizer(kind: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bos, eos, pad, others, template, plain_bos = KINDS[kind]
    specials = [t for t in (pad, bos, eos) if t] + others
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if plain_bos:
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tk.token_to_id(bos))])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=eos, pad_token=pad,
                                  additional_special_tokens=others)
    if template:
        tok.chat_template = template
    return tok


def tiny_llama_dir(path: Path, kind: str = "llama3", vocab_size: int | None = None, generation: dict | None = None,
                   **config) -> Path:
    """A model folder: the `kind` tokenizer and a random-weight tiny Llama (seeded, float32)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = bos_tokenizer(kind)
    torch.manual_seed(0)
    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 tie_word_embeddings=False)
    cfg = LlamaConfig(vocab_size=vocab_size or len(tok), max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **{**shape, **config})
    model = LlamaForCausalLM(cfg)
    for key, value in (generation or {}).items():
        setattr(model.generation_config, key, value)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_chatml(folder: Path, **config) -> str:
    """`config.model` for a tiny ChatML Llama (the "none" kind, like SmolLM2) in `folder`/tiny-llama, made once.

    Its weights have 5x the default spread (initializer_range 0.1): with the default, attention is
    nearly uniform and a position shifted by one in a KV cache goes unnoticed (tried); with 0.1 it
    changes the greedy text, as on the embedded model."""
    path = Path(folder) / "tiny-llama"
    if not path.is_dir():
        tiny_llama_dir(path, "none", **{"initializer_range": 0.1, **config})
    return str(path)
