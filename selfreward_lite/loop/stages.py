"""The stages of a round, each a function from artifacts on disk to one artifact on disk.

Every writer is atomic (temporary name, then rename), so an artifact that exists is
complete; the pipeline skips a stage whose artifact exists.
"""

from __future__ import annotations

import contextlib
import random
import shutil
from dataclasses import replace
from pathlib import Path

from ..errors import SrliteError
from ..evaluation.heldout import heldout_prompts
from ..evaluation.intervals import rate
from ..judging import engine
from ..judging.judges import ExternalJudge
from ..judging.rubric import TRUNCATED, load_rubric, mean_score
from ..judging.spec import parse_judge_spec
from ..models import adapters, generation
from ..run import interrupts, seeds
from ..run.files import read_json, read_jsonl, write_json, write_jsonl
from ..run.journal import Journal, complete_groups
from ..run.records import first_user_text, split_prompt_completion
from ..run.rundir import (CANDIDATES, DPO_SUMMARY, JUDGMENTS, PROMPTS, SFT_SUMMARY, Run, checkpoints_of,
                          stats_of)
from ..ui import QuietUI
from . import train
from .oom import with_backoff
from .pairs import candidate_counts, length_stats, select_pairs
from .self_instruction import STOP, PromptFilter, extract_prompt, few_shot_prompt


def seed_prompts(run: Run) -> list[str]:
    return [first_user_text(r["messages"]) for r in read_jsonl(run.seed_path("ift"))]


def earlier_prompts(run: Run, t: int) -> list[str]:
    return [p["prompt"] for i in range(1, t) for p in read_jsonl(run.round_dir(i) / PROMPTS)]


def stage_sampling(cfg) -> dict[str, dict]:
    """The sampling settings of a round's three generation stages, as `generation.generate` takes them."""
    extras = {"top_k": cfg.top_k, "repetition_penalty": cfg.repetition_penalty}
    return {
        "prompts": {"temperature": cfg.prompt_temperature, "top_p": cfg.prompt_top_p,
                    "max_new_tokens": cfg.prompt_max_new_tokens, **extras},
        "candidates": {"temperature": cfg.temperature, "top_p": cfg.top_p,
                       "max_new_tokens": cfg.response_max_new_tokens, **extras},
        "judging": engine.sampling(cfg),
    }


def _recorded(sampling: dict) -> dict:
    """A stage's settings as the round metrics record them: every token-drawing setting, and the stop strings."""
    s = dict(sampling)
    stop = s.pop("stop_strings", None)
    return {**generation.sampling_settings(**s), **({"stop_strings": stop} if stop else {})}


# --- M1: supervised fine-tuning on IFT + EFT -------------------------------------------

def train_m1(run: Run, lm, out: Path, ui=QuietUI()) -> None:
    records = [
        split_prompt_completion(r["messages"])
        for kind in ("ift", "eft_train")
        for r in read_jsonl(run.seed_path(kind))
    ]
    with ui.progress("SFT steps", total=None) as advance:
        result = _train_with_backoff(run, lm, lambda cfg: train.train_sft(
            cfg, lm, records, on_step=lambda s, n: advance(1, total=n), checkpoint_dir=checkpoints_of(out),
            log_dir=run.training_log_dir(0)))
    adapters.save_adapter(lm, out, SFT_SUMMARY, {**result, "records": len(records)})
    shutil.rmtree(checkpoints_of(out), ignore_errors=True)


def _train_with_backoff(run: Run, lm, train_with):
    """Train; on out-of-memory, restart from a fresh adapter with half the micro-batch
    (gradient accumulation keeps the effective batch, so the result means the same). The fresh
    adapter is the first attempt's initial state again: the same seed, the same random A."""
    return with_backoff(run, "training", run.cfg.train_micro_batch_size,
                        lambda micro: train_with(replace(run.cfg, train_micro_batch_size=micro)),
                        on_retry=lambda micro: adapters.reset_trainable(lm, lm.init_seed))


def summarize_m1(run: Run, out: Path) -> None:
    sft = read_json(run.sft_summary_path)
    write_json(out, {k: v for k, v in sft.items() if k != "log"})


# --- 1. self-instruction: new prompts ---------------------------------------------------

