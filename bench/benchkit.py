"""What the benchmark scripts share: a fresh schema, and timing one piece of work."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import MetaData, create_engine
from sqlmodel import SQLModel


def reset(url: str) -> None:
    """Drop every table of the database at ``url`` and create the models' tables."""
    engine = create_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)
    SQLModel.metadata.create_all(engine)
    engine.dispose()


def timed(work: Callable[[], object]) -> float:
    """Seconds ``work()`` took."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start
