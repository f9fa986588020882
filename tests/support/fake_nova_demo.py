"""Drive the real ``wandelbots-nova`` SDK against :mod:`fake_nova` and print what happens.

Not part of the test suite (the project venv lacks the SDK). Run it with the SDK's venv::

    /work/nova-venv/bin/python tests/support/fake_nova_demo.py [--with-default-timeout]

``--with-default-timeout`` also measures an unreachable NOVA with the SDK's default NATS
options, which takes about two minutes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nova
from fake_nova import FakeNova, fake_nova
from loguru import logger as loguru_logger
from nova import NovaConfig
from nova.actions import jnt
from nova.program import PythonProgramRunner
from nova.program.runner import ProgramRun

TOKEN = "secret-token"
HOME = (0.0,) * 6
AWAY = (0.5, -1.0, 1.0, 0.0, 0.2, 0.0)


@nova.program
async def hello(ctx: nova.ProgramContext, name: str = "world") -> str:
    """Print and log without touching a robot."""
    print(f"hello {name}")
    nova.logger.info("logged via nova.logger")
    loguru_logger.info("logged via loguru")
    return name


@nova.program
async def broken(ctx: nova.ProgramContext) -> None:
    """Fail."""
    raise ValueError("boom")


@nova.program
async def move(ctx: nova.ProgramContext, repeat: int = 1) -> None:
    """Fetch the controller and do ``repeat`` joint PTP motions."""
    controller = await ctx.cell.controller("ur")
    async with controller[0] as motion_group:
        for index in range(repeat):
            target = AWAY if index % 2 == 0 else HOME
            await motion_group.plan_and_execute([jnt(target)], tcp="Flange")
        print("joints after motion", await motion_group.joints())


@nova.program
async def forever(ctx: nova.ProgramContext) -> None:
    """Run until stopped."""
    while True:
        print("tick")
        await asyncio.sleep(0.1)


class Run:
    """A PythonProgramRunner plus the states its on_state_change callback saw."""

    def __init__(self, program: Any, url: str, nats: dict[str, Any] | None = None, **inputs: Any):
        cfg = NovaConfig(host=url, access_token=TOKEN, nats_client_config=nats)
        self.runner = PythonProgramRunner(program, inputs=inputs, nova_config=cfg)
        self.states: list[str] = []

    async def _on_state_change(self, run: ProgramRun) -> None:
        self.states.append(run.state.value)

    def start(self, sync: bool = False) -> float:
        started = time.perf_counter()
        self.runner.start(sync=sync, on_state_change=self._on_state_change)
        return time.perf_counter() - started

    def wait_running(self) -> None:
        while self.runner.state.value != "RUNNING":
            time.sleep(0.005)

    @property
    def run(self) -> ProgramRun:
        return self.runner.program_run


def open_sockets(server: FakeNova) -> str:
    time.sleep(0.3)
    before = len(server.open_websockets)
    gc.collect()
    time.sleep(0.3)
    return f"open WebSockets on the fake: {before} before gc, {len(server.open_websockets)} after"


def demo_trivial(server: FakeNova) -> None:
    print("== 1. trivial program (no robot)")
    run = Run(hello, server.url, name="fake")
    took = run.start(sync=True)
    print(f"  took {took:.3f}s; callback states {run.states}; result state {run.run.state.value}")
    print(f"  NATS: {[(m.subject, m.json()['state']) for m in server.nats_messages]}")
    print(f"  NATS payload keys: {sorted(server.nats_messages[-1].json())}")
    print(f"  stdout={run.run.stdout!r}")
    logs = run.run.logs or ""
    print(
        f"  logs: {len(logs.splitlines())} lines; has loguru line: {'via loguru' in logs}; "
        f"has nova.logger line: {'via nova.logger' in logs}"
    )
    print(f"  output_data={run.run.output_data} error={run.run.error}")
    print(f"  requests: {[(r.method, r.path, r.authorization) for r in server.requests]}")
    print(f"  {open_sockets(server)}")

    print("== 1b. failing program")
    run = Run(broken, server.url)
    try:
        run.start(sync=True)
    except ValueError as exc:
        print(f"  start(sync=True) re-raises the program's exception: {exc!r}")
    print(
        f"  states {run.states}; error={run.run.error!r}; "
        f"traceback ends {run.run.traceback.strip().splitlines()[-1]!r}"
    )


def demo_motion(server: FakeNova) -> None:
    print("== 2. program with a controller and one joint PTP motion")
    run = Run(move, server.url)
    took = run.start(sync=True)
    print(f"  took {took:.3f}s; states {run.states}; error={run.run.error}")
    print(f"  stdout={run.run.stdout!r}")
    print("  requests:")
    for r in server.requests:
        query = f"?{r.query}" if r.query else ""
        print(f"    {r.method:4} {r.path}{query}  auth={r.authorization}")
    print(f"  {open_sockets(server)}")


def demo_stop(server: FakeNova) -> None:
    print("== 3a. stop a running program")
    run = Run(forever, server.url)
    run.start()
    run.wait_running()
    time.sleep(0.25)
    started = time.perf_counter()
    run.runner.stop(sync=True)
    print(
        f"  stop(sync=True) took {time.perf_counter() - started:.3f}s; states {run.states}; "
        f"stdout={run.run.stdout!r}; logs captured={run.run.logs is not None}"
    )
    print(f"  {open_sockets(server)}")

    print("== 3b. stop issued right after start")
    run = Run(forever, server.url)
    run.start()
    run.runner.stop()  # _stop_event does not exist yet: a silent no-op
    time.sleep(1.0)
    print(f"  1s later: state={run.runner.state.value} stopped={run.runner.stopped}")
    run.runner.stop(sync=True)
    print(f"  a second stop -> {run.runner.state.value}")

    print("== 3c. stop while Nova.open() is still connecting (PREPARING)")
    run = Run(forever, server.url)
    run.start()
    while run.runner._stop_event is None:
        time.sleep(0.001)
    run.runner.stop(sync=True)
    print(
        f"  state={run.runner.state.value} is_running()={run.runner.is_running()} "
        f"thread alive={run.runner._thread.is_alive()} callback states {run.states}"
    )
    print(f"  {open_sockets(server)}")

    print("== 3d. stop during a motion")
    run = Run(move, server.url, repeat=1000)
    run.start()
    run.wait_running()
    time.sleep(0.5)
    run.runner.stop(sync=True)
    print(f"  states {run.states}; fake robot joints {[round(j, 2) for j in server.robot.joints]}")
    print(f"  {open_sockets(server)}")

    print("== 3e. stop after the program finished")
    run = Run(hello, server.url)
    run.start(sync=True)
    try:
        run.runner.stop()
    except RuntimeError as exc:
        print(f"  stop() raises RuntimeError: {exc}")


def demo_output_capture(server: FakeNova) -> None:
    print("== 4. two concurrent runs: stdout capture is process-global")
    first, second = Run(forever, server.url), Run(hello, server.url, name="second")
    first.start()
    first.wait_running()
    second.start(sync=True)
    time.sleep(0.2)
    first.runner.stop(sync=True)
    print(f"  second.stdout={second.run.stdout!r}")
    print(f"  first.stdout contains 'hello second': {'hello second' in (first.run.stdout or '')}")
    print(f"  second.logs mention the first run: {first.runner.run_id in (second.run.logs or '')}")


def demo_unreachable(with_default: bool) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nobody listens once closed
    variants: list[tuple[str, dict[str, Any] | None]] = [
        ("max_reconnect_attempts=1", {"max_reconnect_attempts": 1}),
        (
            "max_reconnect_attempts=1, reconnect_time_wait=0.1",
            {"max_reconnect_attempts": 1, "reconnect_time_wait": 0.1},
        ),
    ]
    if with_default:
        variants.append(("SDK defaults", None))
    for label, nats in variants:
        run = Run(hello, url, nats)
        started = time.perf_counter()
        try:
            run.start(sync=True)
        except Exception as exc:
            raised = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        took = time.perf_counter() - started
        print(
            f"== 5. unreachable NOVA, {label}: {run.runner.state.value} after {took:.2f}s; "
            f"states {run.states}"
        )
        print(f"  start(sync=True) raised {raised}")
        print(f"  program_run.error={run.run.error!r}")


def main() -> None:
    loguru_logger.remove()  # keep the demo readable; runs still capture their own logs
    logging.getLogger("nova").setLevel(logging.WARNING)
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # one traceback per retry otherwise
    with fake_nova() as server:
        demo_trivial(server)
    with fake_nova() as server:
        demo_motion(server)
    with fake_nova() as server:
        demo_stop(server)
    with fake_nova() as server:
        demo_output_capture(server)
    demo_unreachable("--with-default-timeout" in sys.argv)


if __name__ == "__main__":
    main()
