"""Lifecycle hooks: functions that run inside the write's transaction.

A hook is ``fn(session, instance)``. It runs in the same transaction as the write it belongs
to, so an exception raised by a hook rolls back the write and its audit row, and accessor calls
made inside a hook join that transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Literal, TypeVar, get_args

from sqlmodel import Session, SQLModel

__all__ = ["HOOK_EVENTS", "HookEvent", "HookFn", "HookRegistry", "ModelRecord"]

ModelT = TypeVar("ModelT")
ModelRecord = TypeVar("ModelRecord", bound=SQLModel)
"""vention-storage's name for a table model type (``HookRegistry[ModelRecord]``)."""

HookEvent = Literal[
    "before_insert",
    "after_insert",
    "before_update",
    "after_update",
    "before_delete",
    "after_delete",
]
HOOK_EVENTS: tuple[HookEvent, ...] = get_args(HookEvent)

HookFn = Callable[[Session, ModelT], None]


class HookRegistry(Generic[ModelT]):
    """Hooks of one model, by event."""

    def __init__(self) -> None:
        self._hooks: dict[HookEvent, list[HookFn[ModelT]]] = {event: [] for event in HOOK_EVENTS}

    def decorator(self, event: HookEvent) -> Callable[[HookFn[ModelT]], HookFn[ModelT]]:
        """Return a decorator that registers a function for ``event``.

        Raises:
            ValueError: ``event`` is not one of :data:`HOOK_EVENTS`.
        """
        if event not in self._hooks:
            raise ValueError(f"unknown hook event {event!r}; expected one of {HOOK_EVENTS}")

        def register(fn: HookFn[ModelT]) -> HookFn[ModelT]:
            self._hooks[event].append(fn)
            return fn

        return register

    def has(self, event: HookEvent) -> bool:
        """Whether any function is registered for ``event``."""
        return bool(self._hooks[event])

    def emit(self, event: HookEvent, *, session: Session, instance: ModelT) -> None:
        """Call the functions registered for ``event`` in registration order."""
        for fn in self._hooks[event]:
            fn(session, instance)

    def emit_each(self, event: HookEvent, *, session: Session, instances: Sequence[ModelT]) -> None:
        """Call the functions registered for ``event`` once per instance, in order."""
        if self._hooks[event]:
            for instance in instances:
                self.emit(event, session=session, instance=instance)


class HookDecorators(Generic[ModelT]):
    """The ``@acc.before_insert()`` ... ``@acc.after_delete()`` decorators over ``self.hooks``."""

    hooks: HookRegistry[ModelT]

    def before_insert(self) -> Callable[[HookFn[ModelT]], HookFn[ModelT]]:
        """Decorator: ``fn(session, instance)`` runs before a row is inserted."""
        return self.hooks.decorator("before_insert")

    def after_insert(self) -> Callable[[HookFn[ModelT]], HookFn[ModelT]]:
        """Decorator: ``fn(session, instance)`` runs after a row is inserted (same transaction)."""
        return self.hooks.decorator("after_insert")

    def before_update(self) -> Callable[[HookFn[ModelT]], HookFn[ModelT]]:
        """Decorator: ``fn(session, instance)`` runs before an update or restore is flushed."""
        return self.hooks.decorator("before_update")

    def after_update(self) -> Callable[[HookFn[ModelT]], HookFn[ModelT]]:
        """Decorator: ``fn(session, instance)`` runs after an update or restore is flushed."""
        return self.hooks.decorator("after_update")

    def before_delete(self) -> Callable[[HookFn[ModelT]], HookFn[ModelT]]:
        """Decorator: ``fn(session, instance)`` runs before a row is (soft) deleted."""
        return self.hooks.decorator("before_delete")

    def after_delete(self) -> Callable[[HookFn[ModelT]], HookFn[ModelT]]:
        """Decorator: ``fn(session, instance)`` runs after a row is (soft) deleted."""
        return self.hooks.decorator("after_delete")
