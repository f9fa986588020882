"""Safe, additive auto-migrations: bring an existing database up to the models.

What is done: create missing tables (in foreign-key order), add nullable columns, add required
columns that have a scalar default (existing rows get that default), create missing non-unique
indexes, and unique indexes that cover a column added in the same plan without a default (it
is NULL in every row, so no two rows can collide). What is refused: anything that would lose
data or needs a decision, such as a column whose kind of type changed (number, text, time,
binary), any other new unique constraint or unique index on an existing table, a new required
column without a default, a new primary-key column. Columns the database has and the models do
not are left alone.

A plan with a refusal is never half-applied: :func:`apply_sqlmodel_migrations` raises
:class:`~storage.errors.UnsupportedMigrationError` before changing anything; a database error
while applying is a :class:`~storage.errors.MigrationExecutionError` (the transaction is rolled
back: on MySQL/MariaDB, whose DDL commits at once, the steps already made stay). Both are
:class:`~storage.errors.MigrationError`, a ``RuntimeError``, as in vention-storage 0.20.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Time,
    UniqueConstraint,
    Uuid,
    inspect,
    literal,
)
from sqlalchemy.schema import ColumnDefault, CreateIndex
from sqlalchemy.types import TypeEngine
from sqlmodel import SQLModel

from storage import database
from storage.errors import (
    MigrationError,
    MigrationExecutionError,
    StorageError,
    UnsupportedMigrationError,
    translate_driver_errors,
)

__all__ = [
    "MigrationError",
    "MigrationExecutionError",
    "MigrationPlan",
    "MigrationProblem",
    "MigrationStep",
    "UnsupportedMigrationError",
    "apply_sqlmodel_migrations",
    "plan_sqlmodel_migrations",
]

StepKind = Literal["create_table", "add_column", "create_index"]


@dataclass(frozen=True)
class MigrationStep:
    """One additive change."""

    kind: StepKind
    table: str
    name: str | None = None  # the column or index

    @property
    def description(self) -> str:
        """The step in words (vention-storage's name for it)."""
        return str(self)

    def __str__(self) -> str:
        if self.kind == "create_table":
            return f"create table {self.table}"
        noun = "column" if self.kind == "add_column" else "index"
        return f"add {noun} {self.table}.{self.name}"


@dataclass(frozen=True)
class MigrationProblem:
    """A difference that auto-migration refuses to resolve."""

    table: str
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column}: {self.reason}"


@dataclass
class MigrationPlan:
    """What :func:`apply_sqlmodel_migrations` would do, and what it refuses to do."""

    steps: list[MigrationStep] = field(default_factory=list)
    problems: list[MigrationProblem] = field(default_factory=list)

    @property
    def is_safe(self) -> bool:
        """Whether the plan can be applied (it has no problems)."""
        return not self.problems

    @property
    def is_empty(self) -> bool:
        """Whether the database already matches the models."""
        return not self.steps and not self.problems

    # vention-storage 0.20 names (its MigrationPlan and MigrationResult).
    @property
    def actions(self) -> tuple[MigrationStep, ...]:
        """The steps, as vention-storage's ``MigrationPlan.actions``."""
        return tuple(self.steps)

    @property
    def unsupported_changes(self) -> tuple[MigrationProblem, ...]:
        """The problems, as vention-storage's ``MigrationPlan.unsupported_changes``."""
        return tuple(self.problems)

    @property
    def has_unsupported_changes(self) -> bool:
        """Whether the plan has problems (``not is_safe``)."""
        return bool(self.problems)

    @property
    def applied_actions(self) -> tuple[str, ...]:
        """Each step described (``"add column machine.note"``), as vention-storage's
        ``MigrationResult.applied_actions``."""
        return tuple(str(step) for step in self.steps)


def _kind(column_type: TypeEngine[Any]) -> str | None:
    # Coarse families: a change inside a family (Integer -> BigInteger, VARCHAR(50) -> TEXT)
    # keeps the data readable, a change across families does not. Booleans are numbers (MySQL
    # reflects them as TINYINT); JSON and UUID are text (MariaDB and MySQL store them so).
    for kinds, name in (
        ((Boolean, Integer, Numeric), "number"),
        ((DateTime, Date, Time), "time"),
        ((String, JSON, Uuid), "text"),
        ((LargeBinary,), "binary"),
    ):
        if isinstance(column_type, kinds):
            return name
    impl = getattr(column_type, "impl_instance", None)
    return _kind(impl) if impl is not None else None


def _scalar_default(column: Column[Any]) -> tuple[bool, Any]:
    default = column.default
    if isinstance(default, ColumnDefault) and default.is_scalar:
        return True, default.arg
    return False, None


def _plan_columns(table: Table, existing: dict[str, Any], plan: MigrationPlan) -> set[str]:
    added: set[str] = set()
    for column in table.columns:
        reflected = existing.get(column.name)
        if reflected is not None:
            wanted, found = _kind(column.type), _kind(reflected["type"])
            if wanted and found and wanted != found:
                reason = f"type changed from {reflected['type']} to {column.type}"
                plan.problems.append(MigrationProblem(table.name, column.name, reason))
            continue
        if column.primary_key:
            reason = "new primary-key column"
        elif column.unique:
            reason = "new unique column"
        elif column.nullable or column.server_default is not None or _scalar_default(column)[0]:
            plan.steps.append(MigrationStep("add_column", table.name, column.name))
            added.add(column.name)
            continue
        else:
            reason = "new required column without a default"
        plan.problems.append(MigrationProblem(table.name, column.name, reason))
    return added


