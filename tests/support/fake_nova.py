"""A fake Wandelbots NOVA server for tests that drive the real ``wandelbots-nova`` SDK.

It serves, on ``127.0.0.1`` and a free port, just enough of NOVA for a program run:

- ``/api/nats``: NATS over WebSocket (INFO, CONNECT, PING/PONG, SUB/UNSUB, PUB/HPUB, MSG).
  The SDK connects here on ``Nova.open()`` and publishes every program state change to
  ``nova.v2.cells.<cell>.programs``.
- ``/api/v2``: one controller with one six-axis motion group that plans joint PTP motions
  by linear interpolation and "executes" them over the execution and state-stream
  WebSockets, so ``MotionGroup.plan_and_execute([jnt(...)])`` completes.

Every HTTP request and WebSocket handshake is recorded with its ``Authorization`` header,
every NATS publish with its subject and payload, and the WebSockets clients still hold open
are listed (a run that leaks its NATS connection shows up there). Anything else answers 404
and is still recorded, so a test sees what the SDK asked for. uvicorn needs ``websockets``
(a dependency of the SDK) to serve the WebSocket routes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

__all__ = ["FakeNova", "NatsMessage", "RecordedRequest", "fake_nova"]

_CELL = "/api/v2/cells/{cell}"
_CONTROLLER = _CELL + "/controllers/{controller}"
_MOTION_GROUP = _CONTROLLER + "/motion-groups/{motion_group}"
_ZERO_POSE = {"position": [0.0, 0.0, 0.0], "orientation": [0.0, 0.0, 0.0]}
_SAMPLES_PER_MOTION = 10


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request (``method`` GET, POST, ...) or WebSocket handshake (``method`` WS)."""

    method: str
    path: str
    query: str
    authorization: str | None


@dataclass(frozen=True)
class NatsMessage:
    """One message a client published over the fake NATS endpoint."""

    subject: str
    payload: bytes

    def json(self) -> Any:
        """Decode the payload as JSON."""
        return json.loads(self.payload)


@dataclass
class _NatsClient:
    websocket: WebSocket
    subscriptions: dict[str, str] = field(default_factory=dict)  # sid -> subject


def _subject_matches(pattern: str, subject: str) -> bool:
    wanted, given = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or (token != "*" and token != given[index]):
            return False
    return len(wanted) == len(given)


class _Robot:
    """The one motion group: its joints and the trajectory it is executing, if any."""

    def __init__(self, controller: str, motion_group: str, joints: tuple[float, ...]) -> None:
        self.controller = controller
        self.motion_group = motion_group
        self.joints = list(joints)
        self.trajectories: dict[str, dict[str, Any]] = {}
        self._execute: dict[str, Any] | None = None
        self._sequence = 0

    def state(self) -> dict[str, Any]:
        self._sequence += 1
        running = self._execute is not None and self._execute["state"]["kind"] == "RUNNING"
        return {
            "timestamp": datetime.now(UTC).isoformat(),
            "sequence_number": self._sequence,
            "motion_group": self.motion_group,
            "controller": self.controller,
            "joint_position": list(self.joints),
            "joint_limit_reached": {"limit_reached": [False] * len(self.joints)},
            "tcp": "Flange",
            "tcp_pose": _ZERO_POSE,
            "flange_pose": _ZERO_POSE,
            "standstill": not running,
            "description_revision": 0,
            "execute": None
            if self._execute is None
            else {"joint_position": list(self.joints), "details": self._execute},
        }

    def plan(self, start: list[float], targets: list[list[float]]) -> dict[str, Any]:
        positions, locations, current = [list(start)], [0.0], list(start)
        for segment, target in enumerate(targets):
            for step in range(1, _SAMPLES_PER_MOTION + 1):
                share = step / _SAMPLES_PER_MOTION
                positions.append(
                    [a + (b - a) * share for a, b in zip(current, target, strict=True)]
                )
                locations.append(segment + share)
            current = list(target)
        times = [index * 0.01 for index in range(len(positions))]
        return {"joint_positions": positions, "times": times, "locations": locations}

    def reset(self) -> None:
        self._execute = None

    async def play(self, trajectory_id: str) -> None:
        """Step through the trajectory, 10 ms a sample, then report its end at standstill."""
        trajectory = self.trajectories[trajectory_id]
        samples = list(zip(trajectory["joint_positions"], trajectory["locations"], strict=True))
        details = {"kind": "TRAJECTORY", "trajectory": trajectory_id, "location": 0.0}
        try:
            for index, (joints, location) in enumerate(samples):
                self.joints = list(joints)
                running = {"kind": "RUNNING", "time_to_end": (len(samples) - index) * 10}
                self._execute = {**details, "location": location, "state": running}
                await asyncio.sleep(0.01)
            self._execute = {
                **details,
                "location": samples[-1][1],
                "state": {"kind": "END_OF_TRAJECTORY"},
            }
        except asyncio.CancelledError:
            self._execute = None  # the connection dropped: the motion stops where it is
            raise


