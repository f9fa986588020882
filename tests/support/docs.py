"""Running the examples of the docs as they are written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.servers import ROOT


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of a page, in order."""
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def run_example(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in ``cwd`` (where it keeps its files), with this
    checkout's packages importable; returns the finished process."""
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
