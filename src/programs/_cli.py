"""``machine-storage runs`` and ``machine-storage worker``: added to the command line through
the ``machine_storage.cli`` entry point group (storage never imports programs).

``runs`` talks to a server's ``/api/v2`` routes (``--server``: every subcommand) or to the
runner's tables directly (``--db``: every subcommand but ``start``, which needs the app's
templates to check a program's parameters).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from storage._cli_common import CommandFailed, JsonOption, emit_json, open_database
from storage.http import ANONYMOUS_ACTOR

__all__ = ["register"]

runs_app = typer.Typer(help="List, inspect, start and stop program runs.", no_args_is_help=True)

ServerOption = Annotated[
    str | None, typer.Option("--server", help="An app's base URL, e.g. http://127.0.0.1:8000.")
]
DbOption = Annotated[
    str | None, typer.Option("--db", metavar="DB_URL", help="Read the runner's tables directly.")
]
HeaderOption = Annotated[
    list[str] | None,
    typer.Option("--header", "-H", help="'Name: value' sent with every request (repeatable)."),
]
UserOption = Annotated[str | None, typer.Option("--user", help="Sent as X-User: the actor.")]
JSON_HEADERS = {"Accept": "application/json"}
# How often `runs logs --db --follow` looks for new lines.
FOLLOW_POLL_SECONDS = 0.5


class _Api:
    """A tiny client of a server's ``/api/v2``: the standard library only."""

    def __init__(self, server: str, headers: list[str] | None, user: str | None) -> None:
        self.base = server.rstrip("/") + "/api/v2"
        self.headers = dict(JSON_HEADERS)
        for header in headers or ():
            name, colon, value = header.partition(":")
            if not colon or not name.strip():
                raise typer.BadParameter(f"not 'Name: value': {header!r}", param_hint="--header")
            self.headers[name.strip()] = value.strip()
        if user:
            self.headers["X-User"] = user

    def _open(self, method: str, path: str, accept: str | None = None) -> Any:
        headers = {**self.headers, **({"Accept": accept} if accept else {})}
        request = urllib.request.Request(self.base + path, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=None if accept else 60)
        except urllib.error.HTTPError as exc:
            raise CommandFailed(f"{method} {path}: {exc.code} {_detail(exc)}") from None
        except urllib.error.URLError as exc:
            raise CommandFailed(f"cannot reach {self.base} ({exc.reason})") from None

    def call(self, method: str, path: str) -> Any:
        with self._open(method, path) as response:
            return json.loads(response.read() or b"null")

    def events(self, path: str) -> Iterator[tuple[str, str]]:
        """The (event, data) pairs of a Server-Sent Events stream, until it ends."""
        with self._open("GET", path, accept="text/event-stream") as response:
            name, data = "message", list[str]()
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield name, "\n".join(data)
                    name, data = "message", []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
    except ValueError:
        return exc.reason
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)


def _source(server: str | None, db: str | None, headers: list[str] | None, user: str | None) -> Any:
    if (server is None) == (db is None):
        raise typer.BadParameter("pass either --server URL or --db DB_URL")
    if server is not None:
        return _Api(server, headers, user)
    open_database(db or "")
    from programs import _tables  # noqa: F401  (the runner's tables, for the accessors)

    return None


def _row(run: Any) -> dict[str, Any]:
    if isinstance(run, dict):
        return run
    data: dict[str, Any] = json.loads(run.model_dump_json())
    return data


