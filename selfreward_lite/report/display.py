"""The terminal (rich): progress bars for long stages, and every table the commands print.

`RichUI` is the UI the CLI hands to the library (see ui.py for the interface); the table rows
come from tables.py, shared with report.md.
"""

from __future__ import annotations

import contextlib

from ..ui import QuietUI
from .tables import (dpo_accuracy_text, fmt, ifeval_comparison_rows, ifeval_rows, ifeval_skipped_text, judge_quality_rows, length_gap,
                     parse_rate_text, rate_text, reasons, rounds_rows, win_rate_rows)


class RichUI(QuietUI):
    def __init__(self, console=None, stderr: bool = False):
        from rich.console import Console

        self.console = console or Console(stderr=stderr)

    def info(self, message, **options) -> None:
        self.console.print(message, **options)

    def stage(self, name: str) -> None:
        self.console.print(f"[bold cyan]▶[/] {name}")

    def skipped(self, name: str) -> None:
        self.console.print(f"[green]✓[/] {name} [dim](done earlier, kept)[/]")

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        ) as bar:
            task = bar.add_task(description, total=total)

            def advance(n: int = 1, total: int | None = None) -> None:
                if total is not None:
                    bar.update(task, total=total)
                bar.advance(task, n)

            yield advance

    def round_done(self, t: int, metrics: dict, evaluation: dict | None) -> None:
        self.console.print(round_table(f"Round {t}: M{t} -> M{t + 1}", metrics))
        for w in metrics.get("warnings", []):
            self.console.print(f"[bold yellow]warning:[/] {escape(w)}")
        if evaluation is not None:
            self.console.print(round_eval_tables(evaluation))


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def rich_table(title: str, header: list[str], rows: list[list[str]]):
    from rich.table import Table

    t = Table(title=title)
    for i, col in enumerate(header):
        t.add_column(col, no_wrap=i == 0)
    for row in rows:
        t.add_row(*row)
    return t


def judge_quality_table(quality: dict):
    """`quality`: model name -> judge-quality result (or None)."""
    return rich_table("Judge quality on held-out ranked answers (model ties count as wrong)", *judge_quality_rows(quality))


def win_rate_table(rates: list[dict]):
    return rich_table("Instruction following, judged: newer vs older model, both answer orders", *win_rate_rows(rates))


def ifeval_tables(scores: dict, comparisons: list[dict], skipped: str | None = None) -> list:
    """IFEval-format accuracy per model and the paired comparisons; or why it was skipped."""
    parts = []
    if any(scores.values()):
        parts.append(rich_table("Instruction following, verified by program (IFEval format, greedy)",
                                *ifeval_rows(scores)))
    if comparisons:
        parts.append(rich_table("IFEval format, same prompts: improved / worsened (exact McNemar)",
                                *ifeval_comparison_rows(comparisons)))
    if skipped:
        parts.append(f"[yellow]{skipped}[/]")
    return parts


def round_table(title: str, m: dict):
    """The end-of-round summary: what was made, kept, dropped, and how training went."""
    from rich.table import Table

    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("stage")
    t.add_column("figure")
    t.add_column("value", overflow="fold")
    p, c, j, pr, d = m["prompts"], m["candidates"], m["judgments"], m["pairs"], m["dpo"]
    t.add_row("prompts", "made / kept", f"{p['generated']} / {p['kept']}")
    t.add_row("", "dropped", reasons(p["dropped"]))
    t.add_row("candidates", "total (truncated: cut at the token budget, never paired)", f"{c['total']} ({c['truncated']})")
    t.add_row("", "mean response length", f"{c['mean_chars']:.0f} chars")
    t.add_row("judging", "judgments / parsed", f"{j['total']} / {j['parsed']}")
    t.add_row("", "truncated (cut at the token budget: unparsed)", fmt(j.get("truncated")))
    t.add_row("", "parse rate", parse_rate_text(j, j["total"]))
    t.add_row("", "unparsed because", reasons(j["unparsed"]))
    hist = j["histogram"]
    t.add_row("", "score histogram 0..5", "  ".join(f"{s}:{hist.get(str(s), 0)}" for s in range(6)))
    t.add_row("", "mean score", fmt(j["mean_score"]))
    t.add_row("pairs", "kept", str(pr["kept"]))
    t.add_row("", "dropped", reasons(pr["dropped"]))
    if "candidates" in pr:
        t.add_row("", "candidates ranked / not ranked", f"{pr['candidates']['ranked']} / "
                  f"{pr['candidates']['total'] - pr['candidates']['ranked']} ({reasons(pr['candidates']['excluded'])})")
    t.add_row("", "mean chosen − rejected length", length_gap(pr))
    t.add_row("DPO", "steps", fmt(d["steps"]))
    t.add_row("", "loss first → last", f"{fmt(d['first_loss'])} → {fmt(d['last_loss'])}")
    t.add_row("", "reward accuracy / margin (M_t+1 vs M_t)", f"{dpo_accuracy_text(d)} / {fmt(d.get('reward_margin'))}")
    t.add_row("", "Δ log p chosen / rejected", f"{fmt(d.get('delta_logp_chosen'))} / {fmt(d.get('delta_logp_rejected'))}")
    for w in m.get("warnings", []):
        t.add_row("[yellow]warning[/]", "", f"[yellow]{escape(w)}[/]")
    return t


