"""`srlite report`: what the run measured, round by round, in the terminal and as Markdown + PNG plots.

Reads only what exists on disk (roundN/metrics.json, pairs/prompts stats, DPO logs, cached
evaluations) and says "–" for anything missing, so it works on a run with 0..N rounds.
"""

from __future__ import annotations

from pathlib import Path

from ..run.files import read_json, write_json
from ..run.rundir import ADAPTER, METRICS, Run, open_run


def _read(path: Path):
    return read_json(path) if path.is_file() else None


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "–"
    if pct:
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def collect(run: Run) -> dict:
    """Everything the report shows, from the files that exist."""
    from ..evaluation.judge_quality import cached_judge_quality, newest_model
    from ..evaluation.winrate import cached_win_rate

    rounds = []
    t = 1
    while run.round_dir(t).is_dir():
        rd = run.round_dir(t)
        dpo = _read(rd / ADAPTER / "dpo.json")
        rounds.append({
            "round": t,
            "metrics": _read(rd / METRICS),
            "prompts": _read(rd / "prompts_stats.json"),
            "pairs": _read(rd / "pairs_stats.json"),
            "dpo_log": [h for h in (dpo or {}).get("log", []) if "loss" in h],
            "win_rate": cached_win_rate(run, t + 1, t),
        })
        t += 1
    newest = newest_model(run)
    return {
        "run_dir": str(run.dir),
        "model": run.cfg.model,
        "preset": run.cfg.preset,
        "m1": _read(run.m1_dir / METRICS),
        "rounds": rounds,
        "judge_quality": {n: cached_judge_quality(run, n) for n in range(1, newest + 1)},
    }


# --- terminal ---------------------------------------------------------------------------------

def judge_quality_table(quality: dict):
    """`quality`: model name -> judge-quality result (or None)."""
    from rich.table import Table

    t = Table(title="Judge quality on held-out ranked answers (model ties count as wrong)")
    for col in ("model", "pairwise acc.", "pairs", "exact match", "Spearman", "Kendall τ-b", "parse failures", "mean score"):
        t.add_column(col, no_wrap=col == "model")
    for name, q in quality.items():
        if q is None:
            t.add_row(name, *["–"] * 7)
            continue
        pw = q["pairwise"]
        t.add_row(name, _fmt(pw["accuracy"], pct=True), str(pw["pairs"]), _fmt(q["exact_match"], pct=True),
                  _fmt(q["spearman"]), _fmt(q["kendall_tau_b"]),
                  _fmt(None if q["parse_rate"] is None else 1 - q["parse_rate"], pct=True), _fmt(q["mean_score"]))
    return t


def win_rate_table(rates: list[dict]):
    from rich.table import Table

    t = Table(title="Instruction following: newer vs older model, both answer orders")
    for col in ("match", "judge", "wins", "losses", "ties", "unparsed", "win rate", "picked first", "mean chars new / old"):
        t.add_column(col, no_wrap=col == "match")
    for w in rates:
        t.add_row(f"{w['new']} vs {w['old']}", w["judge"], str(w["wins"]), str(w["losses"]), str(w["ties"]),
                  str(w["unparsed"]), _fmt(w["win_rate"], pct=True), _fmt(w["picked_first"], pct=True),
                  _chars(w))
    return t


def round_eval_table(ev: dict):
    """The end-of-round evaluation (roundN/eval.json) as two tables."""
    from rich.console import Group

    return Group(judge_quality_table(ev["judge_quality"]), win_rate_table([ev["win_rate"]]))


def eval_tables(result: dict):
    """`srlite eval`'s result as tables."""
    from rich.console import Group

    parts = [judge_quality_table({q["model"]: q for q in result["judge_quality"]})]
    if result["win_rates"]:
        parts.append(win_rate_table(result["win_rates"]))
    return Group(*parts)


