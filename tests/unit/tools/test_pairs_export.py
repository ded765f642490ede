"""`srlite export --pairs`: a round's pairs in TRL's conversational prompt/chosen/rejected form."""

import pytest
from helpers import PAIRS_QA as QA

from selfreward_lite.errors import SrliteError
from selfreward_lite.tools.export import export_pairs


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
