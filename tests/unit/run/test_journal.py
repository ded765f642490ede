"""The journal of a stage in progress: a torn tail is repaired, incomplete groups dropped, no record twice."""

import json

from selfreward_lite.run.journal import Journal, complete_groups


def rec(pid, k):
    return {"id": f"{pid}-c{k}", "prompt_id": pid, "response": f"answer {k}"}


# --- journal -------------------------------------------------------------------------------

def test_journal_repairs_torn_tail_and_drops_incomplete_groups(tmp_path):
    j = Journal(tmp_path / "candidates.jsonl")
    j.append([rec("p0", 0), rec("p0", 1)])
    j.append([rec("p1", 0), rec("p1", 1)])
    # A kill in the middle of writing p2's chunk: one full line, then half a line.
    with open(j.path, "a") as f:
        f.write(json.dumps(rec("p2", 0)) + "\n" + json.dumps(rec("p2", 1))[:17])
    kept = j.load(complete_groups("prompt_id", 2))
    assert [r["id"] for r in kept] == ["p0-c0", "p0-c1", "p1-c0", "p1-c1"]
    # The file was repaired: appending p2 again gives exactly one copy of each record.
    assert j.path.read_text().endswith("\n")
    j.append([rec("p2", 0), rec("p2", 1)])
    ids = [r["id"] for r in j.load(complete_groups("prompt_id", 2))]
    assert ids == ["p0-c0", "p0-c1", "p1-c0", "p1-c1", "p2-c0", "p2-c1"]
    j.finish(j.load())
    assert not j.path.exists()
    assert len((tmp_path / "candidates.jsonl").read_text().splitlines()) == 6


def test_journal_ignores_duplicates_and_empty(tmp_path):
    j = Journal(tmp_path / "x.jsonl")
    assert j.load() == []
    j.append([rec("p0", 0), rec("p0", 1), rec("p0", 0)])
    assert [r["id"] for r in j.load(complete_groups("prompt_id", 2))] == ["p0-c0", "p0-c1"]
    assert len(j.path.read_text().splitlines()) == 2


def test_journal_garbled_middle_line_keeps_prefix(tmp_path):
    j = Journal(tmp_path / "x.jsonl")
    j.path.write_bytes(b'{"id": "a", "prompt_id": "p"}\n\xff\xfe garbage\n{"id": "b", "prompt_id": "p"}\n')
    assert [r["id"] for r in j.load()] == ["a"]
