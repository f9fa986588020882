"""Schemathesis against the example app's generated OpenAPI: no input gives a server error,
and every answer conforms to the document (status codes, content types, headers and bodies
declared; the documented 422 body is the one the library sends), request by request and in
sequences of calls that follow the links between operations (create, then read, change and
delete what was created)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from storage import database
from support.servers import ROOT, machine_app

# The schema is read when the module is collected, so the app is built here; the fixture below
# points the database back at this app's file when the tests run.
_workdir = tempfile.TemporaryDirectory(prefix="storage-fuzz-")
_url = f"sqlite:///{_workdir.name}/fuzz.db"
sys.path.insert(0, str(ROOT))
try:
    from examples.machine_app import create_app

    database.set_default_database(database.Database())
    # The event streams never end by themselves: tests/storage/test_streams.py covers their
    # parameters, with ``follow=false``.
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_url)).exclude(
        path_regex=r"/(changes|events)$"
    )
finally:
    sys.path.remove(str(ROOT))


@pytest.fixture(scope="module", autouse=True)
def fuzz_database() -> Iterator[None]:
    database.set_default_database(database.Database())
    database.set_database_url(_url)
    yield
    database.get_database().dispose()
    _workdir.cleanup()


HEADERS = {"X-User": "fuzzer"}
# What the server answers, checked against what the document says. The request-side checks
# (schema-valid data accepted, invalid data refused) are left out: the example app's hooks
# refuse some schema-valid data on purpose, and conditional headers may answer 412.
RESPONSE_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_conforms_to_the_document(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=HEADERS, checks=RESPONSE_CHECKS)


def test_sequences_of_calls_conform_to_the_document(tmp_path: Path) -> None:
    """Schemathesis's stateful phase, from its command line (its engine follows the links it
    infers between operations) against a real server, within a time budget."""
    with machine_app(f"sqlite:///{tmp_path}/stateful.db") as server:
        command = [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{server.client.base_url}/openapi.json",
            "--phases=stateful",
            "--checks=" + ",".join(check.__name__ for check in RESPONSE_CHECKS),
            "--header=X-User: fuzzer",
            "--exclude-path-regex=/(changes|events)$",
            "--max-examples=15",
            "--max-time=60",
            "--workers=1",
            "--no-color",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Stateful" in result.stdout, result.stdout[-2000:]
