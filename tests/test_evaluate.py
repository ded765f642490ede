"""Evaluation without a model: input validation, the ranked set, metric plumbing, verdict parsing,
win-rate counting, the bundled eval prompts, and `srlite report` on runs with little in them."""

import json
import re
from types import SimpleNamespace

import pytest

from selfreward_lite.run.files import write_json, write_jsonl
from selfreward_lite.config import preset_config
from selfreward_lite.run.records import bundled_path, first_user_text, load_messages
from selfreward_lite.errors import SrliteError
from selfreward_lite.evaluation.judge_quality import judge_quality_metrics, limit_questions, load_ranked_set
from selfreward_lite.judging.rubric import COMPACT_TEMPLATE, RUBRIC_TEMPLATE, split_judge_prompt
from selfreward_lite.tools.judge_file import load_judge_input, pair_summary, score_rows
from selfreward_lite.report.display import report_tables
from selfreward_lite.report.markdown import build_report
from selfreward_lite.run.create import create_run
from selfreward_lite.evaluation.winrate import (bundled_eval_prompts, build_pairwise_prompt, load_eval_prompts, parse_verdict,
                                     resolve_judge, win_rate_summary)


# --- srlite judge input -----------------------------------------------------------------------

def write_lines(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def test_judge_input_single_and_pairs(tmp_path):
    kind, recs = load_judge_input(write_lines(tmp_path / "s.jsonl", [{"prompt": "Q", "response": "R"},
                                                                      {"id": "x", "prompt": "Q2", "response": "R2"}]))
    assert kind == "single" and [r["id"] for r in recs] == ["r00000", "x"]
    kind, recs = load_judge_input(write_lines(tmp_path / "p.jsonl", [{"prompt": "Q", "a": "1", "b": "2", "label": "b"},
                                                                      {"prompt": "Q", "a": "1", "b": "2"}]))
    assert kind == "pairs" and recs[0]["label"] == "b" and "label" not in recs[1]


@pytest.mark.parametrize("lines, message", [
    ([{"prompt": "Q", "response": "R"}, {"prompt": "Q"}], r"line 2, field 'response': missing"),
    ([{"prompt": "", "response": "R"}], r"line 1, field 'prompt'"),
    ([{"prompt": "Q", "a": "x", "b": 3}], r"line 1, field 'b'"),
    ([{"prompt": "Q", "a": "x", "b": "y", "label": "c"}], r"line 1, field 'label': must be \"a\" or \"b\""),
    ([{"prompt": "Q", "response": "R"}, {"prompt": "Q", "a": "x", "b": "y"}], r"line 2: mixes a pair"),
    ([{"id": "1", "prompt": "Q", "response": "R"}, {"id": 1, "prompt": "Q", "response": "R"}], r"line 2, field 'id'"),
    (["[1, 2]"], r"line 1: expected a JSON object"),
    (["{not json"], r"line 1: not valid JSON"),
    ([], r"contains no records"),
])
def test_judge_input_errors_name_file_line_field(tmp_path, lines, message):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(SrliteError, match=message) as e:
        load_judge_input(path)
    assert str(path) in str(e.value)


def test_pair_rows_ties_and_unscored_count_as_wrong():
    recs = [{"id": "p1", "label": "a"}, {"id": "p2", "label": "b"}, {"id": "p3", "label": "a"}, {"id": "p4", "label": "b"},
            {"id": "p5"}]
    by_item = {"p1/a": [5, 4], "p1/b": [2, None], "p2/a": [3], "p2/b": [3], "p3/a": [None], "p3/b": [1],
               "p4/a": [4], "p4/b": [1], "p5/a": [1], "p5/b": [2]}
    rows = score_rows("pairs", recs, by_item)
    assert [r["predicted"] for r in rows] == ["a", "tie", None, "a", "b"]
    assert rows[0]["score_a"] == 4.5 and rows[0]["score_b"] == 2.0
    s = pair_summary(rows)
    assert s == {"pairs_labelled": 4, "pairs_correct": 1, "pairs_tied": 1, "pairs_unscored": 1, "pairwise_accuracy": 0.25}


# --- judge quality ----------------------------------------------------------------------------

def test_bundled_eft_eval_is_a_ranked_set():
    items = load_ranked_set(bundled_path("eft_eval"), RUBRIC_TEMPLATE)
    assert len(items) == 30 and len({i["group"] for i in items}) == 10
    assert items[0]["prompt"] == "What is the tallest mountain in the world?"
    assert [i["reference"] for i in items[:3]] == [3, 1, 5]
    assert len(limit_questions(items, 3)) == 9 and limit_questions(items, 0) == items


def test_ranked_set_reads_the_runs_rubric_and_plain_records(tmp_path):
    run = create_run(tmp_path / "run", preset="cpu", overrides={})  # cpu preset: compact rubric re-rendered
    items = load_ranked_set(run.seed_path("eft_eval"), COMPACT_TEMPLATE)
    assert len(items) == 30 and items[0]["prompt"] == "What is the tallest mountain in the world?"
    plain = write_lines(tmp_path / "plain.jsonl", [{"prompt": "Q", "response": "A", "score": 4},
                                                    {"prompt": "Q", "response": "B", "score": 1},
                                                    {"prompt": "Q2", "response": "C", "score": 2}])
    items = load_ranked_set(plain, COMPACT_TEMPLATE)
    assert [(i["group"], i["reference"]) for i in items] == [(0, 4), (0, 1), (1, 2)]


@pytest.mark.parametrize("line, message", [
    ({"prompt": "Q", "response": "A"}, r"line 1, field 'score'"),
    ({"prompt": "Q", "response": "A", "score": "high"}, r"line 1, field 'score'"),
    ({"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Score: 3"}]},
     r"line 1, field 'messages\[0\].content': not a judge prompt"),
    ({"messages": [{"role": "user", "content": RUBRIC_TEMPLATE.replace("{instruction}", "Q").replace("{response}", "A")},
                   {"role": "assistant", "content": "fine"}]}, r"line 1, field 'messages\[-1\].content'.*no score"),
])
def test_ranked_set_errors(tmp_path, line, message):
    with pytest.raises(SrliteError, match=message):
        load_ranked_set(write_lines(tmp_path / "r.jsonl", [line]), COMPACT_TEMPLATE)