def judge_file_table(summary: dict):
    """`srlite judge`'s summary."""
    from rich.table import Table

    t = Table(title=f"{summary['input']} judged by {summary['model']} ({summary['judge_samples']} samples each)")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("records", f"{summary['records']} ({summary['kind']})")
    t.add_row("judgments / parsed", f"{summary['judgments']} / {summary['parsed']}")
    t.add_row("parse rate", _fmt(summary["parse_rate"], pct=True))
    t.add_row("unparsed because", ", ".join(f"{k}: {v}" for k, v in summary["unparsed"].items()) or "none")
    t.add_row("score histogram 0..5", "  ".join(f"{s}:{summary['histogram'][str(s)]}" for s in range(6)))
    t.add_row("mean score", _fmt(summary["mean_score"]))
    if summary["kind"] == "pairs":
        t.add_row("labelled pairs: correct / ties / unscored",
                  f"{summary['pairs_correct']} / {summary['pairs_tied']} / {summary['pairs_unscored']} of {summary['pairs_labelled']}")
        t.add_row("pairwise accuracy (ties count as wrong)", _fmt(summary["pairwise_accuracy"], pct=True))
    t.add_row("written to", summary["out_dir"])
    return t


def report_tables(data: dict):
    """`srlite report`'s terminal view: the rounds, judge quality, win rates."""
    from rich.console import Group

    parts = [rounds_table(data), judge_quality_table({f"M{n}": q for n, q in data["judge_quality"].items()})]
    rates = [r["win_rate"] for r in data["rounds"] if r["win_rate"]]
    if rates:
        parts.append(win_rate_table(rates))
    return Group(*parts)


def rounds_table(data: dict):
    from rich.table import Table

    t = Table(title=f"{data['run_dir']}  (model: {data['model']}, preset: {data['preset']})")
    for col in ("round", "prompts made / kept", "judge parse rate", "scores 0..5", "pairs kept / dropped",
                "DPO loss first → last", "reward margin", "answer chars", "win rate vs previous"):
        t.add_column(col)
    for r in data["rounds"]:
        m, w = r["metrics"], r["win_rate"]
        if m is None:
            t.add_row(str(r["round"]), *["–"] * 7, "(in progress)")
            continue
        hist = m["judgments"]["histogram"]
        t.add_row(
            f"{r['round']} (M{r['round']} → M{r['round'] + 1})",
            f"{m['prompts']['generated']} / {m['prompts']['kept']}",
            _fmt(m["judgments"]["parse_rate"], pct=True),
            " / ".join(str(hist.get(str(s), 0)) for s in range(6)),
            f"{m['pairs']['kept']} / {sum(m['pairs']['dropped'].values())}",
            f"{_fmt(m['dpo']['first_loss'])} → {_fmt(m['dpo']['last_loss'])}",
            _fmt(m["dpo"]["reward_margin"]),
            f"{m['candidates']['mean_chars']:.0f}",
            _fmt(w["win_rate"], pct=True) if w else "–",
        )
    return t


# --- Markdown + plots -------------------------------------------------------------------------

