"""``ProgramRegistry``: the templates an app knows, and the modules that failed to load."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, TypeVar

from pydantic import BaseModel

from programs._discovery import (
    ENTRY_POINT_GROUP,
    Discovery,
    DiscoveryProblem,
    scan_entry_points,
    scan_package,
)
from programs.errors import DuplicateTemplateError, TemplateNotFound
from programs.template import Template, program, template_of

__all__ = ["ProgramRegistry"]

FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])


class ProgramRegistry:
    """The program templates of one app, by name.

    Fill it from packages (:meth:`discover`), from installed distributions
    (:meth:`load_entry_points`) or one function at a time (:meth:`add`, :meth:`program`).
    Modules that fail to import are kept in :attr:`problems` instead of stopping discovery.

    Example::

        registry = ProgramRegistry()
        registry.discover("my_robot_app.programs")
        registry.load_entry_points()
    """

    def __init__(self) -> None:
        self._templates: dict[str, Template] = {}
        self._problems: list[DiscoveryProblem] = []

    def __repr__(self) -> str:
        return f"ProgramRegistry({sorted(self._templates)!r})"

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def __iter__(self) -> Iterator[Template]:
        """The templates, ordered by name."""
        return iter(sorted(self._templates.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._templates)

    @property
    def names(self) -> list[str]:
        """The template names, sorted."""
        return sorted(self._templates)

    @property
    def problems(self) -> tuple[DiscoveryProblem, ...]:
        """Modules and entry points that failed to load, in the order they were met."""
        return tuple(self._problems)

    def get(self, name: str) -> Template:
        """The template called ``name``.

        Raises:
            TemplateNotFound: no template has that name.
        """
        try:
            return self._templates[name]
        except KeyError:
            raise TemplateNotFound(f"program template {name!r} not found") from None

    def find(self, name: str) -> Template | None:
        """The template called ``name``, or ``None``."""
        return self._templates.get(name)

    def add(self, *functions: Callable[..., Any] | Template) -> list[Template]:
        """Register ``@program`` functions (or templates); all of them or none.

        Adding the same function again does nothing.

        Raises:
            TypeError: a function is not decorated with ``@program``.
            DuplicateTemplateError: another function already uses the name.
        """
        templates = []
        for item in functions:
            template = item if isinstance(item, Template) else template_of(item)
            if template is None:
                raise TypeError(f"{item!r} is not decorated with @program")
            templates.append(template)
        return self._merge(templates)

    def program(
        self,
        *,
        name: str | None = None,
        model: type[BaseModel],
        title: str | None = None,
        description: str | None = None,
        version: str | None = None,
    ) -> Callable[[FunctionT], FunctionT]:
        """Like :func:`programs.program`, and registers the function here at once."""
        mark = program(
            name=name, model=model, title=title, description=description, version=version
        )

        def register(function: FunctionT) -> FunctionT:
            self.add(mark(function))
            return function

        return register

    def discover(self, *packages: str | ModuleType) -> list[Template]:
        """Import packages (and every submodule) or modules and register their templates.

        A module that fails to import is logged and added to :attr:`problems`; the templates
        of every other module are still registered.

        Returns:
            the templates found (including ones that were registered already).

        Raises:
            DuplicateTemplateError: two different functions use the same template name.
        """
        return self._take([scan_package(package) for package in packages])

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[Template]:
        """Register the templates installed distributions advertise in ``group``.

        Raises:
            DuplicateTemplateError: two different functions use the same template name.
        """
        return self._take([scan_entry_points(group)])

    def _take(self, scans: Iterable[Discovery]) -> list[Template]:
        templates: list[Template] = []
        for scan in scans:
            templates.extend(scan.templates)
            self._problems.extend(scan.problems)
        return self._merge(templates)

    def _merge(self, templates: list[Template]) -> list[Template]:
        merged = dict(self._templates)
        for template in templates:
            known = merged.get(template.name)
            if known is not None and not _same(known, template):
                raise DuplicateTemplateError(
                    f"program template {template.name!r} is defined twice: "
                    f"{known.location} and {template.location}"
                )
            merged[template.name] = template
        self._templates = merged
        return templates


def _same(known: Template, new: Template) -> bool:
    # The same function, or the same place re-imported (importlib.reload in a dev server).
    return known.function is new.function or known.location == new.location
