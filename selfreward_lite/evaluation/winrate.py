"""Instruction following: M_new vs M_old head to head on held-out prompts.

Each model answers the prompts once (cached under <run>/eval/m<N>/). The judge (`winrate_judge`
or `srlite eval --judge`; default M1, a fixed model: a model judging itself favours itself) is a
model of the run, a local model folder, an OpenAI-compatible endpoint or the newer model itself
("self"): it sees each pair of answers in both orders (A/B and B/A), so a judge that always
prefers one position scores both models equally, and ends with a verdict "Winner: A|B|tie". A
python judge instead scores each answer: the higher score wins, equal scores tie (one verdict per
prompt). Unparsable verdicts are counted apart, never as a win, loss or tie.
Mean answer length per model is reported next to the win rate, so length drift is visible.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import SrliteError
from ..judging.judges import external_judge, judge_key, load_python_function, python_score
from ..judging.spec import JudgeSpec, parse_judge_spec, resolved
from ..models import generation
from ..models.cache import ModelCache
from ..run import seeds
from ..run.files import read_json, read_jsonl, write_json, write_jsonl
from ..run.records import bundled_path, read_jsonl_file
from ..run.rundir import Run, cache_key
from ..ui import QuietUI
from .intervals import exact_mcnemar_p, rate
from .intervals import win_rate as win_rate_interval

PAIRWISE_TEMPLATE = """Compare two responses to the user's question and decide which one is better: more relevant, more helpful, more accurate, clearer, and without extraneous content. The order of the responses and their length must not influence you.

User: {instruction}
<response A>{a}</response A>
<response B>{b}</response B>

Briefly explain your choice, up to 50 words, then conclude with "Winner: A", "Winner: B" or "Winner: tie"."""

# "Winner: A", "**Winner:** B", "winner = tie". The last match wins, as for scores.
_VERDICT_RE = re.compile(r"winner\s*\**\s*[:=]\s*\**\s*(a|b|tie)\b", re.IGNORECASE)


def build_pairwise_prompt(instruction: str, a: str, b: str) -> str:
    # str.replace, not str.format: user text may contain braces.
    return (PAIRWISE_TEMPLATE.replace("{instruction}", instruction.strip())
            .replace("{a}", a.strip()).replace("{b}", b.strip()))


def parse_verdict(text: str) -> str | None:
    """"A", "B" or "tie"; None when the judge gave no parsable verdict."""
    matches = _VERDICT_RE.findall(text or "")
    if not matches:
        return None
    v = matches[-1].lower()
    return "tie" if v == "tie" else v.upper()


# --- prompts and responses ------------------------------------------------------------------

def bundled_eval_prompts() -> Path:
    return bundled_path("eval_prompts")


def prompts_source(run: Run, source: Path | str | None = None) -> Path:
    source = source or run.cfg.eval_prompts_data
    return bundled_eval_prompts() if source == "bundled" else Path(source).expanduser()


def prompt_limit(run: Run, source: Path) -> int:
    """The bundled set is cut to `eval_prompts` (sized for the per-round cost); a user's file is used whole."""
    return run.cfg.eval_prompts if source == bundled_eval_prompts() else 0


def load_eval_prompts(path: Path, limit: int = 0) -> list[dict]:
    """{"id", "prompt"} per line of a JSONL file of {"prompt": "..."} (an "id" is optional)."""
    out, seen = [], set()
    for line, rec in read_jsonl_file(path):
        where = f"{path}, line {line}"
        if not isinstance(rec, dict):
            raise SrliteError(f"{where}: expected a JSON object with a 'prompt' field.")
        if not isinstance(rec.get("prompt"), str) or not rec["prompt"].strip():
            raise SrliteError(f"{where}, field 'prompt': missing or not a non-empty string.")
        pid = rec.get("id", f"e{len(out):04d}")
        if not isinstance(pid, (str, int)) or str(pid) in seen:
            raise SrliteError(f"{where}, field 'id': must be a unique string or integer.")
        seen.add(str(pid))
        out.append({"id": str(pid), "prompt": rec["prompt"]})
    if not out:
        raise SrliteError(f"{path}: contains no prompts.")
    return out[:limit] if limit else out


def responses_path(run: Run, n: int, source: Path) -> Path:
    cfg = run.cfg
    if not source.is_file():
        raise SrliteError(f"{source}: no such file (eval prompts).")
    key = cache_key(source.read_bytes(), prompt_limit(run, source), cfg.eval_max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed,
                    cfg.top_k, cfg.repetition_penalty)
    return run.responses_path(n, key)


def model_name(spec: int | str | JudgeSpec) -> str:
    return f"M{spec}" if isinstance(spec, int) else spec.label if isinstance(spec, JudgeSpec) else str(spec)


