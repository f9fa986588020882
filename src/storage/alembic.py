"""Alembic for apps that outgrow auto-migration: the pieces of an ``env.py``, and the commands.

A change auto-migration refuses (a new required column without a default) needs a reviewed
migration script. :func:`run_migrations` is all an ``env.py`` calls: the target metadata is
``SQLModel.metadata`` (the audit log, and every table whose model ``env.py`` imports: the app's,
and the program store's when it imports ``programs``; ``storage`` never does), column types
render with their imports (:func:`render_item`), tables only the database has are never dropped
(:func:`include_object`), and new constraints get names (:data:`NAMING_CONVENTION`). The
functions :func:`init`, :func:`baseline`, :func:`revision`, :func:`upgrade` and the rest wrap
``alembic.command`` for a migrations directory and a database URL. The ``alembic`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import resources
from io import StringIO
from pathlib import Path
from string import Template
from typing import Any, Literal

from sqlalchemy import Connection, MetaData, create_engine, pool
from sqlmodel import SQLModel

import storage.auditor  # noqa: F401  (registers the audit log's table on SQLModel.metadata)
from storage import database
from storage.errors import MigrationError, MissingDependencyError

try:
    from alembic import command
    from alembic.autogenerate.api import AutogenContext
    from alembic.config import Config
    from alembic.operations import ops
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
except ImportError as exc:  # pragma: no cover - the extra is installed in development
    raise MissingDependencyError(
        "storage.alembic needs Alembic: install it with `pip install machine-storage[alembic]`"
    ) from exc

__all__ = [
    "NAMING_CONVENTION",
    "baseline",
    "check",
    "configure",
    "current",
    "downgrade",
    "heads",
    "include_object",
    "init",
    "make_config",
    "render_item",
    "revision",
    "run_migrations",
    "stamp",
    "target_metadata",
    "upgrade",
]

NAMING_CONVENTION: dict[str, str] = {
    # SQLAlchemy's default for indexes, kept so that existing index names still match.
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    # No "ck": a check constraint without a name and columns (CHECK (speed > 0)) has nothing
    # to be named after, and SQLAlchemy refuses to create it under such a convention.
}
"""Names for the constraints Alembic creates from now on (``fk_user_team_id_team``).

