"""How the packages depend on each other: ``storage`` never imports ``programs`` (programs
plugs in through entry points), and neither package has an import cycle at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import ROOT

SRC = ROOT / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def _imports(module: str, *, at_import_time: bool) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import in ``module``; with ``at_import_time``, only
    those that run when the module is imported (not in functions, not under TYPE_CHECKING)."""
    path = MODULES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]

    def visit(node: ast.AST, deferred: bool) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            later = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                later = True
            if at_import_time and later:
                continue
            if isinstance(child, ast.Import):
                yield from ((alias.name, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[: len(package) - child.level + 1] + [base]).strip(".")
                for alias in child.names:
                    name = f"{base}.{alias.name}"
                    yield (name if name in MODULES else base), child.lineno
            yield from visit(child, later)

    yield from visit(ast.parse(path.read_text()), False)


def test_storage_never_imports_programs() -> None:
    found = [
        f"{module} line {line}: {name}"
        for module in MODULES
        if module.split(".")[0] == "storage"
        for name, line in _imports(module, at_import_time=False)
        if name.split(".")[0] == "programs"
    ]
    assert found == []


def test_storage_runs_without_importing_programs(tmp_path: Path) -> None:
    """Every storage module imported and a full bootstrap done: programs is not loaded."""
    script = f"""
import importlib, pkgutil, sys
import storage
for info in pkgutil.walk_packages(storage.__path__, "storage."):
    importlib.import_module(info.name)
from fastapi import FastAPI
from storage import bootstrap
bootstrap(FastAPI(), database_url={f"sqlite:///{tmp_path / 'app.db'}"!r}, console=True)
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "programs")
print(loaded)
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["storage", "programs"])
def test_no_import_cycles(package: str) -> None:
    graph = {
        module: {name for name, _ in _imports(module, at_import_time=True) if name in MODULES}
        for module in MODULES
        if module.split(".")[0] == package
    }
    cycles: list[list[str]] = []

    def walk(module: str, trail: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported in trail:
                cycles.append([*trail[trail.index(imported) :], imported])
            elif imported not in done:
                walk(imported, [*trail, imported])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        walk(module, [module])
    assert cycles == []
