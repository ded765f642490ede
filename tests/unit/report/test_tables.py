"""Every figure the terminal and report.md show: n and a 95 % interval, "too few (n=…)" below MIN_N,
outward rounding; from the stored figures, and from the counts of artifacts written before they were
stored. Golden strings: a change of display is a change of these tests."""

from selfreward_lite.evaluation import intervals as iv
from selfreward_lite.report import tables as T
from selfreward_lite.report.markdown import markdown, md_table


def metrics(parsed=34, total=48):
    return {"prompts": {"generated": 17, "kept": 12, "dropped": {"too short": 5}},
            "candidates": {"total": 48, "truncated": 2, "mean_chars": 156.4},
            "judgments": {"total": total, "parsed": parsed, "parse_rate": parsed / total, "unparsed": {},
                          "histogram": {"0": 0, "1": 28, "2": 10, "3": 10, "4": 12, "5": 8}, "mean_score": 2.5,
                          "intervals": {"parse_rate": iv.rate(parsed, total).to_dict()}},
            "pairs": {"kept": 12, "dropped": {"tie": 3}},
            "dpo": {"steps": 6, "first_loss": 0.693, "last_loss": 0.638, "reward_margin": 0.12, "reward_accuracy": 0.75}}


def win(wins, losses, ties, unparsed, stored=True, judge="M1"):
    w = {"new": "M2", "old": "M1", "judge": judge, "wins": wins, "losses": losses, "ties": ties,
         "unparsed": unparsed, "mean_chars": {"new": 210.0, "old": 150.2}}
    if stored:
        w["intervals"] = {"win_rate": iv.win_rate(wins, losses, ties).to_dict(),
                          "picked_first": iv.rate(wins + losses, wins + losses + ties).to_dict()}
        w["by_prompt"] = {"prompts": 12, "new_better": 7, "old_better": 2, "even": 3, "p_value": iv.exact_mcnemar_p(7, 2)}
    return w


def test_rate_formatting_rules():
    assert T.rate_text(iv.rate(34, 48).to_dict()) == "70.8% (n=48, 95% CI 56–82%)"
    assert T.rate_text(None, 34, 48) == "70.8% (n=48, 95% CI 56–82%)"       # older artifact: from its counts
    assert T.rate_text(None, 1, 1) == "too few (n=1)"                       # the "100.0 %" from 1 verdict
    assert T.rate_text(None, 9, 9) == "too few (n=9)" and T.rate_text(None, 10, 10) == "100.0% (n=10, 95% CI 72–100%)"
    assert T.rate_text(None, 0, 0) == "no data (n=0)" and T.rate_text(None) == T.DASH
    assert T.win_rate_text(win(7, 3, 2, 0)) == "66.7% (n=12, 95% CI 39–87%)"   # a tie counts half: k = 8
    assert T.win_rate_text(win(1, 0, 0, 23, stored=False)) == "too few (n=1)"
    assert T.sign_test_text(win(7, 3, 2, 0)["by_prompt"]) == \
        "new 7, old 2, even 3 of 12 prompts (exact sign test p = 0.18)"
    assert T.sign_test_text({"prompts": 4, "new_better": 4, "old_better": 0, "even": 0, "p_value": 0.125}) == "too few (n=4)"
    assert T.sign_test_text(None) == T.DASH
    # a parse rate says how many of its scores were asked for after the judge stopped without one
    assert T.parse_rate_text({"parsed": 34, "completed": 9}, 48) == "70.8% (n=48, 95% CI 56–82%), 9 completed"
    assert T.parse_rate_text({"parsed": 34, "completed": 0}, 48) == T.parse_rate_text({"parsed": 34}, 48) == \
        "70.8% (n=48, 95% CI 56–82%)"


