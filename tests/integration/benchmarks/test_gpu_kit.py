"""The GPU kit (benchmarks/gpu/) cannot rot between GPU runs: its CPU smoke mode, its wheel
repacking, its random models whose answers end, its judge and its memory cap all run here.

The GPU figures themselves need the GPU machine (docs/benchmarks.md, "GPU kit").
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
GPU = ROOT / "benchmarks" / "gpu"
sys.path.insert(0, str(GPU))

import kit_judge  # noqa: E402
import wheels  # noqa: E402


def _has_judge_field() -> bool:
    import dataclasses

    from selfreward_lite.config import Config

    return "judge" in {f.name for f in dataclasses.fields(Config)}


# With the pluggable judge (`judge: "python:FILE.py:FUNCTION"`) the smoke round runs to the end;
# without it, the kit reports that the round was skipped.
JUDGE_FIELD = _has_judge_field()

PARTS = ["build", "memory_8b", "round_hf", "speed_hf", "speed_unsloth", "round_unsloth", "memory_8b_unsloth"]


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory, embedded):
    out = tmp_path_factory.mktemp("gpu-kit-smoke")
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(GPU / "run.sh"), "--smoke", "--work", str(out / "work")], capture_output=True,
                       text=True, cwd=ROOT, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (out / "gpu_kit.log").stat().st_size > 0
    return json.loads((out / "gpu_kit.json").read_text())


def test_smoke_every_part_has_figures_or_an_error(smoke_report):
    parts = smoke_report["parts"]
    assert list(parts) == PARTS
    for name, part in parts.items():
        assert part["status"] in ("ok", "error", "skipped", "not run"), name
        if part["status"] == "ok":
            assert not part.get("error") and len(part) > 2, name
        else:
            assert isinstance(part.get("error"), str) and part["error"], name
    assert smoke_report["versions"]["torch"] and smoke_report["kit"]["mode"] == "smoke"
    assert [t["step"] for t in smoke_report["kit"]["timeline"]][:3] == ["build", "hf", "round_hf"]
    assert set(smoke_report["summary"]) >= {"dpo_peak_reserved_gib", "tiny_hf_batched_over_naive", "round_hf_seconds"}


def test_smoke_build_calibrates_eos_and_answers_end(smoke_report):
    tiny = smoke_report["parts"]["build"]["archs"]["tiny"]
    assert smoke_report["parts"]["build"]["status"] == "ok"
    assert tiny["calibration"]["hazard"] == pytest.approx(0.1, rel=0.01)  # the smoke run's (GPU: 0.025)
    assert tiny["calibration"]["h_k_min"] > 0
    fr = tiny["finish_rate"]
    # 48 tokens at a hazard of 0.1: ~99% end; a random model without the construction: ~0%.
    assert fr["samples"] == 8 and fr["finished"] >= 5


def test_smoke_memory_and_speed_run_the_real_tasks(smoke_report):
    mem = smoke_report["parts"]["memory_8b"]
    assert mem["status"] == "ok", mem.get("error")
    assert mem["tasks"]["dpo_64"]["steps"] == 1
    judge = mem["tasks"]["judge_batch"]
    assert judge["sequences"] > 1 and judge["prompt_tokens_max"] > 100 and judge["full_length"]
    speed = smoke_report["parts"]["speed_hf"]
    assert speed["status"] == "ok", speed.get("error")
    assert speed["tasks"]["tiny_naive"]["batch_size"] == 1 and speed["tasks"]["tiny_batched"]["batch_size"] > 1
    assert speed["tasks"]["tiny_batched"]["full_length"] and speed["tasks"]["tiny_naive"]["full_length"]
    assert speed["ratios"]["tiny_batched_over_naive"]["ratio"] > 0
    # the judging stage old vs new, with EOS allowed again for it: judgments end before the budget
    judging = speed["tasks"]["tiny_judging"]
    assert judging["judgments"] == judging["items"] * judging["judge_samples"] and judging["judge_max_new_tokens"] == 8
    assert judging["old_seconds"] > 0 and judging["new_seconds"] > 0
    assert judging["old_cut_at_budget"] + judging["new_cut_at_budget"] < 2 * judging["judgments"]
    assert speed["ratios"]["tiny_judging_old_over_new"]["ratio"] == judging["old_over_new"] > 0
    assert smoke_report["summary"]["tiny_hf_judging_old_over_new"] == judging["old_over_new"]
    # one worker process per backend: the memory and speed tasks shared it and its one model load
    assert len(speed["processes"]) == 1 and speed["processes"][0]["process"] == mem["processes"][0]["process"]
    assert list(speed["processes"][0]["loads"]) == ["tiny"]


def test_smoke_round(smoke_report):
    round_hf = smoke_report["parts"]["round_hf"]
    if not JUDGE_FIELD:
        assert round_hf["status"] == "skipped"
        assert round_hf["error"].startswith("skipped: this srlite has no `judge` config field yet"), round_hf["error"]
        return
    assert round_hf["status"] == "ok", round_hf.get("error")
    assert round_hf["completed"] and round_hf["config"]["judge"].startswith("python:")
    assert round_hf["pairs"]["kept"] > 0
    assert {"m1/adapter", "round1/candidates.jsonl", "round1/adapter"} <= set(round_hf["stage_seconds"])


def test_smoke_unsloth_parts_say_why_not(smoke_report):
    parts = smoke_report["parts"]
    assert parts["speed_unsloth"]["status"] == "error"
    assert "unsloth" in parts["speed_unsloth"]["error"].lower()
    for name in ("round_unsloth", "memory_8b_unsloth"):
        assert parts[name]["status"] == "skipped" and parts[name]["error"].startswith("skipped:")


def test_a_part_that_cannot_finish_before_the_deadline_is_not_started(tmp_path):
    """No time left: nothing starts, every part says so (no model is built, no process started)."""
    out = tmp_path / "kit.json"
    r = subprocess.run([sys.executable, str(GPU / "kit.py"), "--smoke", "--budget-s", "0", "--out", str(out),
                        "--work", str(tmp_path / "work")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(out.read_text())
    assert list(report["parts"]) == PARTS
    for name, part in report["parts"].items():
        assert part["status"] == "not run" and part["error"].startswith("not run: time budget"), (name, part)
    assert report["summary"]["not_run"] == sorted(PARTS)


def test_worker_runs_what_fits_keeps_the_reserve_and_skips_tasks_of_a_model_that_did_not_load(tmp_path, monkeypatch):
    """The worker's scheduling, in process, with the measurements stubbed out (the GPU decides their times)."""
    import time

    import internals
    import kit

    calls = []
    real = internals.srlite
    monkeypatch.setattr(internals, "srlite", lambda name: (lambda *a, **k: None) if name == "prepare" else real(name))

    def load(model, checkpoint, backend, smoke):
        if model["arch"] == "1b":
            raise OSError("no such folder")
        return "lm", "cfg"

    monkeypatch.setattr(internals, "load", load)
    monkeypatch.setattr(internals, "suppress_eos", lambda lm, cal: None)
    monkeypatch.setattr(internals, "judge_batch", lambda lm, cfg, **k: calls.append("judge") or {"peak_reserved_gib": 1.0})
    monkeypatch.setattr(internals, "speed", lambda lm, cfg, naive, **k: calls.append(f"speed naive={naive}") or {})
    monkeypatch.setattr(internals, "dpo", lambda lm, cfg, length, steps: calls.append(f"dpo {length}") or {"steps": steps})

    def task(name, kind, arch, est, reserve_s=0.0):
        return {"name": name, "part": "p", "kind": kind, "arch": arch, "est": est, "reserve_s": reserve_s, "cap_s": 60,
                "load_est": 2.0, "load_cap_s": 60}

    spec = {"backend": "hf", "smoke": True, "checkpoint": "4bit", "deadline": time.time() + 100, "start_cap_s": 60,
            "progress": str(tmp_path / "progress.json"),
            "models": {"8b": {"arch": "8b", "cal": {}}, "1b": {"arch": "1b", "cal": {}}},
            "sizes": {"speed": {}, "judge_gen": {}, "dpo_steps": 2},
            "tasks": [task("judge_batch", "judge_batch", "8b", 10), task("8b_batched", "batched", "8b", 10, reserve_s=95),
                      task("dpo_1024", "dpo", "8b", 10), task("1b_batched", "batched", "1b", 5),
                      task("1b_naive", "naive", "1b", 5)]}
    kit.worker_tasks(spec, tmp_path / "result.json")
    res = json.loads((tmp_path / "result.json").read_text())
    assert calls == ["judge", "dpo 1024"]  # one load of the 8B for both
    assert list(res["loads"]) == ["8b"]
    t = res["tasks"]
    assert t["judge_batch"]["status"] == "ok" and t["dpo_1024"]["steps"] == 2
    assert t["8b_batched"]["status"] == "not run" and "keeping 95 s for a round" in t["8b_batched"]["error"]
    assert t["1b_batched"]["status"] == "error" and "no such folder" in t["1b_batched"]["error"]
    assert t["1b_naive"]["status"] == "skipped" and "did not load" in t["1b_naive"]["error"]
    assert json.loads((tmp_path / "progress.json").read_text())["task"] is None


