"""The layer rules of docs/architecture.md, checked mechanically by import-linter (pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_app_creates_nothing(tmp_path: Path) -> None:
    """No import-time side effects: importing every module makes no files, engines or apps."""
    code = (
        "import pkgutil, importlib, server, programs, der_sim\n"
        "for pkg in (server, programs, der_sim):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if m.name.endswith('__main__') or '.migrations' in m.name: continue\n"
        "        importlib.import_module(m.name)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)
    assert list(tmp_path.iterdir()) == []


def import_cycles(*packages: str) -> list[list[str]]:
    """Every set of modules that import one another round in a circle (strongly connected
    components of more than one module), function-level imports included: a lazy import is
    still a cycle, it only hides it from the interpreter."""
    import grimp

    graph = grimp.build_graph(*packages, cache_dir=None)
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(root: str) -> None:  # Tarjan's algorithm, iterative: the graph is deep
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        component.append(m)
                        if m == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    return cycles


def test_no_import_cycle_anywhere_in_the_product() -> None:
    assert import_cycles("server", "programs", "der_sim") == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: two modules of a temporary package, one importing the other at
    the top and the other importing back inside a function (how flex ↔ dispatch once hid)."""
    pkg = tmp_path / "cyclic_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclic_pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from cyclic_pkg import a\n    return a\n")
    (pkg / "c.py").write_text("from cyclic_pkg import b\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic_pkg") == [["cyclic_pkg.a", "cyclic_pkg.b"]]


@pytest.mark.parametrize(
    ("where", "wrong_import", "contract"),
    [
        ("server/services/sep2/wrong.py", "from server.services.flex import programs\n", "Contexts: bpp -> flex -> sep2"),
        ("server/services/flex/wrong.py", "from server.services.bpp import orders\n", "Contexts: bpp -> flex -> sep2"),
        ("server/services/clock_wrong.py", "", "Contexts: bpp -> flex -> sep2"),  # not placed in a layer
        ("programs/wrong.py", "import sqlalchemy\n", "The domain is pure"),
    ],
)
def test_the_contracts_fail_on_a_wrong_import(tmp_path: Path, where: str, wrong_import: str, contract: str) -> None:
    """The same contracts over a copy of the tree with one deliberately wrong module added."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    for name in ("server", "programs", "der_sim"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / where).write_text(f'"""A deliberately wrong module."""\n{wrong_import}')
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([exe, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    broken = [line for line in out.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), out
