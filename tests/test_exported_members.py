"""The public face of each package: ``__all__`` is complete, sorted and importable, and it is
exactly what docs/api.md promises; private modules stay out of the docs and examples."""

from __future__ import annotations

import importlib
import pkgutil
import re
import types

import pytest

from support.servers import ROOT

API_DOC = (ROOT / "docs" / "api.md").read_text()


def _promised() -> dict[str, list[str]]:
    """The names docs/api.md lists per module, in its order."""
    promised: dict[str, list[str]] = {}
    module = None
    for line in API_DOC.splitlines():
        if heading := re.fullmatch(r"### `([\w.]+)`", line):
            module = heading.group(1)
            promised[module] = []
        elif module and (row := re.match(r"\| `(\w+)` \|", line)):
            promised[module].append(row.group(1))
    return promised


PROMISED = _promised()


def _public_modules() -> list[str]:
    names = []
    for package in ("storage", "programs"):
        root = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return names


PUBLIC_MODULES = _public_modules()


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


@pytest.mark.parametrize("name", [pytest.param(m, id=m) for m in PUBLIC_MODULES])
def test_all_is_what_the_api_page_promises(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", ()))
    for member in exported:
        assert hasattr(module, member), f"{name}.{member}"
    assert sorted(exported) == sorted(PROMISED.get(name, [])), f"docs/api.md: {name}"


def test_the_api_page_lists_only_public_modules() -> None:
    assert set(PROMISED) == set(PUBLIC_MODULES)


def test_docs_and_examples_import_no_private_module() -> None:
    private = re.compile(r"(?:from|import)\s+(?:storage|programs)\.(?:\w+\.)*_\w+")
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for folder in ("docs", "examples")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in {".md", ".py"}
        for match in private.finditer(path.read_text())
    ]
    assert found == []
