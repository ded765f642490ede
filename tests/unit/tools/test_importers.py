"""`srlite import`: Open Assistant trees and `messages` datasets into validated seed files (offline fixtures)."""

import json
from pathlib import Path

import pytest
from helpers import FIXTURES

from selfreward_lite.run.records import load_messages
from selfreward_lite.errors import SrliteError
from selfreward_lite.tools.importers import import_messages, import_oasst

OASST = FIXTURES / "oasst_messages.jsonl"


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_oasst_first_turn_rank0_seed_and_ranked_pairs(tmp_path):
    stats = import_oasst(str(OASST), tmp_path / "out")
    ift = read(tmp_path / "out" / "ift.jsonl")
    assert [r["messages"][0]["content"] for r in ift] == [
        "How do I keep basil fresh after buying it?", "Explain what a hash table is in two sentences."]
    assert ift[0]["messages"][1]["content"].startswith("Trim the stems")  # the rank-0 reply
    assert load_messages(str(tmp_path / "out" / "ift.jsonl"), "ift")  # usable as --ift as is

    pairs = read(tmp_path / "out" / "eft_pairs.jsonl")
    assert len(pairs) == 4  # basil: 3 ranked replies -> 3 pairs; hash table: 2 (the deleted one skipped) -> 1
    for p in pairs:
        better, worse = (p["a"], p["b"]) if p["label"] == "a" else (p["b"], p["a"])
        assert min(p["rank_a"], p["rank_b"]) == (p["rank_a"] if p["label"] == "a" else p["rank_b"])
        assert better != worse
    assert {p["label"] for p in pairs} <= {"a", "b"}
    basil = [p for p in pairs if p["prompt"].startswith("How do I keep basil")]
    assert sorted((min(p["rank_a"], p["rank_b"]), max(p["rank_a"], p["rank_b"])) for p in basil) == [(0, 1), (0, 2), (1, 2)]

    groups = read(tmp_path / "out" / "eft_ranked.jsonl")
    assert groups[0]["ranks"] == [0, 1, 2] and groups[0]["responses"][2] == "Put it in the fridge."
    assert stats["ift records"] == 2 and stats["deleted messages skipped"] == 1 and stats["first-turn prompts"] == 3
    assert json.loads((tmp_path / "out" / "import_stats.json").read_text())["eft pairs"] == 4


def test_oasst_language_filter_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "oasst.parquet"
    pq.write_table(pa.Table.from_pylist(read(OASST)), parquet)
    stats = import_oasst(str(parquet), tmp_path / "de", lang="de")
    assert read(tmp_path / "de" / "ift.jsonl")[0]["messages"][0]["content"] == "Wie koche ich ein perfektes Ei?"
    assert stats["eft pairs"] == 1
    assert import_oasst(str(OASST), tmp_path / "all", lang="all")["ift records"] == 3
    with pytest.raises(SrliteError, match=r"language 'fr'.*en \(3\), de \(1\)"):
        import_oasst(str(OASST), tmp_path / "fr", lang="fr")


def test_oasst_from_a_dataset_id(tmp_path, monkeypatch):
    import datasets

    rows = read(OASST)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: datasets.Dataset.from_list(rows))
    stats = import_oasst("OpenAssistant/oasst1:train", tmp_path / "out")
    assert stats["ift records"] == 2 and stats["eft pairs"] == 4


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.update(role="bot"), "line 3, field 'role': 'bot' is not one of prompter, assistant"),
        (lambda r: r.update(rank="first"), "line 3, field 'rank': must be an integer >= 0 or null"),
        (lambda r: r.pop("message_id"), "line 3, field 'message_id': must be a non-empty string, got missing"),
        (lambda r: r.update(parent_id=7), "line 3, field 'parent_id'"),
        (lambda r: r.update(message_id="t1"), "line 3, field 'message_id': 't1' already appeared at"),
    ],
)
def test_oasst_malformed_row_names_file_line_field(tmp_path, edit, message):
    rows = read(OASST)[:4]
    edit(rows[2])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SrliteError) as e:
        import_oasst(str(bad), tmp_path / "out")
    assert str(bad) in str(e.value) and message in str(e.value)
    assert not (tmp_path / "out").exists()


def test_oasst_bad_fixture_and_bad_json(tmp_path):
    with pytest.raises(SrliteError, match="oasst_bad_role.jsonl, line 3, field 'role'"):
        import_oasst(str(FIXTURES / "oasst_bad_role.jsonl"), tmp_path / "out")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(OASST.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(SrliteError, match="broken.jsonl, line 2: not valid JSON"):
        import_oasst(str(broken), tmp_path / "out")


def test_import_refuses_non_empty_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(SrliteError, match="not empty.*--force"):
        import_oasst(str(OASST), tmp_path / "out")
    import_oasst(str(OASST), tmp_path / "out", force=True)
    assert not (tmp_path / "out" / "x").exists()


def test_import_messages_dataset_validates_and_writes_jsonl(tmp_path, monkeypatch):
    import datasets

    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "category": "chat"}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: datasets.Dataset.from_list([good, good]))
    assert import_messages("someone/chats:train", tmp_path / "ift.jsonl") == 2
    assert read(tmp_path / "ift.jsonl") == [{"messages": good["messages"]}] * 2  # extra columns dropped
    with pytest.raises(SrliteError, match="exists"):
        import_messages("someone/chats:train", tmp_path / "ift.jsonl")
    bad = {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}]}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: datasets.Dataset.from_list([good, bad]))
    with pytest.raises(SrliteError, match=r"dataset someone/chats:train, row 1, field 'messages\[1\].role'"):
        import_messages("someone/chats:train", tmp_path / "other.jsonl")