def test_driver_after_a_killed_task_skips_its_model_and_reruns_the_other_models_tasks(tmp_path):
    """The driver's side of a worker killed for overrunning a task (the GPU profile, fake processes)."""
    import kit

    k = kit.Kit(kit.parse(["--out", str(tmp_path / "kit.json"), "--work", str(tmp_path / "w"), "--budget-s", "1000"]))
    k.models = {a: {"4bit": "x", "bf16": "x", "m1": "x", "cal": {}} for a in ("8b", "1b")}
    runs = []

    def spawn(label, argv, timeout, own_log=False, watch=None, **env):
        spec = json.loads(Path(argv[argv.index("--spec") + 1]).read_text())
        result = Path(argv[argv.index("--result") + 1])
        runs.append([t["name"] for t in spec["tasks"]])
        if len(runs) == 1:  # the first worker: judge_batch done, then killed inside 8b_batched
            result.write_text(json.dumps({"tasks": {"judge_batch": {"status": "ok", "peak_reserved_gib": 9.0}}}))
            Path(spec["progress"]).write_text(json.dumps({"task": "8b_batched", "started": 0, "cap_s": 1}))
            return {"rc": -9, "timed_out": True, "killed": "task 8b_batched ran past its 42 s limit", "seconds": 50,
                    "tail": ""}
        result.write_text(json.dumps({"tasks": {t["name"]: {"status": "ok", "tokens_per_s": 100.0 if "batched" in t["name"]
                                                            else 5.0} for t in spec["tasks"]}}))
        Path(spec["progress"]).write_text(json.dumps({"task": None}))
        return {"rc": 0, "timed_out": False, "killed": None, "seconds": 5, "tail": ""}

    k.spawn = spawn
    k.step_hf(160)
    assert runs[0] == ["judge_batch", "8b_batched", "8b_naive", "dpo_1024", "1b_batched", "1b_naive", "1b_judging"]
    assert k.tasks["speed_hf"]["8b_batched"]["error"].startswith("task 8b_batched ran past its 42 s limit")
    assert k.tasks["speed_hf"]["8b_naive"]["status"] == k.tasks["memory_8b"]["dpo_1024"]["status"] == "skipped"
    k.step_leftovers("hf", 100)
    assert runs[1] == ["1b_batched", "1b_naive", "1b_judging"]
    k.assemble()
    speed = k.report["parts"]["speed_hf"]
    assert speed["status"] == "error" and speed["ratios"]["1b_batched_over_naive"]["ratio"] == 20.0
    assert k.report["parts"]["memory_8b"]["tasks"]["judge_batch"]["within_target"] is True


