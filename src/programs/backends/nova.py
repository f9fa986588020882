"""The NOVA backend: programs run with a connection to Wandelbots NOVA (``wandelbots-nova``).

The SDK's own ``PythonProgramRunner`` is not used, because of three problems it has (5.11, 6.x):
its output capture is process-wide (``redirect_stdout``: concurrent runs capture each other's
prints, and ``sys.stdout`` can be left as a dead tee), a stop right after the start is lost
(its stop event does not exist yet), and a cancelled run leaks its connections (``Nova.close()``
runs in the cancelled scope; the NATS drain raises ``CancelledError`` past ``except
Exception``). Instead each run opens its own ``Nova``, calls the template function in the
runner's task (output captured per run by :mod:`programs._capture`), publishes the run's state
on NATS as the SDK does, and closes ``Nova`` in a task of its own that a stop cannot cancel.

The SDK is imported on first use only: ``import nova`` takes seconds and configures the root
logger (``logging.basicConfig``), which is undone here, so the app's logging stays its own.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from programs._context import NOVA_RESOURCES, ProgramCall
from programs._tables import RunStatus
from programs.errors import BackendError, BackendMissingError, RunCancelled
from storage.auditor import utcnow

__all__ = ["FAIL_FAST_NATS", "NovaBackend", "NovaSettings"]

logger = logging.getLogger("programs.backends.nova")

INSTALL_HINT = "pip install 'machine-storage[nova]'"

FAIL_FAST_NATS: Mapping[str, Any] = {
    "max_reconnect_attempts": 1,
    "reconnect_time_wait": 0.1,
    "connect_timeout": 2,
}
"""NATS options that make an unreachable NOVA fail in a fraction of a second (the SDK's
defaults retry for two minutes)."""

_SDK_STATES: Mapping[RunStatus, str] = {
    RunStatus.running: "RUNNING",
    RunStatus.completed: "COMPLETED",
    RunStatus.failed: "FAILED",
    RunStatus.cancelled: "STOPPED",
}
"""The SDK's ``ProgramRunState`` published for each of our statuses."""

_STATUS_OF_SDK_STATE: Mapping[str, RunStatus] = {
    "PREPARING": RunStatus.running,
    "RUNNING": RunStatus.running,
    "COMPLETED": RunStatus.completed,
    "FAILED": RunStatus.failed,
    "STOPPED": RunStatus.cancelled,
}
"""Our status for each SDK ``ProgramRunState`` (``PREPARING``, connecting, is running)."""

_ERROR_LENGTH = 2048  # the SDK's ProgramStatus refuses longer error texts


@dataclass(frozen=True, kw_only=True)
class NovaSettings:
    """How to reach NOVA.

    Attributes:
        host: the NOVA API, e.g. ``http://nova.local`` (``NOVA_API``); NATS is reached at
            ``ws://<host>/api/nats`` unless the SDK's ``NATS_BROKER`` variable says otherwise.
        access_token: bearer token (``NOVA_ACCESS_TOKEN``); not shown in ``repr``.
        cell: the cell programs run in (``CELL_NAME``, default ``cell``).
        verify_ssl: check the server's certificate on ``https``.
        nats_options: passed to ``nats.connect`` (default :data:`FAIL_FAST_NATS`).
        open_timeout: seconds to connect before the run fails.
        close_timeout: seconds to wait for the connection to close after a run.
        app_name: published as ``app`` with the run's state.
        publish_state: publish each state change to ``nova.v2.cells.<cell>.programs``.
    """

    host: str
    access_token: str | None = field(default=None, repr=False)
    cell: str = "cell"
    verify_ssl: bool = True
    nats_options: Mapping[str, Any] = field(default_factory=lambda: dict(FAIL_FAST_NATS))
    open_timeout: float = 10.0
    close_timeout: float = 5.0
    app_name: str | None = None
    publish_state: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NovaSettings:
        """Read ``NOVA_API``, ``NOVA_ACCESS_TOKEN``, ``CELL_NAME`` (and ``APP_NAME``).

        Raises:
            ValueError: ``NOVA_API`` is not set.
        """
        env = os.environ if environ is None else environ
        host = env.get("NOVA_API", "").strip()
        if not host:
            raise ValueError("NOVA_API is not set: it is the address of the NOVA instance")
        return cls(
            host=host,
            access_token=env.get("NOVA_ACCESS_TOKEN") or None,
            cell=env.get("CELL_NAME") or "cell",
            app_name=env.get("APP_NAME") or None,
        )