def build_report(run_dir: Path, out_dir: Path | None = None) -> dict:
    """Write report.md and its PNG plots (default: <run>/report/); returns what was collected and written."""
    from .plots import write_plots

    run = open_run(run_dir)
    data = collect(run)
    out_dir = Path(out_dir) if out_dir else run.dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(data, out_dir)
    md = markdown(data, plots)
    from ..run.files import atomic_write_text

    atomic_write_text(out_dir / "report.md", md)
    write_json(out_dir / "report.json", data)
    return {**data, "out_dir": str(out_dir), "plots": plots, "report": str(out_dir / "report.md")}


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(data: dict, plots: dict[str, str]) -> str:
    out = ["# Self-rewarding run report\n", f"Run: `{data['run_dir']}` · model: `{data['model']}` · "
           f"preset: `{data['preset']}` · rounds: {len(data['rounds'])}\n"]
    if data["m1"]:
        out.append(f"M1 (SFT): {data['m1'].get('steps', '–')} steps, loss {_fmt(data['m1'].get('first_loss'))} → "
                   f"{_fmt(data['m1'].get('last_loss'))}.\n")
    elif data["judge_quality"]:
        out.append("M1 exists (no training summary in m1/metrics.json).\n")
    else:
        out.append("M1 has not been trained yet.\n")
    rows = []
    for r in data["rounds"]:
        m, w = r["metrics"], r["win_rate"]
        if m is None:
            rows.append([str(r["round"]), "in progress"] + ["–"] * 6)
            continue
        rows.append([
            f"{r['round']} (M{r['round']} → M{r['round'] + 1})",
            f"{m['prompts']['generated']} / {m['prompts']['kept']}",
            _fmt(m["judgments"]["parse_rate"], pct=True),
            f"{m['pairs']['kept']} / {sum(m['pairs']['dropped'].values())}",
            f"{_fmt(m['dpo']['first_loss'])} → {_fmt(m['dpo']['last_loss'])}",
            _fmt(m["dpo"]["reward_margin"]),
            f"{m['candidates']['mean_chars']:.0f}",
            _fmt(w["win_rate"], pct=True) if w else "–",
        ])
    out.append("## Rounds\n")
    out.append(_md_table(["round", "prompts made / kept", "judge parse rate", "pairs kept / dropped",
                          "DPO loss first → last", "reward margin", "mean answer chars", "win rate vs previous"], rows)
               if rows else "No round has started yet.")
    drops = [f"- round {r['round']}: prompts dropped {_reasons((r['prompts'] or {}).get('dropped'))}; "
             f"pairs dropped {_reasons((r['pairs'] or {}).get('dropped'))}" for r in data["rounds"]]
    if drops:
        out.append("\nDropped, by reason:\n\n" + "\n".join(drops))
    out.append("\n## Judge quality\n\nEach model judges the held-out EFT answers; its mean score per answer is compared "
               "with the reference score. Pairwise accuracy is over pairs of answers to the same question with different "
               "reference scores; a model tie or an unparsed side counts as wrong. Exact match is over all judgments "
               "(unparsed ones count as misses).\n")
    qrows = [[f"M{n}", *(["–"] * 6 if q is None else [
        _fmt(q["pairwise"]["accuracy"], pct=True), str(q["pairwise"]["pairs"]), _fmt(q["exact_match"], pct=True),
        _fmt(q["spearman"]), _fmt(q["kendall_tau_b"]), _fmt(None if q["parse_rate"] is None else 1 - q["parse_rate"], pct=True)])]
        for n, q in data["judge_quality"].items()]
    out.append(_md_table(["model", "pairwise accuracy", "pairs", "exact match", "Spearman", "Kendall τ-b",
                          "parse failures"], qrows) if qrows else "No model yet.")
    if not any(data["judge_quality"].values()):
        out.append("\nNot evaluated yet: run `srlite eval`.")
    wrows = [[f"{w['new']} vs {w['old']}", w["judge"], str(w["wins"]), str(w["losses"]), str(w["ties"]),
              str(w["unparsed"]), _fmt(w["win_rate"], pct=True), _chars(w)]
             for w in (r["win_rate"] for r in data["rounds"]) if w]
    out.append("\n## Instruction following\n\nThe newer model against the one before it on held-out prompts, each pair "
               "judged in both orders (A/B and B/A). Win rate = (wins + ties/2) / parsed verdicts.\n")
    out.append(_md_table(["match", "judge", "wins", "losses", "ties", "unparsed", "win rate", "mean chars new / old"], wrows)
               if wrows else "Not evaluated yet: run `srlite eval`.")
    if plots:
        out.append("\n## Plots\n")
        out += [f"![{title}]({name})\n" for title, name in plots.items()]
    return "\n".join(out) + "\n"


def _chars(w: dict) -> str:
    new, old = w["mean_chars"]["new"], w["mean_chars"]["old"]
    return f"{new:.0f} / {old:.0f}" if new is not None and old is not None else "–"


def _reasons(counts: dict | None) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else "none"
