"""Models the storage tests write to: one per kind of key and soft-delete behaviour.

No ``from __future__ import annotations`` here: SQLModel resolves relationship annotations at
class creation.
"""

import enum
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    SmallInteger,
    Text,
    Time,
)
from sqlmodel import Field, Relationship, SQLModel


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class User(SQLModel, table=True):
    """Integer key, soft delete (the seed README's model)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    email: str = Field(default="", max_length=200)
    age: int | None = None
    deleted_at: datetime | None = Field(default=None, index=True)


class Gadget(SQLModel, table=True):
    """Integer key, hard delete, unique serial."""

    id: int | None = Field(default=None, primary_key=True)
    serial: str = Field(max_length=50, unique=True)
    owner_id: int | None = Field(default=None, foreign_key="user.id")


class Recipe(SQLModel, table=True):
    """String key (like a program name), soft delete."""

    name: str = Field(primary_key=True, max_length=100)
    body: str = Field(default="", max_length=500)
    deleted_at: datetime | None = None


class Sample(SQLModel, table=True):
    """UUID key and one column of every kind the audit log must serialise."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    taken_at: datetime
    day: date
    weight: Decimal = Field(sa_column=Column(Numeric(10, 3), nullable=False))
    color: Color = Color.RED
    ratio: float = 0.5
    active: bool = True
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    ref: uuid.UUID | None = None


class Setting(SQLModel, table=True):
    """A column whose default lives on the SQLAlchemy column, applied when the value is None."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=50)
    level: int | None = Field(default=None, sa_column=Column(Integer, default=7, nullable=True))


class Cell(SQLModel, table=True):
    """A parent with a relationship: inserts go through the ORM so children cascade."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    robots: list["Robot"] = Relationship(back_populates="cell")


class Robot(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    cell_id: int | None = Field(default=None, foreign_key="cell.id")
    cell: Optional["Cell"] = Relationship(back_populates="robots")


class Product(SQLModel, table=True):
    """The vention-storage README's second model (its "Bootstrap Multiple Models")."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    sku: str = Field(default="", max_length=50)


# -- deletes and what they take with them (tests/storage/test_cascades.py) ---------------------


def _reference(target: str, ondelete: str, *, nullable: bool) -> Any:
    return Field(
        default=None,
        sa_column=Column(Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable),
    )


class Line(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)


class Station(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    line_id: int | None = _reference("line.id", "CASCADE", nullable=False)


class Clamp(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    station_id: int | None = _reference("station.id", "CASCADE", nullable=False)


class Badge(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    line_id: int | None = _reference("line.id", "SET NULL", nullable=True)


class Rack(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slots: list["Slot"] = Relationship(back_populates="rack", cascade_delete=True)


class Slot(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    rack_id: int | None = Field(default=None, foreign_key="rack.id")
    rack: Optional["Rack"] = Relationship(back_populates="slots")


class Tag(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    deleted_at: datetime | None = None


# -- a column of every kind (tests/storage/test_csv_roundtrip.py) ---------------------------


class Reading(SQLModel, table=True):
    """A column of every kind the CSV codec knows."""

    id: int | None = Field(default=None, primary_key=True)
    small: int | None = Field(default=None, sa_column=Column(SmallInteger, nullable=True))
    count: int | None = None
    big: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    ratio: float | None = None
    amount: Decimal | None = Field(default=None, sa_column=Column(Numeric(14, 4), nullable=True))
    flag: bool | None = None
    label: str | None = Field(default=None, max_length=40)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    taken_at: datetime | None = None
    taken_utc: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    day: date | None = None
    clock: time | None = Field(default=None, sa_column=Column(Time, nullable=True))
    span: timedelta | None = Field(default=None, sa_column=Column(Interval, nullable=True))
    ref: uuid.UUID | None = None
    color: Color | None = None
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    blob: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


# -- soft delete across relations (tests/storage/test_softdelete.py) ------------------------


class Site(SQLModel, table=True):
    """A soft-delete parent with a unique name."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50, unique=True)
    deleted_at: datetime | None = None


class Bay(SQLModel, table=True):
    """ON DELETE CASCADE and deleted_at: soft-deleted with its site (policy ``cascade``)."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    site_id: int | None = _reference("site.id", "CASCADE", nullable=False)
    deleted_at: datetime | None = None


class Fixture(SQLModel, table=True):
    """A grandchild of the site: cascades from its bay."""

    id: int | None = Field(default=None, primary_key=True)
    bay_id: int | None = _reference("bay.id", "CASCADE", nullable=False)
    deleted_at: datetime | None = None


class Permit(SQLModel, table=True):
    """A plain foreign key, no deleted_at: the site is not soft-deleted while it has one."""

    id: int | None = Field(default=None, primary_key=True)
    site_id: int | None = Field(default=None, foreign_key="site.id")


class Visit(SQLModel, table=True):
    """Policy ``leave``, set in the column's info: visits stay when their site goes."""

    id: int | None = Field(default=None, primary_key=True)
    site_id: int | None = Field(
        default=None, foreign_key="site.id", sa_column_kwargs={"info": {"soft_delete": "leave"}}
    )
    deleted_at: datetime | None = None
