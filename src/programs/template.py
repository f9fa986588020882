"""Program templates in code: the ``@program`` decorator and its parameter models.

A template is a function (``async def`` or plain ``def``) plus a pydantic model describing its
parameters. The decorator only marks the function; a :class:`~programs._registry.ProgramRegistry`
finds marked functions when it scans modules, so defining a template changes no global state.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from programs.errors import ProgramDataError
from storage.auditor import to_json_safe

__all__ = ["BaseProgramModel", "Template", "program"]

FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])

_TEMPLATE_ATTRIBUTE = "__program_template__"
# Template names travel in URLs (/program-templates/{name}); keep them to one plain segment.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


class BaseProgramModel(BaseModel):
    """Base class of template parameter models: unknown fields, NaN and infinity are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True, eq=False)
class Template:
    """One program template: its function, its parameter model and how it is described.

    Attributes:
        name: unique name, used in URLs and stored with every instance.
        model: the pydantic model that instance data is validated with.
        function: the decorated function, called with a validated ``model`` instance.
        title: a short human-readable name (default: none).
        description: longer help text (default: the function's docstring).
        version: free-form version chosen by the author (stored, shown, never compared).
    """

    name: str
    model: type[BaseModel]
    function: Callable[..., Any] = field(repr=False)
    title: str | None = None
    description: str | None = None
    version: str | None = None

    @property
    def location(self) -> str:
        """Where the function is defined, as ``module:qualname``."""
        return f"{self.function.__module__}:{self.function.__qualname__}"

    @property
    def model_path(self) -> str:
        """Where the parameter model is defined, as ``module:qualname``."""
        return f"{self.model.__module__}:{self.model.__qualname__}"

    @property
    def is_async(self) -> bool:
        """Whether the function is a coroutine function (``async def``)."""
        return inspect.iscoroutinefunction(self.function)

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the parameter model (what a UI renders a form from)."""
        return self.model.model_json_schema()

    @cached_property
    def schema_hash(self) -> str:
        """SHA-256 of the canonical JSON schema: it changes exactly when the schema does."""
        text = json.dumps(self.json_schema, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def validate(self, data: Any) -> BaseModel:
        """Validate instance data against the parameter model.

        Data is validated as JSON (the way it arrives over HTTP and is stored), so a strict
        model treats stored and submitted data alike; Python values such as datetimes and
        enums are converted to their JSON form first.

        Raises:
            ProgramDataError: the data does not match; ``errors`` lists the fields.
        """
        try:
            return self.model.model_validate_json(json.dumps(to_json_safe(data)))
        except PydanticValidationError as exc:
            raise ProgramDataError(
                f"the data does not match template {self.name!r} ({exc.error_count()} errors)",
                _error_list(exc, include_input=True),
            ) from None

    def check(self, data: Any) -> list[dict[str, Any]] | None:
        """The validation errors of stored data (without the input values), or ``None``."""
        try:
            self.validate(data)
        except ProgramDataError as exc:
            return [{k: v for k, v in e.items() if k != "input"} for e in exc.errors]
        return None

    def normalise(self, data: Any) -> dict[str, Any]:
        """Validate ``data`` and return it as stored: every field, JSON-safe.

        Raises:
            ProgramDataError: the data does not match.
        """
        return self.validate(data).model_dump(mode="json")


def _error_list(exc: PydanticValidationError, *, include_input: bool) -> list[dict[str, Any]]:
    """Pydantic's errors as JSON-safe dictionaries (validator exceptions become text)."""
    errors: list[dict[str, Any]] = json.loads(
        exc.json(include_url=False, include_input=include_input)
    )
    return errors


def program(
    *,
    name: str | None = None,
    model: type[BaseModel],
    title: str | None = None,
    description: str | None = None,
    version: str | None = None,
) -> Callable[[FunctionT], FunctionT]:
    """Declare a function as a program template.

    The function is returned unchanged (it still runs when called directly); discovery finds
    it by the template attached to it.

    Args:
        name: the template's unique name (default: the function's name); letters, digits,
            ``_``, ``.`` and ``-``, at most 200 characters.
        model: the parameter model, usually a :class:`BaseProgramModel` subclass.
        title: a short human-readable name.
        description: help text; default the function's docstring.
        version: a version string of your choosing.

    Raises:
        TypeError: ``model`` is not a pydantic model, or the target is not a function.
        ValueError: the name is not valid.

    Example::

        @program(name="pick_and_place", model=PickAndPlace)
        async def pick_and_place(params: PickAndPlace) -> None: ...
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"model must be a pydantic model class, not {model!r}")

    def mark(function: FunctionT) -> FunctionT:
        if not inspect.isfunction(function):
            raise TypeError(f"@program decorates functions, not {function!r}")
        template_name = name if name is not None else function.__name__
        if not _NAME.fullmatch(template_name):
            raise ValueError(
                f"invalid template name {template_name!r}: use letters, digits, '_', '.' and "
                "'-' (at most 200 characters, starting with a letter or digit)"
            )
        doc = inspect.getdoc(function)
        template = Template(
            name=template_name,
            model=model,
            function=function,
            title=title,
            description=description if description is not None else doc,
            version=version,
        )
        setattr(function, _TEMPLATE_ATTRIBUTE, template)
        return function

    return mark


def template_of(obj: Any) -> Template | None:
    """The template a ``@program`` function carries, or ``None`` for anything else."""
    template = getattr(obj, _TEMPLATE_ATTRIBUTE, None) if inspect.isfunction(obj) else None
    return template if isinstance(template, Template) else None