def _print_runs(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        typer.echo(
            f"{run['id']:>6}  {run['status']:<9}  {run['program_name']}  "
            f"started {run.get('started_at') or '-'}  finished {run.get('finished_at') or '-'}"
        )


@runs_app.command("list")
def list_runs(
    server: ServerOption = None,
    db: DbOption = None,
    program: Annotated[str | None, typer.Option("--program", help="Only this program.")] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only runs in this status (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
    header: HeaderOption = None,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """The runs, newest first."""
    api = _source(server, db, header, user)
    if api is not None:
        query = urllib.parse.urlencode([("limit", limit), *[("status", s) for s in status or ()]])
        path = f"/programs/{urllib.parse.quote(program, safe='')}/runs" if program else "/runs"
        runs = api.call("GET", f"{path}?{query}")
    else:
        from programs._history import RunHistory
        from programs._tables import RunStatus

        try:
            statuses = [RunStatus(s) for s in status or ()]
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--status") from None
        rows, _ = RunHistory().find(program_name=program, statuses=statuses, limit=limit)
        runs = [_row(row) for row in rows]
    if as_json:
        emit_json(runs)
    else:
        _print_runs(runs)


@runs_app.command("show")
def show_run(
    run_id: Annotated[int, typer.Argument(metavar="RUN_ID")],
    server: ServerOption = None,
    db: DbOption = None,
    header: HeaderOption = None,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """One run, with its error and logs."""
    api = _source(server, db, header, user)
    if api is not None:
        run = api.call("GET", f"/runs/{run_id}")
    else:
        from programs._history import RunHistory

        run = _row(RunHistory().get(run_id))
    if as_json:
        emit_json(run)
        return
    _print_runs([run])
    if run.get("error"):
        typer.echo(f"error: {run['error']}")


def _server_only(
    server: str | None, db: str | None, headers: list[str] | None, user: str | None
) -> _Api:
    if db is not None or server is None:
        raise typer.BadParameter("this command needs --server URL (an app that runs programs)")
    api: _Api = _source(server, None, headers, user)
    return api


def _post_run(api: _Api, path: str, as_json: bool) -> None:
    run = api.call("POST", path)
    emit_json(run) if as_json else _print_runs([run])


@runs_app.command("start")
def start_run(
    program: Annotated[str, typer.Argument(metavar="PROGRAM")],
    server: ServerOption = None,
    db: DbOption = None,
    header: HeaderOption = None,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a run of a stored program (it is queued; prints the run)."""
    path = f"/programs/{urllib.parse.quote(program, safe='')}/runs"
    _post_run(_server_only(server, db, header, user), path, as_json)


@runs_app.command("stop")
def stop_run(
    run_id: Annotated[int, typer.Argument(metavar="RUN_ID")],
    server: ServerOption = None,
    db: DbOption = None,
    header: HeaderOption = None,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask a run to stop (a queued run is cancelled at once; a running one stops when the
    process that executes it next looks at its cell)."""
    api = _source(server, db, header, user)
    if api is not None:
        _post_run(api, f"/runs/{run_id}/stop", as_json)
        return
    from programs._cells import CellLedger, Instance
    from programs._config import RunnerConfig
    from programs._history import RunHistory

    ledger = CellLedger(RunnerConfig(), RunHistory(), Instance.this_process("cli"))
    run = _row(ledger.request_stop(run_id, user or ANONYMOUS_ACTOR).run)
    emit_json(run) if as_json else _print_runs([run])


@runs_app.command("logs")
def run_logs(
    run_id: Annotated[int, typer.Argument(metavar="RUN_ID")],
    server: ServerOption = None,
    db: DbOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new lines until the run ends.")
    ] = False,
    header: HeaderOption = None,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """A run's printed lines and log records (with --json, one JSON object per line)."""
    api = _source(server, db, header, user)
    if api is None:
        lines: Iterator[dict[str, Any]] = _database_lines(run_id, follow=follow)
    elif follow:
        lines = _followed_lines(api, run_id, as_json)
    else:
        lines = iter(api.call("GET", f"/runs/{run_id}/logs?limit=10000"))
    for line in lines:
        typer.echo(json.dumps(line)) if as_json else typer.echo(line["text"], nl=False)


def _followed_lines(api: _Api, run_id: int, as_json: bool) -> Iterator[dict[str, Any]]:
    for name, data in api.events(f"/runs/{run_id}/events"):
        event = json.loads(data)
        if name in ("output", "log"):
            yield event
        elif name == "status" and not as_json:
            typer.echo(f"[{event['status']}]", err=True)


def _database_lines(run_id: int, *, follow: bool) -> Iterator[dict[str, Any]]:
    """The run's lines from its table, as the logs route gives them; with ``follow``, polled
    until the run has ended and its last lines are read."""
    from programs._history import RunHistory
    from programs._lines import read_lines
    from programs._tables import RunStatus

    history, after = RunHistory(), 0  # the database open_database made the default
    history.get(run_id)  # RunNotFound before anything is printed
    while True:
        ended = not follow or RunStatus(history.get(run_id).status).is_final
        while page := read_lines(history.database, run_id, after=after, limit=1000):
            for line in page:
                data = _row(line)
                yield {key: data[key] for key in ("seq", "stream", "text", "created_at")}
            after = page[-1].seq
        if ended:
            return
        time.sleep(FOLLOW_POLL_SECONDS)


def worker_command(
    packages: Annotated[
        list[str], typer.Argument(metavar="PACKAGE...", help="Packages or modules with templates.")
    ],
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Default: STORAGE_DATABASE_URL.")
    ] = None,
    cell: Annotated[str | None, typer.Option("--cell", help="The cell to serve.")] = None,
) -> None:
    """Execute a cell's programs without serving HTTP, until Ctrl-C or SIGTERM."""
    from programs._config import RunnerConfig
    from programs.worker import run_worker

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = (
        RunnerConfig.from_env(execute=True, cell=cell)
        if cell
        else RunnerConfig.from_env(execute=True)
    )
    run_worker(packages, database_url=database_url, config=config)


def register(app: typer.Typer) -> None:
    """Add the program commands to the ``machine-storage`` application."""
    app.add_typer(runs_app, name="runs")
    app.command("worker")(worker_command)
