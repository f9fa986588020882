"""Schemathesis against the example app's generated OpenAPI: no input gives a server error."""

from __future__ import annotations

import importlib
import sys
import tempfile
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from storage import database
from support.servers import ROOT

# The schema is read when the module is collected, so the app is built here; the fixture below
# points the database back at this app's file when the tests run.
_workdir = tempfile.TemporaryDirectory(prefix="storage-fuzz-")
_url = f"sqlite:///{_workdir.name}/fuzz.db"
sys.path.insert(0, str(ROOT))
try:
    from examples.machine_app import create_app

    importlib.reload(database)
    # The event streams never end by themselves: tests/storage/test_streams.py covers their
    # parameters, with ``follow=false``.
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_url)).exclude(
        path_regex=r"/(changes|events)$"
    )
finally:
    sys.path.remove(str(ROOT))


@pytest.fixture(scope="module", autouse=True)
def fuzz_database() -> Iterator[None]:
    importlib.reload(database)
    database.set_database_url(_url)
    yield
    database.get_database().dispose()
    _workdir.cleanup()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call(headers={"X-User": "fuzzer"})
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
