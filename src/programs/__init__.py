"""machine-storage programs: robot program templates in code, their stored instances, the API.

Declare a template::

    from programs import BaseProgramModel, program

    class PickAndPlace(BaseProgramModel):
        speed: float = 0.5

    @program(name="pick_and_place", model=PickAndPlace)
    async def pick_and_place(params: PickAndPlace) -> None: ...

and serve it: ``bootstrap(app, programs=["my_robot_app.programs"])``.
"""

from __future__ import annotations

from programs.discovery import ENTRY_POINT_GROUP, DiscoveryProblem
from programs.errors import (
    DuplicateTemplateError,
    ProgramDataError,
    ProgramError,
    ProgramExistsError,
    ProgramNotFound,
    TemplateInUseError,
    TemplateNotFound,
    TemplateUnavailableError,
)
from programs.extension import ProgramsExtension, ProgramSource, setup
from programs.registry import ProgramRegistry
from programs.router import build_programs_router
from programs.store import ProgramStore
from programs.sync import SyncReport
from programs.tables import ProgramInstance, ProgramTemplate
from programs.template import BaseProgramModel, Template, program

__all__ = [
    "BaseProgramModel",
    "DiscoveryProblem",
    "DuplicateTemplateError",
    "ENTRY_POINT_GROUP",
    "ProgramDataError",
    "ProgramError",
    "ProgramExistsError",
    "ProgramInstance",
    "ProgramNotFound",
    "ProgramRegistry",
    "ProgramSource",
    "ProgramStore",
    "ProgramTemplate",
    "ProgramsExtension",
    "SyncReport",
    "Template",
    "TemplateInUseError",
    "TemplateNotFound",
    "TemplateUnavailableError",
    "build_programs_router",
    "program",
    "setup",
]