Applied while Alembic runs, not to the models: databases made by ``create_all`` and
auto-migration keep the names their server gave, and autogenerate matches those constraints by
their columns, so existing names never show up as differences.
"""

# Keys of ``Config.attributes`` under which a caller may pass the metadata, or a connection.
_METADATA_KEY = "target_metadata"
_CONNECTION_KEY = "connection"


def target_metadata() -> MetaData:
    """The metadata Alembic compares the database with: ``SQLModel.metadata``.

    It holds the audit log, and every table whose model has been imported: import the app's
    models (and ``programs``, when the app uses the program store) before calling this.
    """
    return SQLModel.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Alembic's ``render_item`` hook: a column type from outside SQLAlchemy (SQLModel's
    ``AutoString``, storage's ``UTCDateTime``, an app's own) keeps its full module path, and the
    script imports that module; everything else renders as Alembic would."""
    if type_ == "type":
        module = type(obj).__module__
        if not module.startswith("sqlalchemy.") and module != "builtins":
            autogen_context.imports.add(f"import {module}")
    return False


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's ``include_object`` hook: a table only the database has is left out.

    Like auto-migration, autogenerate then never proposes to drop a table: one the models no
    longer have, or one whose models ``env.py`` did not import (the program store's, say).
    """
    return not (type_ == "table" and reflected and compare_to is None)


def _name_new_constraints(context: MigrationContext, revision: Any, directives: list[Any]) -> None:
    # Autogenerate writes constraints the models leave unnamed as ``None``, and a later
    # ``op.drop_constraint(None, ...)`` cannot work: name them after NAMING_CONVENTION.
    for script in directives:
        for container in (script.upgrade_ops, script.downgrade_ops):
            for op in _walk(container.ops):
                _name(op, context)


def _walk(operations: Iterable[Any]) -> Iterator[Any]:
    for op in operations:
        if isinstance(op, ops.OpContainer):
            yield from _walk(op.ops)
        else:
            yield op


def _name(op: Any, context: MigrationContext) -> None:
    if isinstance(op, ops.AddConstraintOp) and getattr(op, "constraint_name", "") is None:
        op.constraint_name = op.to_constraint(context).name  # type: ignore[attr-defined]
    elif isinstance(op, ops.DropConstraintOp) and op.constraint_name is None:
        added = getattr(op, "_reverse", None)
        if isinstance(added, ops.AddConstraintOp):
            op.constraint_name = added.to_constraint(context).name


@contextmanager
def _conventions(metadata: MetaData) -> Iterator[None]:
    # Alembic builds the tables of its operations on a MetaData with the target's naming
    # convention. Constraints of the models were named when they were declared, so setting
    # the convention now changes no existing name; it is put back afterwards, so that a
    # ``create_all`` in this process still names constraints as it always did.
    saved = metadata.naming_convention
    metadata.naming_convention = {**saved, **NAMING_CONVENTION}  # type: ignore[dict-item]
    try:
        yield
    finally:
        metadata.naming_convention = saved


def _options(metadata: MetaData, options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "target_metadata": metadata,
        "render_item": render_item,
        "include_object": include_object,
        "process_revision_directives": _name_new_constraints,
        # Batch operations run as plain ALTER statements on PostgreSQL and MySQL and as a
        # table copy where SQLite cannot alter: one script serves every backend.
        "render_as_batch": True,
        "compare_type": True,
        **options,
    }


def configure(
    connection: Connection | None = None,
    *,
    metadata: MetaData | None = None,
    **options: Any,
) -> None:
    """``context.configure(...)`` with this module's hooks; for an ``env.py`` of your own.

    Args:
        connection: the connection to migrate; ``None`` in offline (``--sql``) mode, where the
            URL comes from the configuration.
        metadata: default the one passed in ``Config.attributes``, else
            :func:`target_metadata`.
        options: more arguments for ``context.configure``; they win over these defaults.
    """
    from alembic import context

    metadata = metadata if metadata is not None else _metadata_of(context.config)
    settings = _options(metadata, options)
    if connection is None:
        settings.setdefault("url", _url_of(context.config))
        settings.setdefault("literal_binds", True)
    context.configure(connection=connection, **settings)


def run_migrations(*, metadata: MetaData | None = None, **options: Any) -> None:
    """All an ``env.py`` calls: configure Alembic and run the migrations, online or offline.

    Online, it uses the connection passed in ``Config.attributes["connection"]`` or connects
    to ``sqlalchemy.url`` (default: the URL ``storage.database`` would use, from
    ``STORAGE_DATABASE_URL``), with :data:`NAMING_CONVENTION` applied while it runs.
    """
    from alembic import context

    metadata = metadata if metadata is not None else _metadata_of(context.config)
    with _conventions(metadata):
        if context.is_offline_mode():
            configure(metadata=metadata, **options)
            with context.begin_transaction():
                context.run_migrations()
            return
        given = context.config.attributes.get(_CONNECTION_KEY)
        if given is not None:
            _run_on(given, metadata, options)
            return
        engine = create_engine(_url_of(context.config), poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                _run_on(connection, metadata, options)
        finally:
            engine.dispose()


def _run_on(connection: Connection, metadata: MetaData, options: Mapping[str, Any]) -> None:
    from alembic import context

    configure(connection, metadata=metadata, **options)
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()  # a connection passed in may have begun one of its own


def _metadata_of(config: Config) -> MetaData:
    given = config.attributes.get(_METADATA_KEY)
    return given if isinstance(given, MetaData) else target_metadata()


def _url_of(config: Config) -> str:
    return config.get_main_option("sqlalchemy.url") or database.get_database().url


def make_config(
    directory: str | Path = "migrations",
    database_url: str | None = None,
    *,
    metadata: MetaData | None = None,
) -> Config:
    """An Alembic ``Config`` for a migrations directory (its ``alembic.ini`` is read when
    present) and a database URL (default ``sqlalchemy.url`` of ``alembic.ini``, else
    ``STORAGE_DATABASE_URL``, else the library's default); ``metadata`` replaces ``env.py``'s."""
    path = Path(directory)
    ini = path / "alembic.ini"
    config = Config(str(ini) if ini.is_file() else None)
    config.set_main_option("script_location", str(path))
    if database_url is not None:
        # ConfigParser interpolates %: a URL-encoded password must be escaped.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if metadata is not None:
        config.attributes[_METADATA_KEY] = metadata
    return config


def init(directory: str | Path = "migrations", *, models: Iterable[str] = ()) -> Path:
    """Write a migrations directory (``alembic.ini``, ``env.py``, ``script.py.mako``,
    ``versions/``) and return it; ``models`` are the modules ``env.py`` imports for their tables
    (``"myapp.models"``, and ``"programs"`` when the app uses the program store).

    Raises:
        FileExistsError: the directory exists and is not empty.
    """
    path = Path(directory)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty")
    (path / "versions").mkdir(parents=True, exist_ok=True)
    imports = "".join(f"import {name}  # noqa: F401\n" for name in models)
    if not imports:
        imports = "# import myapp.models  # noqa: F401  (each module that declares tables)\n"
    templates = resources.files("storage") / "alembic_templates"
    for name in ("alembic.ini", "script.py.mako"):
        (path / name).write_text((templates / name).read_text(encoding="utf-8"), "utf-8")
    env = Template((templates / "env.py.tmpl").read_text(encoding="utf-8"))
    (path / "env.py").write_text(env.substitute(imports=imports), encoding="utf-8")
    return path


def revision(
    message: str,
    *,
    autogenerate: bool = True,
    directory: str | Path = "migrations",
    database_url: str | None = None,
    metadata: MetaData | None = None,
    rev_id: str | None = None,
) -> Path | None:
    """Write a new revision, by default with the differences between models and database.

    Returns:
        The path of the new script (``None`` if a ``process_revision_directives`` hook of
        yours dropped it).
    """
    config = make_config(directory, database_url, metadata=metadata)
    script = command.revision(config, message, autogenerate=autogenerate, rev_id=rev_id)
    if isinstance(script, list):  # one per branch head, which these scripts never have
        script = script[0] if script else None
    return Path(script.path) if script is not None else None


def baseline(
    message: str = "baseline",
    *,
    directory: str | Path = "migrations",
    database_url: str | None = None,
    metadata: MetaData | None = None,
) -> Path:
    """Start the Alembic history of a database made by ``create_all`` or auto-migration.

    Checks that the database matches the models, writes a first revision that creates every
    table (autogenerated against an empty database, so ``upgrade head`` builds a new one), and
    stamps the database at it without running it.

    Returns:
        The path of the first revision.

    Raises:
        MigrationError: the directory has revisions already, or the database differs from the
            models (each difference is named); nothing was written.
    """
    if heads(directory=directory):
        raise MigrationError(f"{directory} has revisions already: a baseline comes first")
    differences = check(directory=directory, database_url=database_url, metadata=metadata)
    if differences:
        listed = "; ".join(_describe(difference) for difference in differences)
        raise MigrationError(f"the database differs from the models: {listed}")
    path = revision(message, directory=directory, database_url="sqlite://", metadata=metadata)
    if path is None:  # pragma: no cover - only a hook of the app's could drop it
        raise MigrationError("no baseline revision was written")
    stamp("head", directory=directory, database_url=database_url)
    return path


def _describe(difference: Any) -> str:
    # ("add_column", schema, "user", Column), ("modify_type", schema, "user", "age", ...),
    # ("remove_index", Index), [("modify_nullable", ...)]: the kind, then table and column.
    first = difference[0] if isinstance(difference, list) else difference
    kind, *rest = first
    names = [item if isinstance(item, str) else getattr(item, "name", None) for item in rest]
    return " ".join([str(kind), ".".join(name for name in names[:3] if isinstance(name, str))])


def upgrade(
    revision: str = "head",
    *,
    directory: str | Path = "migrations",
    database_url: str | None = None,
    sql: bool = False,
) -> str | None:
    """Upgrade the database to ``revision``; with ``sql``, return the SQL instead of running it."""
    config = make_config(directory, database_url)
    return _run_command(config, sql, lambda: command.upgrade(config, revision, sql=sql))


def downgrade(
    revision: str,
    *,
    directory: str | Path = "migrations",
    database_url: str | None = None,
    sql: bool = False,
) -> str | None:
    """Downgrade the database to ``revision`` (``"-1"``, a revision id, ``"base"``)."""
    config = make_config(directory, database_url)
    return _run_command(config, sql, lambda: command.downgrade(config, revision, sql=sql))


def stamp(
    revision: str = "head",
    *,
    directory: str | Path = "migrations",
    database_url: str | None = None,
) -> None:
    """Record ``revision`` as the database's version without running any migration: how a
    database made by ``create_all`` or auto-migration starts its Alembic history."""
    command.stamp(make_config(directory, database_url), revision)


def current(
    *, directory: str | Path = "migrations", database_url: str | None = None
) -> tuple[str, ...]:
    """The revisions the database is at: ``()`` before the first stamp or upgrade."""
    config = make_config(directory, database_url)
    engine = create_engine(_url_of(config), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return tuple(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def heads(*, directory: str | Path = "migrations") -> tuple[str, ...]:
    """The newest revisions of the scripts (one, unless the history has branches)."""
    return tuple(ScriptDirectory.from_config(make_config(directory)).get_heads())


def check(
    *,
    directory: str | Path = "migrations",
    database_url: str | None = None,
    metadata: MetaData | None = None,
) -> list[tuple[Any, ...]]:
    """The differences a new autogenerated revision would hold; ``[]`` when the database
    matches the models (Alembic's ``check``)."""
    from alembic.util import AutogenerateDiffsDetected

    try:
        command.check(make_config(directory, database_url, metadata=metadata))
    except AutogenerateDiffsDetected as exc:
        return list(getattr(exc, "diffs", None) or [(str(exc),)])
    return []


def _run_command(config: Config, sql: bool, run: Callable[[], None]) -> str | None:
    if not sql:
        run()
        return None
    config.output_buffer = StringIO()
    run()
    return config.output_buffer.getvalue()
