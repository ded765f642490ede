"""The chat / export / import commands through the real CLI, for what needs no model."""

import os
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def srlite(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "selfreward_lite", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_help_lists_the_tool_commands():
    r = srlite("--help")
    for cmd in ("chat", "export", "import"):
        assert cmd in r.stdout
    assert "--prompt" in srlite("chat", "--help").stdout
    assert "--gguf" in srlite("export", "--help").stdout
    assert "oasst" in srlite("import", "--help").stdout


def test_import_oasst_and_messages_cli(tmp_path):
    r = srlite("import", "oasst", str(FIXTURES / "oasst_messages.jsonl"), str(tmp_path / "oasst"))
    assert r.returncode == 0, r.stderr
    assert "Wrote 2 IFT records, 4 EFT pairs" in r.stdout
    r = srlite("import", "messages", str(tmp_path / "oasst" / "ift.jsonl"), str(tmp_path / "ift.jsonl"))
    assert r.returncode == 0 and "Wrote 2 records" in r.stdout
    assert len((tmp_path / "ift.jsonl").read_text().splitlines()) == 2
    r = srlite("init", "-d", str(tmp_path / "run"), "--preset", "cpu", "--ift", str(tmp_path / "oasst" / "ift.jsonl"))
    assert r.returncode == 0, r.stderr


def test_import_bad_input_names_file_line_field(tmp_path):
    bad = FIXTURES / "oasst_bad_role.jsonl"
    r = srlite("import", "oasst", str(bad), str(tmp_path / "out"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}, line 3, field 'role'" in " ".join(r.stderr.split())
    assert not (tmp_path / "out").exists()


def test_export_usage_errors(tmp_path):
    run = tmp_path / "run"
    assert srlite("init", "-d", str(run), "--preset", "cpu").returncode == 0
    cases = [
        ([], "Nothing to export"),
        (["--pairs", str(tmp_path / "p.jsonl")], "--pairs needs --round"),
        (["--round", "1", "--pairs", str(tmp_path / "p.jsonl")], "round 1 has no pairs yet"),
        (["--out", str(tmp_path / "m")], "no trained model yet"),
    ]
    for args, message in cases:
        r = srlite("export", "-d", str(run), *args)
        assert r.returncode == 2 and message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr, (args, r.stderr)


def test_help_stays_light():
    code = ("import sys; from selfreward_lite import cli; from selfreward_lite.tools import chat, export, importers; "
            "from selfreward_lite.run import tracking; "
            "print(any(m in sys.modules for m in ('torch', 'transformers', 'trl', 'datasets')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip() == "False"
