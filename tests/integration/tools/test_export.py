"""`srlite export`: the merged 16-bit model and the folded adapter compute what the stack computes."""

import json

import pytest
import torch

from helpers import random_adapter
from selfreward_lite.config import preset_config
from selfreward_lite.errors import SrliteError
from selfreward_lite.tools.export import export_model
from selfreward_lite.models.hf import load_stack
from selfreward_lite.run.create import create_run

TEXT = "The capital of France is"


@pytest.fixture(scope="module")
def run_with_m2(tmp_path_factory, embedded):
    """A run directory holding M1's and round 1's adapters, i.e. M2 (no training)."""
    run = create_run(tmp_path_factory.mktemp("export") / "run", preset="cpu",
                   overrides={"dtype": "float32", "lora_r": 4, "lora_alpha": 8})
    random_adapter(run.cfg, [], run.m1_dir / "adapter", seed=1)
    random_adapter(run.cfg, [run.m1_dir / "adapter"], run.round_dir(1) / "adapter", seed=2)
    return run


def logits(model, tok):
    with torch.no_grad():
        return model(**tok(TEXT, return_tensors="pt")).logits.float()


def test_export_merged_and_folded_equal_the_stack(run_with_m2, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = run_with_m2
    info = export_model(run.dir, None, tmp_path / "out", dtype="float32")
    assert info["model"] == "M2" and info["dtype"] == "float32" and info["adapter_rank"] == 8
    assert json.loads((tmp_path / "out" / "export.json").read_text())["files"] == {"adapter": "adapter", "merged": "merged"}

    lm = load_stack(preset_config("cpu", dtype="float32"), run.adapters_of(2))
    stacked = logits(lm.model, lm.tokenizer)
    with lm.model.disable_adapter():
        bare = logits(lm.model, lm.tokenizer)
    assert (stacked - bare).abs().max() > 0.1  # the stack changes the model, so equality means something

    merged_dir = tmp_path / "out" / "merged"
    assert (merged_dir / "model.safetensors").is_file()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(merged_dir)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert torch.allclose(logits(merged, tok), stacked, atol=1e-3, rtol=0)

    base = AutoModelForCausalLM.from_pretrained(lm.model.peft_config["m1"].base_model_name_or_path, dtype=torch.float32)
    folded = PeftModel.from_pretrained(base, tmp_path / "out" / "adapter")
    assert folded.peft_config["default"].r == 8
    assert torch.allclose(logits(folded, tok), stacked, atol=1e-3, rtol=0)


def test_export_refuses_non_empty_out_and_bad_round(run_with_m2, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SrliteError, match="not empty.*--force"):
        export_model(run_with_m2.dir, 2, out)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(SrliteError, match="there is no M3; models available: M1..M2"):
        export_model(run_with_m2.dir, 3, tmp_path / "other")


def test_export_gguf_without_llama_cpp_names_what_is_missing(run_with_m2, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.unsloth/llama.cpp
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SrliteError) as e:
        export_model(run_with_m2.dir, 2, tmp_path / "out", gguf="f16")
    message = str(e.value)
    assert "convert_hf_to_gguf.py" in message and "git clone" in message and "without --gguf" in message
    assert not (tmp_path / "out").exists()  # refused before loading anything


def test_export_gguf_runs_the_llama_cpp_converter(run_with_m2, tmp_path):
    """A stand-in converter records its arguments: the merged folder goes in, the .gguf lands in the export."""
    llama = tmp_path / "llama.cpp"
    llama.mkdir()
    (llama / "convert_hf_to_gguf.py").write_text(
        "import json, sys, pathlib\n"
        "args = sys.argv[1:]\n"
        "assert pathlib.Path(args[0], 'model.safetensors').is_file()\n"
        "pathlib.Path(args[args.index('--outfile') + 1]).write_text(json.dumps(args))\n"
    )
    info = export_model(run_with_m2.dir, 1, tmp_path / "out", dtype="float32", gguf="q8_0", llama_cpp=llama)
    args = json.loads((tmp_path / "out" / "model-q8_0.gguf").read_text())
    assert args[-2:] == ["--outtype", "q8_0"] and info["files"]["gguf"] == "model-q8_0.gguf"
