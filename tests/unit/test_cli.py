"""The CLI, in process (no model needed for these); what needs a fresh process runs `srlite` in one."""

import json
import subprocess
import sys
import time

import pytest
from helpers import FIXTURES, invoke, srlite


def test_help_is_fast_and_documents_commands():
    start = time.perf_counter()
    r = srlite("--help")
    assert r.returncode == 0
    assert time.perf_counter() - start < 10  # no torch import for --help
    for cmd in ("init", "iterate", "status"):
        assert cmd in r.stdout
    r = srlite("iterate", "--help")
    assert "--rounds" in r.stdout and "--run-dir" in r.stdout


def test_help_does_not_import_heavy_libraries():
    code = "import sys; from selfreward_lite import cli; print(any(m in sys.modules for m in ('torch', 'transformers', 'trl')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_init_writes_config_seed_manifest(tmp_path):
    run = tmp_path / "run"
    r = invoke("init", "--preset", "cpu", "--set", "prompts_per_round=5", "--set", "seed=3", env={"SRLITE_RUN_DIR": str(run)})
    assert r.returncode == 0, r.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["prompts_per_round"] == 5 and cfg["seed"] == 3 and cfg["model"] == "embedded"
    assert sorted(p.name for p in (run / "seed").iterdir()) == ["eft_eval.jsonl", "eft_train.jsonl", "ift.jsonl"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["libraries"]["trl"] and manifest["seed"] == 3
    # A second init refuses and leaves the run as it was.
    before = (run / "config.json").read_bytes()
    r = invoke("init", "-d", str(run))
    assert r.returncode != 0 and "already exists" in r.stderr and "Traceback" not in r.stderr
    assert (run / "config.json").read_bytes() == before
    r = invoke("status", "-d", str(run))
    assert r.returncode == 0 and "M1" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "n_candidate=4"], "Did you mean 'n_candidates'"),
        (["--set", "judge_samples=0"], "'judge_samples' must be > 0"),
        (["--set", "oops"], "expected key=value"),
        (["--preset", "tpu"], "Unknown preset"),
    ],
)
def test_init_bad_options(tmp_path, args, message):
    run = tmp_path / "run"
    r = invoke("init", "-d", str(run), *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not run.exists()


def test_init_bad_seed_file_names_line_and_field(tmp_path):
    bad = tmp_path / "ift.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad.write_text(json.dumps(good) + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}) + "\n")
    run = tmp_path / "run"
    r = invoke("init", "-d", str(run), "--ift", str(bad))
    assert r.returncode == 2
    assert f"{bad}, line 2, field 'messages[1].role'" in " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr
    assert not run.exists()


def test_commands_on_missing_run(tmp_path):
    for cmd in ("status", "iterate"):
        r = invoke(cmd, "-d", str(tmp_path / "nothing"))
        assert r.returncode == 2 and "srlite init" in r.stderr and "Traceback" not in r.stderr


def test_init_rerenders_judge_seed_with_the_runs_rubric(tmp_path):
    from selfreward_lite.judging.rubric import COMPACT_TEMPLATE, RUBRIC_TEMPLATE, split_judge_prompt

    for rubric, template in (("additive-compact", COMPACT_TEMPLATE), ("additive", RUBRIC_TEMPLATE)):
        run = tmp_path / rubric
        assert invoke("init", "-d", str(run), "--preset", "cpu", "--set", f"rubric={rubric}").returncode == 0
        for name in ("eft_train.jsonl", "eft_eval.jsonl"):
            for line in (run / "seed" / name).read_text().splitlines():
                user = json.loads(line)["messages"][0]["content"]
                assert split_judge_prompt(user, template) is not None


# --- chat / export / import, for what needs no model ----------------------------------------

def test_help_lists_the_tool_commands():
    r = invoke("--help")
    for cmd in ("chat", "export", "import"):
        assert cmd in r.stdout
    assert "--prompt" in invoke("chat", "--help").stdout
    assert "--gguf" in invoke("export", "--help").stdout
    assert "oasst" in invoke("import", "--help").stdout


def test_import_oasst_and_messages_cli(tmp_path):
    r = invoke("import", "oasst", str(FIXTURES / "oasst_messages.jsonl"), str(tmp_path / "oasst"))
    assert r.returncode == 0, r.stderr
    assert "Wrote 2 IFT records, 4 EFT pairs" in r.stdout
    r = invoke("import", "messages", str(tmp_path / "oasst" / "ift.jsonl"), str(tmp_path / "ift.jsonl"))
    assert r.returncode == 0 and "Wrote 2 records" in r.stdout
    assert len((tmp_path / "ift.jsonl").read_text().splitlines()) == 2
    r = invoke("init", "-d", str(tmp_path / "run"), "--preset", "cpu", "--ift", str(tmp_path / "oasst" / "ift.jsonl"))
    assert r.returncode == 0, r.stderr


def test_import_bad_input_names_file_line_field(tmp_path):
    bad = FIXTURES / "oasst_bad_role.jsonl"
    r = invoke("import", "oasst", str(bad), str(tmp_path / "out"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}, line 3, field 'role'" in " ".join(r.stderr.split())
    assert not (tmp_path / "out").exists()


def test_export_usage_errors(tmp_path):
    run = tmp_path / "run"
    assert invoke("init", "-d", str(run), "--preset", "cpu").returncode == 0
    cases = [
        ([], "Nothing to export"),
        (["--pairs", str(tmp_path / "p.jsonl")], "--pairs needs --round"),
        (["--round", "1", "--pairs", str(tmp_path / "p.jsonl")], "round 1 has no pairs yet"),
        (["--out", str(tmp_path / "m")], "no trained model yet"),
    ]
    for args, message in cases:
        r = invoke("export", "-d", str(run), *args)
        assert r.returncode == 2 and message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr, (args, r.stderr)


def test_help_stays_light():
    code = ("import sys; from selfreward_lite import cli; from selfreward_lite.tools import chat, export, importers; "
            "from selfreward_lite.run import tracking; "
            "print(any(m in sys.modules for m in ('torch', 'transformers', 'trl', 'datasets')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
