"""The package's shape: no import circles, its own modules imported at the top of files, the heavy
libraries only inside functions (so `srlite --help` and `import selfreward_lite` stay light), and
no module grown past a size a reader can hold."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "selfreward_lite"
HEAVY = ("torch", "transformers", "peft", "trl", "unsloth", "unsloth_zoo", "datasets", "bitsandbytes", "rich",
         "matplotlib", "safetensors", "accelerate", "tensorboard", "wandb", "pyarrow")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The package modules an import statement names (`from . import x` names the module x)."""
    is_package = MODULES[module].name == "__init__.py"
    if node.level:
        base = module.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("selfreward_lite"):
        return []
    names = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    return names or [target]


def imports(module: str):
    """(imported package module, at top level?) and the top-level third-party imports of `module`."""
    tree = ast.parse(MODULES[module].read_text())
    top_nodes = set(map(id, tree.body))
    own, third = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for target in resolve(module, node):
                own.append((target, id(node) in top_nodes))
            if not node.level and node.module and id(node) in top_nodes:
                third.append(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("selfreward_lite"):
                    own.append((a.name, id(node) in top_nodes))
                elif id(node) in top_nodes:
                    third.append(a.name.split(".")[0])
    return own, third


def test_own_modules_are_imported_at_the_top_and_heavy_libraries_inside_functions():
    late, heavy = [], []
    for module in MODULES:
        own, third = imports(module)
        late += [f"{module} -> {target}" for target, top in own if not top]
        heavy += [f"{module} -> {lib}" for lib in third if lib in HEAVY]
    assert not late, "package modules imported inside functions: " + "; ".join(late)
    assert not heavy, "heavy libraries imported at module level: " + "; ".join(heavy)


def test_no_import_circles():
    graph = {m: sorted({t for t, _ in imports(m)[0] if t in MODULES and t != m}) for m in MODULES}
    state: dict[str, str] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for n in graph[m]:
            if state.get(n) == "open":
                pytest.fail("import circle: " + " -> ".join(path[path.index(n):] + [m, n]) if n in path
                            else f"import circle through {m} -> {n}")
            if n not in state:
                visit(n, path + [m])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [])


def test_every_module_imports_alone_in_a_fresh_interpreter():
    """Catches what a static graph cannot (an import that only works after another module's).
    (`__main__` runs the CLI when imported: `python -m selfreward_lite` is tested with the CLI.)"""
    bad = []
    for module in sorted(MODULES):
        if module.endswith("__main__"):
            continue
        r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
        if r.returncode:
            bad.append(f"{module}: {(r.stderr.strip().splitlines() or ['exit code %d' % r.returncode])[-1]}")
    assert not bad, "\n".join(bad)


def test_the_cli_and_the_api_import_no_model_library():
    code = ("import sys, selfreward_lite, selfreward_lite.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    limit = 280 if module == "selfreward_lite.cli" else 400  # cli: 250 + `serve` (issue 11)
    assert len(MODULES[module].read_text().splitlines()) <= limit


def test_public_api():
    import selfreward_lite

    assert set(selfreward_lite.__all__) >= {"create_run", "iterate", "evaluate", "judge_file", "export_model",
                                            "export_pairs", "open_run", "Config", "SrliteError", "__version__"}
    for name in selfreward_lite.__all__:
        assert getattr(selfreward_lite, name) is not None