def create_prompts(run: Run, t: int, lm, out: Path, ui=QuietUI()) -> None:
    """M_t writes new tasks from few-shot prompts; filtered against the held-out evaluation texts
    (evaluation/heldout.py), the seeds and earlier prompts.

    Generation goes in batches; every examined sample of a finished batch is journaled, so a
    resumed stage replays the journal through the same filter and continues with the next
    batch (batch b always uses the same seed, so the result does not depend on restarts).
    """
    cfg = run.cfg
    all_seeds, earlier = seed_prompts(run), earlier_prompts(run, t)
    stage_seed = seeds.stage(cfg.seed, t, seeds.PROMPTS)
    flt = PromptFilter(all_seeds + earlier, cfg.prompt_min_words, cfg.prompt_max_words, cfg.prompt_max_rouge,
                       heldout=heldout_prompts(run))
    # A held-out text is never a few-shot example (only a user's own seed data, or a round made
    # before this filter existed, can hold one).
    seed_texts = [p for p in all_seeds if not flt.near_heldout(p)]
    shots_earlier = [p for p in earlier if not flt.near_heldout(p)]
    kept: list[str] = []
    examined = attempts = batch = 0
    budget = cfg.prompts_per_round * cfg.prompt_max_attempts
    journal = Journal(out)

    def consume(text: str, finished: bool) -> None:
        nonlocal examined
        examined += 1
        text, delimited = extract_prompt(text)
        if flt.offer(text, finished=finished or delimited):
            kept.append(text)

    for entry in journal.load(_complete_batches):  # replay finished batches
        if "end" in entry:
            attempts, batch = attempts + entry["attempts"], batch + 1
        else:
            consume(entry["text"], entry["finished"])
    with ui.progress("prompts kept", total=cfg.prompts_per_round) as advance:
        advance(len(kept))
        while len(kept) < cfg.prompts_per_round and attempts < budget:
            interrupts.check()
            # Oversample a little: about half of what a small model writes gets filtered.
            want = min(cfg.gen_batch_size, budget - attempts, 2 * (cfg.prompts_per_round - len(kept)))
            rng = random.Random(seeds.batch(stage_seed, batch))
            texts = [few_shot_prompt(seed_texts, shots_earlier + kept, cfg.prompt_shots, cfg.prompt_shots_generated, rng)
                     for _ in range(want)]
            samples = with_backoff(run, "generation", cfg.gen_batch_size, lambda bs: generation.generate(
                lm, texts, 1, **stage_sampling(cfg)["prompts"], batch_size=bs,
                seed=seeds.batch(stage_seed, batch), stop_strings=[STOP],
            ))
            before = len(kept)
            entries = []
            for k, (s,) in enumerate(samples):
                if len(kept) == cfg.prompts_per_round:
                    break
                consume(s.text, s.finished)
                entries.append({"id": f"r{t}-b{batch}-s{k}", "batch": batch, "text": s.text, "finished": s.finished})
            journal.append(entries + [{"id": f"r{t}-b{batch}-end", "batch": batch, "end": True, "attempts": want}])
            attempts, batch = attempts + want, batch + 1
            advance(len(kept) - before)
    stats = {"generated": examined, "kept": len(kept), "dropped": dict(flt.dropped),
             "seed_prompts_near_eval": len(all_seeds) - len(seed_texts)}
    write_json(stats_of(out), stats)
    journal.finish([{"id": f"r{t}-p{i:04d}", "prompt": p} for i, p in enumerate(kept)])


