"""A Server-Sent Events client for the tests: reads a stream on a thread of its own."""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    """One event as a browser's EventSource would see it."""

    id: str | None
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class Stream:
    """``GET path`` as a stream of events, read in the background from the moment it opens.

    ``wait_ready()`` returns once the server said it follows (its ``: ready`` comment); events
    then queue up until ``take`` picks them. ``ended`` is set when the server ended the stream.
    """

    def __init__(
        self, base_url: str, path: str, headers: dict[str, str] | None = None, read: bool = True
    ) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(60, connect=10))
        self._events: queue.Queue[Event] = queue.Queue()
        self._ready = threading.Event()
        self.ended = threading.Event()
        self.status: int | None = None
        self.error: BaseException | None = None
        self._read = threading.Event()
        if read:
            self._read.set()
        self._thread = threading.Thread(target=self._run, args=(path, headers or {}), daemon=True)
        self._thread.start()

    def _run(self, path: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", path, headers=headers) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    response.read()
                    self._ready.set()
                    return
                self._parse(response)
        except (httpx.HTTPError, OSError) as exc:
            self.error = exc
        finally:
            self.ended.set()
            self._ready.set()

    def _parse(self, response: httpx.Response) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in response.iter_lines():
            if line.startswith(":"):
                if line.strip() == ": ready":
                    self._ready.set()
                    self._read.wait()
                continue
            if line:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
                continue
            if data or "event" in fields:
                event = Event(fields.get("id"), fields.get("event", "message"), "\n".join(data))
                self._events.put(event)
            fields, data = {}, []

    def wait_ready(self, timeout: float = 30) -> Stream:
        assert self._ready.wait(timeout), "the stream did not open"
        assert self.status == 200, f"the stream answered {self.status}"
        return self

    def resume_reading(self) -> None:
        """Start reading (for a stream opened with ``read=False``, a client that stalls)."""
        self._read.set()

    def take(self, count: int, timeout: float = 30) -> list[Event]:
        """The next ``count`` events; fails when they do not come within ``timeout`` s."""
        got: list[Event] = []
        try:
            while len(got) < count:
                got.append(self._events.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"{len(got)} of {count} events came: {got[-3:]}") from None
        return got

    def rest(self, timeout: float = 30) -> list[Event]:
        """Every event until the server ends the stream."""
        assert self.ended.wait(timeout), "the stream did not end"
        got: list[Event] = []
        while not self._events.empty():
            got.append(self._events.get())
        return got

    def close(self) -> None:
        # The reading thread may sit in a read until the server ends the stream; it is a
        # daemon, so it is not waited for.
        self._client.close()
        self._thread.join(timeout=0.2)
