"""The rows of every table the run is shown in, built once: display.py draws them in the terminal
(rich), markdown.py writes them into report.md. Each builder returns (header, rows of strings).
"""

from __future__ import annotations

from ..evaluation.intervals import (MIN_N, Correlation, PairedComparison, Rate, format_correlation, format_p, rate,
                                    win_rate)

Table = tuple[list[str], list[list[str]]]

DASH = "–"


# --- figures with their n and interval: every rate and correlation shown goes through intervals.py ---

def rate_text(stored: dict | None, k: int | None = None, n: int | None = None) -> str:
    """A rate stored by intervals.Rate.to_dict, or (older artifacts) one from its counts k of n."""
    if stored:
        return str(Rate.from_dict(stored))
    return DASH if n is None or k is None else str(rate(k, n))


def correlation_text(stored: dict | None, value: float | None = None, n: int | None = None) -> str:
    """A correlation stored by intervals.Correlation.to_dict (label left to the column)."""
    if stored:
        return format_correlation(Correlation.from_dict(stored), label=False)
    if value is None or n is None:
        return DASH
    return f"too few (n={n})" if n < MIN_N else f"{value:.2f} (n={n}, no interval stored)"


def win_rate_text(w: dict) -> str:
    stored = (w.get("intervals") or {}).get("win_rate")
    return str(Rate.from_dict(stored) if stored else win_rate(w["wins"], w["losses"], w["ties"]))


def sign_test_text(by_prompt: dict | None) -> str:
    """"new 5, old 2, even 1 of 8 prompts (exact sign test p = 0.45)"; "too few (n=4)" below MIN_N prompts."""
    if not by_prompt:
        return DASH
    n = by_prompt["prompts"]
    if n < MIN_N:
        return f"too few (n={n})" if n else "no data (n=0)"
    return (f"new {by_prompt['new_better']}, old {by_prompt['old_better']}, even {by_prompt['even']} of {n} "
            f"prompts (exact sign test {format_p(by_prompt['p_value'])})")


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


def truncated(m: dict) -> str:
    """"answers / judgments" cut off by their token budget (– for rounds made before this was counted)."""
    return f"{m['candidates']['truncated']} / {fmt(m['judgments'].get('truncated'))}"


def length_gap(pairs: dict | None) -> str:
    """Mean chosen − rejected length of a round's pairs: "+12 chars (+3 tokens)"."""
    gap = (pairs or {}).get("length") or {}
    chars, toks = gap.get("chosen_minus_rejected_chars"), gap.get("chosen_minus_rejected_tokens")
    if chars is None:
        return DASH
    return f"{chars:+.0f} chars" + (f" ({toks:+.1f} tokens)" if toks is not None else "")


ROUNDS_HEADER = ["round", "prompts made / kept", "truncated answers / judgments", "judge parse rate", "scores 0..5",
                 "pairs kept / dropped", "chosen − rejected length", "DPO loss first → last",
                 "DPO reward accuracy / margin", "Δ log p chosen / rejected", "mean answer chars", "win rate vs previous",
                 "warnings"]


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
            truncated(m),
            parse_rate_text(m["judgments"], m["judgments"]["total"]),
            " / ".join(str(hist.get(str(s), 0)) for s in range(6)),
            f"{m['pairs']['kept']} / {sum(m['pairs']['dropped'].values())}",
            length_gap(m["pairs"]),
            f"{fmt(m['dpo']['first_loss'])} → {fmt(m['dpo']['last_loss'])}",
            f"{dpo_accuracy_text(d)} / {fmt(d.get('reward_margin'))}",
            f"{fmt(d.get('delta_logp_chosen'))} / {fmt(d.get('delta_logp_rejected'))}",
            f"{m['candidates']['mean_chars']:.0f}",
            f"{win_rate_text(w)}, judge {w['judge']}" if w else DASH,
            " ".join(m.get("warnings", [])) or DASH,
        ])
    return ROUNDS_HEADER, rows


def dpo_accuracy_text(dpo: dict) -> str:
    """DPO reward accuracy of M_t+1 vs M_t on the round's pairs, with n and its interval (rounds made
    before it was measured on all pairs show the training batches' figure as a plain number)."""
    n, acc = dpo.get("pairs"), dpo.get("reward_accuracy")
    if n and acc is not None:
        return rate_text(None, round(acc * n), n)
    return fmt(acc)


