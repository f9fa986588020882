"""A writer process for the concurrent-writers test of the audit chain: importable by a
``multiprocessing`` child (spawned, so it shares nothing with the test process)."""

from __future__ import annotations

import time
from multiprocessing.synchronize import Barrier, Event

from storage import database
from storage.accessor import ModelAccessor
from support.models import User


def write(url: str, name: str, rounds: int, start: Barrier) -> None:
    """Inserts, updates, soft deletes and bulk inserts through an accessor, ``rounds`` times,
    after every writer has reached ``start``."""
    database.set_database_url(url)
    users = ModelAccessor(User, "users")
    start.wait(timeout=60)
    for turn in range(rounds):
        user = users.insert(User(name=f"{name}-{turn}"), actor=name)
        users.update(user.id, age=turn, actor=name)
        users.insert_many([User(name=f"{name}-{turn}-{n}") for n in range(3)], actor=name)
        if turn % 3 == 0:
            users.delete(user.id, actor=name)
    database.get_database().dispose()


def hold_head(url: str, holding: Event) -> None:
    """Write one audited row and keep its transaction open (so the chain's head stays locked)
    until the process is killed."""
    database.set_database_url(url)
    users = ModelAccessor(User, "users")
    with database.transaction():
        users.insert(User(name="never committed"), actor="killed")
        holding.set()
        time.sleep(600)
