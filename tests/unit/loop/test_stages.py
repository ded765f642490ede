"""The stages of a round with a fake model: journaled stages resume to the uninterrupted result,
out-of-memory back-off keeps every record, a training stage restarts from a fresh adapter, and the
judging stage goes through the judging engine with its output format unchanged."""

import json
from types import SimpleNamespace

import pytest
import torch

from selfreward_lite.config import preset_config
from selfreward_lite.run import seeds
from selfreward_lite.run.create import create_run
from selfreward_lite.run.files import read_json, write_json, write_jsonl
from selfreward_lite.run.rundir import Run


def test_training_stage_restarts_from_fresh_adapter_after_oom(run, monkeypatch):
    """Simulated OOM in DPO: the adapter is reset to B = 0 and training retried at half micro-batch."""
    from selfreward_lite.loop import stages

    calls = []

    class FakeLM:
        init_seed = 1234

    def fake_train(cfg, lm, pairs, on_step=None, checkpoint_dir=None, log_dir=None):
        calls.append(cfg.train_micro_batch_size)
        if cfg.train_micro_batch_size > 1:
            raise torch.cuda.OutOfMemoryError("out of memory")
        return {"steps": 1}

    resets = []
    monkeypatch.setattr("selfreward_lite.loop.train.train_dpo", fake_train)
    monkeypatch.setattr("selfreward_lite.models.adapters.reset_trainable", lambda lm, seed: resets.append(seed))
    monkeypatch.setattr("selfreward_lite.models.adapters.save_adapter", lambda lm, out, name, meta: write_json(out / name, meta))
    pairs = run.round_dir(1) / "pairs.jsonl"
    pairs.parent.mkdir(parents=True)
    pairs.write_text(json.dumps({"id": "x", "prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    stages.train_round_adapter(run, 1, FakeLM(), pairs, run.round_dir(1) / "adapter")
    assert calls == [4, 2, 1] and resets == [1234, 1234]  # each retry starts from the first attempt's A
    assert read_json(run.manifest_path)["batch_sizes"]["training"] == 1


# --- journaled stages, with a fake model ----------------------------------------------------

class Crash(Exception):
    pass


def fake_generate_factory(crash_after=None):
    """Deterministic stand-in for model.generate: output depends on the text, sample index and seed."""
    import hashlib

    from selfreward_lite.models.generation import Sample

    calls = []

    def generate(lm, texts, n, *, seed, batch_size, stop_strings=None, **kw):
        if crash_after is not None and len(calls) >= crash_after:
            raise Crash
        calls.append(len(texts))
        out = []
        for t in texts:
            group = []
            for k in range(n):
                h = hashlib.sha256(f"{t}|{k}|{seed}".encode()).hexdigest()
                words = " ".join(f"w{h[i:i + 3]}" for i in range(0, 18, 3))
                text = (f"Explain the idea of {words} in simple words?\nTask" if stop_strings and "\nTask" in stop_strings
                        else f"{words}. Score: {int(h, 16) % 6}")
                group.append(Sample(text, True, 7))
            out.append(group)
        return out

    return generate, calls


class FakeTok:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages)


class FakeLM:
    tokenizer = FakeTok()


@pytest.mark.parametrize("crash_after", [1, 2, 3])
def test_journaled_stages_resume_to_the_uninterrupted_result(tmp_path, monkeypatch, crash_after):
    from selfreward_lite.loop import stages

    def make_run(name):
        return create_run(tmp_path / name, preset="cpu", overrides={
            "prompts_per_round": 6, "gen_batch_size": 4, "n_candidates": 2, "judge_samples": 2})

    def all_stages(run, generate):
        monkeypatch.setattr("selfreward_lite.models.generation.generate", generate)
        rd = run.round_dir(1)
        for fn, out in ((lambda o: stages.create_prompts(run, 1, FakeLM(), o), rd / "prompts.jsonl"),
                        (lambda o: stages.sample_candidates(run, 1, FakeLM(), rd / "prompts.jsonl", o), rd / "candidates.jsonl"),
                        (lambda o: stages.judge_candidates(run, 1, FakeLM(), rd / "candidates.jsonl", o), rd / "judgments.jsonl")):
            if not out.exists():
                fn(out)

    ref = make_run("ref")
    all_stages(ref, fake_generate_factory()[0])
    run = make_run("run")
    crashes = 0
    while True:  # crash after `crash_after` generate calls, again and again, until done
        try:
            all_stages(run, fake_generate_factory(crash_after)[0])
            break
        except Crash:
            crashes += 1
            # a kill can also tear the line being written
            for p in run.round_dir(1).glob("*.partial"):
                with open(p, "a") as f:
                    f.write('{"id": "torn')
    assert crashes >= 3
    for name in ("prompts.jsonl", "candidates.jsonl", "judgments.jsonl", "prompts_stats.json"):
        assert (run.round_dir(1) / name).read_text() == (ref.round_dir(1) / name).read_text(), name
    assert not list(run.round_dir(1).glob("*.partial"))
    assert len((run.round_dir(1) / "judgments.jsonl").read_text().splitlines()) == 6 * 2 * 2


def test_generation_oom_halves_batch_and_keeps_every_record(tmp_path, monkeypatch):
    from selfreward_lite.loop import stages

    run = create_run(tmp_path / "run", preset="cpu", overrides={
        "prompts_per_round": 4, "gen_batch_size": 8, "n_candidates": 2, "judge_samples": 2})
    inner, _ = fake_generate_factory()
    sizes = []

    def tight_memory(lm, texts, n, *, batch_size, **kw):
        sizes.append(batch_size)
        if batch_size > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return inner(lm, texts, n, batch_size=batch_size, **kw)

    monkeypatch.setattr("selfreward_lite.models.generation.generate", tight_memory)
    rd = run.round_dir(1)
    stages.create_prompts(run, 1, FakeLM(), rd / "prompts.jsonl")
    stages.sample_candidates(run, 1, FakeLM(), rd / "prompts.jsonl", rd / "candidates.jsonl")
    assert sizes[:3] == [8, 4, 2] and set(sizes[3:]) == {2}  # halved once, then reused
    assert read_json(run.manifest_path)["batch_sizes"] == {"generation": 2}
    cands = [json.loads(line) for line in (rd / "candidates.jsonl").read_text().splitlines()]
    assert len(cands) == 4 * 2 and len({c["id"] for c in cands}) == 8


# --- the judging stage goes through the one engine, with its output format unchanged --------------

@pytest.mark.parametrize("complete", [True, False])
def test_judge_candidates_uses_the_engine_pieces_and_keeps_its_format(tmp_path, monkeypatch, complete):
    import selfreward_lite.models.generation as model_mod
    from selfreward_lite.models.generation import Sample
    from selfreward_lite.run.rundir import Run
    from selfreward_lite.loop.stages import judge_candidates
    from selfreward_lite.run import seeds

    calls = []

    def fake_generate(lm, texts, n, **kw):
        calls.append((list(texts), n, kw))
        if texts[0].endswith("\nScore:"):  # the completion of a judgment that stopped without its score
            return [[Sample(" 3", False, 1)] for _ in texts]
        replies = [("Fine. Score: 4", True), ("Hmm.", True), ("Score: 9", True), ("Score: 2", True),
                   ("Score: 5\nThough on reflection the", False)]
        return [[Sample(*replies[(i * n + k) % 5], 3) for k in range(n)] for i in range(len(texts))]

    monkeypatch.setattr(model_mod, "generate", fake_generate)
    monkeypatch.setattr(model_mod, "render_chat", lambda tok, msgs: "<chat>" + msgs[0]["content"])
    run = Run(tmp_path, preset_config("cpu", judge_samples=2, judge_complete_score=complete))
    cands = [{"id": f"r1-p0000-c{k}", "prompt_id": "r1-p0000", "prompt": "Name a fruit.", "response": r}
             for k, r in enumerate(["Apple.", "Car.", "Fig"])]
    write_jsonl(tmp_path / "candidates.jsonl", cands)
    judge_candidates(run, 1, SimpleNamespace(tokenizer=None), tmp_path / "candidates.jsonl", tmp_path / "judgments.jsonl")

    (texts, n, kw), *completion = calls
    assert n == 2 and kw["seed"] == seeds.stage(run.cfg.seed, 1, seeds.JUDGING) * 1000 and kw["max_new_tokens"] == run.cfg.judge_max_new_tokens
    assert "Name a fruit." in texts[0] and "<response>Apple.</response>" in texts[0]
    assert kw["stop_strings"] == [f"Score: {n}\n" for n in range(6)]  # a judgment ends after its score line
    rows = [json.loads(line) for line in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert rows[:5] == [
        {"id": "r1-p0000-c0-j0", "candidate_id": "r1-p0000-c0", "prompt_id": "r1-p0000", "text": "Fine. Score: 4", "score": 4, "parse": "ok", "finished": True},
        {"id": "r1-p0000-c0-j1", "candidate_id": "r1-p0000-c0", "prompt_id": "r1-p0000", "text": "Hmm.", "score": None, "parse": "no score", "finished": True}
        if not complete else  # the judge ended without a score: asked for it, it wrote " 3"
        {"id": "r1-p0000-c0-j1", "candidate_id": "r1-p0000-c0", "prompt_id": "r1-p0000", "text": "Hmm.\nScore: 3", "score": 3, "parse": "ok", "finished": True, "completed": True},
        {"id": "r1-p0000-c1-j0", "candidate_id": "r1-p0000-c1", "prompt_id": "r1-p0000", "text": "Score: 9", "score": None, "parse": "out of range", "finished": True},
        {"id": "r1-p0000-c1-j1", "candidate_id": "r1-p0000-c1", "prompt_id": "r1-p0000", "text": "Score: 2", "score": 2, "parse": "ok", "finished": True},
        # Ran out of tokens after an interim "Score: 5": unparsed, never a 5.
        {"id": "r1-p0000-c2-j0", "candidate_id": "r1-p0000-c2", "prompt_id": "r1-p0000", "text": "Score: 5\nThough on reflection the", "score": None, "parse": "truncated", "finished": False},
    ]
    if not complete:
        assert completion == []
        return
    # one completion pass for the chunk: only the judgments that ended without a score (not the
    # out-of-range or the truncated one), each its judge prompt + text + "\nScore:", one sample, a few tokens
    [(ctexts, cn, ckw)] = completion
    no_score = [r for r in rows if r.get("completed")]
    assert len(ctexts) == len(no_score) == 1
    assert ctexts[0] == texts[0] + "Hmm.\nScore:" and cn == 1
    assert ckw["seed"] == seeds.score_completion(kw["seed"]) and ckw["max_new_tokens"] == 3 and ckw["stop_strings"] is None


# --- the pairs stage: what pairs_stats.json records --------------------------------------------------

def test_build_pairs_records_truncation_parsed_counts_and_length(tmp_path):
    from selfreward_lite.loop.stages import build_pairs

    run = Run(tmp_path, preset_config("cpu", judge_samples=2, judge_min_parsed=1))
    rd = run.round_dir(1)
    cands = [
        # prompt 0: the best answer was cut off; the pair is made of the finished ones
        ("r1-p0000-c0", "Cut off mid", False, [5, 5]), ("r1-p0000-c1", "A fine answer.", True, [4, None]),
        ("r1-p0000-c2", "Bad.", True, [1, 2]), ("r1-p0000-c3", "Meh answer", True, [None, None]),
        # prompt 1: only one finished answer left
        ("r1-p0001-c0", "x" * 20, False, [3, 3]), ("r1-p0001-c1", "y", True, [1, 1]),
    ]
    write_jsonl(rd / "candidates.jsonl", [{"id": i, "prompt_id": i[:8], "prompt": "Q?", "response": r, "finished": f,
                                           "tokens": len(r)} for i, r, f, _ in cands])
    write_jsonl(rd / "judgments.jsonl", [{"id": f"{i}-j{k}", "candidate_id": i, "prompt_id": i[:8], "score": s}
                                         for i, _, _, scores in cands for k, s in enumerate(scores)])
    build_pairs(run, 1, rd / "candidates.jsonl", rd / "judgments.jsonl", rd / "pairs.jsonl")
    [pair] = [json.loads(line) for line in (rd / "pairs.jsonl").read_text().splitlines()]
    assert (pair["chosen_id"], pair["chosen_score"], pair["chosen_parsed"]) == ("r1-p0000-c1", 4.0, 1)
    assert (pair["rejected_id"], pair["rejected_score"], pair["rejected_parsed"]) == ("r1-p0000-c2", 1.5, 2)
    stats = read_json(rd / "pairs_stats.json")
    assert stats["kept"] == 1 and stats["dropped"] == {"truncated (fewer than two finished candidates)": 1}
    assert stats["candidates"] == {"total": 6, "ranked": 3, "excluded": {"truncated": 2, "too few parsed judgments": 1}}
    assert stats["length"]["chosen_minus_rejected_chars"] == len("A fine answer.") - len("Bad.")
    assert stats["length"]["chosen_minus_rejected_tokens"] == len("A fine answer.") - len("Bad.")
    assert stats["length_control_margin"] is None

    # judge_min_parsed = 2: the chosen answer above had one parsed judgment, so now it is not ranked.
    run = Run(tmp_path, preset_config("cpu", judge_samples=2, judge_min_parsed=2))
    (rd / "pairs.jsonl").unlink()
    build_pairs(run, 1, rd / "candidates.jsonl", rd / "judgments.jsonl", rd / "pairs.jsonl")
    assert read_json(rd / "pairs_stats.json")["candidates"]["excluded"] == {"truncated": 2, "too few parsed judgments": 2}



@pytest.mark.parametrize("kind", ["expected", "python"])
def test_build_pairs_with_one_continuous_judgment_per_answer(tmp_path, kind):
    """Expected scoring and a python judge give one (possibly fractional) judgment per answer: judge_min_parsed
    counts as 1 for them, margins and ties work on the continuous scores."""
    from selfreward_lite.loop.stages import build_pairs

    (tmp_path / "judge.py").write_text("def score(prompt, response):\n    return 3.0\n")
    one = {"judge_scoring": "expected"} if kind == "expected" else {"judge": f"python:{tmp_path / 'judge.py'}:score"}
    run = Run(tmp_path, preset_config("cpu", judge_samples=3, judge_min_parsed=3, pair_min_margin=0.5, **one))
    rd = run.round_dir(1)
    scores = {"r1-p0000": [3.71, 2.05, 3.2], "r1-p0001": [2.4, 2.4 + 1e-12, 2.4], "r1-p0002": [3.1, 2.7, 2.95]}
    cands = [(f"{p}-c{k}", p, s) for p, ss in scores.items() for k, s in enumerate(ss)]
    write_jsonl(rd / "candidates.jsonl", [{"id": i, "prompt_id": p, "prompt": "Q?", "response": f"answer {i}",
                                           "finished": True, "tokens": 3} for i, p, _ in cands])
    write_jsonl(rd / "judgments.jsonl", [{"id": f"{i}-j0", "candidate_id": i, "prompt_id": p, "score": s}
                                         for i, p, s in cands])
    build_pairs(run, 1, rd / "candidates.jsonl", rd / "judgments.jsonl", rd / "pairs.jsonl")
    [pair] = [json.loads(line) for line in (rd / "pairs.jsonl").read_text().splitlines()]
    assert (pair["chosen_id"], pair["chosen_score"], pair["rejected_id"], pair["rejected_score"]) == \
        ("r1-p0000-c0", 3.71, "r1-p0000-c1", 2.05)
    stats = read_json(rd / "pairs_stats.json")
    assert stats["candidates"] == {"total": 9, "ranked": 9, "excluded": {}}
    assert stats["dropped"] == {"tie (best == worst score)": 1, "score gap within margin": 1}

# --- no leakage: generated prompts vs the held-out texts, and the few-shot pool ----------------------

def test_create_prompts_drops_eval_prompts_and_never_shows_them_as_examples(tmp_path, monkeypatch):
    """Before: generated prompts were compared with the seeds and earlier prompts only, so the model
    could write an eval prompt (or an EFT-eval question) and train on it."""
    from selfreward_lite.evaluation.heldout import eft_questions
    from selfreward_lite.judging.rubric import load_rubric
    from selfreward_lite.loop import stages
    from selfreward_lite.run.files import read_jsonl
    from selfreward_lite.models.generation import Sample

    eval_prompt = "How do bees make honey?"  # a bundled eval prompt (beyond the cpu preset's first 4)
    # A user's IFT seed that holds an eval prompt: kept for SFT (their data), but never a few-shot example.
    ift = tmp_path / "ift.jsonl"
    seeds_ = [f"Write a short poem about the colour number {i} in the rainbow." for i in range(10)] + [eval_prompt]
    ift.write_text("".join(json.dumps({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "Ok."}]}) + "\n"
                           for p in seeds_))
    run = create_run(tmp_path / "run", preset="cpu", ift=str(ift), overrides={"prompts_per_round": 2, "gen_batch_size": 4})
    eft_eval_question = eft_questions([r["messages"] for r in read_jsonl(run.seed_path("eft_eval"))], load_rubric(run.cfg.rubric))[0]
    outputs = iter([" How do bees make their honey?\n", f" {eft_eval_question}\n", " Name two rivers in Peru.\n",
                    " Describe a quiet morning at a lake.\n"] + [" Name two rivers in Chile.\n"] * 8)
    shown = []

    def fake_generate(lm, texts, n, **kw):
        shown.extend(texts)
        return [[Sample(next(outputs), True, 5)] for _ in texts]

    monkeypatch.setattr("selfreward_lite.models.generation.generate", fake_generate)
    out = run.round_dir(1) / "prompts.jsonl"
    stages.create_prompts(run, 1, FakeLM(), out)
    kept = [json.loads(line)["prompt"] for line in out.read_text().splitlines()]
    assert kept == ["Name two rivers in Peru.", "Describe a quiet morning at a lake."]
    stats = read_json(run.round_dir(1) / "prompts_stats.json")
    assert stats["dropped"] == {"near an eval prompt (ROUGE-L)": 2} and stats["seed_prompts_near_eval"] == 1
    assert shown and not any(eval_prompt in text for text in shown)


def test_round_metrics_keep_the_pair_count_of_the_dpo_movement_so_its_accuracy_shows_n():
    from selfreward_lite.loop.stages import _dpo_figures
    from selfreward_lite.report.tables import dpo_accuracy_text

    dpo = {"steps": 4, "first_loss": 0.69, "last_loss": 0.67, "reward_margin": 0.05, "reward_accuracy": 0.5,
           "movement": {"pairs": 8, "reward_accuracy": 0.75, "reward_margin": 0.07, "delta_logp_chosen": 0.2,
                        "delta_logp_rejected": -0.4, "delta_logp_per_token": 0.01}}
    figures = _dpo_figures(dpo)
    assert figures["pairs"] == 8 and figures["reward_accuracy"] == 0.75 and figures["train_reward_accuracy"] == 0.5
    assert dpo_accuracy_text(figures) == "too few (n=8)"
