"""The rows of every table the run is shown in, built once: display.py draws them in the terminal
(rich), markdown.py writes them into report.md. Each builder returns (header, rows of strings).
"""

from __future__ import annotations

Table = tuple[list[str], list[list[str]]]

DASH = "–"


def fmt(value, pct: bool = False) -> str:
    if value is None:
        return DASH
    if pct:
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def reasons(counts: dict | None) -> str:
    """{"too short": 2, ...} as "too short: 2, ..." ("none" when nothing was dropped)."""
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else "none"


def mean_chars(w: dict) -> str:
    new, old = w["mean_chars"]["new"], w["mean_chars"]["old"]
    return f"{new:.0f} / {old:.0f}" if new is not None and old is not None else DASH


ROUNDS_HEADER = ["round", "prompts made / kept", "judge parse rate", "scores 0..5", "pairs kept / dropped",
                 "DPO loss first → last", "DPO reward accuracy / margin", "Δ log p chosen / rejected",
                 "mean answer chars", "win rate vs previous", "warnings"]


def rounds_rows(rounds: list[dict]) -> Table:
    """One row per round of `collect`'s data: what was made, kept, judged and trained."""
    rows = []
    for r in rounds:
        m, w = r["metrics"], r["win_rate"]
        if m is None:
            rows.append([str(r["round"]), "in progress"] + [DASH] * (len(ROUNDS_HEADER) - 2))
            continue
        hist, d = m["judgments"]["histogram"], m["dpo"]
        rows.append([
            f"{r['round']} (M{r['round']} → M{r['round'] + 1})",
            f"{m['prompts']['generated']} / {m['prompts']['kept']}",
            fmt(m["judgments"]["parse_rate"], pct=True),
            " / ".join(str(hist.get(str(s), 0)) for s in range(6)),
            f"{m['pairs']['kept']} / {sum(m['pairs']['dropped'].values())}",
            f"{fmt(m['dpo']['first_loss'])} → {fmt(m['dpo']['last_loss'])}",
            f"{fmt(d.get('reward_accuracy'), pct=True)} / {fmt(d.get('reward_margin'))}",
            f"{fmt(d.get('delta_logp_chosen'))} / {fmt(d.get('delta_logp_rejected'))}",
            f"{m['candidates']['mean_chars']:.0f}",
            fmt(w["win_rate"], pct=True) if w else DASH,
            " ".join(m.get("warnings", [])) or DASH,
        ])
    return ROUNDS_HEADER, rows


JUDGE_QUALITY_HEADER = ["model", "pairwise accuracy", "pairs", "exact match", "Spearman", "Kendall τ-b",
                        "parse failures", "mean score"]


def judge_quality_rows(quality: dict) -> Table:
    """`quality`: model name -> judge-quality result (or None: not evaluated)."""
    rows = []
    for name, q in quality.items():
        if q is None:
            rows.append([name] + [DASH] * (len(JUDGE_QUALITY_HEADER) - 1))
            continue
        rows.append([name, fmt(q["pairwise"]["accuracy"], pct=True), str(q["pairwise"]["pairs"]),
                     fmt(q["exact_match"], pct=True), fmt(q["spearman"]), fmt(q["kendall_tau_b"]),
                     fmt(None if q["parse_rate"] is None else 1 - q["parse_rate"], pct=True), fmt(q["mean_score"])])
    return JUDGE_QUALITY_HEADER, rows


WIN_RATE_HEADER = ["match", "judge", "wins", "losses", "ties", "unparsed", "win rate", "picked first",
                   "mean chars new / old"]


def win_rate_rows(rates: list[dict]) -> Table:
    return WIN_RATE_HEADER, [
        [f"{w['new']} vs {w['old']}", w["judge"], str(w["wins"]), str(w["losses"]), str(w["ties"]),
         str(w["unparsed"]), fmt(w["win_rate"], pct=True), fmt(w["picked_first"], pct=True), mean_chars(w)]
        for w in rates
    ]
