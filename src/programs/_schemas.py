"""The request and response bodies of the ``/api/v2`` routes (typed in the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from programs._tables import NAME_LENGTH

__all__ = [
    "BackupInfo",
    "DatabaseStats",
    "DiscoveryProblemRead",
    "ProgramCreate",
    "ProgramRead",
    "ProgramUpdate",
    "TemplateRead",
]

_BODY = ConfigDict(extra="forbid")


class TemplateRead(BaseModel):
    """A program template, with the JSON schema a UI renders the parameter form from."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    title: str | None = None
    description: str | None = None
    model_class_name: str = Field(description="The class name of the parameter model.")
    model_path: str = Field(description="Where the model is defined: module:qualname.")
    function_path: str = Field(description="Where the function is defined: module:qualname.")
    json_schema: dict[str, Any] = Field(description="JSON schema of the parameters.")
    schema_hash: str = Field(description="SHA-256 of the schema; changes with it.")
    version: str | None = None
    available: bool = Field(description="False once the template is no longer in the code.")
    created_at: datetime
    updated_at: datetime


class ProgramRead(BaseModel):
    """A stored program instance."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    template_name: str
    data: dict[str, Any] = Field(description="The parameters, every field filled in.")
    valid: bool = Field(description="False when the data no longer matches the template.")
    validation_errors: list[dict[str, Any]] | None = Field(
        default=None, description="Why the data no longer matches (pydantic's error list)."
    )
    created_at: datetime
    updated_at: datetime


class ProgramCreate(BaseModel):
    """``POST /programs/{program_name}``: the template and its parameters."""

    model_config = _BODY

    template_name: str = Field(min_length=1, max_length=NAME_LENGTH)
    data: dict[str, Any] = Field(default_factory=dict)


class ProgramUpdate(BaseModel):
    """``PUT /programs/{program_name}``: new parameters (they replace the old ones as a
    whole) and, optionally, another template."""

    model_config = _BODY

    data: dict[str, Any]
    template_name: str | None = Field(default=None, min_length=1, max_length=NAME_LENGTH)


class DiscoveryProblemRead(BaseModel):
    """A module whose templates could not be loaded."""

    module: str
    error: str
    source: str


class DatabaseStats(BaseModel):
    """``GET /database/stats``."""

    backend: str = Field(description="sqlite, postgresql, mysql or mariadb.")
    database: str | None = Field(description="The SQLite file or the database name.")
    size_bytes: int | None = Field(description="Size on disk, when the backend tells.")
    tables: dict[str, int] = Field(description="Rows per table.")
    templates: int
    unavailable_templates: int
    programs: int
    invalid_programs: int
    discovery_problems: list[DiscoveryProblemRead] = Field(
        description="Modules whose templates failed to load at startup."
    )


class BackupInfo(BaseModel):
    """``POST /database/backup``: the snapshot that was written."""

    path: str = Field(description="Where the file was written on the server.")
    size_bytes: int
    created_at: datetime
    backend: str = Field(description="The backend that was copied; the file is SQLite.")
