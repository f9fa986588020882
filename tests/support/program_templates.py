"""Program templates the programs tests store: one async, one sync."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from programs import ENTRY_POINT_GROUP, BaseProgramModel, ProgramRegistry


class Weld(BaseProgramModel):
    """A seam to weld."""

    length_mm: float = Field(gt=0)
    speed: float = Field(default=10.0, gt=0, le=100)
    passes: int = 1


class Inspect(BaseProgramModel):
    """A picture to take."""

    camera: str
    exposure_ms: int = 5


def registry_with_templates() -> ProgramRegistry:
    """A new registry holding ``weld`` (async) and ``inspect`` (sync)."""
    registry = ProgramRegistry()

    @registry.program(name="weld", model=Weld, title="Weld a seam", version="2")
    async def weld(params: Weld) -> None:
        """Weld along a straight seam."""

    @registry.program(name="inspect", model=Inspect)
    def inspect_part(params: Inspect) -> None:
        """Take a picture."""

    return registry


PackageMaker = Callable[[dict[str, str]], str]
"""The ``make_package`` fixture: writes ``{relative path: source}``, returns the package name."""


def template_source(name: str) -> str:
    """The source of a module that declares one async template called ``name``."""
    return f"""
from programs import BaseProgramModel, program

class Params(BaseProgramModel):
    value: int = 0

@program(name="{name}", model=Params)
async def run_{name}(params: Params) -> None:
    pass
"""


def install_distribution(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """Make ``site`` hold an installed distribution advertising program entry points."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{key} = {value}" for key, value in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    importlib.invalidate_caches()
