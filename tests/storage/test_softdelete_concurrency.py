"""Soft-delete policies under concurrent writers: while a parent is soft-deleted (every other
time inside a transaction that read first), writers in other threads and another process insert
children under it and move children to it. Never a live child under a deleted parent, every
refusal the documented error, every committed write (and only those) audited, no writer left
waiting; on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from storage import database
from storage._rows import single_key
from storage._verification import verify_chain
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.bootstrap import prepare_database
from storage.relations import children_of
from support.models import Bay, Fixture, Permit, Site
from support.softdelete_writers import (
    Tally,
    accessors,
    delete_each,
    insert_in_process,
    insert_under,
    move_under,
)

BUSY_TIMEOUT = 5.0  # seconds: how long a lock left hanging could block a writer
HANG = 120.0  # seconds: a writer still running after this is stuck for good
ROUNDS = 20
PER_ROUND = 2  # inserts per writer and round, until one is refused
REFUSALS = {"create": "DeletedParentError", "update": "DeletedParentError"}

Accessors = dict[str, ModelAccessor[Any]]
Key = tuple[str, str, str]  # component, operation, record id


@pytest.fixture
def acc(backend: str) -> Accessors:
    db = database.get_database()
    db.dispose()  # the busy timeout is set before the engine is made
    db.set_busy_timeout(BUSY_TIMEOUT)
    prepare_database()
    return accessors()


def ids(rows: Sequence[Any]) -> list[int]:
    return [row.id for row in rows]


def plant(acc: Accessors, rounds: int, *, bays: bool) -> tuple[list[int], list[int]]:
    """A site per round, each with a bay when ``bays``; returns the site and bay ids."""
    sites = ids(acc["sites"].insert_many([Site(name=f"site-{n}") for n in range(rounds)]))
    if not bays:
        return sites, []
    first = [Bay(code=f"first-{n}", site_id=site) for n, site in enumerate(sites)]
    return sites, ids(acc["bays"].insert_many(first))


def run_threads(jobs: Sequence[Callable[[], Tally]]) -> list[Tally]:
    """Each job in a thread of its own; their tallies once every one has finished."""
    results: dict[int, Tally] = {}

    def run(n: int, job: Callable[[], Tally]) -> None:
        results[n] = job()

    threads = [threading.Thread(target=run, args=(n, job)) for n, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
    assert not [thread for thread in threads if thread.is_alive()], "a writer is stuck"
    assert sorted(results) == list(range(len(jobs))), "a writer failed outside its writes"
    return [results[n] for n in range(len(jobs))]


def check_errors(tallies: Sequence[Tally], refusals: dict[str, str]) -> None:
    """Every write committed or was refused with the error documented for its operation."""
    assert [problem for tally in tallies for problem in tally.unexpected] == []
    errors = {(o.operation, o.error) for tally in tallies for o in tally.outcomes if o.error}
    assert errors <= set(refusals.items())


def committed(tallies: Sequence[Tally]) -> list[Key]:
    return [
        (o.component, o.operation, o.key)
        for tally in tallies
        for o in tally.outcomes
        if o.key is not None
    ]


def audited_since(mark: int) -> list[Key]:
    with database.read_session() as session:
        statement = select(AuditLog.component, AuditLog.operation, AuditLog.record_id)
        return [tuple(row) for row in session.execute(statement.where(AuditLog.id > mark))]


def last_audit_id() -> int:
    with database.read_session() as session:
        return int(session.scalar(select(func.max(AuditLog.id))) or 0)


def live_under_deleted() -> list[str]:
    """Live rows referring to a soft-deleted site or bay where the policy forbids it."""
    found = []
    with database.read_session() as session:
        for parent in (Site.__table__, Bay.__table__):
            for relation in children_of(parent):  # type: ignore[arg-type]
                if relation.policy == "leave":
                    continue
                statement = (
                    select(single_key(relation.child))
                    .join(relation.parent, relation.column == relation.referred)
                    .where(relation.parent.c.deleted_at.is_not(None), relation.live())
                )
                found += [f"{relation.name} {key}" for key in session.scalars(statement)]
    return found


def deleted_at(table: Table, keys: Sequence[int]) -> dict[int, datetime | None]:
    with database.read_session() as session:
        key = single_key(table)
        rows = session.execute(select(key, table.c.deleted_at).where(key.in_(keys)))
        return {row[0]: row[1] for row in rows}


def check_audit(mark: int, expected: list[Key]) -> None:
    """The audit log since ``mark`` has a row for each write expected and no other, and its
    chain holds."""
    assert Counter(audited_since(mark)) == Counter(expected)
    report = verify_chain()
    assert report.ok, report


def test_refuse_holds_under_concurrent_writers(acc: Accessors) -> None:
    """Each round, four writers insert permits under a site and a fifth moves one there while
    the site is soft-deleted: the delete is refused while a permit exists, or it goes through
    and every later permit is refused."""
    sites, _ = plant(acc, ROUNDS, bays=False)
    home = acc["sites"].insert(Site(name="home"))
    movers = ids(acc["permits"].insert_many([Permit(site_id=home.id) for _ in sites]))
    mark = last_audit_id()
    start = threading.Barrier(6)
    jobs = [partial(insert_under, "permits", sites, PER_ROUND, start, f"w{n}") for n in range(4)]
    jobs.append(partial(move_under, "permits", "site_id", movers, sites, start))
    jobs.append(partial(delete_each, "sites", sites, start))
    tallies = run_threads(jobs)
    check_errors(tallies, {**REFUSALS, "soft_delete": "LiveChildrenError"})
    assert live_under_deleted() == []
    gone = deleted_at(Site.__table__, sites)  # type: ignore[arg-type]
    with database.read_session() as session:
        statement = select(Permit.site_id, func.count()).group_by(Permit.site_id)
        permits = {site: count for site, count in session.execute(statement)}
    for outcome in tallies[-1].outcomes:  # the deleter's
        site = sites[outcome.round]
        assert (outcome.key is not None) == (gone[site] is not None)
        assert (outcome.key is not None) == (site not in permits)
    for outcome in (o for tally in tallies[:-1] for o in tally.outcomes if o.error):
        assert gone[sites[outcome.round]] is not None  # refused because the site was gone
    check_audit(mark, committed(tallies))


def cascaded_children(sites: Sequence[int]) -> list[Key]:
    """The audit rows a cascade from ``sites`` writes: one per bay under them and per fixture
    under those; checks that each was deleted with its site, at the site's moment."""
    site, bay, fixture = Site.__table__, Bay.__table__, Fixture.__table__  # type: ignore[attr-defined]
    with database.read_session() as session:
        bays = session.execute(
            select(bay.c.id, bay.c.deleted_at, site.c.deleted_at)
            .join(site, bay.c.site_id == site.c.id)
            .where(site.c.id.in_(sites))
        ).all()
        fixtures = session.execute(
            select(fixture.c.id, fixture.c.deleted_at, site.c.deleted_at)
            .join(bay, fixture.c.bay_id == bay.c.id)
            .join(site, bay.c.site_id == site.c.id)
            .where(site.c.id.in_(sites))
        ).all()
    assert [row for row in [*bays, *fixtures] if row[1] is None or row[1] != row[2]] == []
    return [("bays", "soft_delete", str(row[0])) for row in bays] + [
        ("fixtures", "soft_delete", str(row[0])) for row in fixtures
    ]