def _ifeval_parts(ev: dict | None) -> list:
    """IFEval tables from an evaluation's "ifeval" entry (eval.json or `srlite eval`), or its skip notice."""
    if not ev:
        return []
    if "skipped" in ev:
        return ifeval_tables({}, [], ifeval_skipped_text(ev))
    models = ev["models"] if isinstance(ev["models"], dict) else {m["model"]: m for m in ev["models"]}
    comparisons = ev.get("comparisons") or ([ev["comparison"]] if ev.get("comparison") else [])
    return ifeval_tables(models, comparisons)


def round_eval_tables(ev: dict):
    """The end-of-round evaluation (roundN/eval.json) as tables."""
    from rich.console import Group

    parts = []
    if "judge_quality" in ev:
        parts += [judge_quality_table(ev["judge_quality"]), win_rate_table([ev["win_rate"]])]
    return Group(*parts, *_ifeval_parts(ev.get("ifeval")))


def eval_tables(result: dict):
    """`srlite eval`'s result as tables."""
    from rich.console import Group

    parts = [judge_quality_table({q["model"]: q for q in result["judge_quality"]})]
    if result["win_rates"]:
        parts.append(win_rate_table(result["win_rates"]))
    return Group(*parts, *_ifeval_parts(result.get("ifeval")))


def report_tables(data: dict):
    """`srlite report`'s terminal view: the rounds, judge quality, win rates."""
    from rich.console import Group

    title = f"{data['run_dir']}  (model: {data['model']}, preset: {data['preset']})"
    parts = [rich_table(title, *rounds_rows(data["rounds"])),
             judge_quality_table({f"M{n}": q for n, q in data["judge_quality"].items()})]
    rates = [r["win_rate"] for r in data["rounds"] if r["win_rate"]]
    if rates:
        parts.append(win_rate_table(rates))
    skipped = sorted({r["ifeval_skipped"] for r in data["rounds"] if r.get("ifeval_skipped")})
    parts += ifeval_tables({f"M{n}": s for n, s in (data.get("ifeval") or {}).items()},
                           [r["ifeval_comparison"] for r in data["rounds"] if r.get("ifeval_comparison")],
                           ifeval_skipped_text({"skipped": skipped[0]}) if skipped else None)
    return Group(*parts)


def judge_file_table(summary: dict):
    """`srlite judge`'s summary."""
    from rich.table import Table

    t = Table(title=f"{summary['input']} judged by {summary['model']} ({summary['judge_samples']} samples each)")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("records", f"{summary['records']} ({summary['kind']})")
    t.add_row("judgments / parsed", f"{summary['judgments']} / {summary['parsed']}")
    t.add_row("parse rate", parse_rate_text(summary, summary["judgments"]))
    t.add_row("unparsed because", reasons(summary["unparsed"]))
    t.add_row("score histogram 0..5", "  ".join(f"{s}:{summary['histogram'][str(s)]}" for s in range(6)))
    t.add_row("mean score", fmt(summary["mean_score"]))
    if summary["kind"] == "pairs":
        t.add_row("labelled pairs: correct / ties / unscored",
                  f"{summary['pairs_correct']} / {summary['pairs_tied']} / {summary['pairs_unscored']} of {summary['pairs_labelled']}")
        t.add_row("pairwise accuracy (ties count as wrong)", rate_text(None, summary["pairs_correct"], summary["pairs_labelled"]))
    t.add_row("written to", summary["out_dir"])
    return t


def status_table(info: dict):
    from rich.table import Table

    t = Table(title=f"{info['run_dir']}  (model: {info['model']}, preset: {info['preset']})")
    for col in ("model", "prompts", "candidates", "judgments", "pairs", "adapter", "state"):
        t.add_column(col)
    t.add_row("M1 (SFT)", "", "", "", "", "✓" if info["m1"] else "–",
              "done" if info["m1"] else "in progress" if info.get("m1_started") else "not started")
    for r in info["rounds"]:
        t.add_row(
            f"round {r['round']}: M{r['round']} → M{r['round'] + 1}",
            *(fmt(r[k]) for k in ("prompts", "candidates", "judgments", "pairs")),
            "✓" if r["adapter"] else "–",
            "done" if r["complete"] else "in progress",
        )
    return t
