"""Terminal output: progress bars for long stages and the end-of-round table (rich).

The pipeline talks to a `UI`; `QuietUI` is for library use and tests that want silence.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


class QuietUI:
    def info(self, message: str) -> None:
        pass

    def stage(self, name: str) -> None:
        pass

    def skipped(self, name: str) -> None:
        pass

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[..., None]]:
        yield lambda n=1, total=None: None

    def round_table(self, title: str, metrics: dict) -> None:
        pass


class RichUI(QuietUI):
    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=False)

    def info(self, message: str) -> None:
        self.console.print(message)

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

    def round_table(self, title: str, metrics: dict) -> None:
        self.console.print(round_table(title, metrics))


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _reasons(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"


def round_table(title: str, m: dict):
    """The end-of-round summary: what was made, kept, dropped, and how training went."""
    from rich.table import Table

    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("stage")
    t.add_column("figure")
    t.add_column("value", overflow="fold")
    p, c, j, pr, d = m["prompts"], m["candidates"], m["judgments"], m["pairs"], m["dpo"]
    t.add_row("prompts", "made / kept", f"{p['generated']} / {p['kept']}")
    t.add_row("", "dropped", _reasons(p["dropped"]))
    t.add_row("candidates", "total (cut at token budget)", f"{c['total']} ({c['truncated']})")
    t.add_row("", "mean response length", f"{c['mean_chars']:.0f} chars")
    t.add_row("judging", "judgments / parsed", f"{j['total']} / {j['parsed']}")
    t.add_row("", "parse rate", f"{j['parse_rate']:.1%}")
    t.add_row("", "unparsed because", _reasons(j["unparsed"]))
    hist = j["histogram"]
    t.add_row("", "score histogram 0..5", "  ".join(f"{s}:{hist.get(str(s), 0)}" for s in range(6)))
    t.add_row("", "mean score", _fmt(j["mean_score"]))
    t.add_row("pairs", "kept", str(pr["kept"]))
    t.add_row("", "dropped", _reasons(pr["dropped"]))
    t.add_row("DPO", "steps", _fmt(d["steps"]))
    t.add_row("", "loss first → last", f"{_fmt(d['first_loss'])} → {_fmt(d['last_loss'])}")
    t.add_row("", "reward margin / accuracy", f"{_fmt(d['reward_margin'])} / {_fmt(d['reward_accuracy'])}")
    return t


def status_table(info: dict):
    from rich.table import Table

    t = Table(title=f"{info['run_dir']}  (model: {info['model']}, preset: {info['preset']})")
    for col in ("model", "prompts", "candidates", "judgments", "pairs", "adapter", "state"):
        t.add_column(col)
    t.add_row("M1 (SFT)", "", "", "", "", "✓" if info["m1"] else "–", "done" if info["m1"] else "in progress" if info.get("m1_started") else "not started")
    for r in info["rounds"]:
        t.add_row(
            f"round {r['round']}: M{r['round']} → M{r['round'] + 1}",
            *(_fmt(r[k]) for k in ("prompts", "candidates", "judgments", "pairs")),
            "✓" if r["adapter"] else "–",
            "done" if r["complete"] else "in progress",
        )
    return t
