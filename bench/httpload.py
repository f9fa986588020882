"""Load generation and process measurements for ``bench/http.py``.

A :class:`Server` runs an app in a child process and reads its CPU time and memory from
``/proc``; :class:`Load` drives it with ``wrk`` (keep-alive connections, one client thread) or,
without ``wrk``, with Python threads and httpx clients, which share the machine's cores with
the server and so understate fast endpoints.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["MAX_REQUESTS", "Load", "Rate", "Server", "peak_rss"]

MAX_REQUESTS = 100_000  # per run; the time limit normally ends it first
_HEADERS = {"X-User": "bench"}


class Server:
    """A script that serves an app on ``--port``, in a child process, on a free port.

    Args:
        script: run as ``python script *arguments --port N``.
        arguments: the script's other arguments.
        log: the file that gets the server's output.
        ready_path: polled until it answers 200 (60 s at most).
    """

    def __init__(self, script: str, arguments: list[str], log: Path, ready_path: str) -> None:
        self.script, self.arguments, self.log, self.ready_path = script, arguments, log, ready_path

    def __enter__(self) -> Server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        command = [sys.executable, self.script, *self.arguments, "--port", str(port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(self.base + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"the server did not start; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self) -> float:
        """User and system CPU time of the server process, all threads."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory(self, name: str) -> int:
        """``VmRSS`` or ``VmHWM`` of the server process, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1]) * 1024
        raise LookupError(name)


@dataclass
class Rate:
    requests: int
    seconds: float
    failed: int  # non-2xx answers and socket errors
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # server CPU time per request: steadier than req/s on a busy machine

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @classmethod
    def merge(cls, windows: list[Rate]) -> Rate:
        """Several windows of one run: totals, the median p50 and the worst p99."""
        requests = sum(w.requests for w in windows)
        return cls(
            requests,
            sum(w.seconds for w in windows),
            sum(w.failed for w in windows),
            statistics.median(w.p50_ms for w in windows),
            max(w.p99_ms for w in windows),
            sum(w.cpu_ms * w.requests for w in windows) / requests,
        )


_WRK_SCRIPT = """
local mode, path, max_id, limit, tag = "%(mode)s", "%(path)s", %(max_id)d, %(limit)d, "%(tag)s"
local made = 0
wrk.headers["X-User"] = "bench"
wrk.headers["Content-Type"] = "application/json"
function request()
  made = made + 1
  if made > limit then wrk.thread:stop() end
  if mode == "id" then return wrk.format("GET", path .. math.random(1, max_id)) end
  if mode == "post" then
    local body = string.format('{"serial":"%%s-%%d","workcell_id":%%d,"payload_kg":5.5}',
      tag, made, made %% 10 + 1)
    return wrk.format("POST", path, nil, body)
  end
  return wrk.format("GET", path)
end
function done(s, latency, requests)
  local e = s.errors
  io.write(string.format("WRK %%d %%d %%d %%d %%d\\n", s.requests, s.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


class Load:
    """Keep-alive load from ``wrk`` (one thread) or, without it, Python threads with httpx."""

    def __init__(self, connections: int, workdir: Path) -> None:
        self.connections, self.workdir = connections, workdir
        self.wrk = shutil.which("wrk")

    def describe(self) -> str:
        how = "wrk, 1 thread" if self.wrk else "Python threads with httpx (wrk not found)"
        return f"{how}, {self.connections} keep-alive connections"

    def run(self, server: Server, mode: str, path: str, seconds: float, **options: Any) -> Rate:
        """``mode``: ``get`` the path, ``id``: GET path + a random id up to ``max_id``,
        ``post``: create a machine whose serial starts with ``tag``."""
        cpu = server.cpu_seconds()
        run = self._run_wrk if self.wrk else self._run_threads
        requests, elapsed, failed, p50, p99 = run(server.base, mode, path, seconds, **options)
        cpu_ms = (server.cpu_seconds() - cpu) * 1000 / max(requests, 1)
        return Rate(requests, elapsed, failed, p50, p99, cpu_ms)

    def _run_wrk(
        self, base: str, mode: str, path: str, seconds: float, max_id: int = 0, tag: str = ""
    ) -> tuple[int, float, int, float, float]:
        script = self.workdir / "load.lua"
        values = {"mode": mode, "path": path, "max_id": max_id, "limit": MAX_REQUESTS, "tag": tag}
        script.write_text(_WRK_SCRIPT % values)
        duration = max(1, round(seconds))  # wrk takes whole seconds
        command = [self.wrk or "wrk", "-t1", f"-c{self.connections}", f"-d{duration}s"]
        command += ["--timeout", "10s", "-s", str(script), base]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        line = next(line for line in output.splitlines() if line.startswith("WRK "))
        requests, micros, failed, p50, p99 = map(int, line.split()[1:])
        if requests >= MAX_REQUESTS - self.connections:
            # wrk keeps the clock running after the bound stops it: the rate would be too low.
            print(f"warning: {path} hit the bound of {MAX_REQUESTS} requests", file=sys.stderr)
        return requests, micros / 1e6, failed, p50 / 1000, p99 / 1000

    def _run_threads(
        self, base: str, mode: str, path: str, seconds: float, max_id: int = 0, tag: str = ""
    ) -> tuple[int, float, int, float, float]:
        numbers = iter(range(MAX_REQUESTS))  # shared: next() on it is atomic under the GIL
        latencies: list[float] = []
        failures: list[int] = []  # list.append is atomic under the GIL, += is not
        deadline = time.perf_counter() + seconds

        def worker() -> None:
            with httpx.Client(base_url=base, headers=_HEADERS, timeout=10) as client:
                while time.perf_counter() < deadline and (n := next(numbers, None)) is not None:
                    start = time.perf_counter()
                    if mode == "post":
                        body = {"serial": f"{tag}-{n}", "workcell_id": n % 10 + 1}
                        answer = client.post(path, json={**body, "payload_kg": 5.5})
                    else:
                        answer = client.get(path + (str(n % max_id + 1) if mode == "id" else ""))
                    latencies.append(time.perf_counter() - start)
                    if not answer.is_success:
                        failures.append(answer.status_code)

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(self.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cuts = statistics.quantiles(latencies, n=100)
        elapsed = time.perf_counter() - started
        return len(latencies), elapsed, len(failures), cuts[49] * 1000, cuts[98] * 1000


@contextmanager
def peak_rss(server: Server) -> Iterator[list[int]]:
    """Yield ``[rss_before, peak]``; peak is the largest VmRSS seen every 10 ms meanwhile."""
    seen = [server.memory("VmRSS")] * 2
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            seen[1] = max(seen[1], server.memory("VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()
