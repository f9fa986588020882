"""Startup sync on every backend: upsert, unavailable marking, flagging instances."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field
from sqlalchemy import create_engine, insert, select

from programs import BaseProgramModel, ProgramRegistry, ProgramStore, ProgramTemplate
from programs.sync import SYNC_ACTOR
from storage import database
from storage.auditor import AuditLog
from support.program_templates import Weld, registry_with_templates

pytestmark = pytest.mark.usefixtures("backend")


class StricterWeld(BaseProgramModel):
    """Version 3: speeds above 50 are no longer allowed, and a wire is required."""

    length_mm: float = Field(gt=0)
    speed: float = Field(default=10.0, gt=0, le=50)
    passes: int = 1
    wire: str


def audit_rows(component: str) -> list[AuditLog]:
    with database.read_session() as session:
        statement = select(AuditLog).where(AuditLog.component == component).order_by(AuditLog.id)  # type: ignore[arg-type]
        return list(session.scalars(statement))


def registry_with(name: str, model: type[BaseProgramModel], **options: Any) -> ProgramRegistry:
    registry = ProgramRegistry()

    @registry.program(name=name, model=model, **options)
    async def run(params: BaseProgramModel) -> None:
        pass

    return registry


def test_first_sync_stores_every_template() -> None:
    store = ProgramStore(registry_with_templates())
    report = store.sync()
    assert sorted(report.added) == ["inspect", "weld"]
    assert report.changed == report.unavailable == report.flagged == []
    weld = store.get_template("weld")
    assert weld.model_class_name == "Weld"
    assert weld.model_path == "support.program_templates:Weld"
    assert weld.function_path.startswith("support.program_templates:registry_with_templates")
    assert weld.json_schema == Weld.model_json_schema()
    assert weld.schema_hash == store.registry.get("weld").schema_hash
    assert (weld.title, weld.version, weld.available) == ("Weld a seam", "2", True)
    assert weld.description == "Weld along a straight seam."
    assert weld.created_at.tzinfo is not None
    rows = audit_rows("program_templates")
    assert [(r.operation, r.actor) for r in rows] == [("create", SYNC_ACTOR)] * 2


def test_a_second_sync_with_the_same_code_writes_nothing() -> None:
    ProgramStore(registry_with_templates()).sync()
    before = ProgramStore().get_template("weld").updated_at
    report = ProgramStore(registry_with_templates()).sync()
    assert str(report) == "no changes"
    assert len(audit_rows("program_templates")) == 2
    assert ProgramStore().get_template("weld").updated_at == before


def test_a_changed_description_updates_the_row_but_not_the_schema() -> None:
    ProgramStore(registry_with("weld", Weld, description="old")).sync()
    report = ProgramStore(registry_with("weld", Weld, description="new")).sync()
    assert (report.changed, report.schema_changed) == (["weld"], [])
    assert ProgramStore().get_template("weld").description == "new"


def test_templates_gone_from_the_code_are_marked_unavailable_and_come_back() -> None:
    full = ProgramStore(registry_with_templates())
    full.sync()
    full.create_program("seam_1", "weld", {"length_mm": 20}, actor="ada")
    only_inspect = ProgramRegistry()
    only_inspect.add(full.registry.get("inspect"))
    report = ProgramStore(only_inspect).sync()
    assert (report.unavailable, report.flagged) == (["weld"], ["seam_1"])
    weld = full.get_template("weld")
    assert weld.available is False
    instance = full.get_program("seam_1")
    assert instance.data == {"length_mm": 20.0, "speed": 10.0, "passes": 1}
    assert instance.valid is False
    assert instance.validation_errors is not None
    assert instance.validation_errors[0]["type"] == "template_unavailable"

    report = full.sync()
    assert (report.changed, report.cleared) == (["weld"], ["seam_1"])
    assert full.get_template("weld").available is True
    assert full.get_program("seam_1").valid is True
    assert full.get_program("seam_1").validation_errors is None


def test_instances_that_no_longer_match_a_changed_model_are_flagged() -> None:
    old = ProgramStore(registry_with("weld", Weld))
    old.sync()
    old.create_program("slow", "weld", {"length_mm": 5, "speed": 20}, actor="ada")
    old.create_program("fast", "weld", {"length_mm": 5, "speed": 80}, actor="ada")
    old_hash = old.get_template("weld").schema_hash

    new = ProgramStore(registry_with("weld", StricterWeld))
    report = new.sync(actor="deploy")
    assert report.schema_changed == ["weld"]
    assert sorted(report.flagged) == ["fast", "slow"]
    template = new.get_template("weld")
    assert template.schema_hash != old_hash
    assert template.json_schema == StricterWeld.model_json_schema()
    fast = new.get_program("fast")
    assert fast.valid is False
    assert fast.data["speed"] == 80.0  # the data is kept as it was
    errors = {(e["type"], tuple(e["loc"])) for e in fast.validation_errors or []}
    assert errors == {("less_than_equal", ("speed",)), ("missing", ("wire",))}
    assert all("input" not in e for e in fast.validation_errors or [])
    updates = [r for r in audit_rows("program_instances") if r.operation == "update"]
    assert {r.actor for r in updates} == {"deploy"}

    fixed = new.update_program("slow", {"length_mm": 5, "wire": "SG2"}, actor="ada")
    assert (fixed.valid, fixed.validation_errors) == (True, None)


def test_a_template_inserted_by_another_process_meanwhile_is_not_an_error(
    backend: str,
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite serialises writers: no other process can insert meanwhile")
    store = ProgramStore(registry_with("weld", Weld))
    raced: list[bool] = []

    @store.templates.before_insert()
    def another_process_wins(session: object, row: ProgramTemplate) -> None:
        if raced:
            return
        raced.append(True)
        other = create_engine(database.get_database().url)
        try:
            with other.begin() as connection:
                values = {c: getattr(row, c) for c in store.templates.columns}
                values["schema"] = values.pop("json_schema")
                connection.execute(insert(ProgramTemplate.__table__), values)  # type: ignore[attr-defined]
        finally:
            other.dispose()

    report = store.sync()
    assert raced == [True]
    assert report.added == []
    assert store.get_template("weld").available is True
