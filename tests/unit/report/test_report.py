"""`srlite report` on runs with little in them."""

import pytest

from selfreward_lite.report.display import report_tables
from selfreward_lite.report.markdown import build_report
from selfreward_lite.run.create import create_run
from selfreward_lite.run.files import write_json, write_jsonl


def test_report_on_a_fresh_run_and_a_partial_round(tmp_path):
    pytest.importorskip("matplotlib")
    run = create_run(tmp_path / "run", preset="cpu", overrides={})
    out = build_report(run.dir)
    assert run.newest_model() == 0 and out["plots"] == {}
    md = (run.dir / "report" / "report.md").read_text()
    assert "M1 has not been trained yet" in md and "No round has started yet" in md
    report_tables(out)  # renders without crashing

    # A round that stopped after its prompts: shown as in progress, nothing plotted from it.
    write_jsonl(run.round_dir(1) / "prompts.jsonl", [{"id": "r1-p0000", "prompt": "Hi"}])
    write_json(run.round_dir(1) / "prompts_stats.json", {"generated": 3, "kept": 1, "dropped": {"too short": 2}})
    out = build_report(run.dir)
    assert "in progress" in (run.dir / "report" / "report.md").read_text()
    from rich.console import Console

    Console(width=200, record=True).print(report_tables(out))