def require_sdk() -> None:
    """Check that ``wandelbots-nova`` is installed, without importing it.

    Raises:
        BackendMissingError: it is not (the message says which extra to install).
    """
    try:
        importlib.metadata.version("wandelbots-nova")
    except importlib.metadata.PackageNotFoundError:
        raise BackendMissingError(
            f"the nova backend needs the wandelbots-nova package: {INSTALL_HINT}"
        ) from None


_sdk_lock = threading.Lock()
_sdk: SimpleNamespace | None = None


def load_sdk() -> SimpleNamespace:
    """Import the SDK once, leaving the root logger as it was; returns the names used here."""
    global _sdk
    with _sdk_lock:
        if _sdk is None:
            require_sdk()
            root = logging.getLogger()
            handlers, level = list(root.handlers), root.level
            try:
                nova = importlib.import_module("nova")
                runner = importlib.import_module("nova.program.runner")
            finally:
                root.handlers[:] = handlers
                root.setLevel(level)
            _sdk = SimpleNamespace(
                Nova=nova.Nova,
                NovaConfig=nova.NovaConfig,
                RunCell=_run_cell_class(nova.Cell),
                ProgramRunState=nova.api.models.ProgramRunState,
                ProgramStatus=runner.ProgramStatus,
            )
        return _sdk


