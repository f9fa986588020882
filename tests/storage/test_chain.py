"""The audit log's hash chain: valid after every kind of write on SQLite, PostgreSQL and
MariaDB; a changed, removed or forged row is reported at the first row that breaks; writers in
several processes keep one linear chain; a database from before the chain verifies from where
it starts."""

from __future__ import annotations

import io
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Connection

from storage import database
from storage._chain import HEAD, row_hash
from storage._verification import verify_chain
from storage.accessor import ModelAccessor
from storage.auditor import AUDIT_TABLE, audit_operation, audit_row
from storage.bootstrap import prepare_database
from storage.importer import import_upload
from support.chain_writers import hold_head, write
from support.dataset import every_kind_of_sample, seed
from support.models import Clamp, Line, Sample, Station, User


def audit_ids() -> list[int]:
    with database.read_session() as session:
        return list(session.scalars(select(AUDIT_TABLE.c.id).order_by(AUDIT_TABLE.c.id)))


def last_hash() -> str | None:
    with database.read_session() as session:
        found = session.scalar(
            select(AUDIT_TABLE.c.hash).order_by(AUDIT_TABLE.c.id.desc()).limit(1)
        )
        return found


def raw(change: Callable[[Connection], Any]) -> None:
    """Change the database behind the library's back, as someone with SQL access could."""
    with database.get_engine().begin() as connection:
        change(connection)


def mixed_writes() -> None:
    seed()
    users = ModelAccessor(User, "users")
    ada = users.insert(User(name="Ada", age=1), actor="ops")
    users.update(ada.id, age=2, actor="ops")
    users.save(User(id=ada.id, name="Ada L.", age=3), actor="ops")
    users.delete(ada.id, actor="ops")
    users.restore(ada.id, actor="ops")
    many = users.insert_many([User(name=f"bulk {n}") for n in range(7)], actor="bulk")
    users.delete_many([user.id for user in many[:4]], actor="bulk")
    users.purge_deleted([many[0].id], actor="bulk")
    ModelAccessor(Sample, "samples").insert(every_kind_of_sample(), actor="ops")
    lines, stations = ModelAccessor(Line, "lines"), ModelAccessor(Station, "stations")
    line = lines.insert(Line(name="A"))
    station = stations.insert(Station(line_id=line.id))
    # Filed under the table's name, as test_cascades expects of the rows a delete takes along.
    clamps = ModelAccessor(Clamp, "clamp")
    clamps.insert_many([Clamp(station_id=station.id) for _ in (1, 2)])
    lines.delete(line.id, actor="ops")  # takes the station and its clamps with it
    with database.transaction() as session:
        audit_operation(
            session=session,
            component="custom",
            operation="update",
            record_id="x",
            actor="ops",
            before={"ratio": 0.1, "big": 1e300, "text": "Grüße \u2603"},
            after={"nested": {"b": [1, 2.5], "a": None}},
        )
    import_upload(_csv("name,email\nImported,im@example.com\n"), table="user", actor="ops")