def check_cascade(sites: list[int], tallies: list[Tally], mark: int) -> None:
    """Every site was deleted and took every bay and fixture under it, however late they
    were written; every other write was refused with ``DeletedParentError``."""
    check_errors(tallies, REFUSALS)
    deleted = [o.key for tally in tallies for o in tally.outcomes if o.operation == "soft_delete"]
    assert deleted == [str(site) for site in sites]
    assert live_under_deleted() == []
    check_audit(mark, committed(tallies) + cascaded_children(sites))


def test_cascade_holds_under_concurrent_writers(acc: Accessors) -> None:
    """Each round, two writers insert bays under a site, two insert fixtures under its first
    bay and a fifth moves a bay there while the site is soft-deleted: what committed first is
    deleted with the site, the rest is refused."""
    sites, bays = plant(acc, ROUNDS, bays=True)
    home = acc["sites"].insert(Site(name="home"))
    moving = [Bay(code=f"moving-{n}", site_id=home.id) for n in range(ROUNDS)]
    movers = ids(acc["bays"].insert_many(moving))
    mark = last_audit_id()
    start = threading.Barrier(6)
    jobs = [partial(insert_under, "bays", sites, PER_ROUND, start, f"w{n}") for n in range(2)]
    jobs += [partial(insert_under, "fixtures", bays, PER_ROUND, start, f"f{n}") for n in range(2)]
    jobs.append(partial(move_under, "bays", "site_id", movers, sites, start))
    jobs.append(partial(delete_each, "sites", sites, start))
    tallies = run_threads(jobs)
    check_cascade(sites, tallies, mark)
    moved = {o.key for o in tallies[-2].outcomes if o.key is not None}
    for bay in movers:  # one refused stays where it was, live
        assert (str(bay) in moved) == (acc["bays"].get(bay) is None)


def test_cascade_holds_with_a_writer_in_another_process(acc: Accessors) -> None:
    """Each round, a spawned process inserts bays under a site while a thread of this one
    inserts bays, another fixtures under its first bay and a third soft-deletes the site: the
    cascade takes what either process committed first."""
    rounds = ROUNDS // 2
    sites, bays = plant(acc, rounds, bays=True)
    mark = last_audit_id()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    results = context.Queue()
    url = database.get_database().url
    args = (url, BUSY_TIMEOUT, "bays", sites, PER_ROUND + 1, start, results)
    writer = context.Process(target=insert_in_process, args=args)
    writer.start()
    try:
        tallies = run_threads(
            [
                partial(insert_under, "bays", sites, PER_ROUND, start, "w"),
                partial(insert_under, "fixtures", bays, PER_ROUND, start, "f"),
                partial(delete_each, "sites", sites, start),
            ]
        )
        tallies.insert(0, results.get(timeout=HANG))
    finally:
        writer.join(HANG)
    assert writer.exitcode == 0
    check_cascade(sites, tallies, mark)