def test_correlation_formatting_rules():
    c = iv.correlation_interval([1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 2, 3], [1, 3, 2, 4, 5, 2, 2, 3, 5, 4, 1, 3])
    assert T.correlation_text(c.to_dict()) == "0.86 (n=12, 95% CI 0.61–0.96)"
    assert T.correlation_text(iv.correlation_interval([1, 2, 3], [1, 2, 3]).to_dict()) == "too few (n=3)"
    assert T.correlation_text(iv.correlation_interval([3] * 12, list(range(12))).to_dict()) == \
        "undefined (n=12; one of the two score lists is constant)"
    assert T.correlation_text(None, 0.5, 6) == "too few (n=6)"
    assert T.correlation_text(None, 0.5, 12) == "0.50 (n=12, no interval stored)"


def test_rounds_table_rows():
    header, [row] = T.rounds_rows([{"round": 1, "metrics": metrics(), "win_rate": win(1, 0, 0, 23, stored=False)}])
    assert header[2:4] == ["truncated answers / judgments", "judge parse rate"] and header[-2:] == ["win rate vs previous", "warnings"]
    # a round made before judgments' truncation and the pairs' length gap were counted shows – for them
    assert row == ["1 (M1 → M2)", "17 / 12", "2 / –", "70.8% (n=48, 95% CI 56–82%)", "0 / 28 / 10 / 10 / 12 / 8", "12 / 3",
                   "–", "0.693 → 0.638", "0.750 / 0.120", "– / –", "156", "too few (n=1), judge M1", "–"]
    # measured on all the round's pairs: a rate with its n
    assert T.dpo_accuracy_text({"pairs": 12, "reward_accuracy": 0.75}).startswith("75.0% (n=12, 95% CI")
    _, [pending] = T.rounds_rows([{"round": 2, "metrics": None, "win_rate": None}])
    assert pending[:2] == ["2", "in progress"] and set(pending[2:]) == {T.DASH}


def test_judge_quality_rows_stored_and_older():
    ci = {"pairwise_accuracy": iv.rate(2, 6).to_dict(), "exact_match": iv.rate(5, 12).to_dict(),
          "parse_rate": iv.rate(11, 12).to_dict(),
          "spearman": iv.correlation_interval([1, 2, 3, 1, 2, 3], [1, 3, 2, 2, 2, 3]).to_dict(),
          "kendall_tau_b": iv.correlation_interval([1, 2, 3, 1, 2, 3], [1, 3, 2, 2, 2, 3], "kendall").to_dict()}
    q = {"pairwise": {"pairs": 6, "correct": 2}, "exact_match": 5 / 12, "judgments": 12, "parsed": 11,
         "spearman": 0.4, "kendall_tau_b": 0.3, "answers_scored": 6, "mean_score": 2.75, "intervals": ci}
    old = {k: v for k, v in q.items() if k != "intervals"}
    header, rows = T.judge_quality_rows({"M1": q, "M2": old, "M3": None})
    assert header == ["model", "pairwise accuracy", "exact match", "Spearman ρ", "Kendall τ-b", "parse rate", "mean score"]
    want = ["too few (n=6)", "41.7% (n=12, 95% CI 19–69%)", "too few (n=6)", "too few (n=6)",
            "91.7% (n=12, 95% CI 64–99%)", "2.750"]
    assert rows[0] == ["M1"] + want and rows[1] == ["M2"] + want    # the older artifact reads the same
    assert rows[2] == ["M3"] + [T.DASH] * 6


def test_win_rate_rows_show_the_judge_and_both_tests():
    header, [row] = T.win_rate_rows([win(7, 3, 2, 4, judge="/models/judge-7b")])
    assert header[1] == "judge" and row[:3] == ["M2 vs M1", "/models/judge-7b", "7 / 3 / 2 / 4"]
    assert row[3:] == ["66.7% (n=12, 95% CI 39–87%)", "new 7, old 2, even 3 of 12 prompts (exact sign test p = 0.18)",
                       "83.3% (n=12, 95% CI 55–96%)", "210 / 150"]
    _, [older] = T.win_rate_rows([win(1, 0, 0, 23, stored=False)])
    assert older[3:6] == ["too few (n=1)", T.DASH, T.DASH]


