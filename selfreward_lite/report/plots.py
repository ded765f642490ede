"""PNG plots for `srlite report` (matplotlib, Agg backend: no display needed).

Each plot is drawn only when its data exists; the result maps a title to a file name. Rates and
correlations are drawn with their 95 % intervals as error bars, read from the stored figures
(intervals.Rate / Correlation dicts); a figure with fewer than MIN_N observations is not drawn as
a value but written as "too few (n=…)" where its point would be.
"""

from __future__ import annotations

from pathlib import Path

from ..evaluation.intervals import MIN_N, rate, win_rate


def _rate_dict(stored: dict | None, k: int | None, n: int | None) -> dict | None:
    # older artifacts carry only counts: the interval is computed from them, by the same code
    return stored or (rate(k, n).to_dict() if k is not None and n is not None else None)


def _points(ax, xs, figures, label: str, style: str, offset: float = 0.0) -> None:
    """Values with error bars; "too few (n=…)" or "no data" written instead of a point with little data."""
    px, py, lo, hi = [], [], [], []
    for x, f in zip(xs, figures):
        value = None if f is None else f.get("rate", f.get("value"))
        if f is None or not f.get("enough", f["n"] >= MIN_N) or value is None or f.get("ci_low") is None:
            if f is not None:
                ax.annotate("too few" if f["n"] < MIN_N else "no interval", (x + offset, 0.02), rotation=90,
                            fontsize=6, color="grey", xycoords=("data", "axes fraction"))
            continue
        px.append(x + offset)
        py.append(value)
        lo.append(value - f["ci_low"])
        hi.append(f["ci_high"] - value)
    ax.errorbar(px, py, yerr=[lo, hi], fmt=style, capsize=3, label=f"{label}")


