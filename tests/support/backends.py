"""Which database servers the tests run against, and how to give each test a clean one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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
_engines: dict[str, Engine | None] = {}
_dropped_once: set[str] = set()


def _engine(name: str) -> Engine | None:
    if name not in _engines:
        engine = create_engine(SERVER_URLS[name])
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            _engines[name] = engine
        except OperationalError:
            engine.dispose()
            _engines[name] = None
    return _engines[name]


def server_url(name: str) -> str:
    """The URL of a server backend after resetting it; skips (fails on CI) when it is down."""
    engine = _engine(name)
    if engine is None:
        message = f"{name} is not reachable at {SERVER_URLS[name]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if name not in _dropped_once:
        # Tables left by an earlier run may have an older schema: start the run from nothing.
        wipe(SERVER_URLS[name])
        _dropped_once.add(name)
    reset(engine)
    return SERVER_URLS[name]


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


def wipe(url: str) -> None:
    """Drop every table in the database at ``url``."""
    engine = create_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()


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
    database = f"ms_test_{uuid.uuid4().hex[:12]}"
    server = make_url(SERVER_URLS[name])
    admin = create_engine(
        server.set(database="postgres" if name == "postgresql" else None),
        isolation_level="AUTOCOMMIT",
    )
    quoted = admin.dialect.identifier_preparer.quote(database)
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {quoted}"))
        try:
            yield server.set(database=database).render_as_string(hide_password=False)
        finally:
            force = " WITH (FORCE)" if name == "postgresql" else ""
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
    finally:
        admin.dispose()
