"""The `srlite` command line: each command parses options and calls one library function."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .errors import SrliteError

app = typer.Typer(
    help="Self-Rewarding Language Models on one machine: the model writes prompts, answers them, "
    "judges its answers and trains itself with DPO, round after round. Start with `srlite init`, "
    "then `srlite iterate --rounds 3`.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # never print local variables (tokens, paths) in a crash
    add_completion=False,
)

RUN_DIR = typer.Option(
    Path("srlite-run"), "--run-dir", "-d", envvar="SRLITE_RUN_DIR",
    help="The run directory (config, seed data, adapters, artifacts). Env: SRLITE_RUN_DIR.",
)


def _fail(error: SrliteError) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def init(
    run_dir: Path = RUN_DIR,
    model: str = typer.Option("embedded", "--model", "-m", help="Base model: 'embedded' (bundled SmolLM2-135M-Instruct), a Hugging Face id, or a local folder."),
    preset: str = typer.Option("auto", "--preset", help="Defaults sized for the hardware: 'cpu', 'gpu', or 'auto' (gpu when CUDA is present)."),
    ift: Optional[str] = typer.Option(None, "--ift", help="Instruction-following seed data: JSONL of {\"messages\": [...]} or a Hugging Face dataset id. Default: bundled."),
    eft: Optional[str] = typer.Option(None, "--eft", help="Judge-training seed data (rubric prompt -> justification + 'Score: N'), same format. Default: bundled."),
    eft_eval: Optional[str] = typer.Option(None, "--eft-eval", help="Held-out judge examples, never trained on. Default: bundled."),
    set_: List[str] = typer.Option([], "--set", help="Override any config field, e.g. --set prompts_per_round=64 (repeatable). See config.json for all fields."),
) -> None:
    """Create a run: resolved config.json, validated copies of the seed data, and a manifest."""
    from .runs import init_run, parse_overrides

    try:
        overrides = parse_overrides(set_)
        overrides.setdefault("model", model)
        for key, value in (("ift_data", ift), ("eft_train_data", eft), ("eft_eval_data", eft_eval)):
            if value is not None:
                overrides[key] = str(Path(value).resolve()) if Path(value).exists() else value
        if preset == "auto":
            from .model import cuda_available

            preset = "gpu" if cuda_available() else "cpu"
        run = init_run(run_dir, preset=preset, overrides=overrides)
    except SrliteError as e:
        _fail(e)
    typer.echo(f"Initialised {run.dir} (model: {run.cfg.model}, preset: {run.cfg.preset}).")
    typer.echo(f"Edit {run.config_path} if you like, then run: srlite iterate --rounds 3")


@app.command()
def iterate(
    rounds: int = typer.Option(3, "--rounds", "-n", min=1, help="Total number of self-rewarding rounds the run should have. Finished rounds and stages are kept, so re-running continues where it stopped."),
    run_dir: Path = RUN_DIR,
) -> None:
    """Train M1 (SFT on the seed data) if missing, then run self-rewarding rounds up to --rounds."""
    from .display import RichUI
    from .pipeline import iterate as run_iterate

    ui = RichUI()
    try:
        run_iterate(run_dir, rounds, ui)
    except SrliteError as e:
        _fail(e)
    except KeyboardInterrupt:
        ui.info("[yellow]Interrupted.[/] Finished stages are kept; run the same command again to continue.")
        raise typer.Exit(code=130)
    ui.info(f"[bold green]Done:[/] {rounds} round(s) in {run_dir}. The newest model is M{rounds + 1}.")


@app.command()
def status(run_dir: Path = RUN_DIR) -> None:
    """Show what exists in the run: M1, each round's artifacts and counts."""
    from .display import status_table
    from .runs import open_run, run_status

    try:
        info = run_status(open_run(run_dir))
    except SrliteError as e:
        _fail(e)
    from rich.console import Console

    Console().print(status_table(info))


@app.command()
def judge(
    input_file: Path = typer.Argument(..., help="JSONL: {\"prompt\", \"response\"} per line, or pairs {\"prompt\", \"a\", \"b\", \"label\": \"a\"|\"b\" (optional)}; an \"id\" is optional."),
    round_: Optional[int] = typer.Option(None, "--round", "-r", min=0, help="Judge with M_N (M0 base, M1 after SFT, M_t+1 after round t). Default: the newest model."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder. Default: <run>/judge/<input name>-m<N>/."),
    run_dir: Path = RUN_DIR,
) -> None:
    """Score any JSONL of answers (or answer pairs) with one of the run's models and the run's rubric."""
    from .display import RichUI
    from .judgefile import judge_file
    from .report import judge_file_table

    ui = RichUI()
    try:
        summary = judge_file(run_dir, input_file, round_, out, ui)
    except SrliteError as e:
        _fail(e)
    except KeyboardInterrupt:
        ui.info("[yellow]Interrupted.[/] Nothing was written.")
        raise typer.Exit(code=130)
    ui.info(judge_file_table(summary))


@app.command(name="eval")
def eval_(
    round_: Optional[int] = typer.Option(None, "--round", "-r", min=0, help="Evaluate only M_N (and M_N vs M_N-1). Default: every model M1..newest."),
    eft: Optional[Path] = typer.Option(None, "--eft", help="Ranked answers for judge quality: EFT-format JSONL (judge prompt -> judgment ending 'Score: N') or {\"prompt\", \"response\", \"score\"}. Default: the run's held-out EFT split."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="JSONL of {\"prompt\"} for the win rate. Default: config eval_prompts_data (bundled held-out prompts)."),
    judge_: Optional[str] = typer.Option(None, "--judge", help="Win-rate judge: 'newest' (the newer model of each pair), 'm<N>', or a local model folder. Default: config winrate_judge."),
    run_dir: Path = RUN_DIR,
) -> None:
    """Judge quality (pairwise accuracy, exact match, Spearman, Kendall) and win rate of each model; cached."""
    from .display import RichUI
    from .evaluate import run_eval
    from .report import eval_tables

    ui = RichUI()
    try:
        result = run_eval(run_dir, round_, eft, prompts, judge_, ui)
    except SrliteError as e:
        _fail(e)
    except KeyboardInterrupt:
        ui.info("[yellow]Interrupted.[/] Results finished so far are cached; run the same command again to continue.")
        raise typer.Exit(code=130)
    ui.info(eval_tables(result))


@app.command()
def report(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder for report.md and the PNG plots. Default: <run>/report/."),
    run_dir: Path = RUN_DIR,
) -> None:
    """Per-round summary in the terminal, plus report.md with plots. Uses what exists; computes nothing new."""
    from .display import RichUI
    from .report import build_report, report_tables

    ui = RichUI()
    try:
        result = build_report(run_dir, out)
    except SrliteError as e:
        _fail(e)
    ui.info(report_tables(result))
    ui.info(f"Wrote {result['report']} ({len(result['plots'])} plots).")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
