"""The one seed scheme gives the numbers the stages used before it was one scheme (so a run made
before and after the restructuring has the same records for the same `seed`)."""

from selfreward_lite.run import seeds


def test_round_stages_and_their_batches():
    # was stages.stage_seed: seed * 1000 + t * 10 + stage, and stage_seed * 1000 + batch per batch
    assert [seeds.stage(0, 1, k) for k in (seeds.PROMPTS, seeds.CANDIDATES, seeds.JUDGING)] == [11, 12, 13]
    assert seeds.stage(7, 2, seeds.JUDGING) == 7023
    assert seeds.batch(seeds.stage(7, 2, seeds.JUDGING), 5) == 7_023_005


def test_evaluation_judge_file_and_chat():
    # was evaluate.eval_seed (seed * 1000 + 901), + 1 for win-rate verdicts, judgefile's offset 902,
    # and chat's seed + turn
    assert seeds.evaluation(7) == 7901 and seeds.verdicts(7) == seeds.evaluation(7) + 1 == 7902
    assert seeds.judge_file(7) == 7902
    assert seeds.chat_turn(7, 3) == 10


def test_generate_calls_adapters_and_trainers():
    # was model.generate's torch.manual_seed(seed * 1_000_003 + call), load_stack's manual_seed(cfg.seed),
    # and the trainers' seed / data_seed
    assert seeds.generate_call(13_000, 2) == 13_000 * 1_000_003 + 2
    assert seeds.training(7) == 7
    # was load_stack's manual_seed(cfg.seed) for every round's adapter; now each round has its own
    assert [seeds.adapter_init(7, t) for t in (0, 1, 2)] == [7004, 7014, 7024]