# --- the wheels ---------------------------------------------------------------------------

def _synthetic_wheel(folder: Path) -> Path:
    """A small wheel shaped like the real ones: libraries to drop, a web app, a console script."""
    files = {
        "pkg/__init__.py": b"VALUE = 1\n",
        "pkg/libpkg_cuda118.so": b"\x7fELF" + b"0" * 5000,
        "pkg/libpkg_cuda130.so": b"\x7fELF" + b"1" * 500,
        "studio/app.js": b"console.log(1)\n" * 100,
        "studio/sub/page.html": b"<html></html>\n",
        "pkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n",
        "pkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "pkg-1.0.dist-info/entry_points.txt": b"[console_scripts]\npkg = unsloth_cli:app\nother = pkg:main\n",
        "pkg-1.0.dist-info/top_level.txt": b"pkg\nstudio\n",
    }
    rows = [f"{name},{wheels.record_hash(data)},{len(data)}" for name, data in files.items()]
    files["pkg-1.0.dist-info/RECORD"] = ("\n".join(rows) + "\npkg-1.0.dist-info/RECORD,,\n").encode()
    path = folder / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_repack_drops_files_keeps_exceptions_and_rewrites_record(tmp_path):
    (tmp_path / "in").mkdir()
    src = _synthetic_wheel(tmp_path / "in")
    assert wheels.check(src) == []
    rule = wheels.Rule(drop=["pkg/libpkg_*.so", "studio/*"], keep=["pkg/libpkg_cuda130.so"],
                       edits={"*.dist-info/entry_points.txt": wheels._drop_console_script,
                              "*.dist-info/top_level.txt": wheels._drop_top_level})
    info = wheels.repack(src, tmp_path / "out", rule)
    out = tmp_path / "out" / src.name
    assert info["bytes_after"] < info["bytes_before"] and info["files_dropped"] == 3
    names = zipfile.ZipFile(out).namelist()
    assert "pkg/libpkg_cuda130.so" in names and "pkg/__init__.py" in names
    assert not any(n.startswith("studio/") or n.endswith("cuda118.so") for n in names)
    z = zipfile.ZipFile(out)
    assert "unsloth_cli" not in z.read("pkg-1.0.dist-info/entry_points.txt").decode()
    assert "other = pkg:main" in z.read("pkg-1.0.dist-info/entry_points.txt").decode()
    assert "studio" not in z.read("pkg-1.0.dist-info/top_level.txt").decode()
    assert wheels.check(out) == []
    # pip takes it with run.sh's exact command
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, *wheels.PIP_TARGET, str(target), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (target / "pkg" / "libpkg_cuda130.so").is_file() and not (target / "studio").exists()
    r = subprocess.run([sys.executable, "-c", "import pkg; print(pkg.VALUE)"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(target)})
    assert r.stdout.strip() == "1"


