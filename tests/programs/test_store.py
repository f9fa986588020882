"""ProgramStore on every backend: validated, audited writes, hooks, dependency checks."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from programs import (
    ProgramDataError,
    ProgramExistsError,
    ProgramInstance,
    ProgramNotFound,
    ProgramRegistry,
    ProgramStore,
    TemplateInUseError,
    TemplateNotFound,
    TemplateUnavailableError,
)
from storage import Change, database
from storage.auditor import AuditLog
from support.program_templates import registry_with_templates

SEAM = {"length_mm": 12.5, "speed": 20}


def audit(component: str = "program_instances") -> list[tuple[str, str, str]]:
    with database.read_session() as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.component == component).order_by(AuditLog.id)  # type: ignore[arg-type]
        )
        return [(row.operation, row.record_id, row.actor) for row in rows]


def test_create_stores_normalised_data_and_audits_the_actor(store: ProgramStore) -> None:
    row = store.create_program("seam_1", "weld", SEAM, actor="ada")
    assert row.data == {"length_mm": 12.5, "speed": 20.0, "passes": 1}
    assert (row.valid, row.validation_errors) == (True, None)
    assert row.created_at.tzinfo is not None and row.created_at == row.updated_at
    assert store.get_program("seam_1").data == row.data
    assert audit() == [("create", "seam_1", "ada")]


@pytest.mark.parametrize(
    ("name", "template", "data", "error"),
    [
        pytest.param("taken", "weld", SEAM, ProgramExistsError, id="name-taken"),
        pytest.param("new", "no_such", SEAM, TemplateNotFound, id="unknown-template"),
        pytest.param("new", "weld", {"speed": 1}, ProgramDataError, id="invalid-data"),
        pytest.param("new", "weld", {**SEAM, "extra": 1}, ProgramDataError, id="extra-field"),
    ],
)
def test_create_refuses(
    store: ProgramStore, name: str, template: str, data: dict[str, Any], error: type[Exception]
) -> None:
    store.create_program("taken", "weld", SEAM)
    with pytest.raises(error):
        store.create_program(name, template, data, actor="ada")
    assert [row.name for row in store.list_programs()] == ["taken"]


def test_templates_not_synced_or_gone_from_the_code_cannot_be_used(store: ProgramStore) -> None:
    registry = registry_with_templates()

    @registry.program(name="fresh", model=registry.get("weld").model)
    def fresh(params: Any) -> None:
        pass

    newer = ProgramStore(registry)
    with pytest.raises(TemplateNotFound, match="not synced yet"):
        newer.create_program("p", "fresh", SEAM)
    empty = ProgramStore(ProgramRegistry())
    with pytest.raises(TemplateUnavailableError):
        empty.create_program("p", "weld", SEAM)


def test_update_replaces_the_data_and_can_switch_template(store: ProgramStore) -> None:
    created = store.create_program("job", "weld", SEAM, actor="ada")
    updated = store.update_program("job", {"length_mm": 3}, actor="bob")
    assert updated.data == {"length_mm": 3.0, "speed": 10.0, "passes": 1}
    assert updated.updated_at >= created.updated_at and updated.created_at == created.created_at
    switched = store.update_program("job", {"camera": "top"}, template_name="inspect", actor="cy")
    assert (switched.template_name, switched.data) == (
        "inspect",
        {"camera": "top", "exposure_ms": 5},
    )
    assert audit() == [("create", "job", "ada"), ("update", "job", "bob"), ("update", "job", "cy")]
    with pytest.raises(ProgramDataError):
        store.update_program("job", {"camera": 1})
    with pytest.raises(ProgramNotFound):
        store.update_program("nope", SEAM)
    assert store.get_program("job").data == switched.data


def test_delete(store: ProgramStore) -> None:
    store.create_program("job", "weld", SEAM)
    store.delete_program("job", actor="ada")
    with pytest.raises(ProgramNotFound):
        store.get_program("job")
    with pytest.raises(ProgramNotFound):
        store.delete_program("job")
    assert audit()[-1] == ("delete", "job", "ada")


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        pytest.param(1, "1 program instance uses it", id="one"),
        pytest.param(3, "3 program instances use it", id="three"),
    ],
)
def test_a_template_in_use_cannot_be_deleted(
    store: ProgramStore, instances: int, message: str
) -> None:
    for n in range(instances):
        store.create_program(f"job{n}", "weld", SEAM)
    with pytest.raises(TemplateInUseError, match=message):
        store.delete_template("weld", actor="ada")
    assert store.get_template("weld").available


def test_an_unused_template_can_be_deleted(store: ProgramStore) -> None:
    store.delete_template("inspect", actor="ada")
    assert [t.name for t in store.list_templates()] == ["weld"]
    assert audit("program_templates")[-1] == ("delete", "inspect", "ada")
    with pytest.raises(TemplateNotFound):
        store.delete_template("inspect")


def test_lists_by_template(store: ProgramStore) -> None:
    store.create_program("b", "weld", SEAM)
    store.create_program("a", "weld", SEAM)
    store.create_program("c", "inspect", {"camera": "side"})
    assert [p.name for p in store.list_programs()] == ["a", "b", "c"]
    assert [p.name for p in store.list_programs(template_name="weld")] == ["a", "b"]


def test_hooks_and_commit_listeners_work_like_for_any_model(store: ProgramStore) -> None:
    committed: list[Change] = []

    @store.instances.before_insert()
    def no_test_names(session: Session, row: ProgramInstance) -> None:
        if row.name.startswith("test"):
            raise ValueError("no test programs in production")

    @store.instances.after_commit()
    def remember(changes: list[Change]) -> None:
        committed.extend(changes)

    with pytest.raises(ValueError, match="no test programs"):
        store.create_program("test_1", "weld", SEAM, actor="ada")
    assert audit() == [] and committed == []
    store.create_program("real", "weld", SEAM, actor="ada")
    assert [(c.table, c.operation, c.values["name"]) for c in committed] == [
        ("program_instances", "create", "real")
    ]


def test_writes_join_a_surrounding_transaction(store: ProgramStore) -> None:
    with pytest.raises(RuntimeError), database.transaction():
        store.create_program("one", "weld", SEAM)
        store.create_program("two", "weld", SEAM)
        raise RuntimeError("roll everything back")
    assert store.list_programs() == [] and audit() == []
