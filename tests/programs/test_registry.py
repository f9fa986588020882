"""ProgramRegistry: adding, looking up, duplicates."""

from __future__ import annotations

import pytest

from programs import (
    BaseProgramModel,
    DuplicateTemplateError,
    ProgramRegistry,
    TemplateNotFound,
    program,
)
from support.program_templates import PackageMaker, registry_with_templates, template_source


class Params(BaseProgramModel):
    value: int = 0


@program(name="alpha", model=Params)
def alpha(params: Params) -> None:
    pass


@program(name="alpha", model=Params)
def another_alpha(params: Params) -> None:
    pass


def test_lookup_iteration_and_membership() -> None:
    registry = registry_with_templates()
    assert registry.names == ["inspect", "weld"]
    assert [t.name for t in registry] == ["inspect", "weld"]
    assert len(registry) == 2 and "weld" in registry and "nope" not in registry
    assert registry.get("weld").title == "Weld a seam"
    assert registry.find("nope") is None
    assert repr(registry) == "ProgramRegistry(['inspect', 'weld'])"
    with pytest.raises(TemplateNotFound, match="'nope'"):
        registry.get("nope")


def test_adding_the_same_function_twice_is_harmless() -> None:
    registry = ProgramRegistry()
    registry.add(alpha)
    registry.add(alpha)
    assert registry.names == ["alpha"]


def test_a_duplicate_name_names_both_places_and_changes_nothing() -> None:
    registry = ProgramRegistry()
    registry.add(alpha)
    with pytest.raises(DuplicateTemplateError) as caught:
        registry.add(another_alpha)
    message = str(caught.value)
    assert f"{__name__}:alpha" in message and f"{__name__}:another_alpha" in message
    assert registry.get("alpha").function is alpha


def test_duplicates_across_modules_of_a_package(make_package: PackageMaker) -> None:
    package = make_package({"one.py": template_source("same"), "two.py": template_source("same")})
    registry = ProgramRegistry()
    with pytest.raises(DuplicateTemplateError) as caught:
        registry.discover(package)
    assert f"{package}.one:run_same" in str(caught.value)
    assert f"{package}.two:run_same" in str(caught.value)
    assert registry.names == []
    assert isinstance(caught.value, ValueError)


def test_only_decorated_functions_can_be_added() -> None:
    with pytest.raises(TypeError, match="not decorated with @program"):
        ProgramRegistry().add(lambda: None)


def test_the_registry_decorator_registers_at_once() -> None:
    registry = ProgramRegistry()

    @registry.program(model=Params, description="Explained.")
    def gamma(params: Params) -> None:
        """Ignored: the description wins."""

    assert registry.get("gamma").description == "Explained."
    assert registry.get("gamma").function is gamma
