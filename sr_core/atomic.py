"""Atomic file writes: the one helper every writer in SR Studio uses (images, weights, manifests, checkpoints).

A file is written under a temporary name in the target's folder, flushed to disk, then renamed over the target,
so a reader (or a crash) never sees half a file; the folder is synced so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where the platform cannot."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb+") as f:
        os.fsync(f.fileno())


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network or FAT file systems): check, then rename
        if target.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, mode: int = 0o644, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``target``; when the block succeeds, it becomes ``target``.

    The block writes the file at the yielded path (by any means: PIL, safetensors, open()). On success the file
    is synced, given ``mode`` and renamed over ``target`` (``overwrite=False``: FileExistsError if ``target``
    exists, never replacing it). On failure the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, mode)
        _publish(tmp, target, overwrite)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, mode: int = 0o644) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def write_json_atomic(path: str | os.PathLike, data: Any, *, mode: int = 0o644) -> Path:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n", mode=mode)