def write_plots(data: dict, out_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r for r in data["rounds"] if r["metrics"]]
    plots: dict[str, str] = {}

    def save(fig, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        plots[title] = name

    if rounds:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.8 / len(rounds)
        for k, r in enumerate(rounds):
            hist = r["metrics"]["judgments"]["histogram"]
            ax.bar([s + k * width for s in range(6)], [hist.get(str(s), 0) for s in range(6)], width,
                   label=f"round {r['round']} (M{r['round']})")
        ax.set(xlabel="judge score", ylabel="judgments", title="Judge scores of the round's candidates")
        ax.set_xticks([s + 0.4 - width / 2 for s in range(6)], [str(s) for s in range(6)])
        ax.legend()
        save(fig, "judge_scores.png", "Judge score histogram per round")

        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels = [f"r{r['round']}" for r in rounds]
        kept = [r["metrics"]["pairs"]["kept"] for r in rounds]
        ax.bar(labels, kept, label="pairs kept")
        bottom = list(kept)
        reasons = sorted({k for r in rounds for k in r["metrics"]["pairs"]["dropped"]})
        for reason in reasons:
            vals = [r["metrics"]["pairs"]["dropped"].get(reason, 0) for r in rounds]
            ax.bar(labels, vals, bottom=bottom, label=f"dropped: {reason}")
            bottom = [b + v for b, v in zip(bottom, vals)]
        pdrop = [sum(r["metrics"]["prompts"]["dropped"].values()) for r in rounds]
        ax.plot(labels, pdrop, "k--o", label="prompts dropped (all reasons)")
        ax.set(ylabel="count", title="Preference pairs kept and dropped")
        ax.legend(fontsize=7)
        save(fig, "pairs.png", "Pairs kept and dropped per round")

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot([r["round"] for r in rounds], [r["metrics"]["candidates"]["mean_chars"] for r in rounds], "o-",
                label="round candidates (M_t)")
        wr = [r for r in data["rounds"] if r["win_rate"]]
        if wr:
            ax.plot([r["round"] + 1 for r in wr], [r["win_rate"]["mean_chars"]["new"] for r in wr], "s-",
                    label="eval answers (M_t+1)")
        ax.set(xlabel="round", ylabel="mean characters", title="Response length per round")
        ax.legend()
        save(fig, "response_length.png", "Response length per round")

    logs = [r for r in data["rounds"] if r["dpo_log"]]
    if logs:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
        for r in logs:
            steps = [h.get("step", i + 1) for i, h in enumerate(r["dpo_log"])]
            a1.plot(steps, [h["loss"] for h in r["dpo_log"]], label=f"round {r['round']}")
            margins = [h.get("rewards/margins") for h in r["dpo_log"]]
            if any(m is not None for m in margins):
                a2.plot(steps, [m if m is not None else float("nan") for m in margins], label=f"round {r['round']}")
        a1.set(xlabel="step", ylabel="loss", title="DPO loss")
        a2.set(xlabel="step", ylabel="chosen - rejected reward", title="DPO reward margin")
        a1.legend()
        a2.legend()
        save(fig, "dpo.png", "DPO loss and reward margins")

    quality = {int(n): q for n, q in data["judge_quality"].items() if q}
    if quality:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        xs = list(quality)
        ci = [q.get("intervals") or {} for q in quality.values()]
        qs = list(quality.values())
        _points(a1, xs, [c.get("pairwise_accuracy") or _rate_dict(None, q["pairwise"]["correct"], q["pairwise"]["pairs"])
                         for c, q in zip(ci, qs)], "pairwise accuracy", "o-", -0.1)
        _points(a1, xs, [c.get("exact_match") or _rate_dict(None, None if q["exact_match"] is None else
                                                            round(q["exact_match"] * q["judgments"]), q["judgments"])
                         for c, q in zip(ci, qs)], "exact match", "s--", 0.0)
        _points(a1, xs, [c.get("parse_rate") or _rate_dict(None, q["parsed"], q["judgments"]) for c, q in zip(ci, qs)],
                "parse rate", "x:", 0.1)
        a1.set(xlabel="model M_N", ylim=(0, 1), title="Judge quality (95% Wilson intervals)")
        _points(a2, xs, [c.get("spearman") for c in ci], "Spearman ρ", "o-", -0.05)
        _points(a2, xs, [c.get("kendall_tau_b") for c in ci], "Kendall τ-b", "s--", 0.05)
        a2.axhline(0, color="k", linestyle=":")
        a2.set(xlabel="model M_N", ylim=(-1, 1), title="Agreement with reference scores (95% bootstrap)")
        for ax in (a1, a2):
            ax.set_xticks(xs, [f"M{n}" for n in xs])
            ax.legend(fontsize=7)
        save(fig, "judge_quality.png", "Judge accuracy per model")

    ifeval = {int(n): s for n, s in (data.get("ifeval") or {}).items() if s}
    if ifeval:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        xs = list(ifeval)
        for k, (key, label, style) in enumerate((("prompt_strict", "prompt-level strict", "o-"),
                                                 ("prompt_loose", "prompt-level loose", "o--"),
                                                 ("instruction_strict", "instruction-level strict", "s-"),
                                                 ("instruction_loose", "instruction-level loose", "s--"))):
            _points(ax, xs, [s[key] for s in ifeval.values()], label, style, (k - 1.5) * 0.06)
        ax.set(xlabel="model M_N", ylabel="share followed", ylim=(0, 1),
               title="IFEval-format accuracy (greedy; 95% Wilson intervals)")
        ax.set_xticks(xs, [f"M{n}" for n in xs])
        ax.legend(fontsize=7)
        save(fig, "ifeval.png", "IFEval-format accuracy per model")

    wr = [r for r in data["rounds"] if r["win_rate"]]
    if wr:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        xs = list(range(len(wr)))
        _points(ax, xs, [(r["win_rate"].get("intervals") or {}).get("win_rate")
                         or win_rate(r["win_rate"]["wins"], r["win_rate"]["losses"], r["win_rate"]["ties"]).to_dict()
                         for r in wr], "win rate (ties = ½)", "o")
        ax.axhline(0.5, color="k", linestyle=":")
        ax.set_xticks(xs, [f"M{r['round'] + 1} vs M{r['round']}\n(judge {r['win_rate']['judge']})" for r in wr])
        ax.set(xlim=(-0.5, len(wr) - 0.5), ylim=(0, 1), ylabel="win rate",
               title="Newer model vs previous, both orders (95% Wilson intervals)")
        save(fig, "win_rate.png", "Win rate per round")
    return plots
