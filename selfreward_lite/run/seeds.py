"""One seed scheme: every random draw of a run derives from the config's `seed` (s) here.

    purpose                                         seed
    ----------------------------------------------  -------------------------------------------
    round t, stage k (1 prompts, 2 candidates,      stage(s, t, k)       = s * 1000 + 10 t + k
      3 judging, 5 pair selection)
      its batch / chunk b (pair selection: the      batch(stage, b)      = stage * 1000 + b
        tie-breaks of prompt b)
    end-of-round and `srlite eval`: answers and     evaluation(s)        = s * 1000 + 901
      judge quality (one seed for every model, so
      differences come from the model)
      win-rate verdicts                             verdicts(s)          = s * 1000 + 902
    `srlite judge`                                  judge_file(s)        = s * 1000 + 902
    `srlite chat`, turn i                           chat_turn(s, i)      = s + i
    one `generate` call c with seed x               generate_call(x, c)  = x * 1_000_003 + c
      the score completions of the judgments made   score_completion(x)  = x * 1_000_003 + 999_999
        with seed x (judging/engine.py)
    the new adapter trained in round t (t = 0:      adapter_init(s, t)   = s * 1000 + 10 t + 4
      M1's SFT adapter): its random A, on both
      backends, and again after an out-of-memory
      retry (so the retry starts where the first
      attempt did)
    the trainers (shuffling, dropout)               training(s)          = s

A seed depends only on what is being made, never on how many times a process was restarted, so
a resumed run makes the same records as an uninterrupted one.
"""

from __future__ import annotations

PROMPTS, CANDIDATES, JUDGING = 1, 2, 3  # the sampling stages of a round
ADAPTER_INIT = 4  # the round's new adapter (its random A)
PAIRS = 5  # the pairs stage (ties broken at random)
EVALUATION, VERDICTS, JUDGE_FILE = 901, 902, 902  # offsets outside the rounds' range
GENERATE_STRIDE = 1_000_003  # a prime, so the calls of different seeds do not meet
COMPLETION_CALL = 999_999  # beyond any batch count of one `generate`


def stage(s: int, t: int, k: int) -> int:
    """Round t's stage k (PROMPTS, CANDIDATES, JUDGING or PAIRS)."""
    return s * 1000 + t * 10 + k


def batch(stage_seed: int, b: int) -> int:
    """Batch (or chunk) b of a stage: the same whether or not the stage was restarted."""
    return stage_seed * 1000 + b


def evaluation(s: int) -> int:
    return s * 1000 + EVALUATION


def verdicts(s: int) -> int:
    return s * 1000 + VERDICTS


def judge_file(s: int) -> int:
    return s * 1000 + JUDGE_FILE


def chat_turn(s: int, turn: int) -> int:
    return s + turn


def generate_call(seed: int, call: int) -> int:
    return seed * GENERATE_STRIDE + call


def adapter_init(s: int, t: int) -> int:
    """Round t's new adapter (t = 0: M1's), so no two rounds start from the same random A."""
    return stage(s, t, ADAPTER_INIT)


def training(s: int) -> int:
    return s


def score_completion(seed: int) -> int:
    """The seed of the pass that completes the judgments a `generate` with `seed` left without a score."""
    return generate_call(seed, COMPLETION_CALL)