def model_responses(run: Run, n: int, models: ModelCache, source: Path, ui=QuietUI()) -> list[dict]:
    """M_n's answer to each eval prompt (one sample, the candidates' sampling settings), cached."""
    out = responses_path(run, n, source)
    if out.is_file():
        return read_jsonl(out)
    cfg = run.cfg
    prompts = load_eval_prompts(source, prompt_limit(run, source))
    lm = models.get(n)
    texts = [generation.render_chat(lm.tokenizer, [{"role": "user", "content": p["prompt"]}]) for p in prompts]
    with ui.progress(f"M{n} answers eval prompts", total=len(prompts)) as advance:
        samples = generation.generate(lm, texts, 1, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                                      repetition_penalty=cfg.repetition_penalty,
                                      max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.gen_batch_size,
                                      seed=seeds.evaluation(cfg.seed), on_batch=advance)
    rows = [{"id": p["id"], "prompt": p["prompt"], "response": s.text, "finished": s.finished, "tokens": s.n_tokens}
            for p, (s,) in zip(prompts, samples)]
    write_jsonl(out, rows)
    return rows


# --- the head-to-head -----------------------------------------------------------------------

def resolve_judge(spec: str, new: int) -> int | str | JudgeSpec:
    """"self" (or "newest") -> the newer model of the pair; "m3" -> M3; a model folder -> its absolute
    path; a python or openai judge -> its parsed spec (a relative file made absolute)."""
    s = parse_judge_spec(spec, "winrate judge")
    if s.kind == "self":
        return new
    if s.round is not None:
        return s.round
    if s.external:
        return resolved(s)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise SrliteError(f"winrate judge {spec!r}: not 'self', 'm<N>', 'python:FILE.py:FUNCTION' or "
                          "'openai:BASE_URL#MODEL', nor an existing model folder.")
    return str(path.resolve())


def win_rate_path(run: Run, new: int, old: int, judge: int | str | JudgeSpec, source: Path) -> Path:
    cfg = run.cfg
    key = cache_key(responses_path(run, new, source).name, responses_path(run, old, source).name,
                    judge_key(judge) if isinstance(judge, JudgeSpec) else judge,
                    cfg.eval_max_new_tokens, cfg.judge_temperature, cfg.judge_top_p, cfg.top_k, cfg.repetition_penalty)
    return run.win_rate_path(new, old, key)


def win_rate(run: Run, new: int, old: int, models: ModelCache, source: Path | None = None, ui=QuietUI()) -> dict:
    """M_new vs M_old on the eval prompts, judged by `winrate_judge` (cached)."""
    cfg = run.cfg
    source = prompts_source(run, source)
    judge = resolve_judge(cfg.winrate_judge, new)
    out = win_rate_path(run, new, old, judge, source)
    if out.is_file():
        return read_json(out)
    # Old model first: when the judge is the new model ("self"), it is loaded once for both jobs.
    old_rows = model_responses(run, old, models, source, ui)
    new_rows = model_responses(run, new, models, source, ui)
    if isinstance(judge, JudgeSpec) and judge.kind == "python":
        verdicts = score_verdicts(load_python_function(judge), new_rows, old_rows)
    else:
        title = f"{model_name(judge)} compares M{new} with M{old}"
        verdicts = pairwise_verdicts(run, judge, models, new_rows, old_rows, title, ui)
    write_jsonl(out.with_suffix(".jsonl"), verdicts)
    result = {"new": f"M{new}", "old": f"M{old}", "judge": model_name(judge), "source": str(source),
              **win_rate_summary(verdicts, new_rows, old_rows)}
    write_json(out, result)
    return result


def pairwise_verdicts(run: Run, judge, models: ModelCache, new_rows: list[dict], old_rows: list[dict], title: str,
                      ui=QuietUI()) -> list[dict]:
    """A judge model or endpoint picks the better answer of each prompt, in both presentation orders."""
    cfg = run.cfg
    jobs = []  # (prompt id, which model is A, prompt text)
    for o, n in zip(old_rows, new_rows):
        jobs.append((n["id"], "new", build_pairwise_prompt(n["prompt"], n["response"], o["response"])))
        jobs.append((n["id"], "old", build_pairwise_prompt(n["prompt"], o["response"], n["response"])))
    with ui.progress(title, total=len(jobs)) as advance:
        if isinstance(judge, JudgeSpec):  # an endpoint: the pairwise prompt as the user message
            endpoint = external_judge(judge, cfg)
            try:
                replies = endpoint.complete([text for *_, text in jobs], [seeds.batch(seeds.verdicts(cfg.seed), i)
                                            for i in range(len(jobs))], cfg.eval_max_new_tokens, on_done=advance)
            finally:
                endpoint.close()
            texts = [r.rejected or r.text for r in replies]
            valid = [r.rejected is None for r in replies]
        else:
            lm = models.get(judge)
            rendered = [generation.render_chat(lm.tokenizer, [{"role": "user", "content": text}]) for *_, text in jobs]
            samples = generation.generate(lm, rendered, 1, temperature=cfg.judge_temperature, top_p=cfg.judge_top_p,
                                          top_k=cfg.top_k, repetition_penalty=cfg.repetition_penalty,
                                          max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.gen_batch_size,
                                          seed=seeds.verdicts(cfg.seed), on_batch=advance)
            texts, valid = [s.text for (s,) in samples], [True] * len(jobs)
    verdicts = []
    for (pid, new_is, _), text, ok in zip(jobs, texts, valid):
        v = parse_verdict(text) if ok else None
        outcome = None if v is None else "tie" if v == "tie" else ("win" if (v == "A") == (new_is == "new") else "loss")
        verdicts.append({"prompt_id": pid, "a": new_is, "text": text, "verdict": v, "outcome": outcome})
    return verdicts


