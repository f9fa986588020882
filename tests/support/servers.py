"""Real uvicorn servers on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A server process and a client for it."""

    def __init__(
        self, process: subprocess.Popen[bytes], client: httpx.Client, log: IO[str]
    ) -> None:
        self.process = process
        self.client = client
        self._log = log

    def kill(self) -> None:
        """``kill -9``: the process ends at once, nothing of its shutdown runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        """``SIGTERM``: a clean shutdown (the app's lifespan ends); waits for the exit."""
        self.process.terminate()
        self.process.wait(timeout=30)

    def output(self) -> str:
        """What the process printed so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()


@contextmanager
def server_process(
    args: list[str], *, env: dict[str, str], ready_path: str | None, port: int | None = None
) -> Iterator[Server]:
    """Run ``python *args --port PORT`` and yield it once ``ready_path`` answers 200
    (``ready_path=None``: at once, for processes that serve no HTTP and take no port).

    The process's output goes to a file (a pipe nobody reads would fill and stop the process)
    and is shown when it does not come up within 30 s.
    """
    port = port or free_port()
    command = [sys.executable, *args] + (["--port", str(port)] if ready_path else [])
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=_unmeasured({**os.environ, **env}), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        server = Server(process, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10), log)
        try:
            with server.client:
                if ready_path is not None:
                    _wait_until_ready(server, ready_path)
                yield server
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def _unmeasured(env: dict[str, str]) -> dict[str, str]:
    # Coverage follows child processes (pyproject: patch = ["subprocess"]) so that the command
    # line, tested only through its entry point, is measured. Servers are left out: tracing
    # would slow every end-to-end test, and their code is measured in process (TestClient).
    return {name: value for name, value in env.items() if name != "COVERAGE_PROCESS_CONFIG"}


def _wait_until_ready(server: Server, path: str) -> None:
    process, client = server.process, server.client
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.get(path).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"the server did not come up:\n{server.output()}")
        time.sleep(0.1)


@contextmanager
def served(args: list[str], *, env: dict[str, str], ready_path: str) -> Iterator[httpx.Client]:
    """Run ``python *args`` (which must take ``--port``) and yield a client once it answers."""
    with server_process(args, env=env, ready_path=ready_path) as server:
        yield server.client


def machine_app(url: str, port: int | None = None) -> AbstractContextManager[Server]:
    """The example machine app (``examples/machine_app.py``) on ``url``'s database."""
    env = {"STORAGE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    args = ["-m", "examples.machine_app"]
    return server_process(args, env=env, ready_path="/db/health", port=port)
