"""``machine-storage runs`` and ``machine-storage worker``: added to the command line through
the ``machine_storage.cli`` entry point group (storage never imports programs)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the program commands to the ``machine-storage`` application."""
