import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    # Tests that load the real embedded model are integration tests.
    for item in items:
        if "embedded" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def embedded():
    """Path of the embedded model (converted once per machine, cached)."""
    from selfreward_lite.models.embedded import embedded_model_dir

    return embedded_model_dir()


def tree_digest(path: Path) -> dict:
    """sha256 of every file under `path`, by relative name."""
    path = Path(path)
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def srlite(*args, env=None, timeout=120, **kw):
    """Run the real CLI in a subprocess (`python -m selfreward_lite ...`)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "selfreward_lite", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, check=False, **kw)


def random_adapter(cfg, below, out, seed, std=0.05):
    """A stand-in for a trained adapter on top of `below`: B drawn at random so it changes the model."""
    import torch

    from selfreward_lite.models.adapters import TRAINABLE, save_adapter
    from selfreward_lite.models.hf import load_stack

    lm = load_stack(cfg, below, train_new=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in lm.model.named_parameters():
            if f"lora_B.{TRAINABLE}." in name:
                p.normal_(0, std)
    save_adapter(lm, out, "stand_in.json", {"seed": seed})
