"""The schema diagram: the models' tables and their relations as an SVG image.

Built with sqlalchemy-schemadisplay (the ``diagram`` extra) and rendered by Graphviz's ``dot``
program; both are optional and looked for only when a diagram is asked for.
"""

from __future__ import annotations

import shutil
import subprocess

from sqlmodel import SQLModel

from storage import database
from storage.errors import MissingDependencyError, StorageError

__all__ = ["INSTALL_HINT", "render_svg"]

INSTALL_HINT = (
    "install the Python package with `pip install machine-storage[diagram]` and Graphviz with "
    "`apt-get install graphviz` (macOS: `brew install graphviz`)"
)
_TIMEOUT = 60.0


def render_svg() -> bytes:
    """The diagram of every table of the models, as SVG.

    Raises:
        MissingDependencyError: sqlalchemy-schemadisplay or Graphviz's ``dot`` is missing.
        StorageError: ``dot`` failed.
    """
    try:
        from sqlalchemy_schemadisplay import create_schema_graph  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingDependencyError(
            f"the schema diagram needs sqlalchemy-schemadisplay: {INSTALL_HINT}"
        ) from exc
    dot = shutil.which("dot")
    if dot is None:
        raise MissingDependencyError(f"the schema diagram needs Graphviz (dot): {INSTALL_HINT}")
    metadata = SQLModel.metadata
    graph = create_schema_graph(
        # Passing the tables keeps it from reflecting the live database into our metadata;
        # the engine only names the column types in its dialect.
        engine=database.get_engine(),
        metadata=metadata,
        tables=list(metadata.sorted_tables),
        show_datatypes=True,
        show_indexes=False,
        concentrate=False,
    )
    # Run dot ourselves: pydot reports a failed run with an assert and a print.
    try:
        result = subprocess.run(
            [dot, "-Tsvg"],
            input=graph.to_string().encode("utf-8"),
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