def test_repack_refuses_rules_that_match_nothing_and_check_finds_a_bad_record(tmp_path):
    src = _synthetic_wheel(tmp_path)
    with pytest.raises(SystemExit, match="match nothing"):
        wheels.repack(src, tmp_path / "out", wheels.Rule(drop=["pkg/libother_*.so"]))
    with pytest.raises(SystemExit, match="match nothing"):
        wheels.repack(src, tmp_path / "out", wheels.Rule(drop=["pkg/libpkg_*.so"], keep=["pkg/libpkg_cuda999.so"]))
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, b"changed\n" if item.filename == "pkg/__init__.py" else zin.read(item))
    assert any("hash or size" in p for p in wheels.check(bad))


def test_pinned_wheels_are_one_version_each_and_find_wheel_is_strict(tmp_path):
    names = [wheels.wheel_name(spec)[0] for spec, _, _ in wheels.PINNED]
    assert len(names) == len(set(names))
    assert {"trl", "bitsandbytes", "datasets", "unsloth", "unsloth_zoo"} <= set(names)
    assert dict(wheels.wheel_name(s) for s, _, _ in wheels.PINNED)["trl"] == "1.15.0"  # unsloth pins trl<=1.15
    with pytest.raises(SystemExit, match="exactly one"):
        wheels.find_wheel(tmp_path, "trl==1.15.0")


