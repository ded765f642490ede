"""Expected-score judging (`judge_scoring: "expected"`): one justification per answer, then its score
read as the probability-weighted mean over the score tokens 0..5 at the position of its `Score: N`.

The judge writes its justification and `Score: N` as in sampled judging (generation stops right
after the digit); generation records, at every step, the model's own probabilities (softmax of its
final logits, before temperature or top-p) of the tokens that spell a digit 0..5 ("3", " 3", "▁3").
At the step that wrote the final score's digit, those probabilities, summed per digit and
renormalised over 0..5, give E[score] = Σ d·p(d). The score is continuous (fewer ties between
candidates), and one judgment replaces `judge_samples` (K× fewer generated tokens).

The judgment must still parse (rubric.parse_judgment): an unfinished or unparsable one stays
unparsed, as in sampled judging, never a number. Where the digit the judge wrote is not one of the
single-token digit spellings found (an unusual tokenizer), the score falls back to the written
integer and the record says `"expected": false`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .rubric import _SCORE_RE, MAX_SCORE, parse_judgment

# Where an expected-score judgment ends: right after its score's digit (the digit's distribution is all
# that is read; what the judge would write after it is not needed).
SCORE_STOP_STRINGS = tuple(f"Score: {n}" for n in range(MAX_SCORE + 1))


def digit_tokens(tok) -> dict[int, list[int]]:
    """digit d (0..5) -> the ids of the single tokens that decode to d, bare or after a space."""
    out = {}
    for d in range(MAX_SCORE + 1):
        found = set()
        for form in (str(d), "Ġ" + str(d), "▁" + str(d)):  # bare, byte-level BPE, SentencePiece
            i = tok.convert_tokens_to_ids(form)
            if isinstance(i, int) and i != tok.unk_token_id:
                found.add(i)
        for text in (str(d), " " + str(d)):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                found.add(ids[0])
        out[d] = sorted(i for i in found if tok.decode([i]).strip() == str(d))
    return out


@dataclass
class ScoreReader:
    """Reads expected scores from generated samples; `token_ids` go to generate(score_tokens=...)."""

    token_ids: list[int]
    digit_of: list[int]  # the digit each of token_ids spells

    @classmethod
    def for_tokenizer(cls, tok) -> "ScoreReader":
        pairs = [(i, d) for d, ids in digit_tokens(tok).items() for i in ids]
        return cls([i for i, _ in pairs], [d for _, d in pairs])

    def score(self, tok, sample, lead: str = "") -> tuple[float | None, str, bool]:
        """(score, parse status, whether it is the expected value) of one generated judgment; `lead`:
        the text before the generated part that belongs to it (a completion's "Score:", engine.py)."""
        parsed = parse_judgment(lead + sample.text, sample.finished)
        if parsed.score is None:
            return None, parsed.status, False
        step = digit_step(tok, sample.token_ids or [], lead)
        if step is None or sample.step_probs is None or sample.token_ids[step] not in self.token_ids:
            return float(parsed.score), parsed.status, False
        probs = [0.0] * (MAX_SCORE + 1)
        for p, d in zip(sample.step_probs[step].tolist(), self.digit_of):
            probs[d] += p
        total = sum(probs)
        if total <= 0:
            return float(parsed.score), parsed.status, False
        return sum(d * p for d, p in enumerate(probs)) / total, parsed.status, True


def digit_step(tok, ids: list[int], lead: str = "") -> int | None:
    """The index of the generated token that holds the digit of the text's final `Score: N`
    (`lead`: text before the generated ids, e.g. a completion's "Score:")."""
    text = lead + tok.decode(ids, skip_special_tokens=True)
    matches = list(_SCORE_RE.finditer(text))
    if not matches:
        return None
    at = matches[-1].start(1)
    if text[at] == "-":  # a negative number is out of range; parse_judgment said so already
        return None
    for k in range(len(ids)):
        if len(lead) + len(tok.decode(ids[: k + 1], skip_special_tokens=True)) > at:
            return k
    return None
