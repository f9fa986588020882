"""The local backend: programs run in the app's process, without a robot."""

from __future__ import annotations

from typing import Any

from programs._context import ProgramCall

__all__ = ["LocalBackend"]


class LocalBackend:
    """Run template functions in this process.

    ``async def`` functions run on the app's event loop and stop when their task is
    cancelled. Plain ``def`` functions run in a thread of their own; Python cannot interrupt a
    thread, so they stop cooperatively: check ``ctx.stop_requested`` (or wait with
    ``ctx.wait(seconds)``, or call ``ctx.raise_if_stopped()``) between steps.
    """

    name = "local"
    resources: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return "LocalBackend()"

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to release."""

    async def run(self, call: ProgramCall) -> Any:
        """Call the function and return its result."""
        return await call.invoke()
