"""machine-storage programs: robot program templates in code, their stored instances, the API.

Declare a template::

    from programs import BaseProgramModel, program

    class PickAndPlace(BaseProgramModel):
        speed: float = 0.5

    @program(name="pick_and_place", model=PickAndPlace)
    async def pick_and_place(params: PickAndPlace) -> None: ...

and serve it: ``bootstrap(app, programs=["my_robot_app.programs"])``; the stored programs
then run with ``POST /api/v2/programs/{name}/runs`` (see :class:`Runner`).
"""

from __future__ import annotations

from programs._config import RunnerConfig
from programs._context import ProgramCall, RunContext
from programs._discovery import ENTRY_POINT_GROUP, DiscoveryProblem
from programs._registry import ProgramRegistry
from programs._router import build_programs_router
from programs._runs_router import RunLineRead, RunRead, RunSummary, build_runs_router
from programs._tables import ProgramInstance, ProgramRun, ProgramRunLine, ProgramTemplate, RunStatus
from programs.backends import LocalBackend, NovaBackend, NovaSettings, RunnerBackend
from programs.errors import (
    BackendError,
    BackendMissingError,
    DuplicateTemplateError,
    ProgramDataError,
    ProgramError,
    ProgramExistsError,
    ProgramNotFound,
    ProgramNotRunnable,
    RunCancelled,
    RunnerBusyError,
    RunnerUnavailableError,
    RunNotFound,
    RunStateError,
    TemplateInUseError,
    TemplateNotFound,
    TemplateUnavailableError,
)
from programs.extension import ProgramsExtension, ProgramSource, setup
from programs.runner import Runner
from programs.store import ProgramStore
from programs.sync import SyncReport
from programs.template import BaseProgramModel, Template, program
from programs.worker import run_worker, serve_runner

__all__ = [
    "BackendError",
    "BackendMissingError",
    "BaseProgramModel",
    "DiscoveryProblem",
    "DuplicateTemplateError",
    "ENTRY_POINT_GROUP",
    "LocalBackend",
    "NovaBackend",
    "NovaSettings",
    "ProgramCall",
    "ProgramDataError",
    "ProgramError",
    "ProgramExistsError",
    "ProgramInstance",
    "ProgramNotFound",
    "ProgramNotRunnable",
    "ProgramRegistry",
    "ProgramRun",
    "ProgramRunLine",
    "ProgramSource",
    "ProgramStore",
    "ProgramTemplate",
    "ProgramsExtension",
    "RunCancelled",
    "RunContext",
    "RunLineRead",
    "RunNotFound",
    "RunRead",
    "RunStateError",
    "RunStatus",
    "RunSummary",
    "Runner",
    "RunnerBackend",
    "RunnerBusyError",
    "RunnerConfig",
    "RunnerUnavailableError",
    "SyncReport",
    "Template",
    "TemplateInUseError",
    "TemplateNotFound",
    "TemplateUnavailableError",
    "build_programs_router",
    "build_runs_router",
    "program",
    "run_worker",
    "serve_runner",
    "setup",
]
