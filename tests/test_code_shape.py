"""The shape of the source: no function longer than a screen (docs/STYLE: about 60 lines)."""

from __future__ import annotations

import ast

from support.servers import ROOT

SRC = ROOT / "src"
MAX_LINES = 60  # of code: from the first statement after the docstring to the end


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = function.body
    first = body[0]
    if (
        len(body) > 1
        and isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        first = body[1]
    return (function.end_lineno or function.lineno) - first.lineno + 1


def test_no_function_is_longer_than_a_screen() -> None:
    long = [
        f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)"
        for path in sorted(SRC.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (lines := _code_lines(node)) > MAX_LINES
    ]
    assert long == []