def ifeval_scores(k_strict, n=30):
    r = lambda k, m: iv.rate(k, m).to_dict()  # noqa: E731
    return {"prompt_strict": r(k_strict, n), "prompt_loose": r(k_strict + 2, n), "instruction_strict": r(k_strict + 5, n + 8),
            "instruction_loose": r(k_strict + 7, n + 8), "max_new_tokens": 128,
            "answers": {"n": n, "cut_at_budget": 9, "mean_chars": 301.6}}


def comparison(before, after):
    c = iv.paired_comparison(before, after).to_dict()
    return {"new": "M2", "old": "M1", "prompt_strict": c, "prompt_loose": c, "instruction_strict": c,
            "instruction_loose": c}


def test_ifeval_rows():
    header, rows = T.ifeval_rows({"M1": ifeval_scores(9), "M2": None})
    assert header[1:5] == ["prompt-level strict", "prompt-level loose", "instruction-level strict", "instruction-level loose"]
    assert rows[0] == ["M1", "30.0% (n=30, 95% CI 16–48%)", "36.7% (n=30, 95% CI 21–55%)",
                       "36.8% (n=38, 95% CI 23–53%)", "42.1% (n=38, 95% CI 27–58%)", "9 of 30 (128 tokens)", "302"]
    assert rows[1] == ["M2"] + [T.DASH] * 6
    assert T.ifeval_rows({"M1": ifeval_scores(2, n=5)})[1][0][1] == "too few (n=5)"
    _, [c] = T.ifeval_comparison_rows([comparison([0] * 10 + [1] * 20, [1] * 6 + [0] * 4 + [1] * 18 + [0] * 2)])
    assert c == ["M2 vs M1"] + ["improved 6, worsened 2 of 30 (exact McNemar p = 0.29)"] * 4
    _, [few] = T.ifeval_comparison_rows([comparison([0, 1, 0], [1, 1, 1])])
    assert few[1] == "too few (n=3)"
    assert T.ifeval_skipped_text({"skipped": "lm-eval is missing"}) == "IFEval-format evaluation skipped: lm-eval is missing"
    assert T.ifeval_skipped_text(None) is None


def test_report_markdown_golden_lines():
    data = {"run_dir": "srlite-run", "model": "embedded", "preset": "cpu", "m1": None,
            "rounds": [{"round": 1, "metrics": metrics(), "prompts": None, "pairs": None, "dpo_log": [],
                        "win_rate": win(1, 0, 0, 23, stored=False),
                        "ifeval_comparison": comparison([0] * 10 + [1] * 20, [1] * 6 + [0] * 4 + [1] * 18 + [0] * 2),
                        "ifeval_skipped": None}],
            "judge_quality": {1: None, 2: None}, "ifeval": {1: ifeval_scores(9), 2: ifeval_scores(13)},
            "ifeval_source": {"data": "bundled", "prompts": 30, "max_new_tokens": 128}}
    md = markdown(data, {})
    assert "a figure from fewer than 10 observations is shown as \"too few (n=…)\"" in md
    assert "| 1 (M1 → M2) | 17 / 12 | 2 / – | 70.8% (n=48, 95% CI 56–82%) |" in md and "| too few (n=1), judge M1 |" in md
    assert "Each model answers the bundled held-out set (30 prompts, greedy, up to 128 new tokens)" in md
    assert ("| M2 | 43.3% (n=30, 95% CI 27–61%) | 50.0% (n=30, 95% CI 33–67%) | 47.4% (n=38, 95% CI 32–63%) "
            "| 52.6% (n=38, 95% CI 37–68%) | 9 of 30 (128 tokens) | 302 |") in md
    assert "| M2 vs M1 | improved 6, worsened 2 of 30 (exact McNemar p = 0.29) |" in md
    assert "100.0%" not in md
    data["rounds"][0]["ifeval_skipped"] = "lm-eval is not installed. Install the optional extra: pip install x"
    assert "\nIFEval-format evaluation skipped: lm-eval is not installed. Install the optional extra: pip install x" \
        in markdown(data, {})
    assert md_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
