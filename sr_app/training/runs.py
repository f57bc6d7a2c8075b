"""A run folder on disk, read back: its description, the trainer's log records, its output and its state.

``<root>/<run id>/`` holds ``run.json`` (what the tab started: config, trainer arguments, launcher pid),
``exit.json`` (the launcher's exit code, once the app saw it end), ``train.out`` (the trainer's stdout and
stderr) and everything the trainer writes there (``log.jsonl``, ``checkpoints/``, ``best/``, ``last/``,
``val_preview/``). Reading never needs the process that started the run: a reloaded page, or a restarted app,
finds it from these files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sr_core.atomic import write_json_atomic

RUN_FILE = "run.json"
EXIT_FILE = "exit.json"
OUTPUT_FILE = "train.out"
LOG_FILE = "log.jsonl"
TAIL_BYTES = 64 << 10
_RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}(-[0-9]+)?-[A-Za-z0-9_]+$")


class RunError(ValueError):
    """A run that cannot do what was asked; the message is one sentence for the page."""


def new_run_folder(root: Path, config_name: str) -> Path:
    """A fresh ``<root>/<YYYYmmdd-HHMMSS>-<config>`` folder (a counter added when that second is taken)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        folder = root / (f"{stamp}-{config_name}" if n == 0 else f"{stamp}-{n}-{config_name}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RunError("Could not make a new run folder; try again in a second.")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_run(folder: Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` atomically."""
    write_json_atomic(folder / RUN_FILE, info)


def list_runs(root: Path) -> list[str]:
    """The ids of the runs under ``root``, newest first."""
    try:
        entries = [p for p in root.iterdir() if _RUN_ID.match(p.name) and (p / RUN_FILE).is_file()]
    except OSError:
        return []
    return [p.name for p in sorted(entries, key=lambda p: p.name, reverse=True)]


def run_folder(root: Path, run_id: str | None) -> Path:
    """The folder of run ``run_id`` (the newest run for an empty id); RunError when there is none."""
    runs = list_runs(root)
    if not run_id:
        if not runs:
            raise RunError("There is no training run yet; start one first.")
        return root / runs[0]
    if run_id not in runs:
        raise RunError(f"There is no training run {run_id!r} under the training root.")
    return root / run_id


def read_log(folder: Path) -> list[dict[str, Any]]:
    """The trainer's log records (a torn last line, being written, is skipped)."""
    try:
        text = (folder / LOG_FILE).read_text()
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def tail(folder: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of the trainer's output, progress-bar redraws collapsed to their latest state."""
    path = folder / OUTPUT_FILE
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    shown = [_last_redraw(line) for line in text.split("\n")]
    return "\n".join([line for line in shown if line][-lines:])


def _last_redraw(line: str) -> str:
    """The last non-empty state of a line that a progress bar redrew with carriage returns."""
    parts = [part for part in line.split("\r") if part.strip()]
    return parts[-1].rstrip() if parts else ""


def news_marks(folder: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What tells the live view that a part of it has news: the run, its loss and validation record counts and
    the preview's time."""
    try:
        picture = (folder / "val_preview" / "sr.png").stat().st_mtime_ns
    except OSError:
        picture = None
    return {
        "run": folder.name,
        "loss": sum(1 for r in records if "loss" in r),
        "val": sum(1 for r in records if "val_psnr" in r),
        "preview": picture,
    }


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live launcher of a training run (on Linux its command line is checked too)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True
    try:
        status = (proc / "stat").read_text().rsplit(")", 1)[-1].split()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return status[0] != "Z" and b"train.py" in cmdline


@dataclass
class RunState:
    """What the page says about a run."""

    run_id: str
    state: str
    """starting | running | stopping | stopped | finished | failed | interrupted"""
    step: int = 0
    total_steps: int = 0
    patches_per_s: float | None = None
    eta_s: float | None = None
    message: str = ""
    latest: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running", "stopping")

    def as_dict(self) -> dict[str, Any]:
        """The state as the ``/train_status`` endpoint returns it."""
        return {
            "run": self.run_id, "state": self.state, "step": self.step, "total_steps": self.total_steps,
            "patches_per_s": self.patches_per_s, "eta_s": self.eta_s, "message": self.message, **self.latest,
        }  # fmt: skip