def score_verdicts(fn, new_rows: list[dict], old_rows: list[dict]) -> list[dict]:
    """A python judge scores both answers of each prompt: the higher score wins, equal is a tie, an
    unparsed score on either side leaves the verdict unparsed. No presentation order (one per prompt)."""
    verdicts = []
    for n, o in zip(new_rows, old_rows):
        sn, pn, tn = python_score(fn, n["prompt"], n["response"])
        so, po, to = python_score(fn, o["prompt"], o["response"])
        outcome = None if sn is None or so is None else "tie" if sn == so else "win" if sn > so else "loss"
        verdicts.append({"prompt_id": n["id"], "a": None, "text": f"new {tn} ({pn}); old {to} ({po})",
                         "verdict": {"win": "new", "loss": "old", "tie": "tie", None: None}[outcome],
                         "outcome": outcome, "score_new": sn, "score_old": so})
    return verdicts


def win_rate_summary(verdicts: list[dict], new_rows: list[dict], old_rows: list[dict]) -> dict:
    """Counts from the new model's side; win rate = (wins + ties / 2) / parsed verdicts."""
    count = {k: sum(v["outcome"] == k for v in verdicts) for k in ("win", "loss", "tie")}
    parsed = sum(count.values())
    picked_a = sum(v["verdict"] == "A" for v in verdicts)
    picked_ab = sum(v["verdict"] in ("A", "B") for v in verdicts)

    def mean_chars(rows):
        return sum(len(r["response"]) for r in rows) / len(rows) if rows else None

    # Paired by prompt: a prompt's verdicts (both orders) count once, for the side they favour on balance.
    net: dict = {}
    for v in verdicts:
        if v["outcome"] is not None:
            net[v["prompt_id"]] = net.get(v["prompt_id"], 0) + {"win": 1, "loss": -1, "tie": 0}[v["outcome"]]
    better, worse = sum(x > 0 for x in net.values()), sum(x < 0 for x in net.values())

    return {
        "prompts": len(new_rows),
        "verdicts": len(verdicts),
        "wins": count["win"], "losses": count["loss"], "ties": count["tie"],
        "unparsed": len(verdicts) - parsed,
        "win_rate": (count["win"] + count["tie"] / 2) / parsed if parsed else None,
        # how often the judge picked the first answer: far from 0.5 means position bias (cancelled by both orders)
        "picked_first": picked_a / picked_ab if picked_ab else None,
        "mean_chars": {"new": mean_chars(new_rows), "old": mean_chars(old_rows)},
        "mean_tokens": {"new": sum(r["tokens"] for r in new_rows) / max(1, len(new_rows)),
                        "old": sum(r["tokens"] for r in old_rows) / max(1, len(old_rows))},
        # n and 95 % Wilson intervals (a tie counts half); the sign test counts each prompt once
        "intervals": {"win_rate": win_rate_interval(count["win"], count["loss"], count["tie"]).to_dict(),
                      "picked_first": rate(picked_a, picked_ab).to_dict()},
        "by_prompt": {"prompts": len(net), "new_better": better, "old_better": worse,
                      "even": len(net) - better - worse, "p_value": exact_mcnemar_p(better, worse),
                      "test": "two-sided exact sign test over prompts with a parsed verdict (even ones left out)"},
    }


def cached_win_rate(run: Run, new: int, old: int) -> dict | None:
    """The default-settings win rate of M_new vs M_old if it was computed (for reports)."""
    try:  # a report must not fail because an eval input has moved since
        p = win_rate_path(run, new, old, resolve_judge(run.cfg.winrate_judge, new), prompts_source(run))
    except SrliteError:
        return None
    return read_json(p) if p.is_file() else None
