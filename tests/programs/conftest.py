"""Fixtures of the programs tests: temporary packages on sys.path, a store, an HTTP client."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from programs import ProgramStore, RunnerConfig, setup
from support.program_templates import PackageMaker, registry_with_templates
from support.runs import Serve, store_with_programs
from support.testclient import TestClient

_counter = itertools.count()


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PackageMaker]:
    """Write a package with a unique name to a directory on sys.path; returns its name.

    Files are given as ``{"__init__.py": source, "sub/mod.py": source}``; ``{pkg}`` in a
    source is replaced by the package's name.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    made: list[str] = []

    def make(files: dict[str, str]) -> str:
        name = f"tmp_programs_{next(_counter)}_{tmp_path.name[-8:].replace('-', '_')}"
        made.append(name)
        for relative, source in {"__init__.py": "", **files}.items():
            path = root / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source).replace("{pkg}", name))
        return name

    yield make
    for module in list(sys.modules):
        if module.split(".")[0] in made:
            del sys.modules[module]


@pytest.fixture
def store(backend: str) -> ProgramStore:
    """A store with the test templates, synced into a fresh database."""
    store = ProgramStore(registry_with_templates())
    store.sync()
    return store


@pytest.fixture
def client(store: ProgramStore, tmp_path: Path) -> TestClient:
    app = FastAPI()
    setup(app, store, backup_dir=tmp_path / "backups")
    return TestClient(app)


@pytest.fixture
def run_store(backend: str) -> ProgramStore:
    """The runner's test templates, one program per template (named like it), on each backend."""
    return store_with_programs()


@pytest.fixture
def serve(run_store: ProgramStore) -> Serve:
    """Build an app around ``run_store`` with ``RunnerConfig(**config)``; enter the returned
    client with ``with`` to run the app's lifespan (which starts and stops the runner)."""

    def make(store: ProgramStore | None = None, **config: Any) -> TestClient:
        app = FastAPI()
        setup(app, store or run_store, runner=RunnerConfig(**config))
        return TestClient(app)

    return make
