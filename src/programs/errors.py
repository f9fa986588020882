"""Every error the programs package raises.

Program errors are storage errors too, so :class:`storage.http.StorageRoute` maps them to the
same HTTP status codes as every other router, in one place. The tree::

    ProgramError                       (a storage.errors.StorageError)
    ├── TemplateNotFound               (a NotFoundError: 404)
    ├── ProgramNotFound                (a NotFoundError: 404)
    ├── ProgramExistsError             (a ConflictError: 409; the name is taken)
    ├── TemplateInUseError             (a ConflictError: 409; instances still use it)
    ├── TemplateUnavailableError       (a ConflictError: 409; no longer in the code)
    ├── ProgramDataError               (a ValidationError: 422; carries the field errors)
    ├── DuplicateTemplateError         (also a ValueError: two functions share a name)
    ├── RunNotFound                    (a NotFoundError: 404)
    ├── RunStateError                  (a ConflictError: 409; e.g. stopping a finished run)
    ├── RunnerBusyError                (a ConflictError: 409; a run is going, the queue is full)
    ├── RunnerUnavailableError         (a ConflictError: 409; the runner is not started)
    ├── ProgramNotRunnable             (a ConflictError: 409; e.g. it needs NOVA, runs locally)
    ├── BackendMissingError            (a MissingDependencyError: 503; an extra to install)
    ├── BackendError                   (a backend failed around the program: NOVA unreachable)
    └── RunCancelled                   (raised inside a program that honours a stop request)
"""

from __future__ import annotations

from typing import Any

from storage.errors import (
    ConflictError,
    MissingDependencyError,
    NotFoundError,
    StorageError,
    ValidationError,
)

__all__ = [
    "BackendError",
    "BackendMissingError",
    "DuplicateTemplateError",
    "ProgramDataError",
    "ProgramError",
    "ProgramExistsError",
    "ProgramNotFound",
    "ProgramNotRunnable",
    "RunCancelled",
    "RunNotFound",
    "RunStateError",
    "RunnerBusyError",
    "RunnerUnavailableError",
    "TemplateInUseError",
    "TemplateNotFound",
    "TemplateUnavailableError",
]


class ProgramError(StorageError):
    """Base class of every error raised by ``programs``."""


class TemplateNotFound(ProgramError, NotFoundError):
    """No program template has this name."""


class ProgramNotFound(ProgramError, NotFoundError):
    """No program instance has this name."""


class ProgramExistsError(ProgramError, ConflictError):
    """A program instance with this name already exists."""


class TemplateInUseError(ProgramError, ConflictError):
    """The template cannot be deleted: program instances still use it."""


class TemplateUnavailableError(ProgramError, ConflictError):
    """The template is stored but no longer defined in code, so data cannot be checked."""


class ProgramDataError(ProgramError, ValidationError):
    """Instance data does not match the template's parameter model.

    Attributes:
        errors: pydantic's error list (``type``, ``loc``, ``msg``, ``input``), JSON-safe.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class DuplicateTemplateError(ProgramError, ValueError):
    """Two different functions declare a template with the same name."""


class RunNotFound(ProgramError, NotFoundError):
    """No run has this id."""


class RunStateError(ProgramError, ConflictError):
    """The run is not in a state that allows this (it has finished, or another process has it)."""


class RunnerBusyError(ProgramError, ConflictError):
    """The runner takes no more runs now: one is going (``when_busy="reject"``) or the queue
    is full."""


class RunnerUnavailableError(ProgramError, ConflictError):
    """The runner is not running: the app's lifespan has not started, or it is shutting down."""


class ProgramNotRunnable(ProgramError, ConflictError):
    """The template asks for something the backend cannot give (NOVA on the local backend)."""


class BackendMissingError(ProgramError, MissingDependencyError):
    """The chosen backend needs an optional package; the message names the extra."""


class BackendError(ProgramError):
    """The backend failed around the program, e.g. NOVA could not be reached."""


class RunCancelled(ProgramError):
    """Raised by :meth:`programs.RunContext.raise_if_stopped` once a stop was requested; the
    run is recorded as cancelled."""