def parse_rate_text(summary: dict, judgments: int) -> str:
    """Parsed judgments of all judgments, from a judgment summary (round metrics, judge quality, `srlite judge`),
    and how many of them had their score asked for after the judge stopped without one (judging/engine.complete_scores)."""
    text = rate_text((summary.get("intervals") or {}).get("parse_rate"), summary["parsed"], judgments)
    return f"{text}, {summary['completed']} completed" if summary.get("completed") else text


JUDGE_QUALITY_HEADER = ["model", "pairwise accuracy", "exact match", "Spearman ρ", "Kendall τ-b", "parse rate",
                        "mean score"]


def model_rows(results: dict, header: list[str], cells) -> list[list[str]]:
    """One row per model of `results` (model name -> result, or None: not evaluated): its name, then
    `cells(result)`, or dashes for a model not evaluated."""
    return [[name] + ([DASH] * (len(header) - 1) if r is None else cells(r)) for name, r in results.items()]


def judge_quality_rows(quality: dict) -> Table:
    """`quality`: model name -> judge-quality result (or None: not evaluated)."""
    def cells(q: dict) -> list[str]:
        ci = q.get("intervals") or {}
        exact = None if q["exact_match"] is None else round(q["exact_match"] * q["judgments"])
        return [rate_text(ci.get("pairwise_accuracy"), q["pairwise"]["correct"], q["pairwise"]["pairs"]),
                rate_text(ci.get("exact_match"), exact, q["judgments"]),
                correlation_text(ci.get("spearman"), q["spearman"], q["answers_scored"]),
                correlation_text(ci.get("kendall_tau_b"), q["kendall_tau_b"], q["answers_scored"]),
                parse_rate_text(q, q["judgments"]), fmt(q["mean_score"])]

    return JUDGE_QUALITY_HEADER, model_rows(quality, JUDGE_QUALITY_HEADER, cells)


WIN_RATE_HEADER = ["match", "judge", "wins / losses / ties / unparsed", "win rate (ties count ½)",
                   "by prompt (both orders together)", "picked first answer", "mean chars new / old"]


def win_rate_rows(rates: list[dict]) -> Table:
    return WIN_RATE_HEADER, [
        [f"{w['new']} vs {w['old']}", w["judge"], f"{w['wins']} / {w['losses']} / {w['ties']} / {w['unparsed']}",
         win_rate_text(w), sign_test_text(w.get("by_prompt")),
         rate_text((w.get("intervals") or {}).get("picked_first")), mean_chars(w)]
        for w in rates
    ]


IFEVAL_HEADER = ["model", "prompt-level strict", "prompt-level loose", "instruction-level strict",
                 "instruction-level loose", "answers cut at budget", "mean answer chars"]


def ifeval_rows(scores: dict) -> Table:
    """`scores`: model name -> ifeval_run.model_scores result (or None: not evaluated)."""
    def cells(s: dict) -> list[str]:
        a = s["answers"]
        return ([rate_text(s[k]) for k in ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")]
                + [f"{a['cut_at_budget']} of {a['n']} ({s['max_new_tokens']} tokens)", f"{a['mean_chars']:.0f}"])

    return IFEVAL_HEADER, model_rows(scores, IFEVAL_HEADER, cells)


IFEVAL_COMPARISON_HEADER = ["match", "prompt-level strict", "prompt-level loose", "instruction-level strict",
                            "instruction-level loose"]


def ifeval_comparison_rows(comparisons: list[dict]) -> Table:
    """Paired, same prompts: improved (failed before, passes now) vs worsened, exact McNemar p."""
    return IFEVAL_COMPARISON_HEADER, [
        [f"{c['new']} vs {c['old']}"] + [str(PairedComparison.from_dict(c[k])) for k in
                                         ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")]
        for c in comparisons
    ]


def ifeval_skipped_text(reason: dict | None) -> str | None:
    """Why IFEval figures are missing, when an evaluation recorded that it skipped them."""
    return f"IFEval-format evaluation skipped: {reason['skipped']}" if reason and "skipped" in reason else None
