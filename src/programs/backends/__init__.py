"""Where programs run: the :class:`RunnerBackend` protocol and the two backends.

- ``local`` (:class:`~programs.backends.local.LocalBackend`): in the app's process, no robot.
- ``nova`` (:class:`~programs.backends.nova.NovaBackend`): with a connection to Wandelbots
  NOVA through the ``wandelbots-nova`` SDK (the ``nova`` extra), imported only when chosen.

A backend of your own (a simulator, a test cell) is any object with the protocol's members;
pass it as ``RunnerConfig(backend=...)``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from programs._context import ProgramCall
from programs.backends.local import LocalBackend
from programs.backends.nova import NovaBackend, NovaSettings

__all__ = ["LocalBackend", "NovaBackend", "NovaSettings", "RunnerBackend"]


@runtime_checkable
class RunnerBackend(Protocol):
    """What the runner needs from a backend.

    Attributes:
        name: stored with every run (``local``, ``nova``, ...).
        resources: the extra parameter names it fills (``{"nova", "cell"}`` on NOVA); a
            template asking for others without a default is refused before it runs.
    """

    name: str
    resources: frozenset[str]

    async def open(self) -> None:
        """Prepare (import SDKs, check configuration); called when the app starts."""

    async def close(self) -> None:
        """Release what :meth:`open` took; called when the app shuts down."""

    async def run(self, call: ProgramCall) -> Any:
        """Run one program to its end and return its result.

        Cancelling the calling task is how the runner stops a run: the backend stops the
        program, cleans up, and lets ``CancelledError`` through. Exceptions of the program
        propagate unchanged.
        """


def create_backend(choice: str | RunnerBackend, nova: NovaSettings | None) -> RunnerBackend:
    """The backend called ``choice`` (``local`` or ``nova``), or ``choice`` itself.

    Raises:
        ValueError: an unknown name, or ``nova`` without :class:`NovaSettings`.
        BackendMissingError: ``nova`` without the ``wandelbots-nova`` package.
    """
    if not isinstance(choice, str):
        return choice
    if choice == "local":
        return LocalBackend()
    if choice == "nova":
        if nova is None:
            raise ValueError(
                "the nova backend needs NovaSettings: pass RunnerConfig(nova=NovaSettings(...)) "
                "or set NOVA_API for RunnerConfig.from_env()"
            )
        return NovaBackend(nova)
    raise ValueError(f"unknown runner backend {choice!r}: use 'local' or 'nova'")
