"""LLM-as-a-Judge scoring engine: K sampled judgments per (prompt, response), batched.

One implementation, used by the round's judging stage (loop/stages.judge_candidates), by
`srlite judge` and by the judge-quality evaluation. A judgment without a valid final
`Score: N` keeps score None with the parse status saying why; it never becomes a number. One that
simply ended without its score line is first asked for it (`complete_scores`, judge_complete_score).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Sequence

from ..models import generation
from ..run import seeds
from .expected import SCORE_STOP_STRINGS, ScoreReader
from .rubric import JUDGE_STOP_STRINGS, MAX_SCORE, NO_SCORE, build_judge_prompt, parse_judgment, parse_score

# What a judgment that ended without its score is continued from (complete_scores), and how many
# tokens the judge gets to write the number ("Score: 10" or "Score: 3.5" need 2-3 on common tokenizers).
COMPLETION_CUE = "\nScore:"
COMPLETION_TOKENS = 3


def judge_text(lm, rubric: str, item: dict) -> str:
    """The rendered judge prompt for one item ({"prompt", "response"})."""
    content = build_judge_prompt(item["prompt"], item["response"], rubric)
    return generation.render_chat(lm.tokenizer, [{"role": "user", "content": content}])


def rubric_prefix(lm, rubric: str) -> str:
    """The rendered start that every judge prompt with `rubric` shares: the chat template's header
    and the rubric text up to the first placeholder (both bundled rubrics put the whole rubric
    first; a rubric file that starts with a placeholder shares only the header)."""
    rendered = generation.render_chat(lm.tokenizer, [{"role": "user", "content": rubric}])
    cut = [rendered.find(p) for p in ("{instruction}", "{response}") if p in rendered]
    return rendered[: min(cut)] if cut else ""


def parse_judgments(item: dict, group, reader: ScoreReader | None = None, tok=None) -> list[dict]:
    """One record per sampled judgment of `item`:
    {"item_id", "sample", "text", "score" (int or None), "parse" (status), "finished"}. A judgment
    cut off by the token budget is unparsed with status "truncated" (rubric.parse_judgment). With
    `reader` (expected scoring) the score is the expected value (a float) and "expected" says whether
    it could be read (judging/expected.py)."""
    records = []
    for k, s in enumerate(group):
        rec = {"item_id": item["id"], "sample": k, "text": s.text, "finished": s.finished}
        if reader is None:
            parsed = parse_judgment(s.text, s.finished)
            rec.update(score=parsed.score, parse=parsed.status)
        else:
            score, status, is_expected = reader.score(tok, s)
            rec.update(score=score, parse=status, expected=is_expected)
        records.append(rec)
    return records


def samples_per_answer(cfg) -> int:
    """Judgments per answer: judge_samples, or one with expected scoring."""
    return 1 if cfg.judge_scoring == "expected" else cfg.judge_samples


def setup(lm, cfg, rubric: str, *, prefix_cache: bool = True) -> Callable[..., list[list[dict]]]:
    """judge(items, *, seed, batch_size, on_batch=None) -> each item's records (`parse_judgments`), for
    judging with `lm`: the sampling settings, the rubric's KV cache computed once here for every call
    (models/prefix.py; None where the backend cannot take it), with expected scoring the score tokens
    to record, and the completion of judgments that end without a score (`complete_scores`)."""
    share = prefix_cache and generation.prefix_usable(lm)
    kw = {**sampling(cfg), "prefix": generation.shared_prefix(lm, rubric_prefix(lm, rubric)) if share else None}
    reader = ScoreReader.for_tokenizer(lm.tokenizer) if cfg.judge_scoring == "expected" else None
    if reader is not None:
        kw["score_tokens"] = reader.token_ids

    def judge(items: Sequence[dict], *, seed: int, batch_size: int,
              on_batch: Callable[[int], None] | None = None) -> list[list[dict]]:
        texts = [judge_text(lm, rubric, it) for it in items]
        groups = generation.generate(lm, texts, samples_per_answer(cfg), batch_size=batch_size, seed=seed,
                                     on_batch=on_batch, **kw)
        records = [parse_judgments(it, g, reader, lm.tokenizer) for it, g in zip(items, groups)]
        if cfg.judge_complete_score:
            complete_scores(lm, texts, groups, records, reader, seed=seeds.score_completion(seed),
                            batch_size=batch_size, sampling=completion_sampling(kw))
        return records

    return judge


def completion_sampling(judge_sampling: dict) -> dict:
    """The settings of `complete_scores`'s continuations: the judge's own (`judge_sampling`, as
    `generation.generate` takes them), for COMPLETION_TOKENS tokens and without the judgment's stop
    strings (the score is what is asked for)."""
    return {**judge_sampling, "max_new_tokens": COMPLETION_TOKENS, "stop_strings": None}


def complete_scores(lm, texts: Sequence[str], groups, records: list[list[dict]], reader: ScoreReader | None, *,
                    seed: int, batch_size: int, sampling: dict) -> None:
    """Give each judgment that ended (EOS) without a "Score: N" one: its judge prompt and text, then
    COMPLETION_CUE, continued by the judge for a few tokens with the same sampling settings; the record
    is parsed again from `text + "\nScore: " + continuation` and marked "completed" (in place).

    Why: a small judge often writes its justification and stops (M1 of the embedded model: a fifth to a
    third of its judgments); the rubric asks it to conclude with its score, so asking for exactly that conclusion
    reads the judge's own verdict where it would otherwise be thrown away, for a few tokens instead of a
    whole new judgment. The justification is the judge's; only the cue is ours (the paper's format). A
    judgment cut off by the budget, or with an out-of-range or non-integer score, is left as it is."""
    todo = [(i, k) for i, recs in enumerate(records) for k, r in enumerate(recs) if r["parse"] == NO_SCORE]
    if not todo:
        return
    cont = generation.generate(lm, [texts[i] + groups[i][k].text + COMPLETION_CUE for i, k in todo], 1,
                               batch_size=batch_size, seed=seed, **sampling)
    for (i, k), [c] in zip(todo, cont):
        if reader is None:
            parsed = parse_score("Score:" + c.text)
            score, status = parsed.score, parsed.status
        else:  # the number is written (a few tokens, so rarely ended): read it, not "truncated"
            score, status, is_expected = reader.score(lm.tokenizer, dataclasses.replace(c, finished=True), lead="Score:")
            records[i][k]["expected"] = is_expected
        text = f"{groups[i][k].text}\nScore: {c.text.strip()}".rstrip()
        records[i][k].update(text=text, score=score, parse=status, completed=True)


def sampling(cfg) -> dict:
    """The judge's sampling settings, as generation.generate takes them: a judgment stops at EOS or
    right after its first complete "Score: N" line (rubric.JUDGE_STOP_STRINGS), with expected
    scoring right after the digit (expected.SCORE_STOP_STRINGS)."""
    stop = SCORE_STOP_STRINGS if cfg.judge_scoring == "expected" else JUDGE_STOP_STRINGS
    return {"temperature": cfg.judge_temperature, "top_p": cfg.judge_top_p, "max_new_tokens": cfg.judge_max_new_tokens,
            "top_k": cfg.top_k, "repetition_penalty": cfg.repetition_penalty, "stop_strings": list(stop)}


def judge_items(lm, cfg, rubric: str, items: Sequence[dict], *, seed: int,
                on_batch: Callable[[int], None] | None = None, prefix_cache: bool = True) -> list[dict]:
    """Judge each item ({"id", "prompt", "response"}) `samples_per_answer(cfg)` times with `rubric`.

    Returns the records of `parse_judgments`, in item order then sample order. All samples of
    an item share one prefill (generate with n = judge_samples), and all of them the rubric's (`setup`). (The round's judging stage
    uses the same `setup`, chunk by chunk, so that it can resume; see loop/stages.py.)
    """
    judge = setup(lm, cfg, rubric, prefix_cache=prefix_cache)
    groups = judge(items, seed=seed, batch_size=cfg.gen_batch_size, on_batch=on_batch)
    return [r for recs in groups for r in recs]


def scores_by_item(records: Sequence[dict]) -> dict[str, list[int | float | None]]:
    """item id -> its judgments' scores (None for unparsed), in sample order."""
    out: dict[str, list[int | None]] = {}
    for r in records:
        out.setdefault(r["item_id"], []).append(r["score"])
    return out


def judgment_summary(records: Sequence[dict]) -> dict:
    """How a set of judgments went: counts, parse rate (None for no judgments), why the unparsed
    ones failed, how many of the parsed were completed (`complete_scores`), the histogram of parsed
    scores 0..5 and their mean. The round summary, judge quality and `srlite judge` all report these.

    Scores may be fractional (a python judge): the histogram counts each in the bin of its nearest
    integer (x.5 goes up), so its bins still add up to `parsed`; `non_integer` says how many were
    binned so; the mean uses the exact scores."""
    parsed = [r["score"] for r in records if r["score"] is not None]
    bins = Counter(math.floor(s + 0.5) for s in parsed)
    return {
        "judgments": len(records),
        "parsed": len(parsed),
        "parse_rate": len(parsed) / len(records) if records else None,
        "unparsed": dict(Counter(r["parse"] for r in records if r["score"] is None)),
        "completed": sum(bool(r.get("completed")) for r in records if r["score"] is not None),
        "histogram": {str(s): bins[s] for s in range(MAX_SCORE + 1)},
        "non_integer": sum(s != math.floor(s) for s in parsed),
        "mean_score": sum(parsed) / len(parsed) if parsed else None,
    }
