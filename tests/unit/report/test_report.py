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


def test_round_table_and_report_show_truncation_and_length_gap(tmp_path):
    """The end-of-round table and `srlite report` show the truncated answers and judgments, the
    candidates not ranked and the mean chosen − rejected length."""
    pytest.importorskip("matplotlib")
    from rich.console import Console

    from selfreward_lite.report.display import round_table

    metrics = {
        "round": 1,
        "prompts": {"generated": 17, "kept": 12, "dropped": {"too short": 5}},
        "candidates": {"total": 48, "truncated": 12, "mean_chars": 156.0},
        "judgments": {"total": 96, "parsed": 70, "parse_rate": 70 / 96, "unparsed": {"truncated": 20, "no score": 6},
                      "histogram": {str(s): 10 for s in range(6)}, "mean_score": 2.5, "truncated": 20},
        "pairs": {"kept": 9, "dropped": {"truncated (fewer than two finished candidates)": 1, "tie (best == worst score)": 2},
                  "candidates": {"total": 48, "ranked": 33, "excluded": {"truncated": 12, "too few parsed judgments": 3}},
                  "length": {"chosen_mean_chars": 150.0, "rejected_mean_chars": 138.0,
                             "chosen_minus_rejected_chars": 12.0, "chosen_minus_rejected_tokens": 3.25},
                  "length_control_margin": None},
        "dpo": {"steps": 3, "first_loss": 0.693, "last_loss": 0.6, "reward_margin": 0.1, "reward_accuracy": 0.7},
    }
    console = Console(width=250, record=True)
    console.print(round_table("Round 1", metrics))
    text = console.export_text()
    assert "48 (12)" in text and "truncated (cut at the token budget: unparsed)" in text
    assert "33 / 15 (truncated: 12, too few parsed judgments: 3)" in text and "+12 chars (+3.2 tokens)" in text

    run = create_run(tmp_path / "run", preset="cpu", overrides={})
    write_json(run.round_dir(1) / "metrics.json", metrics)
    write_json(run.round_dir(1) / "prompts_stats.json", metrics["prompts"])
    write_json(run.round_dir(1) / "pairs_stats.json", metrics["pairs"])
    out = build_report(run.dir)
    md = (run.dir / "report" / "report.md").read_text()
    assert "truncated answers / judgments" in md and "| 12 / 20 |" in md and "+12 chars (+3.2 tokens)" in md
    assert "candidates not ranked truncated: 12, too few parsed judgments: 3" in md
    console = Console(width=300, record=True)
    console.print(report_tables(out))
    assert "12 / 20" in console.export_text()
