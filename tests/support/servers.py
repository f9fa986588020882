"""Real uvicorn servers on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served(args: list[str], *, env: dict[str, str], ready_path: str) -> Iterator[httpx.Client]:
    """Run ``python *args`` (which must take ``--port``) and yield a client once it answers.

    The server's output is kept and shown when it does not come up within 30 s.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, *args, "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get(ready_path).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    output = server.communicate()[0]
                    raise RuntimeError(f"the server did not come up:\n{output}")
                time.sleep(0.1)
            yield client
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
