"""GPU kit only: cap every Python process of the kit at SRLITE_GPU_CAP_GIB of GPU memory.

benchmarks/gpu/kit.py puts this folder first on PYTHONPATH of the processes it starts (its
workers and the `python -m selfreward_lite` commands of the round) and sets the variable, so
a process started by srlite itself is capped too, as on a 24 GB card whatever the card. Nothing
happens when the variable is unset, or without a CUDA device. With SRLITE_KIT_PEAK_FILE set,
the process also appends its peak GPU memory to that file (one JSON line) when it exits.

(Python imports the first `sitecustomize` on sys.path only; this one hands over to any other.)
"""

import os
import sys


def _cap() -> None:
    gib = os.environ.get("SRLITE_GPU_CAP_GIB")
    if not gib:
        return
    import torch

    if not torch.cuda.is_available():
        return
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, float(gib) * 1024**3 / total))
    peak_file = os.environ.get("SRLITE_KIT_PEAK_FILE")
    if peak_file:
        import atexit
        import json

        def record() -> None:
            try:
                line = {"argv": sys.argv[1:4], "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 2),
                        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 1024**3, 2)}
                with open(peak_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
            except Exception:
                pass

        atexit.register(record)


def _chain() -> None:
    """Run the next sitecustomize on sys.path, if any (ours shadows it)."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


try:
    _cap()
except Exception as e:  # never stop the process: the kit records the cap it expected
    print(f"[gpu kit] could not cap GPU memory: {type(e).__name__}: {e}", file=sys.stderr)
try:
    _chain()
except Exception:
    pass