@pytest.mark.slow
def test_prepare_sh_downloads_repacks_and_stays_under_the_limit(tmp_path, embedded):
    """The real thing: ~75 MB of downloads (cached in ~/.cache/srlite-gpukit afterwards)."""
    kit = tmp_path / "kit"
    env = {**os.environ, "PYTHON": sys.executable, "KIT_DIR": str(kit)}
    r = subprocess.run(["bash", str(GPU / "prepare.sh")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "bash benchmarks/gpu/run.sh" in r.stdout and "KIT_DIR=" in r.stdout
    files = [p for p in kit.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 60 * 2**20
    assert (kit / "tokenizer" / "tokenizer.json").is_file() and not list(kit.rglob("*.safetensors"))
    assert all(not wheels.check(w) for w in (kit / "wheels").glob("*.whl"))
    bnb = next((kit / "wheels").glob("bitsandbytes-*.whl"))
    assert sorted(n for n in zipfile.ZipFile(bnb).namelist() if n.endswith(".so")) == [
        "bitsandbytes/libbitsandbytes_cpu.so", "bitsandbytes/libbitsandbytes_cuda130.so"]


def test_scripts_parse_and_run_sh_needs_out():
    for script in ("prepare.sh", "run.sh"):
        assert subprocess.run(["bash", "-n", str(GPU / script)]).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    r = subprocess.run(["bash", str(GPU / "run.sh")], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode != 0 and "OUT" in r.stderr


# --- the random models, the judge, the cap -------------------------------------------------

def test_eos_probability_matches_hf_top_p_exactly():
    import torch

    from randmodel import _eos_probability, _sampling_probs

    torch.manual_seed(0)
    logits, h = torch.randn(40, 2000) * 1.5, torch.rand(40) + 0.5
    f = _eos_probability(logits, 7, h, 0.7, 0.9)
    for delta in (0.0, 2.0, 4.0, 9.0):
        shifted = logits.clone()
        shifted[:, 7] += delta * h
        ref = _sampling_probs(shifted, 0.7, 0.9)[:, 7].double()
        assert torch.allclose(f(delta), ref, atol=1e-6), delta


@pytest.mark.parametrize("spec", [
    dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
         head_dim=16, vocab_size=49152, tie_word_embeddings=True),
    dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
         head_dim=64, vocab_size=50000, tie_word_embeddings=False),  # untied, and ids the tokenizer lacks
], ids=["tiny-tied", "small-untied"])
def test_random_models_of_any_size_get_the_same_eos_hazard(spec, embedded):
    import torch
    from transformers import AutoTokenizer

    import randmodel

    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(embedded)
    model, cal = randmodel.build({"kind": "llama", **spec}, tok)
    assert cal.hazard == pytest.approx(randmodel.HAZARD, rel=0.01)
    assert 0 < cal.h_k_min <= cal.h_k_max < 2 * cal.h_k_min  # the bias feature is positive and steady
    assert cal.suppressed_ids == len(set(tok.all_special_ids) - {tok.eos_token_id}) + spec["vocab_size"] - len(tok)
    assert model.generation_config.top_k == 0
    # the suppressed ids are never sampled: their logit is far below every ordinary one
    ids, first = randmodel.calibration_batch(tok, n=2)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[:, first:].float()
    ordinary = logits[..., randmodel.ordinary_ids(tok)].min()
    if spec["vocab_size"] > len(tok):
        assert logits[..., len(tok):].max() < ordinary - 10


def test_kit_judge_is_deterministic_and_separates_answers():
    a, b = "the cat sat on the mat and looked around", "dog dog dog"
    assert kit_judge.score("q", a) == kit_judge.score("q", a)
    assert 0 <= kit_judge.score("q", b) < kit_judge.score("q", a) <= 5
    assert kit_judge.score("q", "   ...  ") is None


def test_sitecustomize_caps_without_breaking_python_and_chains(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("print('chained')\n")
    env = {**os.environ, "SRLITE_GPU_CAP_GIB": "24",
           "PYTHONPATH": os.pathsep.join([str(GPU / "site"), str(other)])}
    r = subprocess.run([sys.executable, "-c", "print('ran')"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["chained", "ran"]


def test_internals_resolve_each_name_or_say_where_to_fix():
    import internals

    for name in internals._WHERE:
        assert internals.srlite(name) is not None, name
    for where in ("selfreward_lite.nowhere", "selfreward_lite.config"):  # a module gone, a name gone
        internals._WHERE["no_such_thing"] = where
        try:
            with pytest.raises(ImportError, match="_WHERE"):
                internals.srlite("no_such_thing")
        finally:
            del internals._WHERE["no_such_thing"]
