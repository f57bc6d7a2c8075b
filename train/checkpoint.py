"""Atomic checkpoints: a checkpoint is written to a temporary folder, marked complete, then swapped in.

Layout under ``<output_dir>/checkpoints``: ``last`` (the newest complete checkpoint) and ``prev`` (the one
before it). A process killed while saving leaves ``last`` untouched (the partial ``.tmp-*`` folder is ignored
and removed by the next save). The marker ``checkpoint.json`` records the sha256 of every file, so a checkpoint
damaged later (truncated, a flipped byte) is recognised before anything is loaded from it, and resuming falls
back to ``prev``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from sr_core.atomic import fsync_dir, write_json_atomic
from sr_core.errors import SRError

MARKER = "checkpoint.json"
FORMAT_VERSION = 2
RNG_PREFIX = "random_states_"


class CheckpointError(SRError):
    """No usable checkpoint where one was expected (the trainer exits 2 with this message)."""


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the marker, by relative path."""
    digests = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digests[path.relative_to(folder).as_posix()] = h.hexdigest()
    return digests


def damaged_files(folder: Path) -> list[str]:
    """Files of a complete checkpoint that are missing or differ from the digests in its marker.

    Checkpoints written before digests were recorded (format 1) report nothing here; loading them is the check.
    """
    recorded = (read_marker(folder) or {}).get("files")
    if not isinstance(recorded, dict):
        return []
    actual = file_digests(folder)
    return sorted(name for name, digest in recorded.items() if actual.get(name) != digest)


def is_rng_file(name: str) -> bool:
    return Path(name).name.startswith(RNG_PREFIX)


def rotate_in(tmp: Path, root: Path) -> None:
    """Make ``tmp`` the new ``root/last`` and the old ``last`` ``root/prev``; some complete one exists throughout."""
    last, prev = root / "last", root / "prev"
    if last.exists():
        shutil.rmtree(prev, ignore_errors=True)
        os.replace(last, prev)
    os.replace(tmp, last)
    fsync_dir(root)


def swap_in(tmp: Path, target: Path) -> None:
    """Replace the folder ``target`` by ``tmp``; at every instant ``target`` or ``target``-``prev`` is whole."""
    prev = target.with_name("prev" if target.name == "last" else target.name + ".prev")
    if target.exists():
        shutil.rmtree(prev, ignore_errors=True)
        os.replace(target, prev)
    os.replace(tmp, target)
    fsync_dir(target.parent)
    shutil.rmtree(prev, ignore_errors=True)


def read_marker(path: Path) -> dict[str, Any] | None:
    """The marker of a complete checkpoint folder, or None when the folder is partial or missing."""
    try:
        data = json.loads((Path(path) / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("complete") else None


def checkpoint_candidates(path: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, newest first, from a checkpoint folder, a ``checkpoints`` folder or a run folder."""
    path = Path(path)
    places = (path, path / "last", path / "prev", path / "checkpoints" / "last", path / "checkpoints" / "prev")
    found = [candidate for candidate in places if read_marker(candidate) is not None]
    return sorted(dict.fromkeys(found), key=lambda c: -int((read_marker(c) or {}).get("step", 0)))


def find_checkpoint(path: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint (see :func:`checkpoint_candidates`), or None."""
    candidates = checkpoint_candidates(path)
    return candidates[0] if candidates else None


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
                "files": file_digests(tmp),
                **(info or {}),
            },
        )
        fsync_dir(tmp)
        rotate_in(tmp, root)
    accelerator.wait_for_everyone()
    return root / "last"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _try_load(accelerator: Any, folder: Path, loose: bool) -> tuple[str | None, list[str]]:
    """Load ``folder`` into the accelerator; (why it is unusable or None, warnings)."""
    damaged = damaged_files(folder)
    rng_only = bool(damaged) and all(is_rng_file(name) for name in damaged)
    if damaged and not (loose and rng_only):
        hint = " (pass --resume-loose to resume without the random-number state)" if rng_only else ""
        return f"{', '.join(damaged)} do not match their recorded checksums{hint}", []
    sentinel = torch.manual_seed(int.from_bytes(os.urandom(4), "little")).get_state()
    try:
        accelerator.load_state(str(folder))
    except Exception as exc:  # noqa: BLE001 - safetensors, torch.load and pickle raise many types
        return f"cannot be loaded ({_first_line(exc)})", []
    if not torch.equal(torch.get_rng_state(), sentinel):
        return None, []
    if not loose:
        return (
            "its random-number state cannot be restored (pass --resume-loose to resume without it; the run "
            "is then not an exact continuation)",
            [],
        )
    return None, [f"{folder}: random-number state not restored (--resume-loose); the patch order differs"]


def load_checkpoint(accelerator: Any, source: str | os.PathLike, *, loose: bool = False) -> tuple[Path, list[str]]:
    """Load the newest usable checkpoint under ``source``, falling back to older ones; (its folder, warnings).

    A checkpoint is unusable when a file is missing or damaged (checksums, or the load itself fails) or when its
    random-number state cannot be restored (accepted with ``loose``). Raises CheckpointError when none is usable.
    """
    candidates = checkpoint_candidates(source)
    if not candidates:
        raise CheckpointError(f"--resume: no complete checkpoint in {source}")
    problems: list[str] = []
    for candidate in candidates:
        problem, warnings = _try_load(accelerator, candidate, loose)
        if problem is None:
            skipped = [f"{p}; resumed from the older {candidate} instead" for p in problems]
            return candidate, skipped + warnings
        problems.append(f"{candidate} is unusable: {problem}")
    raise CheckpointError(f"--resume: no usable checkpoint in {source} ({'; '.join(problems)})")
