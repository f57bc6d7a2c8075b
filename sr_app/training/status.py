"""The state of a run from its files: running, stopping, stopped, finished, failed or interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from train.checkpoint import find_checkpoint
from train.run_control import STOP_FILE

from .runs import EXIT_FILE, RUN_FILE, RunState, read_json, read_log, tail

VAL_KEYS = ("val_psnr", "val_ssim", "val_bicubic_psnr", "val_bicubic_ssim")


def _latest(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The newest loss and validation scores (for the status endpoint and the page)."""
    latest: dict[str, Any] = {}
    for record in records:
        if "loss" in record:
            latest["loss"] = record["loss"]
        if "val_psnr" in record:
            latest.update({k: record[k] for k in VAL_KEYS if k in record}, val_step=record["step"])
    return latest


def _error_line(folder: Path) -> str:
    """The trainer's own explanation of a failure: its last ``error:`` line, else the last line that is not the
    launcher's report of it (``accelerate launch`` ends with a traceback of its own)."""
    lines = tail(folder, lines=200).splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    others = [line for line in lines if "CalledProcessError" not in line and not line.startswith(("  ", "Traceback"))]
    return (errors or others or lines or ["the trainer wrote nothing"])[-1]


def _ended(folder: Path, step: int, total: int, records: list[dict[str, Any]], code: int | None) -> tuple[str, str]:
    """(state, message) of a run whose process is gone; ``code`` is its exit status when known."""
    stopped = bool(records) and records[-1].get("event") == "stopped"
    if code not in (None, 0):
        return "failed", f"The trainer exited with code {code}: {_error_line(folder)}"
    if stopped:
        return "stopped", f"Stopped at step {step} of {total}; Resume continues from its checkpoint."
    if total and step >= total:
        return "finished", f"Finished all {total} steps."
    if code == 0:
        return "finished", _error_line(folder)
    return "interrupted", f"The trainer stopped at step {step} of {total} without finishing; Resume continues."


def state_of(folder: Path, alive: bool) -> RunState:
    """The run in ``folder`` as the page shows it; ``alive`` says whether its trainer process is still going."""
    info, records = read_json(folder / RUN_FILE), read_log(folder)
    progress = [r for r in records if r.get("event") == "progress"]
    step = max((int(r["step"]) for r in records), default=0)
    total = int(info.get("total_steps") or (progress[-1]["total_steps"] if progress else 0))
    state = RunState(folder.name, "running", step, total, latest=_latest(records))
    if progress and progress[-1]["step"] == step:
        state.patches_per_s, state.eta_s = progress[-1].get("patches_per_s"), progress[-1].get("eta_s")
    if alive:
        state.state = "stopping" if (folder / STOP_FILE).exists() else ("running" if records else "starting")
        state.message = {"starting": "Starting: loading the data and the model.", "stopping": "Stopping: "
                         "finishing the step and saving a checkpoint."}.get(state.state, "")  # fmt: skip
        return state
    exit_info = read_json(folder / EXIT_FILE)
    code = exit_info.get("returncode") if exit_info.get("pid") == info.get("pid") else None
    state.state, state.message = _ended(folder, step, total, records, code)
    return state


def can_resume(folder: Path) -> bool:
    """Whether the run has a checkpoint to continue from (``checkpoints/last``, or ``prev``)."""
    return find_checkpoint(folder / "checkpoints") is not None
