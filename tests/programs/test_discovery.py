"""Discovery from real packages on sys.path and from a real installed distribution's
entry points (a temporary ``.dist-info`` directory; importlib.metadata is not mocked)."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import pytest

from programs import ProgramRegistry
from programs._discovery import scan_entry_points, scan_package
from support.program_templates import PackageMaker, install_distribution, template_source


def test_a_package_and_all_its_submodules_are_scanned(make_package: PackageMaker) -> None:
    package = make_package(
        {
            "__init__.py": template_source("top"),
            "pick.py": template_source("pick"),
            "cells/__init__.py": "",
            "cells/weld.py": template_source("weld"),
            "cells/deep/__init__.py": template_source("deep"),
            "helpers.py": "VALUE = 1\n",
        }
    )
    found = scan_package(package)
    assert sorted(t.name for t in found.templates) == ["deep", "pick", "top", "weld"]
    assert found.problems == []
    weld = next(t for t in found.templates if t.name == "weld")
    assert weld.location == f"{package}.cells.weld:run_weld"


def test_a_single_module_and_a_module_object_can_be_scanned(make_package: PackageMaker) -> None:
    package = make_package({"pick.py": template_source("pick"), "place.py": template_source("x")})
    assert [t.name for t in scan_package(f"{package}.pick").templates] == ["pick"]
    module = importlib.import_module(f"{package}.place")
    assert [t.name for t in scan_package(module).templates] == ["x"]


@pytest.mark.parametrize(
    ("broken_source", "error"),
    [
        pytest.param("import module_that_does_not_exist_42\n", "ModuleNotFoundError", id="import"),
        pytest.param("raise RuntimeError('robot offline')\n", "RuntimeError: robot offline",
                     id="runtime-error"),
        pytest.param("def broken(:\n", "SyntaxError", id="syntax-error"),
    ],
)  # fmt: skip
def test_a_broken_module_is_reported_and_the_others_still_load(
    make_package: PackageMaker,
    caplog: pytest.LogCaptureFixture,
    broken_source: str,
    error: str,
) -> None:
    package = make_package(
        {
            "a_first.py": template_source("first"),
            "broken.py": broken_source,
            "z_last.py": template_source("last"),
        }
    )
    registry = ProgramRegistry()
    with caplog.at_level(logging.ERROR, logger="programs._discovery"):
        registry.discover(package)
    assert registry.names == ["first", "last"]
    [problem] = registry.problems
    assert problem.module == f"{package}.broken"
    assert problem.error.startswith(error)
    assert problem.source == "package"
    assert f"{package}.broken" in caplog.text


def test_a_broken_subpackage_hides_only_its_own_modules(make_package: PackageMaker) -> None:
    package = make_package(
        {
            "ok.py": template_source("ok"),
            "bad/__init__.py": "raise ImportError('no driver')\n",
            "bad/inner.py": template_source("inner"),
        }
    )
    found = scan_package(package)
    assert [t.name for t in found.templates] == ["ok"]
    assert [(p.module, p.error) for p in found.problems] == [
        (f"{package}.bad", "ImportError: no driver")
    ]


def test_a_missing_package_is_a_problem_not_a_crash() -> None:
    registry = ProgramRegistry()
    assert registry.discover("no_such_package_for_programs") == []
    assert [p.module for p in registry.problems] == ["no_such_package_for_programs"]


def test_a_function_imported_into_the_package_is_found_once(make_package: PackageMaker) -> None:
    package = make_package(
        {"__init__.py": "from .pick import run_pick\n", "pick.py": template_source("pick")}
    )
    registry = ProgramRegistry()
    registry.discover(package)
    assert registry.names == ["pick"]


def test_entry_points_of_installed_distributions_are_loaded(
    make_package: PackageMaker, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    package = make_package(
        {
            "cells/__init__.py": "",
            "cells/pick.py": template_source("pick"),
            "extra.py": template_source("calibrate") + "NOT_A_TEMPLATE = 1\n",
        }
    )
    site = tmp_path / "site"  # where make_package writes
    install_distribution(
        site,
        f"{package}_dist",
        {
            "cells": f"{package}.cells",
            "single": f"{package}.extra:run_calibrate",
            "missing": f"{package}_missing",
            "wrong": f"{package}.extra:NOT_A_TEMPLATE",
        },
    )
    registry = ProgramRegistry()
    with caplog.at_level(logging.ERROR, logger="programs._discovery"):
        loaded = registry.load_entry_points()
    assert sorted(t.name for t in loaded) == ["calibrate", "pick"]
    assert registry.names == ["calibrate", "pick"]
    problems = {p.source: p for p in registry.problems}
    assert set(problems) == {"entry point missing", "entry point wrong"}
    assert problems["entry point missing"].module == f"{package}_missing"
    assert problems["entry point missing"].error.startswith("ModuleNotFoundError")
    assert "neither a module nor a @program function" in problems["entry point wrong"].error
    assert "entry point missing" in caplog.text


def test_another_entry_point_group_can_be_used(make_package: PackageMaker, tmp_path: Path) -> None:
    package = make_package({"pick.py": template_source("pick")})
    site = tmp_path / "site"  # where make_package writes
    install_distribution(site, f"{package}_dist", {"pick": f"{package}.pick"})
    assert scan_entry_points("some.other.group").templates == []
    assert [t.name for t in scan_entry_points().templates] == ["pick"]
