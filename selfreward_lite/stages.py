"""The stages of a round, each a function from artifacts on disk to one artifact on disk.

Every writer is atomic (temporary name, then rename), so an artifact that exists is
complete; the pipeline skips a stage whose artifact exists.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from .artifacts import read_json, read_jsonl, write_json, write_jsonl
from .data import first_user_text, split_prompt_completion
from .display import QuietUI
from .judge import load_rubric, mean_score
from .pairs import select_pairs
from .prompts import STOP, PromptFilter, extract_prompt, few_shot_prompt
from .runs import ADAPTER, CANDIDATES, JUDGMENTS, METRICS, PAIRS, PROMPTS, Run  # noqa: F401 (re-exported)


def stage_seed(run: Run, t: int, stage: int) -> int:
    return run.cfg.seed * 1000 + t * 10 + stage


def seed_prompts(run: Run) -> list[str]:
    return [first_user_text(r["messages"]) for r in read_jsonl(run.seed_path("ift"))]


def earlier_prompts(run: Run, t: int) -> list[str]:
    return [p["prompt"] for i in range(1, t) for p in read_jsonl(run.round_dir(i) / PROMPTS)]


# --- M1: supervised fine-tuning on IFT + EFT -------------------------------------------

def train_m1(run: Run, lm, out: Path, ui=QuietUI()) -> None:
    from .train import train_sft
    from .model import save_adapter

    records = [
        split_prompt_completion(r["messages"])
        for kind in ("ift", "eft_train")
        for r in read_jsonl(run.seed_path(kind))
    ]
    with ui.progress("SFT steps", total=None) as advance:
        result = train_sft(run.cfg, lm, records, on_step=lambda s, n: advance(1, total=n))
    save_adapter(lm, out, "sft.json", {**result, "records": len(records)})


def summarize_m1(run: Run, out: Path) -> None:
    sft = read_json(run.m1_dir / ADAPTER / "sft.json")
    write_json(out, {k: v for k, v in sft.items() if k != "log"})


# --- 1. self-instruction: new prompts ---------------------------------------------------

def create_prompts(run: Run, t: int, lm, out: Path, ui=QuietUI()) -> None:
    """M_t writes new tasks from few-shot prompts; filtered against seeds and earlier prompts."""
    from .model import generate

    cfg = run.cfg
    seeds = seed_prompts(run)
    earlier = earlier_prompts(run, t)
    flt = PromptFilter(seeds + earlier, cfg.prompt_min_words, cfg.prompt_max_words, cfg.prompt_max_rouge)
    rng = random.Random(stage_seed(run, t, 1))
    kept: list[str] = []
    examined = attempts = 0
    budget = cfg.prompts_per_round * cfg.prompt_max_attempts
    with ui.progress("prompts kept", total=cfg.prompts_per_round) as advance:
        while len(kept) < cfg.prompts_per_round and attempts < budget:
            # Oversample a little: about half of what a small model writes gets filtered.
            want = min(cfg.gen_batch_size, budget - attempts, 2 * (cfg.prompts_per_round - len(kept)))
            texts = [few_shot_prompt(seeds, earlier + kept, cfg.prompt_shots, cfg.prompt_shots_generated, rng)
                     for _ in range(want)]
            samples = generate(
                lm, texts, 1, temperature=cfg.prompt_temperature, top_p=cfg.prompt_top_p,
                max_new_tokens=cfg.prompt_max_new_tokens, batch_size=cfg.gen_batch_size,
                seed=stage_seed(run, t, 1) + attempts, stop_strings=[STOP],
            )
            attempts += want
            for (s,) in samples:
                if len(kept) == cfg.prompts_per_round:
                    break
                examined += 1
                text, delimited = extract_prompt(s.text)
                if flt.offer(text, finished=s.finished or delimited):
                    kept.append(text)
                    advance(1)
    stats = {"generated": examined, "kept": len(kept), "dropped": dict(flt.dropped)}
    write_json(out.with_name("prompts_stats.json"), stats)
    write_jsonl(out, [{"id": f"r{t}-p{i:04d}", "prompt": p} for i, p in enumerate(kept)])


# --- 2. N candidate responses per prompt --------------------------------------------------

def sample_candidates(run: Run, t: int, lm, prompts_file: Path, out: Path, ui=QuietUI()) -> None:
    from .model import generate, render_chat

    cfg = run.cfg
    prompts = read_jsonl(prompts_file)
    texts = [render_chat(lm.tokenizer, [{"role": "user", "content": p["prompt"]}]) for p in prompts]
    with ui.progress("prompts answered", total=len(prompts)) as advance:
        samples = generate(
            lm, texts, cfg.n_candidates, temperature=cfg.temperature, top_p=cfg.top_p,
            max_new_tokens=cfg.response_max_new_tokens, batch_size=cfg.gen_batch_size,
            seed=stage_seed(run, t, 2), on_batch=advance,
        )
    rows = [
        {"id": f"{p['id']}-c{k}", "prompt_id": p["id"], "prompt": p["prompt"], "response": s.text,
         "finished": s.finished, "tokens": s.n_tokens}
        for p, group in zip(prompts, samples)
        for k, s in enumerate(group)
    ]
    write_jsonl(out, rows)


# --- 3. LLM-as-a-Judge: the same model scores every candidate K times ---------------------

def judge_candidates(run: Run, t: int, lm, candidates_file: Path, out: Path, ui=QuietUI()) -> None:
    from .scoring import judge_items

    cands = read_jsonl(candidates_file)
    items = [{"id": c["id"], "prompt": c["prompt"], "response": c["response"]} for c in cands]
    with ui.progress("candidates judged", total=len(cands)) as advance:
        records = judge_items(lm, run.cfg, load_rubric(run.cfg.rubric), items, seed=stage_seed(run, t, 3),
                              on_batch=advance)
    prompt_of = {c["id"]: c["prompt_id"] for c in cands}
    rows = [{"id": f"{r['item_id']}-j{r['sample']}", "candidate_id": r["item_id"], "prompt_id": prompt_of[r["item_id"]],
             "text": r["text"], "score": r["score"], "parse": r["parse"]} for r in records]
    write_jsonl(out, rows)


# --- 4. preference pairs ------------------------------------------------------------------

def build_pairs(run: Run, candidates_file: Path, judgments_file: Path, out: Path) -> None:
    scores: dict[str, list] = {}
    for j in read_jsonl(judgments_file):
        scores.setdefault(j["candidate_id"], []).append(j["score"])
    cands = [{**c, "score": mean_score(scores.get(c["id"], []))} for c in read_jsonl(candidates_file)]
    pairs, dropped = select_pairs(cands, run.cfg.pair_min_margin)
    write_json(out.with_name("pairs_stats.json"), {"kept": len(pairs), "dropped": dict(dropped)})
    write_jsonl(out, pairs)


# --- 5. DPO: a new adapter on top of M_t gives M_t+1 --------------------------------------

def train_round_adapter(run: Run, t: int, lm, pairs_file: Path, out: Path, ui=QuietUI()) -> None:
    from .errors import SrliteError
    from .model import save_adapter
    from .train import train_dpo

    pairs = read_jsonl(pairs_file)
    if not pairs:
        stats = read_json(pairs_file.with_name("pairs_stats.json"))
        raise SrliteError(
            f"{pairs_file}: round {t} produced no preference pairs (dropped: {stats['dropped']}), so there is "
            "nothing to train on. Look at the judge parse rate in judgments.jsonl; raise prompts_per_round or "
            "n_candidates in config.json, delete this round's folder, and run `srlite iterate` again."
        )
    with ui.progress("DPO steps", total=None) as advance:
        result = train_dpo(run.cfg, lm, pairs, on_step=lambda s, n: advance(1, total=n))
    save_adapter(lm, out, "dpo.json", result)


# --- summary ------------------------------------------------------------------------------

def summarize_round(run: Run, t: int, out: Path) -> dict:
    rd = run.round_dir(t)
    cands = read_jsonl(rd / CANDIDATES)
    judgments = read_jsonl(rd / JUDGMENTS)
    parsed = [j["score"] for j in judgments if j["score"] is not None]
    dpo = read_json(rd / ADAPTER / "dpo.json")
    metrics = {
        "round": t,
        "prompts": read_json(rd / "prompts_stats.json"),
        "candidates": {
            "total": len(cands),
            "truncated": sum(not c["finished"] for c in cands),
            "mean_chars": sum(len(c["response"]) for c in cands) / max(1, len(cands)),
        },
        "judgments": {
            "total": len(judgments),
            "parsed": len(parsed),
            "parse_rate": len(parsed) / max(1, len(judgments)),
            "unparsed": dict(Counter(j["parse"] for j in judgments if j["score"] is None)),
            "histogram": {str(s): parsed.count(s) for s in range(6)},
            "mean_score": sum(parsed) / len(parsed) if parsed else None,
        },
        "pairs": read_json(rd / "pairs_stats.json"),
        "dpo": {k: dpo[k] for k in ("steps", "first_loss", "last_loss", "reward_margin", "reward_accuracy")},
        "stage_seconds": {k: v["seconds"] for k, v in run.manifest().get("stages", {}).items()
                          if k.startswith(f"round{t}/")},
    }
    write_json(out, metrics)
    return metrics