def _plan_uniques_and_indexes(
    table: Table, inspector: Any, columns_after: set[str], plan: MigrationPlan
) -> None:
    indexes = inspector.get_indexes(table.name)
    uniques = inspector.get_unique_constraints(table.name)
    unique_sets = {frozenset(u["column_names"]) for u in uniques}
    unique_sets |= {frozenset(i["column_names"]) for i in indexes if i.get("unique")}
    pk = inspector.get_pk_constraint(table.name).get("constrained_columns") or []
    unique_sets.add(frozenset(pk))
    index_names = {i["name"] for i in indexes}
    index_sets = {frozenset(i["column_names"]) for i in indexes}

    for constraint in table.constraints:
        names = frozenset(c.name for c in getattr(constraint, "columns", ()))
        if isinstance(constraint, UniqueConstraint) and names not in unique_sets:
            if names <= columns_after and not any(
                p.table == table.name and p.column in names for p in plan.problems
            ):
                plan.problems.append(
                    MigrationProblem(table.name, ",".join(sorted(names)), "new unique constraint")
                )
    for index in table.indexes:
        names = frozenset(c.name for c in index.columns)
        if index.name in index_names or names in index_sets:
            continue
        if index.unique:
            if names <= columns_after and _holds_only_nulls(table, names, plan):
                # A column of it is added now, NULL in every row: no two rows can collide.
                plan.steps.append(MigrationStep("create_index", table.name, index.name))
            elif names not in unique_sets:
                plan.problems.append(
                    MigrationProblem(table.name, ",".join(sorted(names)), "new unique index")
                )
        elif names <= columns_after:
            plan.steps.append(MigrationStep("create_index", table.name, index.name))


def _holds_only_nulls(table: Table, names: frozenset[str], plan: MigrationPlan) -> bool:
    added = {step.name for step in plan.steps if step.kind == "add_column"}
    return any(
        name in added
        and table.c[name].nullable
        and table.c[name].server_default is None
        and not _scalar_default(table.c[name])[0]
        for name in names
    )


def _selected(metadata: MetaData, tables: Iterable[str] | None) -> list[Table]:
    if tables is None:
        return list(metadata.sorted_tables)
    wanted = set(tables)
    return [table for table in metadata.sorted_tables if table.name in wanted]


def plan_sqlmodel_migrations(
    metadata: MetaData | None = None,
    *,
    engine: Engine | None = None,
    tables: Iterable[str] | None = None,
) -> MigrationPlan:
    """Compare the models' metadata with the database and return the plan; changes nothing.

    Args:
        metadata: the metadata to bring the database to; default ``SQLModel.metadata``.
        engine: default :func:`storage.database.get_engine`.
        tables: only these tables (by name); default every table of ``metadata``.
    """
    metadata = metadata if metadata is not None else SQLModel.metadata
    engine = engine if engine is not None else database.get_engine()
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    plan = MigrationPlan()
    for table in _selected(metadata, tables):
        if table.name not in existing_tables:
            plan.steps.append(MigrationStep("create_table", table.name))
            continue
        existing = {c["name"]: c for c in inspector.get_columns(table.name)}
        added = _plan_columns(table, existing, plan)
        _plan_uniques_and_indexes(table, inspector, set(existing) | added, plan)
    return plan


def _add_column(connection: Connection, table: Table, column: Column[Any]) -> None:
    dialect = connection.dialect
    spec = dialect.ddl_compiler(dialect, None).get_column_specification(column)  # type: ignore[arg-type]
    has_default, value = _scalar_default(column)
    if column.server_default is None and has_default:
        rendered = literal(value, type_=column.type).compile(
            dialect=dialect, compile_kwargs={"literal_binds": True}
        )
        spec = f"{spec} DEFAULT {rendered}"
    quoted = dialect.identifier_preparer.format_table(table)
    connection.exec_driver_sql(f"ALTER TABLE {quoted} ADD COLUMN {spec}")


def apply_sqlmodel_migrations(
    metadata: MetaData | None = None,
    *,
    engine: Engine | None = None,
    tables: Iterable[str] | None = None,
) -> MigrationPlan:
    """Apply the additive plan in one transaction and return it.

    Args:
        metadata: the metadata to bring the database to; default ``SQLModel.metadata``.
        engine: default :func:`storage.database.get_engine`.
        tables: only these tables (by name); default every table of ``metadata``.

    Raises:
        UnsupportedMigrationError: the plan has problems; the message names each table and
            column, and nothing was changed.
        MigrationExecutionError: the database failed while the plan was applied.
    """
    metadata = metadata if metadata is not None else SQLModel.metadata
    engine = engine if engine is not None else database.get_engine()
    plan = plan_sqlmodel_migrations(metadata, engine=engine, tables=tables)
    if plan.problems:
        listed = "; ".join(str(problem) for problem in plan.problems)
        raise UnsupportedMigrationError(f"auto-migration refused, nothing was changed: {listed}")
    if not plan.steps:
        return plan
    tables = {table.name: table for table in metadata.sorted_tables}
    try:
        with translate_driver_errors(), engine.begin() as connection:
            for step in plan.steps:
                _apply_step(connection, tables[step.table], step)
    except StorageError as exc:
        raise MigrationExecutionError(f"auto-migration failed: {exc}") from exc
    return plan


def _apply_step(connection: Connection, table: Table, step: MigrationStep) -> None:
    if step.kind == "create_table":
        table.create(connection)
    elif step.kind == "add_column":
        _add_column(connection, table, table.c[step.name or ""])
    else:
        index = next(i for i in table.indexes if i.name == step.name)
        connection.execute(CreateIndex(index))
