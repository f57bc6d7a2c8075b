"""Code health rules of issue 15 that hold for the whole code: short functions, no dead fields."""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREES = ("sr_core", "sr_app", "train")
MAX_FUNCTION_LINES = 100


def long_functions(source: str, limit: int) -> list[tuple[str, int, int]]:
    """(name, first line, length in lines) of every function or method of ``source`` longer than ``limit`` lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append((node.name, node.lineno, length))
    return found


def test_the_length_check_counts_a_function_from_its_def_to_its_last_line():
    body = "\n".join(f"    x{i} = {i}" for i in range(99))
    method = textwrap.indent(body, "    ")
    source = f"def short():\n{body}\n\n\nclass A:\n    def long(self):\n{method}\n        return 1\n"
    # short: the def and 99 lines (100 in all); A.long: the def, 99 lines and the return (101).
    assert long_functions(source, 100) == [("long", 104, 101)]


def test_no_function_is_longer_than_100_lines():
    found = [
        f"{path.relative_to(REPO)}:{line} {name} ({length} lines)"
        for tree in TREES
        for path in sorted((REPO / tree).rglob("*.py"))
        for name, line, length in long_functions(path.read_text(encoding="utf-8"), MAX_FUNCTION_LINES)
    ]
    assert found == []


def test_model_weights_carry_no_unused_manifest_copy():
    from sr_core.registry import ModelWeights

    assert [f.name for f in dataclasses.fields(ModelWeights)] == ["path", "config", "sha256", "mtime_ns"]
