"""Finding ``@program`` functions: in a package and all its submodules, and in entry points.

A module that fails to import is reported (with its name and the error) and logged; it never
hides the templates of the other modules. Installed distributions advertise templates in the
``machine_storage.programs`` entry-point group; an entry point names a module or package
(``robot_programs = "my_dist.programs"``) or one function (``"my_dist.programs:pick"``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType

from programs.template import Template, template_of

__all__ = [
    "ENTRY_POINT_GROUP",
    "Discovery",
    "DiscoveryProblem",
    "scan_entry_points",
    "scan_package",
]

ENTRY_POINT_GROUP = "machine_storage.programs"

logger = logging.getLogger("programs._discovery")


@dataclass(frozen=True)
class DiscoveryProblem:
    """A module (or entry point) whose templates could not be loaded.

    Attributes:
        module: the dotted name of the module that failed.
        error: the exception, as ``"Type: message"``.
        source: what led to the module: ``"package"`` or ``"entry point <name>"``.
    """

    module: str
    error: str
    source: str = "package"


@dataclass
class Discovery:
    """What one scan found: templates in definition order, and the modules that failed."""

    templates: list[Template] = field(default_factory=list)
    problems: list[DiscoveryProblem] = field(default_factory=list)

    def add_module(self, module: ModuleType) -> None:
        """Collect the ``@program`` functions defined in (or imported into) ``module``."""
        for value in list(vars(module).values()):
            template = template_of(value)
            if template is not None:
                self.templates.append(template)

    def fail(self, module: str, exc: BaseException, source: str) -> None:
        """Record and log a module that could not be imported."""
        problem = DiscoveryProblem(module, f"{type(exc).__name__}: {exc}", source)
        self.problems.append(problem)
        logger.error("cannot load program templates from %s (%s)", module, source, exc_info=exc)


def scan_package(target: str | ModuleType) -> Discovery:
    """Import a module, or a package and every submodule below it, and collect its templates.

    Args:
        target: a dotted module or package name, or an imported module.
    """
    found = Discovery()
    module = target if isinstance(target, ModuleType) else _import(target, found, "package")
    if module is not None:
        _walk(module, found, "package")
    return found


def scan_entry_points(group: str = ENTRY_POINT_GROUP) -> Discovery:
    """Load the templates that installed distributions advertise in an entry-point group."""
    found = Discovery()
    for entry_point in sorted(
        importlib.metadata.entry_points(group=group), key=lambda ep: (ep.name, ep.value)
    ):
        source = f"entry point {entry_point.name}"
        try:
            target = entry_point.load()
        except Exception as exc:
            found.fail(entry_point.module, exc, source)
            continue
        template = template_of(target)
        if template is not None:
            found.templates.append(template)
        elif inspect.ismodule(target):
            _walk(target, found, source)
        else:
            error = TypeError(f"{entry_point.value} is neither a module nor a @program function")
            found.fail(entry_point.module, error, source)
    return found


def _walk(module: ModuleType, found: Discovery, source: str) -> None:
    found.add_module(module)
    path = getattr(module, "__path__", None)
    if path is None:
        return
    children = sorted(pkgutil.iter_modules(path, prefix=f"{module.__name__}."), key=_name)
    for child in children:
        imported = _import(child.name, found, source)
        if imported is not None:
            if child.ispkg:
                _walk(imported, found, source)
            else:
                found.add_module(imported)


def _import(name: str, found: Discovery, source: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        found.fail(name, exc, source)
        return None


def _name(info: pkgutil.ModuleInfo) -> str:
    return info.name
