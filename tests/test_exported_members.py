"""The public face of each package: ``__all__`` is complete, sorted and importable."""

from __future__ import annotations

import importlib
import types

import pytest

CONTRACT_MODULES = [
    "storage.database",
    "storage.accessor",
    "storage.auditor",
    "storage.hooks",
    "storage.changes",
    "storage.migrations",
    "storage.router_model",
    "storage.router_database",
    "storage.bootstrap",
    # vention-storage's other modules (0.5.1 and 0.20), kept for its users
    "storage.io_helpers",
    "storage.utils",
    "storage.crud_service",
    "storage.database_service",
]


@pytest.mark.parametrize(
    "package", [pytest.param("storage", id="storage"), pytest.param("programs", id="programs")]
)
def test_all_is_complete_and_sorted(package: str) -> None:
    module = importlib.import_module(package)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert set(module.__all__) == public
    assert list(module.__all__) == sorted(module.__all__)


@pytest.mark.parametrize("name", [pytest.param(m, id=m) for m in CONTRACT_MODULES])
def test_contract_import_paths_exist(name: str) -> None:
    module = importlib.import_module(name)
    for exported in getattr(module, "__all__", ()):
        assert hasattr(module, exported), f"{name}.{exported}"
