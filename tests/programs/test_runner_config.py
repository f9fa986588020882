"""Configuring the runner: from the environment at the edge, through bootstrap, and refusals."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from programs import (
    BackendMissingError,
    LocalBackend,
    NovaSettings,
    ProgramsExtension,
    Runner,
    RunnerConfig,
)
from programs.backends import create_backend
from programs.backends.nova import FAIL_FAST_NATS
from storage import bootstrap, database
from storage.errors import MissingDependencyError
from support.runs import runner_registry


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    database.set_default_database(database.Database())
    yield f"sqlite:///{tmp_path / 'app.db'}"
    database.get_database().dispose()


@pytest.mark.parametrize(
    ("environ", "backend", "when_busy"),
    [
        pytest.param({}, "local", "reject", id="nothing-set"),
        pytest.param({"NOVA_API": "http://nova.local"}, "nova", "reject", id="nova-api"),
        pytest.param(
            {"NOVA_API": "http://nova.local", "PROGRAMS_RUNNER_BACKEND": "local"},
            "local", "reject", id="backend-chosen",
        ),
        pytest.param({"PROGRAMS_RUNNER_WHEN_BUSY": "queue"}, "local", "queue", id="queue"),
    ],
)  # fmt: skip
def test_config_from_the_environment(environ: dict[str, str], backend: str, when_busy: str) -> None:
    config = RunnerConfig.from_env(environ)
    assert (config.backend, config.when_busy) == (backend, when_busy)
    assert (config.nova is not None) == (backend == "nova")


def test_nova_settings_from_the_environment() -> None:
    settings = NovaSettings.from_env(
        {"NOVA_API": " https://nova.example ", "NOVA_ACCESS_TOKEN": "s3cret", "CELL_NAME": "c2"}
    )
    assert (settings.host, settings.access_token, settings.cell) == (
        "https://nova.example", "s3cret", "c2"
    )  # fmt: skip
    assert "s3cret" not in repr(settings)
    assert dict(settings.nats_options) == dict(FAIL_FAST_NATS)
    assert NovaSettings.from_env({"NOVA_API": "http://n"}).cell == "cell"
    with pytest.raises(ValueError, match="NOVA_API is not set"):
        NovaSettings.from_env({})
    assert RunnerConfig.from_env({}, max_concurrent=2).max_concurrent == 2


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_concurrent": 0}, id="no-slot"),
        pytest.param({"max_queued": -1}, id="negative-queue"),
        pytest.param({"when_busy": "wait"}, id="unknown-when-busy"),
        pytest.param({"log_limit": 0}, id="no-log"),
    ],
)
def test_impossible_configs_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RunnerConfig(**options)


def test_backends_by_name() -> None:
    assert isinstance(create_backend("local", None), LocalBackend)
    with pytest.raises(ValueError, match="unknown runner backend 'robot'"):
        create_backend("robot", None)
    with pytest.raises(ValueError, match="needs NovaSettings"):
        create_backend("nova", None)


def test_bootstrap_mounts_a_runner_configured_from_the_environment(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOVA_API", raising=False)
    app = FastAPI()
    bootstrap(app, database_url=url, programs=runner_registry())
    assert isinstance(app.state.runner, Runner)
    assert app.state.runner.backend.name == "local"
    monkeypatch.setenv("NOVA_API", "http://127.0.0.1:9")
    monkeypatch.setenv("CELL_NAME", "cell-7")
    nova_app = FastAPI()
    bootstrap(nova_app, database_url=url, programs=runner_registry())
    backend = nova_app.state.runner.backend
    assert (backend.name, backend.settings.cell) == ("nova", "cell-7")


def test_the_nova_backend_without_the_sdk_fails_at_startup_with_the_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "wandelbots-nova":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)  # the package is not installed
    config = RunnerConfig(backend="nova", nova=NovaSettings(host="http://nova.local"))
    extension = ProgramsExtension(runner_registry(), runner=config, sync=False, create_tables=False)
    extension(None)  # a script needs no runner: no backend is built
    with pytest.raises(BackendMissingError, match=r"pip install 'machine-storage\[nova\]'") as e:
        extension(FastAPI())
    assert isinstance(e.value, MissingDependencyError)  # a 503 wherever a route meets it