def _complete_batches(entries: list[dict]) -> list[dict]:
    ended = {e["batch"] for e in entries if "end" in e}
    seen: set = set()
    out = []
    for e in entries:
        if e["batch"] in ended and e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _generate_journaled(run: Run, t: int, stage: int, journal: Journal, work: list[dict], n: int,
                        text_of, sample, rows_of, advance) -> None:
    """For each work item not yet in the journal, `sample(items, batch_size, seed)` gives its group
    (n continuations, or n judgment records), chunk by chunk; `rows_of(item, group)` its journal rows.

    Chunks are fixed slices of the work list (longest texts first, as a batch wants), so
    chunk c always has the same items and seed whether or not the stage was restarted.
    """
    stage_seed = seeds.stage(run.cfg.seed, t, stage)
    texts = [text_of(w) for w in work]
    order = sorted(range(len(work)), key=lambda i: -len(texts[i]))
    per_chunk = max(1, run.cfg.gen_batch_size // n)
    for c, chunk in enumerate(_chunks(order, per_chunk)):
        todo = [i for i in chunk if not work[i]["_done"]]
        if not todo:
            continue
        interrupts.check()
        groups = with_backoff(run, "generation", run.cfg.gen_batch_size,
                              lambda bs: sample([work[i] for i in todo], bs, seeds.batch(stage_seed, c)))
        journal.append([row for i, group in zip(todo, groups) for row in rows_of(work[i], group)])
        advance(len(todo))


# --- 2. N candidate responses per prompt --------------------------------------------------

def sample_candidates(run: Run, t: int, lm, prompts_file: Path, out: Path, ui=QuietUI()) -> None:
    cfg = run.cfg
    journal = Journal(out)
    done = {r["prompt_id"] for r in journal.load(complete_groups("prompt_id", cfg.n_candidates))}
    prompts = [{**p, "_done": p["id"] in done} for p in read_jsonl(prompts_file)]

    def rows_of(p: dict, group) -> list[dict]:
        return [{"id": f"{p['id']}-c{k}", "prompt_id": p["id"], "prompt": p["prompt"], "response": s.text,
                 "finished": s.finished, "tokens": s.n_tokens} for k, s in enumerate(group)]

    with ui.progress("prompts answered", total=len(prompts)) as advance:
        advance(len(done))
        def text_of(p: dict) -> str:
            return generation.render_chat(lm.tokenizer, [{"role": "user", "content": p["prompt"]}])

        def sample(batch: list[dict], bs: int, seed: int):
            return generation.generate(lm, [text_of(p) for p in batch], cfg.n_candidates, batch_size=bs, seed=seed,
                                       **stage_sampling(cfg)["candidates"])

        _generate_journaled(run, t, seeds.CANDIDATES, journal, prompts, cfg.n_candidates, text_of, sample, rows_of,
                            advance)
    by_id = {r["id"]: r for r in journal.load()}
    journal.finish([by_id[f"{p['id']}-c{k}"] for p in prompts for k in range(cfg.n_candidates)])


# --- 3. LLM-as-a-Judge: the same model scores every candidate K times ---------------------

def judge_candidates(run: Run, t: int, lm, candidates_file: Path, out: Path, ui=QuietUI()) -> None:
    """`lm` is the judge (judges.round_judge): a loaded model (M_t, or a fixed model) that judges with
    the rubric in batches, or an ExternalJudge (python, openai); same records and journal either way."""
    cfg = run.cfg
    rubric = load_rubric(cfg.rubric)
    external = isinstance(lm, ExternalJudge)
    n = lm.samples(cfg.judge_samples) if external else engine.samples_per_answer(cfg)
    journal = Journal(out)
    done = {r["candidate_id"] for r in journal.load(complete_groups("candidate_id", n))}
    cands = [{**c, "_done": c["id"] in done} for c in read_jsonl(candidates_file)]

    def rows(c: dict, records: list[dict]) -> list[dict]:
        return [{"id": f"{c['id']}-j{r['sample']}", "candidate_id": c["id"], "prompt_id": c["prompt_id"],
                 "text": r["text"], "score": r["score"], "parse": r["parse"], "finished": r["finished"],
                 **{k: r[k] for k in ("expected", "completed") if k in r}} for r in records]

    with ui.progress("candidates judged", total=len(cands)) as advance:
        advance(len(done))
        if external:
            _judge_external(run, t, lm, journal, cands, n, rows, advance)
        else:  # the rubric's KV cache is computed once here, for every batch of the stage
            judge = engine.setup(lm, cfg, rubric)
            _generate_journaled(run, t, seeds.JUDGING, journal, cands, n, lambda c: engine.judge_text(lm, rubric, c),
                                lambda batch, bs, seed: judge(batch, seed=seed, batch_size=bs), rows, advance)
    by_id = {r["id"]: r for r in journal.load()}
    journal.finish([by_id[f"{c['id']}-j{k}"] for c in cands for k in range(n)])


def _judge_external(run: Run, t: int, judge: ExternalJudge, journal: Journal, cands: list[dict], n: int, rows,
                    advance) -> None:
    """Each candidate's judgments go to the journal as soon as they are all in (a restart asks only for
    the rest); candidate i always gets the same seed."""
    stage_seed = seeds.stage(run.cfg.seed, t, seeds.JUDGING)
    todo = [i for i, c in enumerate(cands) if not c["_done"]]
    interrupts.check()
    try:
        judged = judge.judge([cands[i] for i in todo], n, [seeds.batch(stage_seed, i) for i in todo])
        with contextlib.closing(judged) as groups:
            for group in groups:
                journal.append([row for k, records in group for row in rows(cands[todo[k]], records)])
                advance(len(group))
                interrupts.check()
    finally:
        judge.close()


# --- 4. preference pairs ------------------------------------------------------------------

def build_pairs(run: Run, t: int, candidates_file: Path, judgments_file: Path, out: Path) -> None:
    """Best vs worst finished candidate of each prompt (loop/pairs.py); pairs_stats.json counts the
    prompts dropped and the candidates not ranked, by reason, and the chosen − rejected length."""
    cfg = run.cfg
    scores: dict[str, list] = {}
    for j in read_jsonl(judgments_file):
        scores.setdefault(j["candidate_id"], []).append(j["score"])
    cands = [{**c, "score": mean_score(scores.get(c["id"], [])),
              "n_parsed": sum(s is not None for s in scores.get(c["id"], []))} for c in read_jsonl(candidates_file)]
    # A python judge, and expected scoring, give one judgment per answer: it can need no more.
    one = parse_judge_spec(cfg.judge).kind == "python" or cfg.judge_scoring == "expected"
    min_parsed = 1 if one else cfg.judge_min_parsed
    pairs, dropped = select_pairs(cands, cfg.pair_min_margin, seed=seeds.stage(cfg.seed, t, seeds.PAIRS),
                                  min_parsed=min_parsed, length_margin=cfg.length_control_margin)
    write_json(stats_of(out), {"kept": len(pairs), "dropped": dict(dropped),
                               "candidates": candidate_counts(cands, min_parsed),
                               "length": length_stats(pairs), "length_control_margin": cfg.length_control_margin})
    write_jsonl(out, pairs)


# --- 5. DPO: a new adapter on top of M_t gives M_t+1 --------------------------------------

def train_round_adapter(run: Run, t: int, lm, pairs_file: Path, out: Path, ui=QuietUI()) -> None:
    pairs = read_jsonl(pairs_file)
    if not pairs:
        stats = read_json(stats_of(pairs_file))
        raise SrliteError(
            f"{pairs_file}: round {t} produced no preference pairs (dropped: {stats['dropped']}), so there is "
            "nothing to train on. Look at the judge parse rate in judgments.jsonl; raise prompts_per_round or "
            "n_candidates in config.json, delete this round's folder, and run `srlite iterate` again."
        )
    with ui.progress("DPO steps", total=None) as advance:
        result = _train_with_backoff(run, lm, lambda cfg: train.train_dpo(
            cfg, lm, pairs, on_step=lambda s, n: advance(1, total=n), checkpoint_dir=checkpoints_of(out),
            log_dir=run.training_log_dir(t)))
    adapters.save_adapter(lm, out, DPO_SUMMARY, result)
    shutil.rmtree(checkpoints_of(out), ignore_errors=True)


# --- summary ------------------------------------------------------------------------------

def summarize_round(run: Run, t: int, out: Path) -> dict:
    rd = run.round_dir(t)
    cands = read_jsonl(rd / CANDIDATES)
    judgments = read_jsonl(rd / JUDGMENTS)
    judged = engine.judgment_summary(judgments)
    dpo = read_json(run.dpo_summary_path(t))
    metrics = {
        "round": t,
        "prompts": read_json(run.prompts_stats_path(t)),
        "candidates": {
            "total": len(cands),
            "truncated": sum(not c["finished"] for c in cands),
            "mean_chars": sum(len(c["response"]) for c in cands) / max(1, len(cands)),
        },
        "judge": run.cfg.judge,  # the spec (judging/spec.py); an openai judge's key is never part of it
        "judgments": {"total": judged.pop("judgments"), **judged,
                      "truncated": sum(j["parse"] == TRUNCATED for j in judgments),
                      "intervals": {"parse_rate": rate(judged["parsed"], len(judgments)).to_dict()}},
        "pairs": read_json(run.pairs_stats_path(t)),
        "dpo": _dpo_figures(dpo),
        # every setting each stage passed to `generate` (nothing else applied: see models/generation.py)
        "sampling": {stage: _recorded(s) for stage, s in stage_sampling(run.cfg).items()},
        "stage_seconds": {k: v["seconds"] for k, v in run.manifest().get("stages", {}).items()
                          if k.startswith(f"{rd.name}/")},
    }
    metrics["warnings"] = list(dpo.get("movement", {}).get("warnings", []))
    write_json(out, metrics)
    return metrics


def _dpo_figures(dpo: dict) -> dict:
    """The round's DPO figures: reward accuracy / margin and Δ log p of M_t+1 vs M_t on all pairs after
    training (dpo_diagnostics.py); train_reward_* are the training log's (last quarter, before each update)."""
    moved = dpo.get("movement", {})  # absent in adapters trained before it was measured
    return {
        **{k: dpo[k] for k in ("steps", "first_loss", "last_loss")},
        **{k: moved.get(k) for k in ("pairs", "reward_accuracy", "reward_margin", "delta_logp_chosen", "delta_logp_rejected",
                                     "delta_logp_per_token")},
        "train_reward_margin": dpo["reward_margin"],
        "train_reward_accuracy": dpo["reward_accuracy"],
    }
