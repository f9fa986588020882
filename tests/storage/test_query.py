"""ModelQuery: filters, sort orders and keyset cursors, run as SQL on every backend."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from storage import database
from storage._crud_routes import LIST_PARAMETERS
from storage._query import ModelQuery
from storage.accessor import ModelAccessor
from storage.errors import ValidationError
from support.models import Color, Sample, User

pytestmark = pytest.mark.usefixtures("backend")

PEOPLE = [  # name, email, age; "Eve" is soft-deleted
    ("Alice", "alice@x.io", 30),
    ("bob", "bob@y.io", None),
    ("Carol", "carol@x.io", 40),
    ("Dave", "", 30),
    ("Eve", "eve@x.io", 25),
    ("Frank", "frank@y.io", None),
]


def dialect() -> str:
    return database.get_engine().dialect.name


@pytest.fixture
def users() -> ModelAccessor[User]:
    accessor = ModelAccessor(User, "users")
    rows = accessor.insert_many([User(name=n, email=e, age=a) for n, e, a in PEOPLE])
    accessor.delete(rows[4].id)
    return accessor


@pytest.fixture
def query() -> ModelQuery:
    return ModelQuery(User, "id", reserved=LIST_PARAMETERS)


def names(
    users: ModelAccessor[User], query: ModelQuery, items: list[tuple[str, str]], **options: Any
) -> list[str]:
    conditions = query.filters(items, dialect=dialect())
    order = query.order_by(query.sort(None), dialect=dialect())
    return [u.name for u in users.find_ordered(*conditions, order=order, **options)]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param([], ["Alice", "bob", "Carol", "Dave", "Frank"], id="none"),
        pytest.param([("name", "Carol")], ["Carol"], id="eq"),
        pytest.param([("age__eq", "30")], ["Alice", "Dave"], id="eq-explicit"),
        pytest.param([("age__ne", "30")], ["bob", "Carol", "Frank"], id="ne-keeps-null"),
        pytest.param([("age__lt", "40")], ["Alice", "Dave"], id="lt"),
        pytest.param([("age__lte", "40")], ["Alice", "Carol", "Dave"], id="lte"),
        pytest.param([("age__gt", "30")], ["Carol"], id="gt"),
        pytest.param([("age__gte", "30"), ("age__lt", "40")], ["Alice", "Dave"], id="range"),
        pytest.param([("name__in", "Alice,Dave,Zed")], ["Alice", "Dave"], id="in"),
        pytest.param([("email__like", "%@x.io")], ["Alice", "Carol"], id="like"),
        pytest.param([("name__ilike", "B%")], ["bob"], id="ilike"),
        pytest.param([("age__isnull", "true")], ["bob", "Frank"], id="isnull-true"),
        pytest.param([("age__isnull", "FALSE")], ["Alice", "Carol", "Dave"], id="isnull-false"),
        pytest.param([("limit", "3"), ("sort", "x")], ["Alice", "bob", "Carol", "Dave", "Frank"],
                     id="reserved-skipped"),
    ],
)  # fmt: skip
def test_filters(
    users: ModelAccessor[User],
    query: ModelQuery,
    items: list[tuple[str, str]],
    expected: list[str],
) -> None:
    assert names(users, query, items) == expected


def test_filters_see_soft_deleted_only_when_asked(
    users: ModelAccessor[User], query: ModelQuery
) -> None:
    assert names(users, query, [("deleted_at__isnull", "false")]) == []
    deleted = names(users, query, [("deleted_at__isnull", "false")], include_deleted=True)
    assert deleted == ["Eve"]


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        pytest.param("nope", "1", "unknown query parameter 'nope'", id="unknown-field"),
        pytest.param("nope__gt", "1", "unknown query parameter", id="unknown-field-with-op"),
        pytest.param("age__near", "1", "unknown operator 'near'", id="unknown-operator"),
        pytest.param("age", "abc", "not a valid value for age", id="not-an-int"),
        pytest.param("age", "1.5", "not a valid value for age", id="fraction-for-int"),
        pytest.param("age", str(2**31), "out of range", id="int-out-of-range"),
        pytest.param("age__in", "1,x", "not a valid value for age", id="bad-in-member"),
        pytest.param("age__in", "", "comma-separated", id="empty-in"),
        pytest.param("age__in", ",".join(["1"] * 501), "comma-separated", id="in-too-long"),
        pytest.param("age__isnull", "maybe", "true or false", id="bad-isnull"),
        pytest.param("age__like", "3%", "text fields only", id="like-on-int"),
        pytest.param("deleted_at", "yesterday", "not a valid value", id="bad-datetime"),
    ],
)
def test_bad_filters(query: ModelQuery, key: str, raw: str, message: str) -> None:
    if key == "age" and raw == str(2**31) and dialect() == "sqlite":
        raw = str(2**63)  # SQLite integers are 64-bit
    with pytest.raises(ValidationError, match=message):
        query.filters([(key, raw)], dialect=dialect())


def test_filters_convert_to_column_types() -> None:
    samples = ModelAccessor(Sample, "samples")
    ref = uuid.uuid4()
    taken = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    samples.insert_many(
        [
            Sample(taken_at=taken, day=date(2026, 1, 2), weight=Decimal("1.5"), ref=ref),
            Sample(
                taken_at=taken.replace(hour=9),
                day=date(2026, 1, 3),
                weight=Decimal("2.25"),
                color=Color.GREEN,
                active=False,
            ),
        ]
    )
    query = ModelQuery(Sample, "id")

    def count(*items: tuple[str, str]) -> int:
        return samples.count(*query.filters(items, dialect=dialect()))

    assert count(("ref", str(ref))) == 1
    assert count(("color", "green")) == 1
    assert count(("color__in", "red,green")) == 2
    assert count(("active", "false")) == 1
    assert count(("weight__gt", "1.5")) == 1
    assert count(("ratio", "0.5")) == 2
    assert count(("ratio__lt", "1")) == 2  # an integral number for a float column
    assert count(("ratio__gte", "5e-1"), ("ratio__in", "0.25,0.5")) == 2
    assert count(("day__gte", "2026-01-03")) == 1
    assert count(("taken_at", "2026-01-02T03:04:05Z")) == 1
    assert count(("taken_at", "2026-01-02T03:04:05")) == 1  # naive: taken as UTC
    assert count(("taken_at__gt", "2026-01-02T05:00:00+01:00")) == 1  # 04:00 UTC
    for key, raw in [("color", "blue"), ("ref", "not-a-uuid"), ("ratio", "nan")]:
        with pytest.raises(ValidationError):
            query.filters([(key, raw)], dialect=dialect())
    with pytest.raises(ValidationError, match="cannot be filtered"):
        query.filters([("payload", "{}")], dialect=dialect())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(None, "id", id="default"),
        pytest.param("", "id", id="empty"),
        pytest.param("-id", "-id", id="pk-descending"),
        pytest.param("-age, name", "-age,name,id", id="several"),
        pytest.param("+name", "name,id", id="explicit-ascending"),
    ],
)
def test_sort_parsing(query: ModelQuery, text: str | None, expected: str) -> None:
    assert ",".join(map(str, query.sort(text))) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("nope", "unknown sort field 'nope'", id="unknown"),
        pytest.param("age,-age", "twice", id="twice"),
    ],
)
def test_bad_sorts(query: ModelQuery, text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        query.sort(text)


def test_json_columns_cannot_be_sorted() -> None:
    with pytest.raises(ValidationError, match="payload cannot be filtered or sorted"):
        ModelQuery(Sample, "id").sort("payload")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("age", ["Eve", "Alice", "Dave", "Carol", "bob", "Frank"], id="nulls-last"),
        pytest.param("-age", ["bob", "Frank", "Carol", "Alice", "Dave", "Eve"], id="nulls-first"),
        pytest.param("-age,-id", ["Frank", "bob", "Carol", "Dave", "Alice", "Eve"], id="mixed"),
    ],
)
def test_null_placement_is_the_same_on_every_backend(
    users: ModelAccessor[User], query: ModelQuery, text: str, expected: list[str]
) -> None:
    order = query.order_by(query.sort(text), dialect=dialect())
    rows = users.find_ordered(order=order, include_deleted=True)
    assert [u.name for u in rows] == expected


@pytest.mark.parametrize(
    "text", ["", "-id", "age", "-age", "age,-name", "-age,email", "name", "-deleted_at,age"]
)
def test_cursor_walks_every_row_once_in_order(
    users: ModelAccessor[User], query: ModelQuery, text: str
) -> None:
    users.insert_many([User(name=f"u{i}", age=(i % 3) * 10 or None) for i in range(9)])
    keys = query.sort(text)
    order = query.order_by(keys, dialect=dialect())
    everything = [u.id for u in users.find_ordered(order=order, include_deleted=True)]
    walked: list[int | None] = []
    conditions: list[Any] = []
    while True:
        page = users.find_ordered(*conditions, order=order, include_deleted=True, limit=4)
        walked.extend(u.id for u in page)
        if len(page) < 4:
            break
        cursor = query.encode_cursor(keys, page[-1])
        values = query.decode_cursor(keys, cursor, dialect=dialect())
        conditions = [query.after(keys, values, dialect=dialect())]
    assert walked == everything and len(set(walked)) == len(PEOPLE) + 9


def test_cursor_over_enum_datetime_and_uuid_keys() -> None:
    samples = ModelAccessor(Sample, "samples")
    taken = datetime(2026, 1, 2, tzinfo=UTC)
    samples.insert_many(
        [
            Sample(taken_at=taken, day=date(2026, 1, i % 2 + 1), weight=Decimal(i), color=color)
            for i, color in enumerate([Color.RED, Color.GREEN] * 4)
        ]
    )
    query = ModelQuery(Sample, "id")
    for text in ("color,-taken_at", "-color,day", "-weight", "day,-color"):
        keys = query.sort(text)
        order = query.order_by(keys, dialect=dialect())
        everything = [s.id for s in samples.find_ordered(order=order)]
        walked: list[uuid.UUID] = []
        conditions: list[Any] = []
        while page := samples.find_ordered(*conditions, order=order, limit=3):
            walked.extend(s.id for s in page)
            cursor = query.encode_cursor(keys, page[-1])
            values = query.decode_cursor(keys, cursor, dialect=dialect())
            conditions = [query.after(keys, values, dialect=dialect())]
        assert walked == everything, text


def encoded(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("cursor", "message"),
    [
        pytest.param("!!!", "not valid", id="not-base64"),
        pytest.param(encoded("x")[:-1] + "#", "not valid", id="damaged"),
        pytest.param(base64.b64encode(b"not json").decode(), "not valid", id="not-json"),
        pytest.param(encoded([1]), "not valid", id="not-an-object"),
        pytest.param(encoded({"sort": "-age,id", "after": [1]}), "not valid", id="too-few-values"),
        pytest.param(encoded({"sort": "age,id", "after": [1, 2]}), "another sort", id="other-sort"),
        pytest.param(encoded({"sort": "-age,id", "after": ["x", 2]}), "not valid", id="bad-value"),
        pytest.param(encoded({"sort": "-age,id", "after": [1, None]}), "not valid", id="null-pk"),
    ],
)
def test_bad_cursors(query: ModelQuery, cursor: str, message: str) -> None:
    keys = query.sort("-age")
    with pytest.raises(ValidationError, match=message):
        query.decode_cursor(keys, cursor, dialect=dialect())


def test_cursor_values_are_checked(query: ModelQuery) -> None:
    keys = query.sort("age")
    good = query.encode_cursor(keys, User(id=3, name="x", age=None))
    assert query.decode_cursor(keys, good, dialect=dialect()) == [None, 3]
    too_big = encoded({"sort": "age,id", "after": [2**70, 1]})
    with pytest.raises(ValidationError, match="out of range"):
        query.decode_cursor(keys, too_big, dialect=dialect())


def test_key_range_depends_on_the_backend(query: ModelQuery) -> None:
    assert query.check_key(2**40, dialect="sqlite") == 2**40
    with pytest.raises(ValidationError, match="out of range"):
        query.check_key(2**40, dialect="postgresql")
    with pytest.raises(ValidationError, match="out of range"):
        query.check_key(2**63, dialect="sqlite")
    assert ModelQuery(User, "id").check_key(-5, dialect="mysql") == -5
