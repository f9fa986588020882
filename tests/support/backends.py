"""Which database servers the tests run against, and how to give each test a clean one."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.exc import OperationalError

POSTGRES_URL = os.environ.get(
    "STORAGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("STORAGE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

SERVER_URLS = {"postgresql": POSTGRES_URL, "mariadb": MARIADB_URL}
_reachable: dict[str, bool] = {}


def server_url(name: str) -> str:
    """The URL of a server backend after wiping it; skips (fails on CI) when it is down."""
    url = SERVER_URLS[name]
    if name not in _reachable:
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            _reachable[name] = True
        except OperationalError:
            _reachable[name] = False
        finally:
            engine.dispose()
    if not _reachable[name]:
        message = f"{name} is not reachable at {url}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    wipe(url)
    return url


def wipe(url: str) -> None:
    """Drop every table in the database at ``url``."""
    engine = create_engine(url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()
