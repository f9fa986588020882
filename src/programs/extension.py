"""Wiring the program store into an app: ``setup()``, or ``bootstrap(app, programs=...)``.

``storage.bootstrap`` knows nothing about programs. It accepts ``extensions``: callables it
calls with the app after the database is ready. :class:`ProgramsExtension` is one; building it
imports this package, which registers the program tables before bootstrap creates tables.
``bootstrap(app, programs=...)`` is shorthand that builds it for you: this class is the
``programs`` entry of the ``machine_storage.extensions`` entry-point group, which bootstrap
looks up, so storage never imports this package.

The extension also mounts the program runner (:mod:`programs.runner`) unless ``runner=False``:
by default configured from the environment (:meth:`RunnerConfig.from_env`: the local backend,
or NOVA when ``NOVA_API`` is set). Its router's lifespan starts and stops the runner with the
app.

Everything the extension builds (the store, the runner, the routes, the metrics) works on one
:class:`~storage.database.Database`: the one given as ``database=`` (``bootstrap(app,
database=db, programs=...)`` passes its own), else the default one at the time of each call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from sqlmodel import SQLModel

from programs._config import RunnerConfig
from programs._registry import ProgramRegistry
from programs._router import build_programs_router
from programs._runs_router import build_runs_router
from programs._tables import (
    ProgramCell,
    ProgramInstance,
    ProgramRun,
    ProgramRunLine,
    ProgramTemplate,
    RunnerInstance,
)
from programs.runner import Runner
from programs.store import ProgramStore
from storage import changes
from storage.database import Database
from storage.http import ANONYMOUS_ACTOR, RouteAuth
from storage.metrics import metrics_of
from storage.migrations import apply_sqlmodel_migrations

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ProgramSource", "ProgramsExtension", "setup"]

logger = logging.getLogger("programs.extension")

_TABLES = (ProgramTemplate, ProgramInstance)
_RUN_TABLES = (ProgramRun, ProgramRunLine, ProgramCell, RunnerInstance)

ProgramSource = str | ModuleType | Iterable[str | ModuleType] | ProgramRegistry | ProgramStore


class ProgramsExtension:
    """Discover templates, sync them into the database and mount the routes.

    Args:
        source: package or module names (or modules) to discover templates in, a
            :class:`ProgramRegistry` you filled yourself, or a :class:`ProgramStore` (to keep
            hooks you registered on its accessors).
        entry_points: with names or modules, also load the templates installed distributions
            advertise in the ``machine_storage.programs`` entry-point group.
        prefix: where the routes live.
        auth: route guards (see :func:`programs._router.build_programs_router`).
        backup_dir: where ``POST /database/backup`` writes.
        create_tables: create the program tables when they are missing.
        sync: sync the templates into the database when called.
        runner: run programs: ``True`` configures a :class:`Runner` from the environment
            (:meth:`RunnerConfig.from_env`), a :class:`RunnerConfig` or a :class:`Runner` is
            used as given, ``False`` mounts no run routes. The runner is built when the
            extension is called with an app.
        default_actor: the audit actor of a change made through ``/api/v2`` by a client that
            sends no ``X-User`` header (the NOVA program-store clients send none); ``None``
            requires the header (400 without).
        database: the :class:`~storage.database.Database` of the program tables and runs; a
            store or runner given as ``source`` or ``runner`` is bound to it
            (:meth:`ProgramStore.bind`, :meth:`Runner.bind`). Default: the store's, which
            follows :func:`storage.database.get_database` unless it was bound.

    Raises:
        DuplicateTemplateError: two functions use the same template name.
        ConfigurationError: the store or the runner given belongs to another database.
    """

    def __init__(
        self,
        source: ProgramSource,
        *,
        entry_points: bool = True,
        prefix: str = "/api/v2",
        auth: RouteAuth | None = None,
        backup_dir: str | os.PathLike[str] | None = None,
        create_tables: bool = True,
        sync: bool = True,
        runner: Runner | RunnerConfig | bool = True,
        default_actor: str | None = ANONYMOUS_ACTOR,
        database: Database | None = None,
    ) -> None:
        self.store = _store(source, entry_points=entry_points)
        self._runner_choice = runner
        # Built when mounted on an app: a script (app=None) needs no runner, nor its backend.
        self.runner: Runner | None = runner if isinstance(runner, Runner) else None
        if database is not None:
            self.store.bind(database)
            if self.runner is not None:
                self.runner.bind(database)
        self.prefix = prefix
        self.auth = auth
        self.backup_dir = backup_dir
        self.create_tables = create_tables
        self.sync = sync
        self.default_actor = default_actor

    def __call__(self, app: FastAPI | None) -> None:
        """Prepare the tables, sync, and mount the routes on ``app`` (when there is one).

        The store is kept as ``app.state.programs``, the runner as ``app.state.runner``.

        Raises:
            BackendMissingError: the runner's backend needs a package that is not installed.
        """
        if self.create_tables:
            with self.store.database.schema_lock():
                self._create_tables()
        if self.sync:
            self.store.sync()
        if app is not None:
            router = build_programs_router(
                self.store,
                prefix=self.prefix,
                auth=self.auth,
                backup_dir=self.backup_dir,
                default_actor=self.default_actor,
            )
            app.include_router(router)
            if self.sync:
                app.include_router(_resync_after_restores(self.store))
            app.state.programs = self.store
            if self.runner is None:
                self.runner = _runner(self._runner_choice, self.store)
            if self.runner is not None:
                runs = build_runs_router(
                    self.runner,
                    prefix=self.prefix,
                    auth=self.auth,
                    default_actor=self.default_actor,
                )
                app.include_router(runs)  # its lifespan starts and stops the runner
                app.state.runner = self.runner
            metrics = metrics_of(app)
            if metrics is not None:
                from programs._metrics import add_run_metrics  # needs prometheus-client

                add_run_metrics(metrics, self.store, self.runner)

    def _create_tables(self) -> None:
        models = (*_TABLES, *_RUN_TABLES) if self._runner_choice is not False else _TABLES
        names = [model.__tablename__ for model in models]
        tables = [SQLModel.metadata.tables[name] for name in names]
        engine = self.store.database.engine
        SQLModel.metadata.create_all(engine, tables=tables)
        # Tables made by an older version get the new columns; refuses nothing that is ours.
        plan = apply_sqlmodel_migrations(engine=engine, tables=names)
        for step in plan.steps:
            logger.info("program tables migrated: %s", step)


def _resync_after_restores(store: ProgramStore) -> APIRouter:
    # No routes: its lifespan syncs the templates again after each restore while the app
    # runs, because a backup may hold the templates and flags of another version of the code.
    def resync() -> None:
        report = store.sync()
        logger.info("templates synced after a restore: %s", report)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        changes.on_database_restored(resync)
        try:
            yield
        finally:
            changes.off_database_restored(resync)

    return APIRouter(lifespan=lifespan)


def setup(app: FastAPI | None, source: ProgramSource, **options: Any) -> ProgramStore:
    """Add the program store to an app whose database is configured (after ``bootstrap``).

    Args:
        app: the FastAPI app; ``None`` only syncs the database (scripts, workers).
        source: where the templates come from (see :class:`ProgramsExtension`).
        options: the other arguments of :class:`ProgramsExtension`.

    Returns:
        the store, to read and write programs from Python.
    """
    extension = ProgramsExtension(source, **options)
    extension(app)
    return extension.store


def _runner(choice: Runner | RunnerConfig | bool, store: ProgramStore) -> Runner | None:
    if isinstance(choice, Runner):
        return choice
    if isinstance(choice, RunnerConfig):
        return Runner(store, choice)
    return Runner(store, RunnerConfig.from_env()) if choice else None


def _store(source: ProgramSource, *, entry_points: bool) -> ProgramStore:
    if isinstance(source, ProgramStore):
        return source
    if isinstance(source, ProgramRegistry):
        return ProgramStore(source)
    targets = [source] if isinstance(source, str | ModuleType) else list(source)
    registry = ProgramRegistry()
    registry.discover(*targets)
    if entry_points:
        registry.load_entry_points()
    logger.info("program templates: %s", ", ".join(registry.names) or "none")
    return ProgramStore(registry)
