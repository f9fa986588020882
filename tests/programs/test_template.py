"""The @program decorator and Template: names, models, schemas, validation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from programs import BaseProgramModel, ProgramDataError, Template, program
from programs.template import template_of
from support.program_templates import Weld


class Speed(BaseProgramModel):
    value: float = 1.0


def test_decorator_marks_async_and_sync_functions_and_returns_them_unchanged() -> None:
    async def run_async(params: Speed) -> str:
        """Runs fast.

        More text."""
        return "async"

    def run_sync(params: Speed) -> str:
        return "sync"

    marked_async = program(name="fast", model=Speed, title="Fast", version="3")(run_async)
    marked_sync = program(model=Speed)(run_sync)
    assert marked_async is run_async and marked_sync is run_sync
    assert run_sync(Speed()) == "sync"
    fast, plain = template_of(run_async), template_of(run_sync)
    assert isinstance(fast, Template) and isinstance(plain, Template)
    assert (fast.name, fast.title, fast.version, fast.is_async) == ("fast", "Fast", "3", True)
    assert fast.description == "Runs fast.\n\nMore text."
    assert (plain.name, plain.is_async, plain.description) == ("run_sync", False, None)
    assert fast.location.endswith(":test_decorator_marks_async_and_sync_functions_and_returns_"
                                  "them_unchanged.<locals>.run_async")  # fmt: skip
    assert fast.model_path == f"{__name__}:Speed"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        pytest.param({"name": "has space", "model": Speed}, ValueError, id="space-in-name"),
        pytest.param({"name": "a/b", "model": Speed}, ValueError, id="slash-in-name"),
        pytest.param({"name": "", "model": Speed}, ValueError, id="empty-name"),
        pytest.param({"name": "x" * 201, "model": Speed}, ValueError, id="long-name"),
        pytest.param({"name": "ok", "model": dict}, TypeError, id="model-not-pydantic"),
    ],
)
def test_invalid_declarations_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        program(**options)(lambda: None)


def test_only_functions_can_be_templates() -> None:
    with pytest.raises(TypeError, match="decorates functions"):
        program(name="cls", model=Speed)(Speed)  # type: ignore[type-var]


def test_base_program_model_forbids_extra_fields() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        Speed.model_validate({"value": 1, "unknown": 2})


def test_schema_hash_follows_the_schema() -> None:
    class Other(BaseModel):
        value: float = 2.0

    first = Template(name="a", model=Speed, function=lambda: None)
    same = Template(name="b", model=Speed, function=lambda: None)
    other = Template(name="c", model=Other, function=lambda: None)
    assert first.json_schema["properties"]["value"]["default"] == 1.0
    assert first.schema_hash == same.schema_hash != other.schema_hash
    assert len(first.schema_hash) == 64


@pytest.mark.parametrize(
    ("data", "locations"),
    [
        pytest.param({}, [("length_mm",)], id="missing"),
        pytest.param({"length_mm": -1}, [("length_mm",)], id="out-of-range"),
        pytest.param({"length_mm": 5, "spee": 1}, [("spee",)], id="extra-field"),
        pytest.param({"length_mm": "long"}, [("length_mm",)], id="wrong-type"),
        pytest.param({"length_mm": float("nan")}, [("length_mm",)], id="nan"),
        pytest.param({"length_mm": float("inf")}, [("length_mm",)], id="infinity"),
        pytest.param([1, 2], [()], id="not-an-object"),
    ],
)
def test_validation_errors_name_the_fields(data: Any, locations: list[tuple[str, ...]]) -> None:
    template = Template(name="weld", model=Weld, function=lambda: None)
    with pytest.raises(ProgramDataError) as caught:
        template.normalise(data)
    assert [tuple(error["loc"]) for error in caught.value.errors] == locations
    assert template.check(data) is not None
    assert all("input" not in error for error in template.check(data) or [])


def test_normalise_fills_in_defaults_and_returns_json() -> None:
    template = Template(name="weld", model=Weld, function=lambda: None)
    assert template.normalise({"length_mm": 3}) == {"length_mm": 3.0, "speed": 10.0, "passes": 1}
    assert template.normalise(Weld(length_mm=3)) == {"length_mm": 3.0, "speed": 10.0, "passes": 1}
    assert template.check({"length_mm": 3}) is None
