"""Which database servers the tests run against, and how to give each test a clean one.

The tests never touch a database they did not create: each test session creates its own
database on each server (``ms_test_<pid>_<random>``) and drops it when it ends; tests whose
servers run in other processes take a fresh one each (:func:`scratch_database`).
"""

from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

POSTGRES_URL = os.environ.get(
    "STORAGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("STORAGE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

SERVER_URLS = {"postgresql": POSTGRES_URL, "mariadb": MARIADB_URL}
"""The servers; the tests connect to them there only to create databases of their own."""

_engines: dict[str, Engine | None] = {}


def _engine(name: str) -> Engine | None:
    """An engine on this test session's own database on the server (created on first use,
    dropped when the session ends); ``None`` when the server is not reachable."""
    if name not in _engines:
        try:
            url = _create_database(name, f"ms_test_{os.getpid()}_{uuid.uuid4().hex[:8]}")
        except OperationalError:
            _engines[name] = None
        else:
            _engines[name] = create_engine(url)
            atexit.register(_drop_session_database, name)
    return _engines[name]


def _admin(name: str) -> Engine:
    server = make_url(SERVER_URLS[name])
    return create_engine(
        server.set(database="postgres" if name == "postgresql" else None),
        isolation_level="AUTOCOMMIT",
    )


def _create_database(name: str, database: str) -> str:
    admin = _admin(name)
    try:
        quoted = admin.dialect.identifier_preparer.quote(database)
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        admin.dispose()
    return make_url(SERVER_URLS[name]).set(database=database).render_as_string(False)


def _drop_database(name: str, database: str) -> None:
    admin = _admin(name)
    try:
        quoted = admin.dialect.identifier_preparer.quote(database)
        force = " WITH (FORCE)" if name == "postgresql" else ""
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
    finally:
        admin.dispose()


def _drop_session_database(name: str) -> None:
    engine = _engines.get(name)
    if engine is not None:
        engine.dispose()
        _drop_database(name, str(engine.url.database))


def server_url(name: str) -> str:
    """The URL of this session's database on a server, after resetting it; skips (fails on
    CI) when the server is down."""
    engine = _require(name)
    reset(engine)
    return engine.url.render_as_string(hide_password=False)


def reset(engine: Engine) -> None:
    """Leave exactly the model tables, empty, with their id counters back at 1.

    Emptying tables is much cheaper than dropping and creating them for every test; tables that
    are not models (made by a test) are dropped, missing model tables are created.
    """
    models = SQLModel.metadata
    present = set(inspect(engine).get_table_names())
    strangers = present - set(models.tables)
    if strangers:
        reflected = MetaData()
        reflected.reflect(engine, only=sorted(strangers))
        reflected.drop_all(engine)
    missing = [table for name, table in models.tables.items() if name not in present]
    if missing:
        models.create_all(engine, tables=missing)
    kept = [name for name in models.tables if name in present]
    if not kept:
        return
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(quote(name) for name in kept)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            for name in kept:
                connection.execute(text(f"TRUNCATE TABLE {quote(name)}"))
            connection.execute(text("SET FOREIGN_KEY_CHECKS = 1"))


def _require(name: str) -> Engine:
    engine = _engine(name)
    if engine is None:
        message = f"{name} is not reachable at {SERVER_URLS[name]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return engine


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A new, empty database with a unique name on the server ``name`` (``postgresql`` or
    ``mariadb``), for tests whose servers run in other processes; dropped afterwards."""
    _require(name)
    database = f"ms_test_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    url = _create_database(name, database)
    try:
        yield url
    finally:
        _drop_database(name, database)


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """The URL of a database nobody else uses, on ``sqlite`` (a file in a temporary folder),
    ``postgresql`` or ``mariadb`` (a new database on the server); removed afterwards."""
    if backend != "sqlite":
        with scratch_database(backend) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="ms-test-") as folder:
        yield f"sqlite:///{Path(folder) / 'app.db'}"
