"""The trainer as a subprocess: one run at a time per training root, independent of any page.

The process is ``accelerate launch train/train.py ...`` in its own session (closing the page, or pressing Ctrl+C
in the app's terminal, does not stop it), with its output in ``<run>/train.out``. A waiter thread records the exit
code in ``exit.json``. Stopping is a request: the ``STOP`` file, which the trainer honours at the next step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from sr_core.atomic import write_json_atomic
from train.run_control import LAUNCHED_ENV, STOP_FILE

from .paths import REPO, TRAIN_SCRIPT
from .runs import EXIT_FILE, OUTPUT_FILE, RUN_FILE, RunError, list_runs, pid_alive, read_json

_MANAGERS: dict[Path, RunManager] = {}
_MANAGERS_LOCK = threading.Lock()


def launch_command(trainer_args: list[str], *, cpu: bool) -> list[str]:
    """``accelerate launch`` (one process) of the trainer with ``trainer_args``."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
                "--dynamo_backend", "no", *(["--cpu"] if cpu else [])]  # fmt: skip
    return [*launcher, str(TRAIN_SCRIPT), *trainer_args]


def trainer_env(weights_dir: str | None) -> dict[str, str]:
    """The app's environment for the trainer, unbuffered, importing this repository, with the app's weights."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TQDM_MININTERVAL", "1")
    if weights_dir:
        env["SR_STUDIO_WEIGHTS_DIR"] = str(Path(weights_dir).resolve())
    return env


def _session_flags() -> dict[str, object]:
    """Popen arguments that detach the trainer from the app's terminal signals."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"start_new_session": True}


class RunManager:
    """Starts, tracks and stops the runs under one training root; at most one runs at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        self._running: dict[str, threading.Event] = {}
        """Per run started here: set once its trainer has ended and its exit code is on disk."""

    def alive(self, run_id: str) -> bool:
        """Whether run ``run_id`` is still going (started by this app, or by an earlier one still running)."""
        ended = self._running.get(run_id)
        if ended is not None:
            return not ended.is_set()
        info = read_json(self.root / run_id / RUN_FILE)
        exited = read_json(self.root / run_id / EXIT_FILE)
        return exited.get("pid") != info.get("pid") and pid_alive(info.get("pid"))

    def active(self) -> str | None:
        """The id of the run going now, if any."""
        return next((run for run in list_runs(self.root) if self.alive(run)), None)

    def launch(self, folder: Path, command: list[str], env: dict[str, str]) -> int:
        """Start ``command`` for the run in ``folder`` (its output appended to ``train.out``); returns its pid."""
        with self.lock:
            busy = self.active()
            if busy:
                raise RunError(f"A training run is already going ({busy}); stop it or wait for it to end first.")
            (folder / STOP_FILE).unlink(missing_ok=True)
            env = {**env, LAUNCHED_ENV: repr(time.time())}
            with open(folder / OUTPUT_FILE, "ab") as out:
                what = "resume" if "--resume" in command else "start"
                out.write(f"=== {datetime.now():%Y-%m-%d %H:%M:%S} {what} (command in {RUN_FILE})\n".encode())
                out.flush()
                process = subprocess.Popen(
                    command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    **_session_flags(),
                )  # fmt: skip
            ended = self._running[folder.name] = threading.Event()
        threading.Thread(target=self._wait, args=(folder, process, ended), daemon=True).start()
        return process.pid

    def _wait(self, folder: Path, process: subprocess.Popen, ended: threading.Event) -> None:
        """Record the exit code once the trainer ends (reaping the process), then count the run as ended."""
        code = process.wait()
        try:
            write_json_atomic(folder / EXIT_FILE, {"pid": process.pid, "returncode": code, "ended": time.time()})
        finally:
            ended.set()

    def stop(self, run_id: str) -> None:
        """Ask run ``run_id`` to stop after its current step (it checkpoints, then exits)."""
        if not self.alive(run_id):
            raise RunError(f"Run {run_id} is not going; there is nothing to stop.")
        (self.root / run_id / STOP_FILE).touch()


def manager_for(root: Path) -> RunManager:
    """The one manager of ``root`` in this process (apps built on the same root share it)."""
    with _MANAGERS_LOCK:
        return _MANAGERS.setdefault(root, RunManager(root))
