"""The two tables of the program store: ``program_templates`` and ``program_instances``.

They follow the seed app's schema (name keys, the template's model class and JSON schema, the
instance's JSON data, timestamps) and add what keeps instances honest when code changes:
a template's ``schema_hash`` and ``available`` flag, an instance's ``valid`` flag and
``validation_errors``. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from storage.auditor import utcnow

__all__ = ["NAME_LENGTH", "ProgramInstance", "ProgramTemplate"]

NAME_LENGTH = 200


class ProgramTemplate(SQLModel, table=True):
    """A template as last synced from code; ``available`` is false once the code is gone."""

    __tablename__ = "program_templates"

    name: str = Field(primary_key=True, max_length=NAME_LENGTH)
    title: str | None = Field(default=None, max_length=NAME_LENGTH)
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    model_class_name: str = Field(max_length=NAME_LENGTH)
    model_path: str = Field(default="", max_length=500)
    function_path: str = Field(default="", max_length=500)
    # The column keeps the seed's name; the attribute avoids pydantic's BaseModel.schema.
    json_schema: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("schema", JSON, nullable=False)
    )
    schema_hash: str = Field(default="", max_length=64)
    version: str | None = Field(default=None, max_length=100)
    available: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ProgramInstance(SQLModel, table=True):
    """A stored set of parameters for one template, under its own name."""

    __tablename__ = "program_instances"

    name: str = Field(primary_key=True, max_length=NAME_LENGTH)
    template_name: str = Field(
        foreign_key="program_templates.name", index=True, max_length=NAME_LENGTH
    )
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    valid: bool = True
    validation_errors: list[dict[str, Any]] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
