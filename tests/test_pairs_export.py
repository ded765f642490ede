"""`srlite export --pairs`: a round's pairs in TRL's conversational prompt/chosen/rejected form."""

import math

import pytest

from selfreward_lite.run.files import write_jsonl
from selfreward_lite.errors import SrliteError
from selfreward_lite.tools.export import export_pairs
from selfreward_lite.run.create import create_run

QA = [
    ("What is the boiling point of water at sea level?", "100 degrees Celsius (212 °F).", "It depends, maybe 50."),
    ("Name a primary color.", "Red.", "Purple is a primary color of light and paint alike, and so is green."),
    ("How many legs does a spider have?", "Eight.", "Six, like all insects."),
    ("Translate 'thank you' into French.", "Merci.", "Gracias."),
]


@pytest.fixture
def run_with_pairs(tmp_path):
    run = create_run(tmp_path / "run", preset="cpu", overrides={})
    pairs = [{"id": f"r1-p{i:04d}-pair", "prompt_id": f"r1-p{i:04d}", "prompt": q, "chosen": c, "rejected": r,
              "chosen_id": "x-c0", "rejected_id": "x-c1", "chosen_score": 4.5, "rejected_score": 1.0}
             for i, (q, c, r) in enumerate(QA)]
    write_jsonl(run.round_dir(1) / "pairs.jsonl", pairs)
    return run


def test_pairs_export_is_trl_conversational(run_with_pairs, tmp_path):
    import datasets

    out = tmp_path / "dpo.jsonl"
    assert export_pairs(run_with_pairs.dir, 1, out) == 4
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert ds[0]["prompt"] == [{"role": "user", "content": QA[0][0]}]
    assert ds[0]["chosen"] == [{"role": "assistant", "content": QA[0][1]}]
    assert ds[0]["rejected"] == [{"role": "assistant", "content": QA[0][2]}]
    with pytest.raises(SrliteError, match="exists.*--force"):
        export_pairs(run_with_pairs.dir, 1, out)
    with pytest.raises(SrliteError, match="round 2 has no pairs yet"):
        export_pairs(run_with_pairs.dir, 2, tmp_path / "r2.jsonl")


def test_trl_dpo_trainer_takes_the_export_as_is(run_with_pairs, tmp_path, embedded):
    """The exported file, loaded with datasets, goes straight into TRL's DPOTrainer for a real step."""
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out = tmp_path / "dpo.jsonl"
    export_pairs(run_with_pairs.dir, 1, out)
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    model = AutoModelForCausalLM.from_pretrained(embedded)
    tok = AutoTokenizer.from_pretrained(embedded)
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
