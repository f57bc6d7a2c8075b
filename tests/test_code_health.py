"""Code health rules of issue 15 that hold for the whole code: short functions, no dead fields, and a ``train``
package that imports without ``sys.path`` edits while its scripts still run by path."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TREES = ("sr_core", "sr_app", "train")
MAX_FUNCTION_LINES = 100
SCRIPTS = ("train/train.py", "train/export_weights.py", "train/compare_models.py")


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


# ------------------------------------------------------------------------------------------------ train package


def test_pip_install_ships_the_train_package_and_its_configs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from setuptools import find_packages

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = find_packages(str(REPO), include=setuptools["packages"]["find"]["include"])
    assert {"train", "sr_core", "sr_app"} <= set(packages)
    configs = {p.name for pattern in setuptools["package-data"]["train"] for p in (REPO / "train").glob(pattern)}
    assert "srresnet_x4.yaml" in configs


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_importing_the_train_modules_leaves_sys_path_alone():
    code = (
        "import sys; before = list(sys.path)\n"
        "import train.train, train.export_weights, train.compare_models, sr_app.training.paths\n"
        "print(sys.path == before)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=_clean_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_scripts_run_by_path_from_the_repository_root(script):
    """``python train/<script>.py`` as the README writes it: Python puts ``train/`` first on sys.path, where
    ``train.py`` would hide the ``train`` package."""
    proc = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, cwd=REPO, env=_clean_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage:" in proc.stdout