def _csv(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def test_mixed_writes_leave_a_valid_chain(backend: str) -> None:
    mixed_writes()
    report = verify_chain(page_size=7)  # several pages, one row at a page's edge
    ids = audit_ids()
    assert report.ok, report
    assert (report.checked, report.unchained, report.starts_at) == (len(ids), 0, ids[0])
    assert report.last_id == ids[-1] and report.head == last_hash()
    with database.read_session() as session:
        assert session.scalar(select(HEAD.c.hash)) == report.head


def test_hashes_are_what_a_read_gives_back(backend: str) -> None:
    """Written and read back, every row hashes to what it holds: microseconds, floats, key
    order and unicode are stable on each backend."""
    mixed_writes()
    with database.read_session() as session:
        rows = session.execute(select(AUDIT_TABLE).order_by(AUDIT_TABLE.c.id)).mappings().all()
    previous = None
    for row in rows:
        assert row["prev_hash"] == previous
        assert row_hash(row, previous) == row["hash"]
        previous = row["hash"]


def _forge(connection: Connection, previous: str | None, with_hash: bool) -> None:
    row = audit_row(component="users", operation="delete", record_id=1, actor="mallory")
    row["prev_hash"] = previous if with_hash else None
    row["hash"] = row_hash(row, previous) if with_hash else None
    connection.execute(insert(AUDIT_TABLE), [row])


def _after(row_id: int) -> Callable[[Connection], Any]:
    return lambda c: c.execute(
        update(AUDIT_TABLE).where(AUDIT_TABLE.c.id == row_id).values(after={"name": "Mallory"})
    )


def _remove(row_id: int) -> Callable[[Connection], Any]:
    return lambda c: c.execute(delete(AUDIT_TABLE).where(AUDIT_TABLE.c.id == row_id))


TAMPERING = [
    pytest.param(lambda ids: _after(ids[3]), 3, "content_changed", id="after-changed"),
    pytest.param(
        lambda ids: (
            lambda c: c.execute(
                update(AUDIT_TABLE).where(AUDIT_TABLE.c.id == ids[2]).values(actor="someone else")
            )
        ),
        2,
        "content_changed",
        id="actor-changed",
    ),
    pytest.param(lambda ids: _remove(ids[4]), 5, "link_broken", id="row-removed"),
    pytest.param(lambda ids: _remove(ids[0]), 1, "link_broken", id="first-row-removed"),
    pytest.param(lambda ids: _remove(ids[-1]), -2, "head_mismatch", id="last-row-removed"),
    pytest.param(
        lambda ids: lambda c: _forge(c, last_hash(), with_hash=True),
        None,
        "head_mismatch",
        id="forged-row-with-a-valid-hash",
    ),
    pytest.param(
        lambda ids: lambda c: _forge(c, last_hash(), with_hash=False),
        None,
        "hash_missing",
        id="forged-row-without-hash",
    ),
    pytest.param(
        lambda ids: (
            lambda c: (
                _remove(ids[5])(c),
                c.execute(
                    insert(AUDIT_TABLE),
                    [{**_forged_at(ids[5], c), "id": ids[5]}],
                ),
            )
        ),
        6,
        "link_broken",
        id="row-replaced-by-a-forged-one",
    ),
]


def _forged_at(row_id: int, connection: Connection) -> dict[str, Any]:
    """A row that links to the one before ``row_id`` as a real one would: only the row after
    it shows the forgery."""
    previous = connection.execute(
        select(AUDIT_TABLE.c.hash).where(AUDIT_TABLE.c.id == row_id - 1)
    ).scalar()
    row = audit_row(component="users", operation="create", record_id=99, actor="mallory")
    return {**row, "prev_hash": previous, "hash": row_hash(row, previous)}


@pytest.mark.parametrize(("tamper", "broken", "problem"), TAMPERING)
def test_tampering_is_reported_at_the_first_broken_row(
    backend: str, tamper: Callable[[list[int]], Callable[[Connection], Any]], broken: int | None,
    problem: str,
) -> None:  # fmt: skip
    mixed_writes()
    ids = audit_ids()
    assert verify_chain().ok
    raw(tamper(ids))
    report = verify_chain(page_size=4)
    assert not report.ok and report.problem == problem, report
    expected = audit_ids()[-1] if broken is None else ids[broken]
    assert report.broken_at == expected
    assert report.detail


def test_a_database_from_before_the_chain_verifies_from_where_it_starts(backend: str) -> None:
    older = [
        audit_row(component="users", operation="create", record_id=n, actor="v1") for n in (1, 2, 3)
    ]
    raw(lambda c: c.execute(insert(AUDIT_TABLE), older))  # as the versions before the chain did
    report = verify_chain()
    assert report.ok and (report.checked, report.unchained, report.starts_at) == (0, 3, None)
    ModelAccessor(User, "users").insert(User(name="after the upgrade"), actor="v2")
    report = verify_chain()
    assert report.ok and (report.checked, report.unchained, report.starts_at) == (1, 3, 4)
    raw(lambda c: c.execute(delete(HEAD)))  # a lost head starts again from the last row
    ModelAccessor(User, "users").insert(User(name="later"), actor="v2")
    assert verify_chain().ok and verify_chain().checked == 2


def test_verification_needs_a_page_of_at_least_one_row(backend: str) -> None:
    with pytest.raises(ValueError, match="page_size"):
        verify_chain(page_size=0)


def test_first_writers_on_a_log_without_head_all_succeed(backend: str) -> None:
    # Tables made without bootstrap (as by an Alembic migration) have no head row yet: each
    # of the first concurrent writers of a process tries to create it, and none may fail.
    # Twenty rounds, each on a head table emptied as TRUNCATE leaves it and with a new
    # Database (as a process starting), six writers released at once.
    users = ModelAccessor(User, "users")
    url = database.get_database().url
    start, errors = threading.Barrier(6), []

    def write(worker: int, round: int) -> None:
        start.wait()
        try:
            users.insert(User(name=f"w{worker}-{round}"), actor=f"w{worker}")
        except Exception as exc:  # every failure is reported below, with its type
            errors.append(exc)

    for round in range(20):
        _empty_head_table()
        database.set_default_database(database.Database(url)).dispose()
        threads = [threading.Thread(target=write, args=(n, round)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert errors == []
    report = verify_chain()
    assert report.ok and report.checked == 120, report


def _empty_head_table() -> None:
    engine = database.get_engine()
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(delete(HEAD))
        else:
            connection.execute(text(f"TRUNCATE TABLE {HEAD.name}"))


def test_writers_in_two_processes_keep_one_linear_chain(backend: str) -> None:
    prepare_database()  # as each app's bootstrap does: the chain's head row is there
    with database.read_session() as session:
        assert session.execute(select(HEAD.c.id, HEAD.c.hash)).all() == [(1, None)]
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    url = database.get_database().url
    rounds = 15
    writers = [
        context.Process(target=write, args=(url, name, rounds, start)) for name in ("one", "two")
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(180)
    assert [writer.exitcode for writer in writers] == [0, 0]
    report = verify_chain(page_size=50)
    with database.read_session() as session:
        total = session.scalar(select(func.count()).select_from(AUDIT_TABLE))
        actors = list(session.scalars(select(AUDIT_TABLE.c.actor).order_by(AUDIT_TABLE.c.id)))
    assert report.ok, report
    assert report.checked == total == 2 * (rounds * 5 + len(range(0, rounds, 3)))
    # The writers did take turns: each one's rows are not all in one block (SQLite's writers
    # queue for the whole file, and one process may be done before the other has begun).
    switches = sum(1 for a, b in zip(actors, actors[1:], strict=False) if a != b)
    assert switches > 1 or backend == "sqlite"


def test_the_docs_example_prints_the_head(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    [example] = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "verify_chain" in b]
    ModelAccessor(User, "users").insert(User(name="Ada"), actor="ops")
    exec(compile(example, "docs/audit.md", "exec"), {})
    assert re.fullmatch(r"audit chain intact: 1 rows, head [0-9a-f]{64}\n", capsys.readouterr().out)
    raw(_after(1))
    exec(compile(example, "docs/audit.md", "exec"), {})
    assert capsys.readouterr().out.startswith("audit chain broken at row 1: content_changed")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_a_writer_killed_while_it_holds_the_head_blocks_no_one(backend: str) -> None:
    """A process killed with SIGKILL in the middle of an audited transaction: the database ends
    its transaction, the head's lock goes with it, the next writer goes on at once and the
    chain holds, without the killed write."""
    prepare_database()
    users = ModelAccessor(User, "users")
    users.insert(User(name="before"), actor="ops")
    context = multiprocessing.get_context("spawn")
    holding = context.Event()
    holder = context.Process(target=hold_head, args=(database.get_database().url, holding))
    holder.start()
    try:
        assert holding.wait(60)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(30)
    started = time.monotonic()
    users.insert(User(name="after"), actor="ops")
    assert time.monotonic() - started < 15  # the server noticed the dead connection
    assert sorted(user.name for user in users.all()) == ["after", "before"]
    report = verify_chain()
    assert report.ok and report.checked == 2, report
