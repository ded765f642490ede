"""The `srlite` command line: each command parses options and calls one library function; an error the
user can fix (`SrliteError`) becomes a message and exit code 2 in one place, `command`."""

from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import build_report, create_run, evaluate, export as export_run, iterate as run_iterate, judge_file, status
from .config import parse_overrides
from .errors import SrliteError
from .report.display import RichUI, eval_tables, judge_file_table, report_tables, status_table
from .run.interrupts import Interrupted, graceful_stop
from .tools.chat import chat_loop, load_chat
from .tools.importers import import_messages, import_oasst
from .tools.serve import serve as serve_model
from .version import __version__

app = typer.Typer(
    help="Self-Rewarding Language Models on one machine: the model writes prompts, answers them, "
    "judges its answers and trains itself with DPO, round after round. Start with `srlite init`, "
    "then `srlite iterate --rounds 3`.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # never print local variables (tokens, paths) in a crash
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:  # `typer.Exit` ends the program after the version, before any command runs
        raise typer.Exit(typer.echo(f"srlite {__version__}"))


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Options before the command: --version (the app's help text is set on `app`)."""


import_app = typer.Typer(help="Convert seed data from the ecosystem's formats into srlite's.", no_args_is_help=True)
app.add_typer(import_app, name="import")

RUN_DIR = typer.Option(
    Path("srlite-run"), "--run-dir", "-d", envvar="SRLITE_RUN_DIR",
    help="The run directory (config, seed data, adapters, artifacts). Env: SRLITE_RUN_DIR.",
)


def command(name: str | None = None, *, group: typer.Typer = app, interrupted: str | None = None):
    """Register a command whose SrliteError becomes "error: <message>" on stderr and exit code 2;
    with `interrupted`, Ctrl-C prints that and exits 130."""

    def register(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except SrliteError as e:
                RichUI(stderr=True).info(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
                raise typer.Exit(code=2) from None
            except KeyboardInterrupt:
                if interrupted is None:
                    raise
                RichUI().info(f"[yellow]Interrupted.[/] {interrupted}")
                raise typer.Exit(code=130) from None

        return group.command(name)(run)

    return register


@command()
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
    run = create_run(run_dir, preset=preset, model=model, ift=ift, eft=eft, eft_eval=eft_eval,
                     overrides=parse_overrides(set_))
    typer.echo(f"Initialised {run.dir} (model: {run.cfg.model}, preset: {run.cfg.preset}).")
    typer.echo(f"Edit {run.config_path} if you like, then run: srlite iterate --rounds 3")


@command()
def iterate(
    rounds: int = typer.Option(3, "--rounds", "-n", min=1, help="Total number of self-rewarding rounds the run should have. Finished rounds and stages are kept, so re-running continues where it stopped."),
    run_dir: Path = RUN_DIR,
    force: bool = typer.Option(False, "--force", help="Continue even though settings that finished artifacts depend on were changed in config.json (recorded in manifest.json)."),
) -> None:
    """Train M1 (SFT on the seed data) if missing, then run self-rewarding rounds up to --rounds.

    Ctrl-C or SIGTERM stops at the next safe point (press Ctrl-C twice to stop at once); every
    finished record is kept and the same command continues where it stopped.
    """
    ui = RichUI()
    again = f"Everything finished is kept; continue with: srlite iterate --rounds {rounds} --run-dir {run_dir}"

    def stopping(signum: int) -> None:
        ui.info(f"[yellow]{signal.Signals(signum).name}: stopping at the next safe point[/] (Ctrl-C again stops at once).")

    try:
        with graceful_stop(stopping):
            run_iterate(run_dir, rounds, ui, force=force)
    except Interrupted as e:
        ui.info(f"[yellow]Stopped ({e}).[/] {again}")
        raise typer.Exit(code=128 + e.signum) from None
    except KeyboardInterrupt:
        ui.info(f"[yellow]Interrupted.[/] {again}")
        raise typer.Exit(code=130) from None
    ui.info(f"[bold green]Done:[/] {rounds} round(s) in {run_dir}. The newest model is M{rounds + 1}.")


@command("status")
def status_cmd(run_dir: Path = RUN_DIR) -> None:
    """Show what exists in the run: M1, each round's artifacts and counts."""
    RichUI().info(status_table(status(run_dir)))


@command()
def chat(
    round_: Optional[int] = typer.Option(None, "--round", "-r", min=0, help="Which model: N for M_N (1 = after SFT, N+1 = after round N, 0 = the bare base model). Default: the newest."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Answer this one message, print the answer and exit (no interactive session)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", "-t", help="Sampling temperature; 0 = greedy. Default: the run's `temperature`."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus sampling. Default: the run's `top_p`."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Token budget of an answer. Default: the run's `response_max_new_tokens`."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message at the start of the conversation."),
    run_dir: Path = RUN_DIR,
) -> None:
    """Talk to M_N with its chat template: multi-turn (/exit or Ctrl-D quits, /reset clears), or one-shot with --prompt."""
    overrides = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, system=system)
    interactive = sys.stdin.isatty()

    try:  # Ctrl-C ends the session like Ctrl-D
        session, t = load_chat(run_dir, round_, overrides)
        if prompt is not None:
            typer.echo(session.reply(prompt))
            return
        typer.echo(f"Chatting with M{t}. /exit or Ctrl-D quits, /reset starts over.", err=True)
        chat_loop(session, lambda: input("you> " if interactive else ""), lambda text: typer.echo(f"M{t}> {text}" if interactive else text))
    except KeyboardInterrupt:
        typer.echo("", err=True)


@command()
def export(
    round_: Optional[int] = typer.Option(None, "--round", "-r", min=1, help="Which model: N for M_N (1 = after SFT); the pairs of round N (made by M_N) with --pairs. Default for the model: the newest."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write M_N to: merged/ (16-bit Hugging Face model), adapter/ (the stack folded into one LoRA adapter), export.json."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Write round N's preference pairs to this JSONL file in TRL's prompt/chosen/rejected form (needs --round)."),
    dtype: str = typer.Option("auto", "--dtype", help="Precision of the merged model: auto (the base checkpoint's own), bfloat16, float16, float32. Never 4-bit."),
    gguf: Optional[str] = typer.Option(None, "--gguf", help="Also write a GGUF file of this type (f32, f16, bf16, q8_0) with llama.cpp's convert_hf_to_gguf.py."),
    llama_cpp: Optional[Path] = typer.Option(None, "--llama-cpp", envvar="LLAMA_CPP_DIR", help="A llama.cpp checkout, for --gguf. Env: LLAMA_CPP_DIR."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty --out folder or --pairs file."),
    run_dir: Path = RUN_DIR,
) -> None:
    """Export M_N (merged model, folded adapter, optional GGUF) and/or round N's pairs for TRL."""
    export_run(run_dir, round_, out=out, pairs=pairs, dtype=dtype, gguf=gguf, llama_cpp=llama_cpp, force=force,
               say=typer.echo, news=lambda text: typer.echo(text, err=True))


@command("messages", group=import_app)
def import_messages_cmd(
    source: str = typer.Argument(..., help="A JSONL file or a Hugging Face dataset id (optionally id:split) with a `messages` column."),
    out: Path = typer.Argument(..., help="JSONL file to write: one validated {\"messages\": [...]} per line."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file."),
) -> None:
    """Validate a conversational `messages` dataset and write it as JSONL (for init --ift/--eft/--eft-eval)."""
    typer.echo(f"Wrote {import_messages(source, out, force=force)} records to {out}.")


@command("oasst", group=import_app)
def import_oasst_cmd(
    source: str = typer.Argument(..., help="Open Assistant messages (oasst1/oasst2 flat layout): a .jsonl(.gz) or .parquet file, or a dataset id."),
    out: Path = typer.Argument(..., help="Folder to write ift.jsonl, eft_pairs.jsonl, eft_ranked.jsonl, import_stats.json."),
    lang: str = typer.Option("en", "--lang", help="Language of the first-turn prompts to keep (e.g. en, de), or 'all'."),
    seed: int = typer.Option(0, "--seed", help="Seeds the a/b order of the EFT pairs."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty folder."),
) -> None:
    """IFT seed (first-turn prompts + rank-0 replies) and EFT evaluation pairs (by human rank) from Open Assistant."""
    stats = import_oasst(source, out, lang=lang, seed=seed, force=force)
    typer.echo(f"Wrote {stats['ift records']} IFT records, {stats['eft pairs']} EFT pairs "
               f"({stats['eft ranked groups']} ranked groups) to {out}. Use: srlite init --ift {out / 'ift.jsonl'}")


@command(interrupted="Nothing was written.")
def judge(
    input_file: Path = typer.Argument(..., help="JSONL: {\"prompt\", \"response\"} per line, or pairs {\"prompt\", \"a\", \"b\", \"label\": \"a\"|\"b\" (optional)}; an \"id\" is optional."),
    round_: Optional[int] = typer.Option(None, "--round", "-r", min=0, help="Judge with M_N (M0 base, M1 after SFT, M_t+1 after round t). Default: the newest model."),
    judge_: Optional[str] = typer.Option(None, "--judge", help="Another judge: 'm<N>', a local model folder, 'python:FILE.py:FUNCTION' or 'openai:BASE_URL#MODEL' (key from $judge_api_key_env)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder. Default: <run>/judge/<input name>-<judge>/."),
    run_dir: Path = RUN_DIR,
) -> None:
    """Score any JSONL of answers (or answer pairs) with one of the run's models and the run's rubric, or another judge."""
    ui = RichUI()
    ui.info(judge_file_table(judge_file(run_dir, input_file, round_, out, ui, judge=judge_)))


@command("eval", interrupted="Results finished so far are cached; run the same command again to continue.")
def eval_(
    round_: Optional[int] = typer.Option(None, "--round", "-r", min=0, help="Evaluate only M_N (and M_N vs M_N-1). Default: every model M1..newest."),
    eft: Optional[Path] = typer.Option(None, "--eft", help="Ranked answers for judge quality: EFT-format JSONL (judge prompt -> judgment ending 'Score: N') or {\"prompt\", \"response\", \"score\"}. Default: the run's held-out EFT split."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="JSONL of {\"prompt\"} for the win rate. Default: config eval_prompts_data (bundled held-out prompts)."),
    judge_: Optional[str] = typer.Option(None, "--judge", help="Win-rate judge: 'm<N>', a local model folder, 'python:FILE.py:FUNCTION', 'openai:BASE_URL#MODEL' or 'self' (the newer model of each pair). Default: config winrate_judge (m1)."),
    ifeval: Optional[str] = typer.Option(None, "--ifeval", help="IFEval-schema JSONL ({\"key\", \"prompt\", \"instruction_id_list\", \"kwargs\"}; google/IFEval's input_data.jsonl works as is), or 'bundled': all its prompts, answered greedily by each model and checked by lm-eval's verifiers (the ifeval extra). Default: config ifeval_data cut to ifeval_prompts, skipped with a notice if lm-eval is missing."),
    run_dir: Path = RUN_DIR,
) -> None:
    """Judge quality (pairwise accuracy, exact match, Spearman, Kendall), win rate and IFEval-format accuracy of each model, with n and 95% intervals; cached."""
    ui = RichUI()
    ui.info(eval_tables(evaluate(run_dir, round_, eft, prompts, judge_, ui, ifeval=ifeval)))


@command(interrupted="Server stopped.")
def serve(
    round_: Optional[int] = typer.Option(None, "--round", "-r", min=0, help="Serve M_N (0 = the bare base model). Default: the newest."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (only this machine by default; there is no authentication)."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="Port (0: any free one, printed)."),
    max_requests: Optional[int] = typer.Option(None, "--max-requests", min=1, help="Stop after answering N chat completions (tests, automation)."),
    idle_exit: Optional[float] = typer.Option(None, "--idle-exit", min=0.1, help="Stop after SECONDS without a request (tests, automation)."),
    run_dir: Path = RUN_DIR,
) -> None:
    """M_N behind an OpenAI-compatible endpoint: POST /v1/chat/completions, GET /v1/models (needs the `serve` extra)."""
    serve_model(run_dir, round_, host, port, max_requests=max_requests, idle_exit=idle_exit, say=typer.echo,
                news=lambda text: typer.echo(text, err=True))


@command()
def report(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder for report.md and the PNG plots. Default: <run>/report/."),
    run_dir: Path = RUN_DIR,
) -> None:
    """Per-round summary in the terminal, plus report.md with plots. Uses what exists; computes nothing new."""
    ui = RichUI()
    result = build_report(run_dir, out)
    ui.info(report_tables(result))
    ui.info(f"Wrote {result['report']} ({len(result['plots'])} plots).")


def main() -> None:  # the `srlite` entry point
    app()

