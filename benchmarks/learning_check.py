"""Does the loop learn? The real loop (`srlite init` + `srlite iterate`) on the embedded model with a
judge that is known to be right: a `python:` judge (benchmarks/learning_judge.py) rewarding answers
of fewer than N words, a property IFEval's own verifier checks (`length_constraints:number_words`).
If the machinery works (pairs, stacked adapters, DPO against M_t), the share of held-out answers
with that property should rise from M1 to the last model.

    python benchmarks/learning_check.py                    # full: 3 rounds, N = 40 (1,075 s on a 2-core AMD EPYC)
    python benchmarks/learning_check.py --tiny --no-ifeval # reduced: 1 round on a few prompts (the test suite)

Held-out prompts: the bundled eval prompts (never generated, trained or judged on by this script's
run), each answered greedily by M1..M_last and checked by lm-eval's verifier, written as an
IFEval-schema file whose only instruction is the word limit (the prompt text does not ask for it:
the model has to have learned it). Printed per model: share with the property, n and a 95 % Wilson
interval, mean words; M_last vs M1 on the same prompts with the exact McNemar test; per round the
pairs, the DPO reward accuracy and margin, and the share of the round's sampled candidates with the
property; optionally (--ifeval N) IFEval-format accuracy on N bundled held-out IFEval prompts.

Exit status: 0 when M_last has the property on more held-out prompts than M1 with McNemar p < 0.05,
1 when it does not (learning not shown), 2 when the check could not run. --json FILE writes every
figure. Needs lm-eval's IFEval verifiers (the `ifeval` extra); run from the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
JUDGE_FILE = ROOT / "benchmarks" / "learning_judge.py"
LIMITS = (40, 12)  # word limits with a judge function in learning_judge.py
P_MAX = 0.05


def sizes(args) -> dict:
    """The run's settings: the cpu preset, a short SFT (M1 needs no judging skill: the judge is a
    program), no judge-based end-of-round evaluation (this script measures instead)."""
    tiny = args.tiny
    return {
        "rounds": args.rounds or (1 if tiny else 3),
        "ift": 4 if tiny else 32, "eft": 2 if tiny else 8,
        "heldout": args.heldout if args.heldout is not None else (4 if tiny else 0),
        "set": {
            "judge": f"python:{JUDGE_FILE}:under_{args.max_words}",
            "seed": args.seed, "sft_epochs": 1, "eval_each_round": False, "ifeval_each_round": False,
            "prompts_per_round": 3 if tiny else args.prompts_per_round,
            "n_candidates": 3 if tiny else 4,
            "prompt_max_new_tokens": 32 if tiny else 64,
            "response_max_new_tokens": 24 if tiny else args.response_tokens,
            "ifeval_max_new_tokens": 24 if tiny else 128,
            "dpo_epochs": 2 if tiny else args.dpo_epochs,  # tiny: 2 steps (the first one's margin is 0 by definition)
        },
    }


def sh(*cmd, log: Path) -> None:
    """The real CLI in a subprocess; its output goes to `log` (shown if it fails)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with log.open("a") as f:
        f.write(f"$ srlite {' '.join(map(str, cmd))}\n")
        f.flush()
        r = subprocess.run([sys.executable, "-m", "selfreward_lite", *map(str, cmd)], cwd=ROOT, env=env,
                           stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"srlite {cmd[0]} failed (exit {r.returncode}); log: {log}")


def slice_file(src: Path, n: int, out: Path) -> Path:
    out.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    return out


def heldout_file(limit_words: int, n: int, out: Path) -> Path:
    """The bundled eval prompts as an IFEval-schema file whose one instruction is the word limit."""
    from selfreward_lite.evaluation.ifeval_run import select
    from selfreward_lite.evaluation.winrate import bundled_eval_prompts, load_eval_prompts

    prompts = select(load_eval_prompts(bundled_eval_prompts(), 0), n)
    rows = [{"key": i, "prompt": p["prompt"], "instruction_id_list": ["length_constraints:number_words"],
             "kwargs": [{"relation": "less than", "num_words": limit_words}]} for i, p in enumerate(prompts)]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def run_loop(args, cfg: dict, work: Path) -> Path:
    from selfreward_lite.run.records import bundled_path

    run_dir, log = work / "run", work / "srlite.log"
    seed = [slice_file(bundled_path("ift"), cfg["ift"], work / "ift.jsonl"),
            slice_file(bundled_path("eft_train"), cfg["eft"], work / "eft.jsonl")]
    sets = [x for k, v in cfg["set"].items() for x in ("--set", f"{k}={json.dumps(v) if isinstance(v, bool) else v}")]
    if not (run_dir / "config.json").is_file():
        sh("init", "-d", run_dir, "--preset", "cpu", "--ift", seed[0], "--eft", seed[1], *sets, log=log)
    sh("iterate", "--rounds", cfg["rounds"], "-d", run_dir, log=log)
    return run_dir


