"""config sits at the bottom of the layers: its modules import no cnnlab code above config
(only cnnlab.errors and each other), each imports on its own, and they import no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlab.config

CONFIG = Path(cnnlab.config.__file__).parent
MODULES = sorted(f"cnnlab.config.{p.stem}" if p.stem != "__init__" else "cnnlab.config"
                 for p in CONFIG.glob("*.py"))
ALLOWED = ("cnnlab.config", "cnnlab.errors")


def _cnnlab_imports(path: Path) -> set[str]:
    """Every cnnlab module the file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnnlab"):
            found.add(node.module)
            # `from cnnlab.config import schema` imports the submodule too.
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if (CONFIG / f"{a.name}.py").is_file() and node.module == "cnnlab.config")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cnnlab"))
    return found


def _path(module: str) -> Path:
    tail = module.removeprefix("cnnlab.config").lstrip(".")
    return CONFIG / (f"{tail}.py" if tail else "__init__.py")


def test_config_imports_nothing_above_it() -> None:
    for module in MODULES:
        above = {m for m in _cnnlab_imports(_path(module))
                 if not any(m == a or m.startswith(a + ".") for a in ALLOWED)}
        assert not above, f"{module} imports {sorted(above)}: config must not depend on them"


def test_config_modules_import_no_cycle() -> None:
    # The package __init__ re-exports; the edges that matter are between submodules.
    graph = {m: {i for i in _cnnlab_imports(_path(m)) if i in MODULES and i != "cnnlab.config"}
             for m in MODULES if m != "cnnlab.config"}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_each_config_module_imports_alone_and_pulls_in_nothing_above() -> None:
    # Fresh interpreters, one per module, so that import order cannot hide a cycle.
    check = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
             "bad = sorted(m for m in sys.modules if m.startswith('cnnlab') and not "
             "m.startswith(('cnnlab.config', 'cnnlab.errors')) and m != 'cnnlab'); "
             "print(bad); sys.exit(1 if bad else 0)")
    procs = {m: subprocess.Popen([sys.executable, "-c", check, m], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for m in MODULES}
    for module, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{module}: {out.strip()} {err.strip()[-500:]}"
