"""selfreward_lite: Self-Rewarding Language Models (Yuan et al., 2024) on one machine.

The Python API (the `srlite` command line calls exactly these):

    import selfreward_lite as srl

    run = srl.create_run("my-run", preset="cpu", overrides={"prompts_per_round": 8})
    srl.iterate(run.dir, rounds=2)                         # M1 by SFT, then M2 and M3 by self-rewarding DPO
    scores = srl.evaluate(run.dir)                         # judge quality and win rate of M1..M3 (cached)
    summary = srl.judge_file(run.dir, "answers.jsonl")     # score your own answers with the newest model
    srl.export_model(run.dir, 3, "m3-export")              # merged 16-bit model + folded LoRA adapter
    srl.export_pairs(run.dir, 1, "round1-dpo.jsonl")       # round 1's pairs in TRL's format
    srl.export(run.dir, 1, out="m1-export", pairs="r1.jsonl")  # both at once, as `srlite export` does
    print(srl.status(run.dir)["completed_rounds"], srl.build_report(run.dir)["report"])

Every function takes the run directory; errors a user can fix raise `SrliteError`. Importing this
package imports no model library (torch and friends load when a model is first needed).
"""

from .config import Config
from .errors import SrliteError
from .evaluation.runner import run_eval as evaluate
from .loop.pipeline import iterate
from .report.markdown import build_report
from .run.create import create_run
from .run.rundir import open_run
from .run.status import status
from .tools.export import export, export_model, export_pairs
from .tools.judge_file import judge_file
from .version import __version__

__all__ = [
    "Config", "SrliteError", "__version__",
    "create_run", "open_run", "iterate", "evaluate", "judge_file", "export", "export_model", "export_pairs",
    "status",
    "build_report",
]
