"""The held-out texts: every prompt or question the evaluation asks, in one list.

Training data must stay away from them, or the evaluation measures memory: the prompts a round
writes are filtered against this list (ROUGE-L, loop/self_instruction.PromptFilter, drop reason
"near an eval prompt"), nothing on it is ever a few-shot example, and the bundled seeds are
checked against it (tests/unit/evaluation/test_heldout.py). A new evaluation set is added here.

    the win-rate prompts         config eval_prompts_data (bundled data/eval_prompts.jsonl), the whole file
    the EFT-eval questions       the run's seed/eft_eval.jsonl (the question inside each judge prompt)
    the IFEval held-out prompts  data/ifeval_heldout.jsonl ("prompt" of each record), when the file exists
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..judging.rubric import RUBRIC_TEMPLATE, load_rubric, split_judge_prompt
from ..run.files import read_jsonl
from ..run.records import read_jsonl_file
from ..run.rundir import Run
from .winrate import load_eval_prompts, prompts_source

IFEVAL_HELDOUT = "ifeval_heldout.jsonl"


def ifeval_heldout_path() -> Path:
    return Path(str(resources.files("selfreward_lite") / "data" / IFEVAL_HELDOUT))


def ifeval_prompts(path: Path | None = None) -> list[str]:
    """The "prompt" of each record of an IFEval-format file ([] when the bundled file is absent)."""
    path = path or ifeval_heldout_path()
    if not path.is_file():
        return []
    return [rec["prompt"] for _, rec in read_jsonl_file(path) if isinstance(rec, dict) and isinstance(rec.get("prompt"), str)]


def eft_questions(records: list[list[dict]], rubric: str) -> list[str]:
    """The question inside each judge example's prompt (written with `rubric` or the paper's)."""
    out = []
    for messages in records:
        for m in messages:
            if m["role"] == "user":
                parts = split_judge_prompt(m["content"], rubric) or split_judge_prompt(m["content"], RUBRIC_TEMPLATE)
                if parts:
                    out.append(parts[0])
    return out


def heldout_prompts(run: Run) -> list[str]:
    """Every held-out text of the run (see the module doc), each once, in a stable order."""
    texts = [p["prompt"] for p in load_eval_prompts(prompts_source(run))]
    texts += eft_questions([r["messages"] for r in read_jsonl(run.seed_path("eft_eval"))], load_rubric(run.cfg.rubric))
    texts += ifeval_prompts()
    return list(dict.fromkeys(texts))
