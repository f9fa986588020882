"""Export then import is the identity, for a column of every type SQLModel maps, on SQLite,
PostgreSQL and MariaDB, with values across each column's whole range on that backend (a
property test): the CSV codec and the backend agree on what a column holds."""

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    delete,
    insert,
    select,
)

from storage import database
from storage._schemas import integer_range
from storage.export import write_export
from storage.importer import import_upload
from support.models import Color, Reading

# No ``from __future__ import annotations``: SQLModel reads the annotations at class creation.


def integers(column: str, dialect: str) -> st.SearchStrategy[int]:
    holds = integer_range(Reading.__table__.c[column].type, dialect)  # type: ignore[attr-defined]
    assert holds is not None
    return st.integers(holds.start, holds.stop - 1)


# Text the three backends store as sent: no NUL, no lone surrogates.
TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(TEXT, max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(TEXT, max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
MOMENTS = st.datetimes(datetime(1970, 1, 2), datetime(2100, 1, 1))


def rows(dialect: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.none() | strategy

    row = st.fixed_dictionaries(
        {
            "small": maybe(integers("small", dialect)),
            "count": maybe(integers("count", dialect)),
            "big": maybe(integers("big", dialect)),
            "ratio": maybe(st.floats(allow_nan=False, allow_infinity=False, width=32)),
            "amount": maybe(st.decimals(-(10**9), 10**9, places=4, allow_nan=False)),
            "flag": maybe(st.booleans()),
            "label": maybe(st.text(TEXT, max_size=40)),
            "note": maybe(st.text(TEXT, max_size=200)),
            "taken_at": maybe(MOMENTS.map(lambda moment: moment.replace(tzinfo=UTC))),
            "taken_utc": maybe(MOMENTS.map(lambda moment: moment.replace(tzinfo=UTC))),
            "day": maybe(st.dates(date(1000, 1, 1), date(9999, 12, 31))),
            "clock": maybe(st.times()),
            "span": maybe(st.timedeltas(timedelta(days=-3000), timedelta(days=3000))),
            # MariaDB's UUID type takes RFC 4122 values only.
            "ref": maybe(st.uuids(version=4)),
            "color": maybe(st.sampled_from(Color)),
            "data": maybe(st.dictionaries(st.text(TEXT, max_size=5), JSON_VALUES, max_size=3)),
            "blob": maybe(st.binary(max_size=64)),
        }
    )
    return st.lists(row, min_size=1, max_size=4)


def stored() -> list[tuple[Any, ...]]:
    with database.read_session() as session:
        table = Reading.__table__  # type: ignore[attr-defined]
        return [tuple(row) for row in session.execute(select(table).order_by(table.c.id))]


def test_export_then_import_is_the_identity(backend: str) -> None:
    dialect = database.get_engine().dialect.name
    table = Reading.__table__  # type: ignore[attr-defined]

    @given(rows(dialect))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def round_trip(values: list[dict[str, Any]]) -> None:
        with database.transaction() as session:
            session.execute(delete(table))
            session.execute(insert(table), values)
        before = stored()
        archive = io.BytesIO()
        write_export(archive)
        archive.seek(0)
        summary = import_upload(archive, table="reading", mode="replace", actor="round-trip")
        assert summary.tables == {"reading": len(values)}
        assert stored() == before

    round_trip()
