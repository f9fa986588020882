"""Audit rows: JSON-safe snapshots of every column type, NULL for missing snapshots."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select as sa_select
from sqlmodel import select

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog, audit_operation, to_json_safe
from support.models import Color, Sample


class Level(enum.IntEnum):
    LOW = 1


class Point(BaseModel):
    x: float


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("s", "s", id="str"),
        pytest.param(3, 3, id="int"),
        pytest.param(True, True, id="bool"),
        pytest.param(1.5, 1.5, id="float"),
        pytest.param(float("nan"), "nan", id="nan"),
        pytest.param(
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05+00:00", id="datetime"
        ),
        pytest.param(date(2026, 1, 2), "2026-01-02", id="date"),
        pytest.param(time(3, 4), "03:04:00", id="time"),
        pytest.param(timedelta(minutes=1), 60.0, id="timedelta"),
        pytest.param(uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001", id="uuid"),
        pytest.param(Decimal("1.10"), "1.10", id="decimal"),
        pytest.param(Color.GREEN, "green", id="enum"),
        pytest.param(Level.LOW, 1, id="int-enum"),
        pytest.param(b"\x00\x01", "AAE=", id="bytes"),
        pytest.param(Point(x=1), {"x": 1.0}, id="pydantic"),
        pytest.param({"a": [date(2026, 1, 1), {1, 2}]}, {"a": ["2026-01-01", [1, 2]]}, id="nested"),
        pytest.param(object, str(object), id="fallback"),
    ],
)
def test_to_json_safe(value: Any, expected: Any) -> None:
    assert to_json_safe(value) == expected
    json.dumps(to_json_safe(value))


@pytest.mark.usefixtures("backend")
def test_snapshots_of_every_column_type_round_trip_through_json() -> None:
    samples = ModelAccessor(Sample, "samples")
    sample = samples.insert(
        Sample(
            taken_at=datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC),
            day=date(2026, 5, 6),
            weight=Decimal("12.500"),
            color=Color.GREEN,
            ratio=0.25,
            active=False,
            payload={"poses": [[1, 2, 3]], "speed": None},
            ref=uuid.UUID(int=7),
        ),
        actor="robot",
    )
    with database.read_session() as session:
        (row,) = session.exec(select(AuditLog)).all()
    after = row.after
    assert after is not None
    assert after["id"] == str(sample.id)
    assert after["taken_at"].startswith("2026-05-06T07:08:09")
    assert after["day"] == "2026-05-06"
    assert Decimal(after["weight"]) == Decimal("12.5")
    assert after["color"] == "green"
    assert (after["ratio"], after["active"]) == (0.25, False)
    assert after["payload"] == {"poses": [[1, 2, 3]], "speed": None}
    assert after["ref"] == str(uuid.UUID(int=7))
    assert row.timestamp.tzinfo is not None


@pytest.mark.usefixtures("backend")
def test_missing_snapshot_is_sql_null_not_json_null() -> None:
    with database.transaction() as session:
        audit_operation(
            session=session,
            component="manual",
            operation="create",
            record_id=uuid.UUID(int=5),
            actor="script",
            after={"when": date(2026, 1, 1)},
        )
    with database.read_session() as session:
        before_column = AuditLog.__table__.c.before  # type: ignore[attr-defined]
        before_is_null = session.execute(sa_select(before_column.is_(None))).scalar()
        (row,) = session.exec(select(AuditLog)).all()
    assert bool(before_is_null) is True
    assert row.after == {"when": "2026-01-01"}
    assert row.record_id == str(uuid.UUID(int=5))
