"""Additive auto-migrations: what is applied, what is refused, and that refusals change nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
)

from storage import database
from storage.errors import MigrationError, MigrationExecutionError, UnsupportedMigrationError
from storage.migrations import apply_sqlmodel_migrations, plan_sqlmodel_migrations

pytestmark = pytest.mark.usefixtures("backend")


def machine_v1() -> MetaData:
    metadata = MetaData()
    Table(
        "mig_machine",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
    )
    return metadata


def machine_v2() -> MetaData:
    metadata = MetaData()
    Table(
        "mig_machine",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False, index=True),
        Column("note", String(100), nullable=True),
        Column("speed", Integer, nullable=False, default=100),
        Column("enabled", Boolean, nullable=False, default=True),
        Column("serviced_at", DateTime, nullable=True),
    )
    Table(
        "mig_axis",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("machine_id", Integer, ForeignKey("mig_machine.id"), nullable=False),
    )
    return metadata


def columns(table: str) -> set[str]:
    return {c["name"] for c in inspect(database.get_engine()).get_columns(table)}


def seed_v1() -> None:
    engine = database.get_engine()
    v1 = machine_v1()
    v1.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(v1.tables["mig_machine"]), [{"name": "press"}, {"name": "arm"}])


def test_additive_changes_are_planned_then_applied_with_backfill() -> None:
    seed_v1()
    v2 = machine_v2()
    plan = plan_sqlmodel_migrations(v2)
    assert plan.is_safe and not plan.is_empty
    assert [str(step) for step in plan.steps] == [
        "add column mig_machine.note",
        "add column mig_machine.speed",
        "add column mig_machine.enabled",
        "add column mig_machine.serviced_at",
        "add index mig_machine.ix_mig_machine_name",
        "create table mig_axis",
    ]
    assert columns("mig_machine") == {"id", "name"}  # planning changes nothing

    applied = apply_sqlmodel_migrations(v2)
    # vention-storage 0.20's names for the plan and the result
    assert applied.applied_actions == tuple(str(step) for step in plan.steps)
    assert [a.description for a in applied.actions] == list(applied.applied_actions)
    assert not applied.has_unsupported_changes and applied.unsupported_changes == ()
    assert columns("mig_machine") == {"id", "name", "note", "speed", "enabled", "serviced_at"}
    assert "mig_axis" in inspect(database.get_engine()).get_table_names()
    machine = v2.tables["mig_machine"]
    with database.get_engine().connect() as connection:
        rows = connection.execute(select(machine.c.name, machine.c.speed, machine.c.enabled)).all()
    assert sorted(rows) == [("arm", 100, True), ("press", 100, True)]
    assert plan_sqlmodel_migrations(v2).is_empty  # idempotent


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda t: t.append_column(Column("serial", String(20), nullable=False)),
            "mig_machine.serial: new required column without a default",
            id="required-without-default",
        ),
        pytest.param(
            lambda t: t.append_column(Column("code", String(20), unique=True)),
            "mig_machine.code: new unique column",
            id="new-unique-column",
        ),
        pytest.param(
            lambda t: t.append_constraint(UniqueConstraint("name")),
            "mig_machine.name: new unique constraint",
            id="new-unique-constraint",
        ),
        pytest.param(
            lambda t: Index("ix_unique_name", t.c.name, unique=True),
            "mig_machine.name: new unique index",
            id="new-unique-index",
        ),
    ],
)
def test_destructive_or_ambiguous_changes_are_refused(
    change: Callable[[Table], object], message: str
) -> None:
    seed_v1()
    metadata = machine_v1()
    table = metadata.tables["mig_machine"]
    table.append_column(Column("note", String(100), nullable=True))  # a safe change alongside
    change(table)
    plan = plan_sqlmodel_migrations(metadata)
    assert not plan.is_safe
    with pytest.raises(UnsupportedMigrationError, match="nothing was changed") as info:
        apply_sqlmodel_migrations(metadata)
    assert isinstance(info.value, MigrationError) and isinstance(info.value, RuntimeError)
    assert message in str(info.value)
    assert columns("mig_machine") == {"id", "name"}


def test_type_change_is_refused() -> None:
    seed_v1()
    metadata = MetaData()
    Table(
        "mig_machine",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", Integer, nullable=False),
    )
    with pytest.raises(MigrationError, match=r"mig_machine\.name: type changed"):
        apply_sqlmodel_migrations(metadata)


def test_a_step_the_database_fails_is_a_migration_execution_error() -> None:
    """The plan looks safe (a view is not a table), but CREATE TABLE fails on the name."""
    engine = database.get_engine()
    with engine.begin() as connection:
        connection.execute(text("CREATE VIEW mig_view AS SELECT 1 AS x"))
    metadata = MetaData()
    Table("mig_view", metadata, Column("id", Integer, primary_key=True))
    try:
        with pytest.raises(MigrationExecutionError, match="auto-migration failed") as info:
            apply_sqlmodel_migrations(metadata)
        assert isinstance(info.value, RuntimeError) and "CREATE" not in str(info.value)
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP VIEW mig_view"))


def test_columns_only_in_the_database_are_left_alone() -> None:
    seed_v1()
    metadata = MetaData()
    Table("mig_machine", metadata, Column("id", Integer, primary_key=True))
    assert plan_sqlmodel_migrations(metadata).is_empty


def test_default_metadata_is_the_sqlmodel_one() -> None:
    assert plan_sqlmodel_migrations().is_empty  # the fixture created every model table


def test_a_unique_index_over_a_new_nullable_column_is_created() -> None:
    seed_v1()
    metadata = machine_v1()
    table = metadata.tables["mig_machine"]
    table.append_column(Column("slot", Integer, nullable=True))
    Index("uq_mig_machine_name_slot", table.c.name, table.c.slot, unique=True)
    plan = apply_sqlmodel_migrations(metadata, tables=["mig_machine"])
    assert [str(step) for step in plan.steps] == [
        "add column mig_machine.slot",
        "add index mig_machine.uq_mig_machine_name_slot",
    ]
    engine = database.get_engine()
    indexes = {i["name"]: i for i in inspect(engine).get_indexes("mig_machine")}
    assert indexes["uq_mig_machine_name_slot"]["unique"]
    with engine.begin() as connection:  # NULLs never collide; a second equal pair does
        connection.execute(
            insert(table), [{"name": "press", "slot": None}, {"name": "press", "slot": 1}]
        )
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with engine.begin() as connection:
            connection.execute(insert(table), [{"name": "press", "slot": 1}])
    assert plan_sqlmodel_migrations(metadata, tables=["mig_machine"]).is_empty


def test_tables_limits_the_plan() -> None:
    seed_v1()
    v2 = machine_v2()
    plan = plan_sqlmodel_migrations(v2, tables=["mig_axis"])
    assert [str(step) for step in plan.steps] == ["create table mig_axis"]