def measure(run_dir: Path, cfg: dict, args, work: Path) -> dict:
    """Held-out property share per model, M_last vs M1, per-round training figures, optional IFEval."""
    from learning_judge import count_words

    from selfreward_lite.evaluation import ifeval, ifeval_run
    from selfreward_lite.evaluation.intervals import rate
    from selfreward_lite.models.cache import ModelCache
    from selfreward_lite.run.files import read_json, read_jsonl
    from selfreward_lite.run.rundir import open_run

    run = open_run(run_dir)
    last = cfg["rounds"] + 1
    models = ModelCache(run)
    held = ifeval_run.IFEvalSet(heldout_file(args.max_words, cfg["heldout"], work / "heldout.jsonl"), 0)
    wanted = list(range(1, last + 1))
    ev = ifeval_run.evaluate_models(run, wanted, models, held)
    first_vs_last = ifeval_run.comparison(run, last, 1, models, held)
    out = {"models": {}, "rounds": [], "first_vs_last": first_vs_last["prompt_strict"],
           "per_round": [c["prompt_strict"] for c in ev["comparisons"]]}
    for n, scores in zip(wanted, ev["models"]):
        answers = ifeval_run.model_answers(run, n, models, held)
        words = [count_words(a["response"]) for a in answers]
        out["models"][f"M{n}"] = {"property": scores["prompt_strict"], "mean_words": sum(words) / len(words),
                                  "cut_at_budget": scores["answers"]["cut_at_budget"]}
    for t in range(1, cfg["rounds"] + 1):
        rd = run.round_dir(t)
        m = read_json(rd / "metrics.json")
        judged = read_jsonl(rd / "judgments.jsonl")
        has = sum(j["score"] == 5 for j in judged)
        out["rounds"].append({"round": t, "pairs": m["pairs"]["kept"], "dpo_steps": m["dpo"]["steps"],
                              "reward_accuracy": m["dpo"]["reward_accuracy"], "reward_margin": m["dpo"]["reward_margin"],
                              "candidates_with_property": rate(has, len(judged)).to_dict()})
    if args.ifeval:
        r = dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, ifeval_max_new_tokens=128))
        s = ifeval_run.IFEvalSet(ifeval.bundled_heldout_path(), args.ifeval)
        ife = ifeval_run.evaluate_models(r, [1, last], models, s, compare_with_previous=False)
        out["ifeval"] = {"models": {m["model"]: m["prompt_strict"] for m in ife["models"]},
                         "first_vs_last": ifeval_run.comparison(r, last, 1, models, s)["prompt_strict"]}
    models.release()
    return out


def machine() -> str:
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} CPUs"


def verdict(first_vs_last: dict) -> tuple[bool, str]:
    c = first_vs_last
    learned = c["improved"] > c["worsened"] and c["p_value"] < P_MAX
    return learned, ("LEARNED: " if learned else "NOT SHOWN: ") + c["text"]


def report(res: dict, cfg: dict, args, seconds: float) -> str:
    lines = [f"learning check: judge = fewer than {args.max_words} words (lm-eval length_constraints:number_words); "
             f"{cfg['rounds']} round(s), seed {args.seed}, {seconds:.0f} s on {res['machine']}",
             f"held-out prompts (greedy answers, strict verifier): share with the property, n, 95% Wilson interval"]
    for name, m in res["models"].items():
        lines.append(f"  {name}: {m['property']['text']:<34} mean words {m['mean_words']:6.1f}, cut at budget {m['cut_at_budget']}")
    lines.append(f"  M{cfg['rounds'] + 1} vs M1 (paired): {res['first_vs_last']['text']}")
    for r in res["rounds"]:
        lines.append(f"  round {r['round']}: {r['pairs']} pairs, {r['dpo_steps']} DPO steps, reward accuracy "
                     f"{r['reward_accuracy']:.2f}, margin {r['reward_margin']:.3f}; candidates with the property "
                     f"{r['candidates_with_property']['text']}")
    if "ifeval" in res:
        for name, m in res["ifeval"]["models"].items():
            lines.append(f"  IFEval-format prompt-level strict, {name}: {m['text']}")
        lines.append(f"  IFEval M_last vs M1 (paired): {res['ifeval']['first_vs_last']['text']}")
    lines.append(res["verdict"])
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="reduced sizes (the test suite): 1 round, few prompts, short answers")
    ap.add_argument("--rounds", type=int, default=0, help="rounds (default 3; 1 with --tiny)")
    ap.add_argument("--max-words", type=int, choices=LIMITS, default=None, help="the word limit rewarded (default 40; 12 with --tiny)")
    ap.add_argument("--prompts-per-round", type=int, default=48)
    ap.add_argument("--dpo-epochs", type=float, default=2.0)
    ap.add_argument("--response-tokens", type=int, default=160, help="token budget of a candidate answer (a cut-off "
                    "answer is never paired: a larger budget gives more pairs)")
    ap.add_argument("--heldout", type=int, default=None, help="held-out prompts (default all 36; 4 with --tiny)")
    ap.add_argument("--ifeval", type=int, default=30, help="also IFEval-format accuracy of M1 and M_last on N bundled prompts")
    ap.add_argument("--no-ifeval", dest="ifeval", action="store_const", const=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep the run here (default: a temporary folder); reruns reuse it")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    args = ap.parse_args(argv)
    args.max_words = args.max_words or (12 if args.tiny else 40)
    sys.path.insert(0, str(JUDGE_FILE.parent))

    from selfreward_lite.evaluation.ifeval_run import unavailable_reason

    if unavailable_reason():
        print(f"learning check cannot run: {unavailable_reason()}", file=sys.stderr)
        return 2
    cfg = sizes(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        run_dir = run_loop(args, cfg, work)
        res = measure(run_dir, cfg, args, work)
    seconds = time.perf_counter() - start
    res.update(machine=machine(),
               settings=cfg, max_words=args.max_words, seconds=seconds)
    learned, res["verdict"] = verdict(res["first_vs_last"])
    res["learned"] = learned
    print(report(res, cfg, args, seconds))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0 if learned else 1


if __name__ == "__main__":
    sys.exit(main())
