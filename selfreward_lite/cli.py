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
    force: bool = typer.Option(False, "--force", help="Continue even though settings that finished artifacts depend on were changed in config.json (recorded in manifest.json)."),
) -> None:
    """Train M1 (SFT on the seed data) if missing, then run self-rewarding rounds up to --rounds.

    Ctrl-C or SIGTERM stops at the next safe point (press Ctrl-C twice to stop at once); every
    finished record is kept and the same command continues where it stopped.
    """
    import signal

    from .display import RichUI
    from .interrupts import Interrupted, graceful_stop
    from .pipeline import iterate as run_iterate

    ui = RichUI()
    again = f"srlite iterate --rounds {rounds} --run-dir {run_dir}"

    def stopping(signum: int) -> None:
        ui.info(f"[yellow]{signal.Signals(signum).name}: stopping at the next safe point[/] (Ctrl-C again stops at once).")

    try:
        with graceful_stop(stopping):
            run_iterate(run_dir, rounds, ui, force=force)
    except SrliteError as e:
        _fail(e)
    except Interrupted as e:
        ui.info(f"[yellow]Stopped ({e}).[/] Everything finished is kept; continue with: {again}")
        raise typer.Exit(code=128 + e.signum) from None
    except KeyboardInterrupt:
        ui.info(f"[yellow]Interrupted.[/] Everything finished is kept; continue with: {again}")
        raise typer.Exit(code=130) from None
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
