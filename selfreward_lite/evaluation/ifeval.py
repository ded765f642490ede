"""IFEval-format evaluation: instruction following measured by programs, not by a judge.

The public face of three modules: ifeval_data.py loads and validates google/IFEval-schema files
(`{"key", "prompt", "instruction_id_list", "kwargs"}` per line; the real 541-prompt
`input_data.jsonl` loads as is), ifeval_verifiers.py imports lm-eval's verifiers without any
network access, and this module scores answers and aggregates the scores.

Scoring calls lm-eval's own `test_instruction_following_strict` / `test_instruction_following_loose`,
so strict and loose scores are exactly lm-eval's (loose = also try the response without its first
line, without its last line, without both, and each of these with markdown asterisks removed).
Every scoring call runs under a `random` seed derived from the record key, so a score never
changes between runs (some verifiers fall back to random values). Optional extra:
`pip install 'selfreward-lite[ifeval]'`.

Statistics (`summarize`, `compare_rounds`): prompt- and instruction-level accuracy, strict and
loose, each a `Rate` with n and a 95 % Wilson interval; a per-instruction-type breakdown; paired
round-vs-round comparisons with the exact McNemar test. Instruction-level intervals treat
instructions as independent although several share a prompt, so they are somewhat too narrow:
the prompt level is the headline figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import SrliteError
from .ifeval_data import IFEvalRecord, bundled_heldout_path, load_heldout, load_ifeval, records_from_dicts
from .ifeval_verifiers import (EXTRA, SENTENCE_INSTRUCTIONS, _no_sentence_model, _seeded, _verifiers,
                               instruction_ids, unavailable_reason, verifier_info)
from .intervals import MIN_N, PairedComparison, Rate, format_rate, paired_comparison, rate


# --- scoring ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptResult:
    key: int | str
    prompt: str
    response: str
    instruction_id_list: tuple[str, ...]
    strict: tuple[bool, ...]          # per instruction
    loose: tuple[bool, ...]

    @property
    def prompt_strict(self) -> bool:
        return all(self.strict)

    @property
    def prompt_loose(self) -> bool:
        return all(self.loose)

    def to_dict(self) -> dict:
        return {"key": self.key, "prompt": self.prompt, "response": self.response,
                "instruction_id_list": list(self.instruction_id_list), "strict": list(self.strict),
                "loose": list(self.loose), "prompt_strict": self.prompt_strict, "prompt_loose": self.prompt_loose}

    @classmethod
    def from_dict(cls, d: Mapping) -> "PromptResult":
        return cls(key=d["key"], prompt=d["prompt"], response=d["response"],
                   instruction_id_list=tuple(d["instruction_id_list"]), strict=tuple(bool(x) for x in d["strict"]),
                   loose=tuple(bool(x) for x in d["loose"]))


def score_response(record: IFEvalRecord, response: str) -> PromptResult:
    """Strict and loose following of each instruction of `record` by `response` (lm-eval's code)."""
    if not isinstance(response, str):
        raise SrliteError(f"IFEval prompt {record.key!r}: the response must be a string, got "
                          f"{type(response).__name__} (a failed generation must be reported, not scored).")
    v = _verifiers()
    if v.sentence_model is None:
        for iid in record.instruction_id_list:
            if iid in SENTENCE_INSTRUCTIONS:
                raise SrliteError(f"IFEval prompt {record.key!r}: {_no_sentence_model(iid)}")
    inp = v.utils.InputExample(key=record.key, instruction_id_list=list(record.instruction_id_list),
                               prompt=record.prompt, kwargs=[dict(k) for k in record.kwargs])
    seed = f"srlite-ifeval:{record.key}"
    try:
        with _seeded(seed):
            strict = v.utils.test_instruction_following_strict(inp, response)
        with _seeded(seed):
            loose = v.utils.test_instruction_following_loose(inp, response)
    except KeyError as e:
        raise SrliteError(f"IFEval prompt {record.key!r}: unknown instruction id {e} "
                          f"(records should come from load_ifeval).") from None
    except LookupError as e:
        raise SrliteError(f"IFEval prompt {record.key!r}: a verifier needs NLTK data that is missing ({e}).") from None
    except Exception as e:
        raise SrliteError(f"IFEval prompt {record.key!r}: a verifier failed on this response: "
                          f"{type(e).__name__}: {e}") from None
    return PromptResult(key=record.key, prompt=record.prompt, response=response,
                        instruction_id_list=record.instruction_id_list,
                        strict=tuple(bool(x) for x in strict.follow_instruction_list),
                        loose=tuple(bool(x) for x in loose.follow_instruction_list))


def score_responses(records: Sequence[IFEvalRecord],
                    responses: Sequence[str] | Mapping[int | str, str]) -> list[PromptResult]:
    """Score one response per record: a sequence in the records' order, or a mapping key -> response."""
    if isinstance(responses, Mapping):
        missing = [r.key for r in records if r.key not in responses]
        if missing:
            raise SrliteError(f"no response for {len(missing)} of {len(records)} IFEval prompts "
                              f"(keys {', '.join(map(repr, missing[:5]))}{', ...' if len(missing) > 5 else ''}).")
        ordered = [responses[r.key] for r in records]
    else:
        if len(responses) != len(records):
            raise SrliteError(f"{len(responses)} responses for {len(records)} IFEval prompts; need one each.")
        ordered = list(responses)
    return [score_response(r, resp) for r, resp in zip(records, ordered)]


# --- aggregation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TypeBreakdown:
    name: str            # instruction id, or category (the part before ':')
    strict: Rate
    loose: Rate

    def to_dict(self) -> dict:
        return {"name": self.name, "strict": self.strict.to_dict(), "loose": self.loose.to_dict()}


@dataclass(frozen=True)
class IFEvalSummary:
    n_prompts: int
    n_instructions: int
    prompt_strict: Rate
    prompt_loose: Rate
    instruction_strict: Rate
    instruction_loose: Rate
    by_instruction: dict = field(default_factory=dict)   # instruction id -> TypeBreakdown
    by_category: dict = field(default_factory=dict)      # e.g. "keywords" -> TypeBreakdown

    def to_dict(self) -> dict:
        return {"n_prompts": self.n_prompts, "n_instructions": self.n_instructions,
                "prompt_strict": self.prompt_strict.to_dict(), "prompt_loose": self.prompt_loose.to_dict(),
                "instruction_strict": self.instruction_strict.to_dict(),
                "instruction_loose": self.instruction_loose.to_dict(),
                "by_instruction": {k: b.to_dict() for k, b in self.by_instruction.items()},
                "by_category": {k: b.to_dict() for k, b in self.by_category.items()}}

    def lines(self, *, by_instruction: bool = False) -> list[str]:
        """Plain-text lines for the terminal or report.md; every rate with n and its interval."""
        out = [f"IFEval-format accuracy ({self.n_prompts} prompts, {self.n_instructions} instructions)",
               f"  prompt-level strict       {self.prompt_strict}",
               f"  prompt-level loose        {self.prompt_loose}",
               f"  instruction-level strict  {self.instruction_strict}",
               f"  instruction-level loose   {self.instruction_loose}"]
        if by_instruction:
            width = max((len(k) for k in self.by_instruction), default=0)
            out.append("  by instruction (strict | loose):")
            out += [f"    {k:<{width}}  {b.strict} | {b.loose}" for k, b in sorted(self.by_instruction.items())]
        return out


def summarize(results: Sequence[PromptResult], *, min_n: int = MIN_N) -> IFEvalSummary:
    """Prompt- and instruction-level accuracy, strict and loose, each with n and a Wilson interval."""
    per_id: dict[str, list[int]] = {}
    per_cat: dict[str, list[int]] = {}
    inst_s = inst_l = n_inst = 0
    for r in results:
        for iid, s, lo in zip(r.instruction_id_list, r.strict, r.loose):
            n_inst += 1
            inst_s += s
            inst_l += lo
            for table, name in ((per_id, iid), (per_cat, iid.split(":", 1)[0])):
                c = table.setdefault(name, [0, 0, 0])
                c[0] += s
                c[1] += lo
                c[2] += 1
    n = len(results)

    def breakdown(table):
        return {k: TypeBreakdown(k, rate(s, m, min_n=min_n), rate(lo, m, min_n=min_n))
                for k, (s, lo, m) in sorted(table.items())}

    return IFEvalSummary(
        n_prompts=n, n_instructions=n_inst,
        prompt_strict=rate(sum(r.prompt_strict for r in results), n, min_n=min_n),
        prompt_loose=rate(sum(r.prompt_loose for r in results), n, min_n=min_n),
        instruction_strict=rate(inst_s, n_inst, min_n=min_n),
        instruction_loose=rate(inst_l, n_inst, min_n=min_n),
        by_instruction=breakdown(per_id), by_category=breakdown(per_cat))


def compare_rounds(before: Sequence[PromptResult], after: Sequence[PromptResult], *, level: str = "prompt",
                   mode: str = "strict", min_n: int = MIN_N) -> PairedComparison:
    """Paired comparison of two models on the same prompts (exact McNemar on pass/fail).

    `level` "prompt" (all instructions of a prompt followed) or "instruction"; `mode` "strict" or
    "loose". The two result lists must cover the same keys with the same prompts and instructions.
    """
    if level not in ("prompt", "instruction") or mode not in ("strict", "loose"):
        raise ValueError(f"level must be 'prompt' or 'instruction' and mode 'strict' or 'loose', "
                         f"got {level!r}, {mode!r}")
    a = {r.key: r for r in before}
    b = {r.key: r for r in after}
    if len(a) != len(before) or len(b) != len(after):
        raise SrliteError("compare_rounds: a result list contains the same key twice.")
    if a.keys() != b.keys():
        only_a, only_b = len(a.keys() - b.keys()), len(b.keys() - a.keys())
        raise SrliteError(f"compare_rounds needs the same prompts in both rounds: {only_a} only in the earlier "
                          f"round, {only_b} only in the later one.")
    xs, ys = [], []
    for key, ra in a.items():
        rb = b[key]
        if ra.prompt != rb.prompt or ra.instruction_id_list != rb.instruction_id_list:
            raise SrliteError(f"compare_rounds: prompt {key!r} differs between the two rounds "
                              f"(different prompt text or instructions under the same key).")
        if level == "prompt":
            xs.append(ra.prompt_strict if mode == "strict" else ra.prompt_loose)
            ys.append(rb.prompt_strict if mode == "strict" else rb.prompt_loose)
        else:
            xs += ra.strict if mode == "strict" else ra.loose
            ys += rb.strict if mode == "strict" else rb.loose
    return paired_comparison(xs, ys, min_n=min_n)


__all__ = [
    "EXTRA", "SENTENCE_INSTRUCTIONS", "IFEvalRecord", "PromptResult", "TypeBreakdown", "IFEvalSummary",
    "load_ifeval", "records_from_dicts", "bundled_heldout_path", "load_heldout", "score_response",
    "score_responses", "summarize", "compare_rounds", "verifier_info", "unavailable_reason", "instruction_ids",
    "format_rate",
]
