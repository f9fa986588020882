"""``bootstrap()``: one call that wires the database, the CRUD routers and the /db router."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import SQLModel

from storage import _chain as chain
from storage import database as storage_database
from storage import restore
from storage.accessor import ModelAccessor
from storage.auditor import AUDIT_TABLE
from storage.database import Database
from storage.errors import ConfigurationError, translate_driver_errors
from storage.migrations import apply_sqlmodel_migrations, plan_sqlmodel_migrations
from storage.readiness import SchemaCheck

if TYPE_CHECKING:
    from fastapi import FastAPI

    from storage.metrics import StorageMetrics

__all__ = ["EXTENSION_GROUP", "bootstrap", "prepare_database"]

EXTENSION_GROUP = "machine_storage.extensions"
"""The entry-point group of the packages that plug into :func:`bootstrap`: an entry named
``programs`` is the factory behind ``bootstrap(programs=...)`` (``programs.ProgramsExtension``)."""

logger = logging.getLogger("storage.bootstrap")


def prepare_database(
    *,
    database_url: str | None = None,
    create_tables: bool = True,
    auto_migrate: bool = False,
    sqlite_synchronous: str | None = None,
    database: Database | None = None,
) -> None:
    """Configure the URL, then create missing tables or apply the additive migrations, and
    the audit chain's head row (:func:`storage._chain.ensure_head`).

    ``database`` is the :class:`~storage.database.Database` to prepare (default
    :func:`storage.database.get_database`); ``database_url`` and ``sqlite_synchronous``
    configure it.

    Raises:
        ConfigurationError: the database is already in use with another URL or setting.
        MigrationError: ``auto_migrate`` found a change it refuses to make.
    """
    db = database or storage_database.get_database()
    if database_url is not None:
        db.set_url(database_url)
    if sqlite_synchronous is not None:
        db.set_sqlite_synchronous(sqlite_synchronous)
    with db.schema_lock():  # processes starting at once take turns
        _prepare(db.engine, auto_migrate=auto_migrate, create_tables=create_tables)
        with translate_driver_errors(), db.engine.begin() as connection:
            chain.ensure_head(connection, AUDIT_TABLE)
    for leftover in restore.remove_leftovers():
        logger.info("removed %s, left by a restore that did not finish", leftover)


def _prepare(engine: Engine, *, auto_migrate: bool, create_tables: bool) -> None:
    if auto_migrate:
        plan = apply_sqlmodel_migrations(engine=engine)
        for step in plan.steps:
            logger.info("auto-migration: %s", step)
        return
    if create_tables:
        SQLModel.metadata.create_all(engine)
    plan = plan_sqlmodel_migrations(engine=engine)
    if not plan.is_empty:
        logger.warning(
            "the database differs from the models (%s); pass auto_migrate=True to apply the "
            "additive changes",
            "; ".join(str(item) for item in [*plan.steps, *plan.problems]),
        )


def bootstrap(
    app: FastAPI | None = None,
    *,
    accessors: Iterable[ModelAccessor[Any]] = (),
    database_url: str | None = None,
    create_tables: bool = True,
    auto_migrate: bool = False,
    max_records_per_model: int | None = 5,
    enable_db_router: bool = True,
    programs: object = None,
    runner: object = True,
    extensions: Iterable[Callable[[FastAPI | None], None]] = (),
    sqlite_synchronous: str | None = None,
    offline_docs: bool = True,
    console: bool | str = False,
    metrics: bool | StorageMetrics = False,
    operation_names: Mapping[str, tuple[str, str]] | None = None,
    database: Database | None = None,
    **router_options: Any,
) -> None:
    """Set up storage for a FastAPI app (or, with no app, only the database).

    Args:
        app: the FastAPI app to add routes to; ``None`` prepares the database only.
        accessors: one CRUD router is mounted per accessor, at ``/{component}``.
        database_url: SQLAlchemy URL; default from ``STORAGE_DATABASE_URL``, else
            ``sqlite:///./storage.db``.
        create_tables: create tables that do not exist yet.
        auto_migrate: apply safe additive migrations to existing tables.
        max_records_per_model: row cap per model for the CRUD routers (``None``: no cap).
        enable_db_router: mount the ``/db`` router.
        programs: where program templates come from (package names, a registry or a store);
            mounts the ``/api/v2`` program routes (see :class:`programs.ProgramsExtension`,
            which plugs in through the :data:`EXTENSION_GROUP` entry points).
        runner: with ``programs``: ``True`` runs programs with a runner configured from the
            environment, a ``programs.RunnerConfig`` or ``programs.Runner`` is used as given,
            ``False`` mounts no run routes.
        extensions: callables ``fn(app)`` run once the database is ready (``app`` may be None).
        sqlite_synchronous: SQLite's ``PRAGMA synchronous``; the default ``"FULL"`` makes each
            acknowledged commit survive a power cut, ``"NORMAL"`` is faster (see
            :class:`storage.database.Database`).
        offline_docs: serve the app's ``/docs`` and ``/redoc`` pages with Swagger UI and ReDoc
            from the installed package, so they work without internet (see
            :func:`storage.apidocs.serve_docs_offline`); ``False`` leaves FastAPI's pages, which
            load them from a CDN.
        console: serve the operator console (see :func:`storage.console.mount_console`):
            ``True`` at ``/console``, a string at that path.
        metrics: serve Prometheus metrics at ``/metrics`` (needs the ``metrics`` extra);
            ``True`` measures into a new :class:`storage.metrics.StorageMetrics`, or pass one
            (see docs/metrics.md). ``PROMETHEUS_MULTIPROC_DIR`` set: summed over workers.
        operation_names: per component, the ``(singular, plural)`` nouns of its CRUD
            routes' OpenAPI operation ids (``{"people": ("person", "people")}``); the others
            are derived from the model's name and the component (docs/clients.md).
        database: the :class:`~storage.database.Database` of this app (default
            :func:`storage.database.get_database`); ``database_url`` and
            ``sqlite_synchronous`` configure it, the accessors are bound to it
            (:meth:`ModelAccessor.bind`) and the routes serve it, the programs extension's
            too (its store, runner, routes and metrics work on it).
        router_options: passed on to each CRUD router
            (see :func:`storage.router_model.build_crud_router`).

    Raises:
        ConfigurationError: the database is already in use with another URL, an accessor
            (or the store or runner given to ``programs``) belongs to another database, or
            ``programs`` without the programs extension's entry point.
        MigrationError: ``auto_migrate`` found a change it refuses to make.
        MissingDependencyError: ``metrics`` without prometheus-client installed.
    """
    accessors = list(accessors)
    extensions = list(extensions)
    if database is not None:
        for accessor in accessors:
            accessor.bind(database)
    if programs is not None:
        # The programs package plugs in through an entry point: storage never imports it.
        # Building the extension registers the program tables before they are created below.
        extensions.append(
            _plugin("programs")(
                programs,
                auth=router_options.get("auth"),
                create_tables=create_tables,
                runner=runner,
                database=database,
            )
        )
    prepare_database(
        database_url=database_url,
        create_tables=create_tables,
        auto_migrate=auto_migrate,
        sqlite_synchronous=sqlite_synchronous,
        database=database,
    )
    if app is not None and metrics is not False:
        _serve_metrics(app, metrics, router_options.get("auth"), database)
    for extension in extensions:
        extension(app)
    if app is None:
        return
    from storage.apidocs import serve_docs_offline
    from storage.http import method_not_allowed
    from storage.router_database import build_db_router
    from storage.router_model import build_crud_router

    if offline_docs:
        serve_docs_offline(app)
    app.add_exception_handler(405, method_not_allowed)
    names = operation_names or {}
    for accessor in accessors:
        router = build_crud_router(
            accessor,
            max_records=max_records_per_model,
            operation_names=names.get(accessor.component),
            **router_options,
        )
        app.include_router(router)
    if enable_db_router:
        schema = SchemaCheck(database=database)
        schema.refresh()  # at startup, once every table exists: /db/ready reads the result
        auth = router_options.get("auth")
        app.include_router(build_db_router(auth=auth, schema_check=schema, database=database))
    if console:
        from storage.console import mount_console

        mount_console(app, console if isinstance(console, str) else "/console")


def _plugin(name: str) -> Callable[..., Callable[[FastAPI | None], None]]:
    """The extension factory installed as ``name`` in the :data:`EXTENSION_GROUP` group."""
    for entry_point in entry_points(group=EXTENSION_GROUP, name=name):
        factory: Callable[..., Callable[[FastAPI | None], None]] = entry_point.load()
        return factory
    raise ConfigurationError(
        f"bootstrap({name}=...) needs the {name!r} entry point of the {EXTENSION_GROUP!r} "
        "group, which machine-storage's installed metadata registers: reinstall machine-storage"
    )


def _serve_metrics(
    app: FastAPI, metrics: bool | StorageMetrics, auth: Any, database: Database | None
) -> None:
    from storage.metrics import StorageMetrics, install

    if not isinstance(metrics, StorageMetrics):
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        metrics = StorageMetrics(multiprocess_dir=directory, database=database)
    install(app, metrics, dependencies=list(auth.read) if auth is not None else ())
