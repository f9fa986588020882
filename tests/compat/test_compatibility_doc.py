"""docs/compatibility.md: its switching example runs as it is, and every name its table says
exists does."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from storage._engine import URL_ENVIRONMENT_VARIABLES
from storage.accessor import ModelAccessor
from support.docs import python_blocks, run_example
from support.servers import ROOT

DOC = (ROOT / "docs" / "compatibility.md").read_text()


def test_the_switching_example_runs_unchanged(tmp_path: Path) -> None:
    (example,) = python_blocks(DOC)
    run = run_example(example, tmp_path)  # its database is ./my_app.db
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "committed: ['create']",
        "refused: unique constraint violated (user.email)",
        "committed: ['update']",
        "committed: ['update']",
        "['Alice']",
    ]
    assert (tmp_path / "my_app.db").exists()


def test_every_name_in_the_table_exists() -> None:
    rows = re.findall(r"^\| `(storage\.[\w.]+)`[^|]*\| (.*?) \| (.*?) \|$", DOC, flags=re.M)
    checked = 0
    for module_name, names, status in rows:
        if status.startswith("not provided"):
            continue
        module = importlib.import_module(module_name)
        for name in re.findall(r"`(\w+)", names):
            if name in URL_ENVIRONMENT_VARIABLES:
                continue
            assert hasattr(module, name) or hasattr(ModelAccessor, name), (module_name, name)
            checked += 1
    assert checked > 60