def test_judge_quality_metrics_from_judgments():
    items = [{"id": f"q0-a{k}", "group": 0, "reference": r} for k, r in enumerate([3, 1, 5])] + \
            [{"id": f"q1-a{k}", "group": 1, "reference": r} for k, r in enumerate([0, 2])]
    scores = {"q0-a0": [3, 4], "q0-a1": [1, None], "q0-a2": [4, 4], "q1-a0": [None, None], "q1-a1": [2, 2]}
    status = lambda s: "ok" if s is not None else "no score"  # noqa: E731
    records = [{"item_id": i, "sample": k, "text": "", "score": s, "parse": status(s)}
               for i, ss in scores.items() for k, s in enumerate(ss)]
    m = judge_quality_metrics(items, records)
    # means: 3.5, 1, 4, None, 2. Group 0 pairs (3,1) right, (3,5) right, (1,5) right; group 1 (0,2) unscored.
    assert m["pairwise"] == {"pairs": 4, "correct": 3, "model_ties": 0, "unscored": 1, "accuracy": 0.75}
    assert m["judgments"] == 10 and m["parsed"] == 7 and m["parse_rate"] == 0.7
    assert m["unparsed"] == {"no score": 3}
    # exact: q0-a0 3 (yes), 4; q0-a1 1 (yes); q0-a2 no; q1-a1 2, 2 (yes, yes) -> 4 of 10 judgments
    assert m["exact_match"] == 0.4
    # scored answers: refs (3,1,5,2), means (3.5,1,4,2): same order -> rho = tau = 1
    assert m["spearman"] == pytest.approx(1.0) and m["kendall_tau_b"] == pytest.approx(1.0)
    assert m["histogram"] == {"0": 0, "1": 1, "2": 2, "3": 1, "4": 3, "5": 0}


