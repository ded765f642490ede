"""`srlite report`: report.md with PNG plots (and report.json), from what `collect` gathered."""

from __future__ import annotations

from pathlib import Path

from ..run.files import atomic_write_text, write_json
from ..run.rundir import REPORT_JSON, REPORT_MD, open_run
from .collect import collect
from .plots import write_plots
from .tables import (fmt, ifeval_comparison_rows, ifeval_rows, ifeval_skipped_text, judge_quality_rows, reasons,
                     rounds_rows, win_rate_rows)


def build_report(run_dir: Path, out_dir: Path | None = None) -> dict:
    """Write report.md and its PNG plots (default: <run>/report/); returns what was collected and written."""
    run = open_run(run_dir)
    data = collect(run)
    out_dir = Path(out_dir) if out_dir else run.report_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(data, out_dir)
    atomic_write_text(out_dir / REPORT_MD, markdown(data, plots))
    write_json(out_dir / REPORT_JSON, data)
    return {**data, "out_dir": str(out_dir), "plots": plots, "report": str(out_dir / REPORT_MD)}


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ifeval_section(data: dict) -> list[str]:
    src = data.get("ifeval_source") or {}
    which = "the bundled held-out set" if src.get("data") == "bundled" else f"`{src.get('data')}`"
    out = [f"\n## Instruction following, verified by program (IFEval format)\n\nEach model answers {which} "
           f"({src.get('prompts') or 'all'} prompts, greedy, up to {src.get('max_new_tokens')} new tokens) and "
           "lm-eval's IFEval verifiers check every instruction: prompt level = all instructions of a prompt "
           "followed; loose also accepts the answer without its first or last line or markdown emphasis. "
           "No judge is involved.\n"]
    scores = {f"M{n}": s for n, s in (data.get("ifeval") or {}).items()}
    out.append(md_table(*ifeval_rows(scores)) if any(scores.values()) else "Not evaluated yet: run `srlite eval`.")
    comparisons = [r["ifeval_comparison"] for r in data["rounds"] if r.get("ifeval_comparison")]
    if comparisons:
        out.append("\nRound against round on the same prompts: improved = failed before and passes now, worsened "
                   "= the reverse; the exact McNemar test uses only those. Instruction-level counts treat a "
                   "prompt's instructions as independent, so the prompt level is the headline.\n")
        out.append(md_table(*ifeval_comparison_rows(comparisons)))
    skipped = {ifeval_skipped_text({"skipped": r["ifeval_skipped"]}) for r in data["rounds"] if r.get("ifeval_skipped")}
    out += [f"\n{text}" for text in sorted(skipped)]
    return out


def markdown(data: dict, plots: dict[str, str]) -> str:
    out = ["# Self-rewarding run report\n", f"Run: `{data['run_dir']}` · model: `{data['model']}` · "
           f"preset: `{data['preset']}` · rounds: {len(data['rounds'])}\n"]
    if data["m1"]:
        out.append(f"M1 (SFT): {data['m1'].get('steps', '–')} steps, loss {fmt(data['m1'].get('first_loss'))} → "
                   f"{fmt(data['m1'].get('last_loss'))}.\n")
    elif data["judge_quality"]:
        out.append("M1 exists (no training summary in m1/metrics.json).\n")
    else:
        out.append("M1 has not been trained yet.\n")
    out.append("Every rate shows its n and a 95 % interval (Wilson for proportions, a seeded percentile bootstrap "
               "over answers for Spearman and Kendall); a figure from fewer than 10 observations is shown as "
               "\"too few (n=…)\" instead of a percentage.\n")
    out.append("## Rounds\n")
    out.append(md_table(*rounds_rows(data["rounds"])) if data["rounds"] else "No round has started yet.")
    drops = [f"- round {r['round']}: prompts dropped {reasons((r['prompts'] or {}).get('dropped'))}; "
             f"pairs dropped {reasons((r['pairs'] or {}).get('dropped'))}; candidates not ranked "
             f"{reasons(((r['pairs'] or {}).get('candidates') or {}).get('excluded'))}" for r in data["rounds"]]
    if drops:
        out.append("\nDropped, by reason:\n\n" + "\n".join(drops))
    out.append("\n## Judge quality\n\nEach model judges the held-out EFT answers; its mean score per answer is compared "
               "with the reference score. Pairwise accuracy is over pairs of answers to the same question with different "
               "reference scores; a model tie or an unparsed side counts as wrong. Exact match is over all judgments "
               "(unparsed ones count as misses).\n")
    quality = {f"M{n}": q for n, q in data["judge_quality"].items()}
    out.append(md_table(*judge_quality_rows(quality)) if quality else "No model yet.")
    if not any(quality.values()):
        out.append("\nNot evaluated yet: run `srlite eval`.")
    out += ifeval_section(data)
    rates = [r["win_rate"] for r in data["rounds"] if r["win_rate"]]
    out.append("\n## Instruction following, judged\n\nThe newer model against the one before it on held-out prompts, "
               "each pair judged in both orders (A/B and B/A) by the judge named in the table. Win rate = (wins + "
               "ties/2) / parsed verdicts; by prompt, a prompt counts once for the side its verdicts favour, with an "
               "exact sign test.\n")
    out.append(md_table(*win_rate_rows(rates)) if rates else "Not evaluated yet: run `srlite eval`.")
    if plots:
        out.append("\n## Plots\n")
        out += [f"![{title}]({name})\n" for title, name in plots.items()]
    return "\n".join(out) + "\n"