def _run_cell_class(cell_class: type[Any]) -> type[Any]:
    # On SDK 5.x every Controller the SDK hands out has an HTTP session of its own that only
    # its close() ends, and programs never close them (nor do the SDK's examples): a run's cell
    # remembers the controllers it made, and the backend closes them when the run ends. On 6.x
    # they share the Nova's session, and their close() leaves it to Nova.
    class RunCell(cell_class):  # type: ignore[misc]
        """A ``nova.Cell`` that remembers the controllers it hands out."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.handed_out: list[Any] = []

        def _create_controller(self, controller_id: str) -> Any:
            controller = super()._create_controller(controller_id)
            self.handed_out.append(controller)
            return controller

    return RunCell


class NovaBackend:
    """Run template functions with an opened ``nova.Nova`` and the configured cell.

    Templates ask for them as parameters ``nova`` and ``cell`` (or read ``ctx.nova`` and
    ``ctx.cell``). Each run opens its own connection and closes it when it ends.

    Raises:
        BackendMissingError: ``wandelbots-nova`` is not installed (at construction, so an app
            configured for NOVA fails at startup).
    """

    name = "nova"
    resources: frozenset[str] = NOVA_RESOURCES

    def __init__(self, settings: NovaSettings) -> None:
        require_sdk()
        self.settings = settings
        self._closing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"NovaBackend(host={self.settings.host!r}, cell={self.settings.cell!r})"

    async def open(self) -> None:
        """Import the SDK now (seconds), so that the first run does not wait for it."""
        await asyncio.to_thread(load_sdk)

    async def close(self) -> None:
        """Wait (up to ``close_timeout``) for connections still closing."""
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=self.settings.close_timeout)

    async def run(self, call: ProgramCall) -> Any:
        """Connect, publish the states, run the function, and always close the connection.

        Raises:
            BackendError: NOVA could not be reached (within ``open_timeout``).
        """
        sdk = load_sdk()
        settings = self.settings
        nova = sdk.Nova(
            config=sdk.NovaConfig(
                host=settings.host,
                access_token=settings.access_token,
                verify_ssl=settings.verify_ssl,
                nats_client_config=dict(settings.nats_options),
            )
        )
        cell = sdk.RunCell(nova.api, settings.cell, nats_client=nova.nats)
        started = utcnow()
        try:
            await self._open(nova)
            # A stop right after the start can arrive while the SDK connects, and its connect
            # can swallow the cancellation: the stop request itself is never lost.
            call.context.raise_if_stopped()
            await self._publish(nova, call, "PREPARING", started)
            await self._publish(nova, call, _SDK_STATES[RunStatus.running], started)
            try:
                call.context.raise_if_stopped()
                result = await call.invoke(nova=nova, cell=cell)
            except (asyncio.CancelledError, RunCancelled):
                await self._publish(nova, call, _SDK_STATES[RunStatus.cancelled], started, True)
                raise
            except BaseException as exc:
                error = f"{type(exc).__name__}: {exc}"
                await self._publish(nova, call, _SDK_STATES[RunStatus.failed], started, True, error)
                raise
            final = RunStatus.cancelled if call.context.stop_requested else RunStatus.completed
            await self._publish(nova, call, _SDK_STATES[final], started, True)
            return result
        finally:
            await self._close(nova, cell)

    async def _open(self, nova: Any) -> None:
        host = self.settings.host
        try:
            async with asyncio.timeout(self.settings.open_timeout):
                await nova.open()
        except TimeoutError:
            raise BackendError(
                f"NOVA at {host} did not answer within {self.settings.open_timeout:g} s"
            ) from None
        except Exception as exc:
            raise BackendError(
                f"cannot connect to NOVA at {host}: {type(exc).__name__}: {exc}"
            ) from exc

    async def _publish(
        self,
        nova: Any,
        call: ProgramCall,
        state: str,
        started: datetime,
        ended: bool = False,
        error: str | None = None,
    ) -> None:
        # Best effort: a run never fails because its state could not be announced.
        if not self.settings.publish_state or not nova.is_connected():
            return
        sdk = load_sdk()
        try:
            status = sdk.ProgramStatus(
                run=str(call.context.run_id),
                program=call.template.name,
                app=self.settings.app_name,
                state=sdk.ProgramRunState(state),
                error=error[:_ERROR_LENGTH] if error else None,
                start_time=started,
                end_time=utcnow() if ended else None,
                timestamp=utcnow(),
            )
            subject = f"nova.v2.cells.{self.settings.cell}.programs"
            await nova.nats.publish(subject, payload=status.model_dump_json().encode())
        except Exception as exc:
            logger.warning("could not publish the state of run %s: %s", call.context.run_id, exc)

    async def _close(self, nova: Any, cell: Any) -> None:
        # Its own task: a stop (a cancelled run task) cannot interrupt the close half-way.
        closing = asyncio.get_running_loop().create_task(_close_nova(nova, cell))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        done, _ = await asyncio.wait({closing}, timeout=self.settings.close_timeout)
        if not done:
            logger.warning(
                "closing the NOVA connection takes longer than %g s; it goes on in the background",
                self.settings.close_timeout,
            )


async def _close_nova(nova: Any, cell: Any) -> None:
    for controller in cell.handed_out:
        try:
            await controller.close()
        except Exception as exc:
            logger.warning("closing controller %s failed: %s", controller.id, exc)
    try:
        if nova.nats.is_connected:
            await nova.nats.drain()
        elif not nova.nats.is_closed:
            # A failed connect leaves its WebSocket transport (an aiohttp session) open.
            await nova.nats.close()
    except (Exception, asyncio.CancelledError) as exc:
        logger.warning("closing the NATS connection failed: %s", exc)
    try:
        await nova.api.close()
    except Exception as exc:
        logger.warning("closing the NOVA API client failed: %s", exc)