# --- win rate ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, verdict", [
    ("A is clearer. Winner: A", "A"), ("**Winner:** b", "B"), ("Winner: tie", "tie"), ("winner = B.", "B"),
    ("Winner: A ... on reflection, Winner: B", "B"), ("I prefer A.", None), ("Winner: C", None), ("Winner: Alpha", None),
    ("", None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_pairwise_prompt_keeps_braces():
    p = build_pairwise_prompt("What is {x}?", " {a} one ", "{b} two")
    assert "User: What is {x}?" in p and "<response A>{a} one</response A>" in p and "<response B>{b} two</response B>"
    assert p.rstrip().endswith('"Winner: tie".')


def test_win_rate_summary_counts_from_the_new_models_side():
    v = lambda a, verdict: {"a": a, "verdict": verdict,  # noqa: E731
                            "outcome": None if verdict is None else "tie" if verdict == "tie"
                            else "win" if (verdict == "A") == (a == "new") else "loss"}
    verdicts = [v("new", "A"), v("old", "B"), v("new", "B"), v("old", "A"), v("new", "tie"), v("old", None)]
    rows_new = [{"response": "x" * 10, "tokens": 4}, {"response": "x" * 20, "tokens": 6}]
    rows_old = [{"response": "x" * 4, "tokens": 2}, {"response": "x" * 6, "tokens": 2}]
    s = win_rate_summary(verdicts, rows_new, rows_old)
    assert (s["wins"], s["losses"], s["ties"], s["unparsed"]) == (2, 2, 1, 1)
    assert s["win_rate"] == pytest.approx(2.5 / 5)
    assert s["picked_first"] == pytest.approx(2 / 4)  # A picked twice of four A/B verdicts
    assert s["mean_chars"] == {"new": 15, "old": 5} and s["mean_tokens"] == {"new": 5, "old": 2}


def test_resolve_judge(tmp_path):
    assert resolve_judge("newest", 3) == 3 and resolve_judge("m1", 3) == 1
    assert resolve_judge(str(tmp_path), 3) == str(tmp_path.resolve())
    with pytest.raises(SrliteError, match="not 'newest'"):
        resolve_judge(str(tmp_path / "nope"), 3)


def normalise(text):
    return re.sub(r"\W+", " ", text.lower()).strip()


def test_bundled_eval_prompts_are_held_out():
    prompts = load_eval_prompts(bundled_eval_prompts())
    assert len(prompts) >= 30 and len({normalise(p["prompt"]) for p in prompts}) == len(prompts)
    seeds = {normalise(first_user_text(m)) for m in load_messages("bundled", "ift")}
    for kind in ("eft_train", "eft_eval"):
        for m in load_messages("bundled", kind):
            parts = split_judge_prompt(m[0]["content"], RUBRIC_TEMPLATE)
            assert parts, m[0]["content"][:80]
            seeds.add(normalise(parts[0]))
    overlap = [p["prompt"] for p in prompts if normalise(p["prompt"]) in seeds]
    assert not overlap
    assert len(load_eval_prompts(bundled_eval_prompts(), 5)) == 5


def test_eval_prompts_errors(tmp_path):
    with pytest.raises(SrliteError, match=r"line 2, field 'prompt'"):
        load_eval_prompts(write_lines(tmp_path / "e.jsonl", [{"prompt": "a"}, {"text": "b"}]))


def test_eval_config_validation():
    with pytest.raises(SrliteError, match="eval_prompts"):
        preset_config("cpu", eval_prompts=-1)
    with pytest.raises(SrliteError, match="eval_each_round"):
        preset_config("cpu", eval_each_round="yes")
    assert preset_config("gpu").eval_questions == 0  # the gpu preset uses the full sets


# --- report on runs with little in them -------------------------------------------------------

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


# --- the judging stage goes through the one engine, with its output format unchanged --------------

def test_judge_candidates_uses_the_engine_pieces_and_keeps_its_format(tmp_path, monkeypatch):
    import selfreward_lite.models.generation as model_mod
    from selfreward_lite.models.generation import Sample
    from selfreward_lite.run.rundir import Run
    from selfreward_lite.loop.stages import judge_candidates
    from selfreward_lite.run import seeds

    calls = []

    def fake_generate(lm, texts, n, **kw):
        calls.append((list(texts), n, kw))
        replies = ["Fine. Score: 4", "Hmm.", "Score: 9", "Score: 2"]
        return [[Sample(replies[(i * n + k) % 4], True, 3) for k in range(n)] for i in range(len(texts))]

    monkeypatch.setattr(model_mod, "generate", fake_generate)
    monkeypatch.setattr(model_mod, "render_chat", lambda tok, msgs: "<chat>" + msgs[0]["content"])
    run = Run(tmp_path, preset_config("cpu", judge_samples=2))
    cands = [{"id": f"r1-p0000-c{k}", "prompt_id": "r1-p0000", "prompt": "Name a fruit.", "response": r}
             for k, r in enumerate(["Apple.", "Car."])]
    write_jsonl(tmp_path / "candidates.jsonl", cands)
    judge_candidates(run, 1, SimpleNamespace(tokenizer=None), tmp_path / "candidates.jsonl", tmp_path / "judgments.jsonl")

    [(texts, n, kw)] = calls
    assert n == 2 and kw["seed"] == seeds.stage(run.cfg.seed, 1, seeds.JUDGING) * 1000 and kw["max_new_tokens"] == run.cfg.judge_max_new_tokens
    assert "Name a fruit." in texts[0] and "<response>Apple.</response>" in texts[0]
    rows = [json.loads(line) for line in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert rows == [
        {"id": "r1-p0000-c0-j0", "candidate_id": "r1-p0000-c0", "prompt_id": "r1-p0000", "text": "Fine. Score: 4", "score": 4, "parse": "ok"},
        {"id": "r1-p0000-c0-j1", "candidate_id": "r1-p0000-c0", "prompt_id": "r1-p0000", "text": "Hmm.", "score": None, "parse": "no score"},
        {"id": "r1-p0000-c1-j0", "candidate_id": "r1-p0000-c1", "prompt_id": "r1-p0000", "text": "Score: 9", "score": None, "parse": "out of range"},
        {"id": "r1-p0000-c1-j1", "candidate_id": "r1-p0000-c1", "prompt_id": "r1-p0000", "text": "Score: 2", "score": 2, "parse": "ok"},
    ]
