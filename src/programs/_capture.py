"""Per-run capture of printed output and log records, routed by a ``ContextVar``.

A run's task (and the thread of a plain ``def`` template, which copies the task's context) sets
:data:`_current` to the run's :class:`RunCapture`. ``sys.stdout`` and ``sys.stderr`` are
wrapped once, while a runner is started, by a stream that hands each write to the capture of
the context it is made in, and to the real stream otherwise; one logging handler on the root
logger does the same for log records. So two runs never see each other's output, and code
outside runs writes where it always did. Nothing is redirected process-wide
(``contextlib.redirect_stdout`` would be: every thread's prints would land in one run).

Threads a program starts itself do not inherit the context (``threading.Thread`` starts with an
empty one); their output is not captured.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO, cast

from programs._lines import LineBuffer

__all__ = ["RunCapture", "capture_routing"]

_current: ContextVar[RunCapture | None] = ContextVar("programs_run_capture", default=None)

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Text:
    """Text kept up to a limit: the newest characters win, a first line counts the dropped."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: deque[str] = deque()
        self._size = 0
        self._dropped = 0

    def append(self, text: str) -> None:
        self._chunks.append(text)
        self._size += len(text)
        while self._size > self._limit:
            first, excess = self._chunks[0], self._size - self._limit
            if len(first) <= excess:
                self._chunks.popleft()
                cut = len(first)
            else:
                self._chunks[0] = first[excess:]
                cut = excess
            self._size -= cut
            self._dropped += cut

    def value(self) -> str:
        text = "".join(self._chunks)
        if self._dropped:
            return f"[{self._dropped} earlier characters dropped]\n{text}"
        return text


class RunCapture:
    """The printed output and the log records of one run, kept in memory while it runs.

    Args:
        limit: characters kept of each (the newest; a first line says how many were dropped).
        level: the lowest log level kept.
        echo: also write the run's output to the real stream (the server's console).
        lines: also hand everything to this buffer, for the database.
    """

    def __init__(
        self,
        *,
        limit: int,
        level: int = logging.INFO,
        echo: bool = True,
        lines: LineBuffer | None = None,
    ) -> None:
        self.level = level
        self.echo = echo
        self.lines = lines
        self._lock = threading.Lock()
        self._output = _Text(limit)
        self._logs = _Text(limit)
        self._formatter = logging.Formatter(_FORMAT)

    @property
    def output(self) -> str:
        """What the run printed (stdout and stderr) so far."""
        with self._lock:
            return self._output.value()

    @property
    def logs(self) -> str:
        """The run's log records so far, one formatted record a line."""
        with self._lock:
            return self._logs.value()

    def write_output(self, text: str) -> None:
        """Add printed text."""
        with self._lock:
            self._output.append(text)
        if self.lines is not None:
            self.lines.add("output", text)

    def write_record(self, record: logging.LogRecord) -> None:
        """Add a log record when it is at or above :attr:`level`."""
        if record.levelno < self.level:
            return
        text = self._formatter.format(record)
        with self._lock:
            self._logs.append(text + "\n")
        if self.lines is not None:
            self.lines.add("log", text + "\n")

    @contextmanager
    def active(self) -> Iterator[None]:
        """Route the output and log records of the current context here for the block."""
        token = _current.set(self)
        try:
            yield
        finally:
            _current.reset(token)


class _RoutedStream:
    """Stands in for ``sys.stdout``/``sys.stderr``: a run's writes go to its capture."""

    def __init__(self, target: TextIO) -> None:
        self.target = target

    def write(self, text: str) -> int:
        capture = _current.get()
        if capture is None:
            return self.target.write(text)
        capture.write_output(text)
        if capture.echo:
            self.target.write(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.target.flush()

    def __getattr__(self, name: str) -> Any:
        # encoding, isatty(), fileno(), buffer, ...: whatever the real stream has.
        return getattr(self.target, name)


class _RunLogHandler(logging.Handler):
    """On the root logger: hands each record to the capture of the context it is logged in."""

    def emit(self, record: logging.LogRecord) -> None:
        capture = _current.get()
        if capture is not None:
            capture.write_record(record)
        last_resort = logging.lastResort
        if last_resort is not None and record.levelno >= last_resort.level:
            # Python prints warnings to stderr when no handler is configured; this handler
            # must not silence that for apps that never configured logging.
            if self._alone(record.name):
                last_resort.handle(record)

    def _alone(self, name: str) -> bool:
        logger: logging.Logger | None = logging.getLogger(name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return False
            logger = logger.parent if logger.propagate else None
        return True


class _CaptureRouting:
    """Installs the routed streams and the log handler while at least one runner is started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._handler = _RunLogHandler()

    def acquire(self) -> None:
        """A runner starts: install (or re-install) the routing."""
        with self._lock:
            self._users += 1
            self._wrap_streams()
            root = logging.getLogger()
            if self._handler not in root.handlers:
                root.addHandler(self._handler)

    def release(self) -> None:
        """A runner stopped: take the routing out once no runner is left."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users:
                return
            logging.getLogger().removeHandler(self._handler)
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                # Only when nobody replaced it since: never leave a stale stream behind.
                if isinstance(stream, _RoutedStream):
                    setattr(sys, name, stream.target)

    def ensure(self) -> None:
        """Wrap ``sys.stdout``/``sys.stderr`` again if something replaced them since."""
        with self._lock:
            if self._users:
                self._wrap_streams()

    def _wrap_streams(self) -> None:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, _RoutedStream):
                setattr(sys, name, cast(TextIO, _RoutedStream(stream)))


capture_routing = _CaptureRouting()
"""The process's one routing: each runner acquires it on start and releases it on shutdown."""
