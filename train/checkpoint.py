"""Atomic checkpoints: a checkpoint is written to a temporary folder, marked complete, then swapped in.

Layout under ``<output_dir>/checkpoints``: ``last`` (the newest complete checkpoint) and, only for the instant of
the swap, ``prev``. A process killed while saving leaves ``last`` untouched (the partial ``.tmp-*`` folder is
ignored and removed by the next save); killed during the swap, ``prev`` is still complete and is used.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

MARKER = "checkpoint.json"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def swap_in(tmp: Path, target: Path) -> None:
    """Replace the folder ``target`` by ``tmp``; at every instant ``target`` or ``target``-``prev`` is whole."""
    prev = target.with_name("prev" if target.name == "last" else target.name + ".prev")
    if target.exists():
        shutil.rmtree(prev, ignore_errors=True)
        os.replace(target, prev)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    shutil.rmtree(prev, ignore_errors=True)


def read_marker(path: Path) -> dict[str, Any] | None:
    """The marker of a complete checkpoint folder, or None when the folder is partial or missing."""
    try:
        data = json.loads((Path(path) / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("complete") else None


def find_checkpoint(path: str | os.PathLike) -> Path | None:
    """A complete checkpoint from a checkpoint folder, a ``checkpoints`` folder, or a run's output folder."""
    path = Path(path)
    for candidate in (path, path / "last", path / "prev", path / "checkpoints" / "last", path / "checkpoints" / "prev"):
        if read_marker(candidate) is not None:
            return candidate
    return None


def save_checkpoint(accelerator: Any, root: str | os.PathLike, step: int, info: dict[str, Any] | None = None) -> Path:
    """``accelerator.save_state`` into ``root/.tmp-<step>``, mark it complete, swap it in as ``root/last``.

    Called on every process (save_state writes per-process RNG files); only the main process renames.
    """
    root = Path(root)
    tmp = root / f".tmp-{step:08d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(
            tmp / MARKER,
            {
                "complete": True,
                "format": FORMAT_VERSION,
                "step": step,
                "num_processes": accelerator.num_processes,
                **(info or {}),
            },
        )
        _fsync_dir(tmp)
        swap_in(tmp, root / "last")
    accelerator.wait_for_everyone()
    return root / "last"
