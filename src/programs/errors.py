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
    └── DuplicateTemplateError         (also a ValueError: two functions share a name)
"""

from __future__ import annotations

from typing import Any

from storage.errors import ConflictError, NotFoundError, StorageError, ValidationError

__all__ = [
    "DuplicateTemplateError",
    "ProgramDataError",
    "ProgramError",
    "ProgramExistsError",
    "ProgramNotFound",
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
