"""PNG plots for `srlite report` (matplotlib, Agg backend: no display needed).

Each plot is drawn only when its data exists; the result maps a title to a file name.
"""

from __future__ import annotations

from pathlib import Path


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

    quality = {n: q for n, q in data["judge_quality"].items() if q}
    if quality:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        xs = [int(n) for n in quality]
        for key, label in (("accuracy", "pairwise accuracy"),):
            ax.plot(xs, [q["pairwise"][key] if q["pairwise"][key] is not None else float("nan") for q in quality.values()],
                    "o-", label=label)
        for key, label in (("exact_match", "exact match"), ("spearman", "Spearman"), ("kendall_tau_b", "Kendall τ-b")):
            ax.plot(xs, [q[key] if q[key] is not None else float("nan") for q in quality.values()], "o--", label=label)
        ax.plot(xs, [1 - q["parse_rate"] if q["parse_rate"] is not None else float("nan") for q in quality.values()],
                "x:", label="parse failures")
        ax.set(xlabel="model M_N", title="Judge quality on held-out ranked answers")
        ax.set_xticks(xs, [f"M{n}" for n in xs])
        ax.legend(fontsize=7)
        save(fig, "judge_quality.png", "Judge accuracy per model")

    wr = [r for r in data["rounds"] if r["win_rate"]]
    if wr:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels = [f"M{r['round'] + 1} vs M{r['round']}" for r in wr]
        ax.bar(labels, [r["win_rate"]["win_rate"] if r["win_rate"]["win_rate"] is not None else 0 for r in wr])
        ax.axhline(0.5, color="k", linestyle=":")
        ax.set(ylim=(0, 1), ylabel="win rate (ties = ½)", title="Newer model vs previous, both orders")
        save(fig, "win_rate.png", "Win rate per round")
    return plots
