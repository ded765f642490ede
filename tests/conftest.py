"""Shared fixtures and markers. Tests live in unit/ (no model, seconds), integration/ (the real
embedded model, seconds to minutes) and e2e/ (whole runs through the real CLI in subprocesses);
shared helpers are in helpers.py."""

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the cores: torch (imported later, by the tests) and the processes they start
    # take this many threads each, unless the caller chose.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                     // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject.toml): one worker per core, at most 4. Most tests decode small batches,
    load models or start processes, work that keeps about one core busy (judging a round's answers
    4 at a time took 44 s with 2 threads, 52 s with 1); more workers would each hold models in memory."""
    return max(1, min(4, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    # Tests that load the real embedded model, and everything under integration/ and e2e/, are integration tests.
    for item in items:
        where = Path(str(item.fspath)).resolve().relative_to(TESTS).parts[0]
        if "embedded" in getattr(item, "fixturenames", ()) or where in ("integration", "e2e"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def embedded():
    """Path of the embedded model (converted once per machine, cached)."""
    from selfreward_lite.models.embedded import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture
def fake_unsloth(monkeypatch):
    """The stand-in `unsloth` package (helpers.FakeFastLanguageModel), for this test only."""
    from helpers import install_fake_unsloth

    return install_fake_unsloth(monkeypatch)


@pytest.fixture
def run(tmp_path):
    """A freshly initialised run (cpu preset), nothing loaded."""
    from selfreward_lite.run.create import create_run

    return create_run(tmp_path / "run", preset="cpu", overrides={})


@pytest.fixture
def run_with_pairs(run):
    """A fresh run whose round 1 has pairs (helpers.PAIRS_QA), as the pairs stage writes them."""
    from helpers import PAIRS_QA

    from selfreward_lite.run.files import write_jsonl

    pairs = [{"id": f"r1-p{i:04d}-pair", "prompt_id": f"r1-p{i:04d}", "prompt": q, "chosen": c, "rejected": r,
              "chosen_id": "x-c0", "rejected_id": "x-c1", "chosen_score": 4.5, "rejected_score": 1.0}
             for i, (q, c, r) in enumerate(PAIRS_QA)]
    write_jsonl(run.round_dir(1) / "pairs.jsonl", pairs)
    return run
