"""Batch inserts through Core: keys, defaults and the ORM fallback match an ORM flush."""

from __future__ import annotations

import pytest
from sqlmodel import select

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from support.models import Cell, Recipe, Robot, Setting, User

pytestmark = pytest.mark.usefixtures("backend")


def test_generated_keys_match_the_stored_rows() -> None:
    users = ModelAccessor(User, "users")
    users.insert(User(name="first"))
    batch = users.insert_many([User(name=f"u{i}") for i in range(1200)])
    for user in (batch[0], batch[599], batch[-1]):
        stored = users.get(user.id)
        assert stored is not None and stored.name == user.name
    with database.read_session() as session:
        audited = {
            (row.record_id, row.after["name"] if row.after else None)
            for row in session.exec(select(AuditLog))
        }
    assert {(str(u.id), u.name) for u in batch} <= audited


def test_explicit_and_generated_keys_in_one_batch() -> None:
    users = ModelAccessor(User, "users")
    batch = users.insert_many([User(id=1000, name="explicit"), User(name="generated")])
    assert batch[0].id == 1000
    generated = users.get(batch[1].id)
    assert generated is not None and generated.name == "generated"


def test_column_defaults_apply_when_the_value_is_none() -> None:
    settings = ModelAccessor(Setting, "settings")
    made = settings.insert_many([Setting(key="a"), Setting(key="b", level=2)])
    assert [settings.get(s.id).level for s in made] == [7, 2]  # type: ignore[union-attr]


def test_inserted_instances_are_usable_in_the_transaction() -> None:
    recipes = ModelAccessor(Recipe, "recipes")
    with database.transaction() as session:
        (recipe,) = recipes.insert_many([Recipe(name="pick", body="v1")])
        recipe.body = "v2"  # a change to an inserted instance is flushed like any other
        assert recipes.get("pick") is recipe
        assert session.get(Recipe, "pick") is recipe
    stored = recipes.get("pick")
    assert stored is not None and stored.body == "v2"


def test_models_with_relationships_cascade_through_the_orm() -> None:
    cells = ModelAccessor(Cell, "cells")
    cell = cells.insert(Cell(name="cell-1", robots=[Robot(name="r1"), Robot(name="r2")]))
    robots = ModelAccessor(Robot, "robots")
    assert sorted(r.name for r in robots.find(robots.where.cell_id == cell.id)) == ["r1", "r2"]