class _Recorder:
    """ASGI middleware that records every HTTP request and WebSocket handshake."""

    def __init__(self, app: ASGIApp, fake: FakeNova) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization")
        request = RecordedRequest(
            method=scope["method"] if scope["type"] == "http" else "WS",
            path=scope["path"],
            query=scope["query_string"].decode(),
            authorization=authorization.decode() if authorization else None,
        )
        self.fake._record(request)
        if scope["type"] == "http":
            await self.app(scope, receive, send)
            return
        self.fake._open_websockets.append(request.path)
        try:
            await self.app(scope, receive, send)
        finally:
            self.fake._open_websockets.remove(request.path)


class FakeNova:
    """A fake NOVA instance served by uvicorn in a background thread.

    Any cell name is accepted (the SDK's is the ``CELL_NAME`` variable, default ``cell``).

    Args:
        controller: The name of the one controller; its motion group is ``0@<controller>``.
        joints: The motion group's initial joint position (its length is the axis count).
        nats_delay: Seconds the NATS WebSocket waits before it accepts a client (a slow NOVA).
    """

    def __init__(
        self,
        *,
        controller: str = "ur",
        joints: tuple[float, ...] = (0.0,) * 6,
        nats_delay: float = 0.0,
    ) -> None:
        self.robot = _Robot(controller, f"0@{controller}", joints)
        self.nats_delay = nats_delay
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._nats_messages: list[NatsMessage] = []
        self._nats_clients: list[_NatsClient] = []
        self._open_websockets: list[str] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        routes = [
            WebSocketRoute("/api/nats", self._nats),
            Route(_CELL + "/controllers", self._controllers),
            Route(_CONTROLLER + "/description", self._controller_description),
            Route(_MOTION_GROUP + "/description", self._motion_group_description),
            Route(_MOTION_GROUP + "/state", self._motion_group_state),
            WebSocketRoute(_MOTION_GROUP + "/state-stream", self._state_stream),
            Route(_CELL + "/trajectory-planning/plan-trajectory", self._plan, methods=["POST"]),
            Route(_CONTROLLER + "/trajectories", self._add_trajectory, methods=["POST"]),
            WebSocketRoute(_CONTROLLER + "/execution/trajectory", self._execution),
        ]
        self.app = _Recorder(Starlette(routes=routes), self)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every HTTP request and WebSocket handshake so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def nats_messages(self) -> list[NatsMessage]:
        """Every NATS message clients published so far, oldest first."""
        with self._lock:
            return list(self._nats_messages)

    @property
    def open_websockets(self) -> list[str]:
        """The paths of the WebSocket connections clients hold open right now."""
        return list(self._open_websockets)

    def _record(self, item: RecordedRequest | NatsMessage) -> None:
        with self._lock:
            if isinstance(item, RecordedRequest):
                self._requests.append(item)
            else:
                self._nats_messages.append(item)

    def start(self) -> None:
        """Serve on a free port of 127.0.0.1 and return once the server accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            ws="websockets-sansio",  # the legacy websockets protocol warns on import
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-nova", daemon=True
        )
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                break
            if not self._thread.is_alive():
                raise RuntimeError("fake NOVA server failed to start")
            time.sleep(0.01)
        else:
            raise RuntimeError("fake NOVA server did not start within 5 s")
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
        self._server = self._thread = None

    # -- NATS over WebSocket ---------------------------------------------------------------

    async def _nats(self, websocket: WebSocket) -> None:
        await asyncio.sleep(self.nats_delay)
        await websocket.accept()
        client = _NatsClient(websocket)
        self._nats_clients.append(client)
        info = {"server_id": "fake-nova", "version": "2.10.0", "proto": 1, "max_payload": 1 << 20}
        await websocket.send_bytes(b"INFO " + json.dumps(info).encode() + b"\r\n")
        buffer = b""
        try:
            while True:
                buffer += await websocket.receive_bytes()
                buffer = await self._nats_consume(client, buffer)
        except WebSocketDisconnect:
            pass
        finally:
            self._nats_clients.remove(client)

    async def _nats_consume(self, client: _NatsClient, buffer: bytes) -> bytes:
        """Handle every complete operation in ``buffer`` and return the unconsumed rest."""
        while (end := buffer.find(b"\r\n")) >= 0:
            line, rest = buffer[:end].decode(), buffer[end + 2 :]
            verb, _, arguments = line.partition(" ")
            args = arguments.split()
            match verb.upper():
                case "PUB" | "HPUB":
                    size = int(args[-1])
                    if len(rest) < size + 2:
                        return buffer  # the payload has not fully arrived yet
                    payload, rest = rest[:size], rest[size + 2 :]
                    if verb.upper() == "HPUB":
                        payload = payload[int(args[-2]) :]  # drop the header block
                    self._record(NatsMessage(args[0], payload))
                    await self._nats_deliver(args[0], payload)
                case "SUB":
                    client.subscriptions[args[-1]] = args[0]
                case "UNSUB":
                    client.subscriptions.pop(args[0], None)
                case "PING":
                    await client.websocket.send_bytes(b"PONG\r\n")
                case _:
                    pass  # CONNECT and PONG need no answer (the client is not verbose)
            buffer = rest
        return buffer

    async def _nats_deliver(self, subject: str, payload: bytes) -> None:
        for client in list(self._nats_clients):
            for sid, pattern in list(client.subscriptions.items()):
                if _subject_matches(pattern, subject):
                    head = f"MSG {subject} {sid} {len(payload)}\r\n".encode()
                    await client.websocket.send_bytes(head + payload + b"\r\n")

    # -- Controller and motion group -------------------------------------------------------

    async def _controllers(self, request: Request) -> JSONResponse:
        return JSONResponse([self.robot.controller])

    async def _controller_description(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "connected_motion_groups": [self.robot.motion_group],
                "supports_freedrive": False,
                "supports_control": True,
                "supports_safety_zones": False,
            }
        )

    async def _motion_group_description(self, request: Request) -> JSONResponse:
        flange = {"name": "Flange", "pose": _ZERO_POSE}
        return JSONResponse(
            {
                "motion_group_model": "UniversalRobots_UR5e",
                "operation_limits": {"auto_limits": {}},
                "cycle_time": 8,
                "tcps": {"Flange": flange},
            }
        )

    async def _motion_group_state(self, request: Request) -> JSONResponse:
        return JSONResponse(self.robot.state())

    async def _state_stream(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(json.dumps({"result": self.robot.state()}))
                await asyncio.sleep(0.02)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the SDK closes the stream once the motion ended

    async def _plan(self, request: Request) -> JSONResponse:
        body = await request.json()
        paths = [command["path"] for command in body["motion_commands"]]
        if any(path["path_definition_name"] != "PathJointPTP" for path in paths):
            return JSONResponse({"detail": "fake NOVA plans joint PTP motions only"}, 400)
        targets = [path["target_joint_position"] for path in paths]
        trajectory = self.robot.plan(body["start_joint_position"], targets)
        return JSONResponse({"response": trajectory})

    async def _add_trajectory(self, request: Request) -> JSONResponse:
        body = await request.json()
        trajectory_id = str(uuid.uuid4())
        self.robot.trajectories[trajectory_id] = body["trajectory"]
        return JSONResponse({"trajectory": trajectory_id})

    async def _execution(self, websocket: WebSocket) -> None:
        await websocket.accept()
        trajectory_id: str | None = None
        motion: asyncio.Task[None] | None = None
        try:
            while True:
                message = await websocket.receive_json()
                match message["message_type"]:
                    case "InitializeMovementRequest":
                        trajectory_id = message["trajectory"]["id"]
                        self.robot.reset()
                        answer = {"kind": "INITIALIZE_RECEIVED"}
                        if trajectory_id not in self.robot.trajectories:
                            answer["message"] = f"unknown trajectory {trajectory_id}"
                    case "StartMovementRequest" if trajectory_id in self.robot.trajectories:
                        motion = asyncio.create_task(self.robot.play(trajectory_id))
                        answer = {"kind": "START_RECEIVED"}
                    case other:
                        answer = {"kind": "MOTION_ERROR", "message": f"unsupported: {other}"}
                await websocket.send_text(json.dumps({"result": answer}))
        except WebSocketDisconnect:
            pass
        finally:
            if motion is not None and not motion.done():
                motion.cancel()


@contextmanager
def fake_nova(**options: Any) -> Iterator[FakeNova]:
    """Run a :class:`FakeNova` for the duration of the ``with`` block.

    Args:
        **options: Passed to :class:`FakeNova`.

    Yields:
        The started server; point ``NovaConfig(host=server.url)`` at it.
    """
    server = FakeNova(**options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
