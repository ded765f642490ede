"""`srlite export --pairs`: the exported file, loaded with datasets, goes into TRL's DPOTrainer as is
(a tiny random-weight Llama with the embedded model's ChatML template: tiny_models.tiny_chatml)."""

import math

import pytest
from helpers import PAIRS_QA as QA
from tiny_models import tiny_chatml

from selfreward_lite.tools.export import export_pairs


def test_trl_dpo_trainer_takes_the_export_as_is(run_with_pairs, tmp_path):
    """The exported file, loaded with datasets, goes straight into TRL's DPOTrainer for a real step."""
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out = tmp_path / "dpo.jsonl"
    export_pairs(run_with_pairs.dir, 1, out)
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    model_dir = tiny_chatml(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    args = DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=2, max_steps=1, learning_rate=1e-4,
                     report_to=[], use_cpu=True, logging_steps=1, save_strategy="no", disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    row = trainer.train_dataset[0]  # tokenised from the conversational rows with the chat template
    assert tok.decode(row["prompt_ids"]).endswith("<|im_start|>assistant\n") and QA[0][0] in tok.decode(row["prompt_ids"])
    assert tok.decode(row["chosen_ids"]).startswith(QA[0][1])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 1 and len(losses) == 1 and math.isfinite(losses[0])
    assert losses[0] == pytest.approx(math.log(2), abs=0.05)  # step 0: policy == reference
