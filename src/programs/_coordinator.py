"""``Coordinator``: the thread that keeps one runner in step with its cell.

It runs beside the event loop, in a thread of its own, so that neither a busy loop nor a full
worker-thread pool can delay a heartbeat. Each turn it:

- renews this process's lease and its runs' (every ``heartbeat_interval``), stops runs whose
  lease another process ended, and ends what dead processes left behind (:meth:`CellLedger.expire`);
- writes the output lines its runs produced since the last turn;
- when the cell changed (its ``version``, or a wake-up): hands stop requests for its runs to
  the runner, and claims queued runs while the cell has a free slot.

It sleeps ``flush_interval`` while runs go on, else ``poll_interval``; on PostgreSQL a second
thread ``LISTEN``s and wakes it at once, and the poll is only a fallback (``heartbeat_interval``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine

from programs._cells import CHANNEL, CellLedger
from programs._config import RunnerConfig
from programs._lines import LineBuffer, write_lines
from programs._tables import ProgramRun

__all__ = ["Coordinator"]

logger = logging.getLogger("programs._coordinator")


class Coordinator:
    """Background coordination of one runner with the database.

    Args:
        ledger: the cell's database operations.
        config: the runner's configuration.
        executing: the runs this process executes now (called from the thread).
        buffers: the line buffers of those runs.
        on_claimed: a run was claimed for this process: start it.
        on_stop: someone asked one of this process's runs to stop.
        on_lost: another process ended one of this process's runs (its lease ran out).
    """

    def __init__(
        self,
        ledger: CellLedger,
        config: RunnerConfig,
        *,
        executing: Callable[[], Sequence[int]],
        buffers: Callable[[], Sequence[LineBuffer]],
        on_claimed: Callable[[ProgramRun], None],
        on_stop: Callable[[ProgramRun], None],
        on_lost: Callable[[int], None],
    ) -> None:
        self.ledger = ledger
        self.config = config
        self._executing = executing
        self._buffers = buffers
        self._on_claimed = on_claimed
        self._on_stop = on_stop
        self._on_lost = on_lost
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: _Listener | None = None
        self._failing = False

    def __repr__(self) -> str:
        return f"Coordinator({self.ledger!r})"

    def start(self) -> None:
        """Start the thread (and the listener on PostgreSQL)."""
        engine = self.ledger.database.engine
        if engine.dialect.name == "postgresql":
            self._listener = _Listener(engine, self.ledger.cell, self._wake, self._stopping)
            self._listener.start()
        self._thread = threading.Thread(target=self._run, name="program-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the threads and wait for them; the lines still buffered are written."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        # The listener notices within half a second and closes its connection by itself.
        self._flush()

    def wake(self) -> None:
        """Look at the cell now (a run was started, stopped or ended in this process)."""
        self._wake.set()

    @property
    def listening(self) -> bool:
        """Whether a ``LISTEN`` connection wakes this runner (PostgreSQL)."""
        return self._listener is not None and self._listener.connected.is_set()

    def _run(self) -> None:
        next_beat = 0.0
        seen: int | None = None
        while not self._stopping.is_set():
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.config.heartbeat
                    self._heartbeat()
                self._flush()
                if self.config.execute:
                    version = self.ledger.version()
                    if woken or version != seen:
                        seen = version
                        self._look()
                self._recovered()
            except Exception as exc:  # the database is down or locked: try again next turn
                self._failed(exc)
            self._wake.wait(self._pause())

    def _pause(self) -> float:
        if self._executing():
            return self.config.flush_interval
        if self.listening:
            return self.config.heartbeat
        return self.config.poll_interval

    def _heartbeat(self) -> None:
        for run_id in self.ledger.heartbeat(self._executing()):
            logger.error("run %d was ended by another process: this process lost its lease", run_id)
            self._on_lost(run_id)
        ended = self.ledger.expire()
        if ended:
            logger.warning("ended runs left behind by processes that are gone: %s", ended)

    def _flush(self) -> None:
        rows = [row for buffer in self._buffers() for row in buffer.take()]
        write_lines(self.ledger.database, rows)

    def _look(self) -> None:
        if self._executing():
            for run in self.ledger.stop_requests():
                self._on_stop(run)
        while not self._stopping.is_set():
            claimed = self.ledger.claim()
            if claimed is None:
                return
            self._on_claimed(claimed)

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            logger.warning("the runner cannot reach the database (%s); it keeps trying", exc)
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            logger.warning("the runner reaches the database again")
        self._failing = False


class _Listener(threading.Thread):
    """``LISTEN`` on PostgreSQL: wakes the coordinator when its cell changes."""

    def __init__(
        self, engine: Engine, cell: str, wake: threading.Event, stopping: threading.Event
    ) -> None:
        super().__init__(name="program-runner-listen", daemon=True)
        self._engine = engine
        self._cell = cell
        self._wake = wake
        self._stopping = stopping
        self.connected = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as exc:  # the poll covers for it until it is back
                logger.warning("LISTEN %s failed (%s); reconnecting", CHANNEL, exc)
            self.connected.clear()
            self._wake.set()  # whatever was missed meanwhile
            self._stopping.wait(1.0)

    def _listen(self) -> None:
        pooled = self._engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()  # a listening connection never goes back to the pool
        try:
            connection.autocommit = True  # type: ignore[union-attr]
            connection.execute(f'LISTEN "{CHANNEL}"')  # type: ignore[union-attr]
            self.connected.set()
            while not self._stopping.is_set():
                for notice in connection.notifies(timeout=0.5):  # type: ignore[union-attr]
                    if notice.payload == self._cell:
                        self._wake.set()
        finally:
            connection.close()  # type: ignore[union-attr]
