"""The schema diagram: the models' tables and their relations as an SVG image.

Built with sqlalchemy-schemadisplay and laid out by a Graphviz ``dot`` program: the OS
Graphviz's when ``dot`` is on the ``PATH``, else graphviz-pure's, a self-contained port of
Graphviz in a binary wheel. The ``diagram`` extra installs both Python packages, so a plain
``pip install`` is enough; they are looked for only when a diagram is asked for.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Table
from sqlmodel import SQLModel

from storage import database as storage_database
from storage.database import Database
from storage.errors import MissingDependencyError, StorageError

if TYPE_CHECKING:
    from pydot import Dot

__all__ = ["render_svg"]

INSTALL_HINT = "install it with `pip install machine-storage[diagram]`"
_TIMEOUT = 60.0
_BUNDLED_DOT = "graphviz-pure"


def render_svg(*, database: Database | None = None) -> bytes:
    """The diagram of every table of the models, as SVG (column types as ``database``, default
    :func:`storage.database.get_database`, names them).

    Each table lists its columns with their types; primary keys are marked ``(PK)``, foreign
    keys ``(FK)``, and a line joins each foreign key to the table it points to.

    Raises:
        MissingDependencyError: sqlalchemy-schemadisplay is missing, or no ``dot`` program is
            (neither the OS Graphviz nor graphviz-pure).
        StorageError: ``dot`` failed or took longer than a minute.
    """
    try:
        from sqlalchemy_schemadisplay import create_schema_graph  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingDependencyError(
            f"the schema diagram needs sqlalchemy-schemadisplay: {INSTALL_HINT}"
        ) from exc
    dot = shutil.which("dot") or _bundled_dot()
    if dot is None:
        raise MissingDependencyError(
            f"the schema diagram needs graphviz-pure or Graphviz's dot: {INSTALL_HINT}"
        )
    tables = list(SQLModel.metadata.sorted_tables)
    graph = create_schema_graph(
        # Passing the tables keeps it from reflecting the live database into our metadata;
        # the engine only names the column types in its dialect.
        engine=(database or storage_database.get_database()).engine,
        metadata=SQLModel.metadata,
        tables=tables,
        show_datatypes=True,
        show_indexes=False,
        show_column_keys=True,
        concentrate=False,
    )
    _mark_keys_that_are_both(graph, tables)
    return _run_dot(dot, graph.to_string())


def _bundled_dot() -> str | None:
    # Where pip put graphviz-pure's program, found through its installed files so that it is
    # found when the virtualenv's bin directory is not on the PATH.
    try:
        files = metadata.distribution(_BUNDLED_DOT).files or []
    except metadata.PackageNotFoundError:
        return shutil.which(_BUNDLED_DOT)
    for file in files:
        if file.stem == _BUNDLED_DOT and file.parent.name in ("bin", "Scripts"):
            path = Path(str(file.locate()))
            if path.is_file():
                return str(path)
    return shutil.which(_BUNDLED_DOT)


def _mark_keys_that_are_both(graph: Dot, tables: list[Table]) -> None:
    # schemadisplay gives a column one suffix, FK before PK: a key column that also points to
    # another table (a child's part of a composite key) would lose its PK mark.
    nodes = {node.get_name().strip('"'): node for node in graph.get_nodes()}
    for table in tables:
        node = nodes.get(table.name)
        foreign = {column.name for column in table.columns if column.foreign_keys}
        both = [column.name for column in table.primary_key.columns if column.name in foreign]
        if node is None or not both:
            continue
        label = str(node.get("label"))
        for name in both:
            label = label.replace(f'PORT="{name}">- {name}(FK)', f'PORT="{name}">- {name}(PK, FK)')
        node.set("label", label)


def _run_dot(dot: str, source: str) -> bytes:
    # Run dot ourselves: pydot reports a failed run with an assert and a print.
    try:
        result = subprocess.run(
            [dot, "-Tsvg"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StorageError(f"Graphviz could not render the diagram ({exc})") from exc
    if result.returncode != 0:
        error = result.stderr.decode("utf-8", "replace").strip()[:200]
        raise StorageError(f"Graphviz could not render the diagram: {error}")
    return bytes(result.stdout)
