"""What the Train tab's buttons do, free of Gradio: start, stop, resume, status, use and download a run.

Every refusal is a :class:`~sr_app.training.runs.RunError`, an ``UploadError``/``PathError`` or the trainer's
own ``ConfigError``, whose message is one sentence.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sr_core.registry import MethodInfo

from .. import handlers
from ..handlers import AppConfig
from .data import HUB, DataChoice, prepare, quoted
from .export import model_source, offer_method, snapshot, zip_model
from .launcher import RunManager, launch_command, manager_for, trainer_env
from .recipe import INIT_CONFIG, INIT_NONE, RUN_PREFIX, Recipe, check, config_path, overrides
from .runs import RUN_FILE, RunError, RunState, list_runs, new_run_folder, read_json, run_folder, write_run
from .status import can_resume, state_of


@dataclass
class Training:
    """The Train tab's operations for one app instance: its config, its training root and the root's manager."""

    config: AppConfig
    root: Path

    @property
    def manager(self) -> RunManager:
        return manager_for(self.root)

    # ------------------------------------------------------------------------------------------- choices

    def init_choices(self) -> list[tuple[str, str]]:
        """(label, value) of the starting weights on offer: the config's, none, this app's models, earlier runs."""
        choices = [("As the config says", INIT_CONFIG), ("None (random initialisation)", INIT_NONE)]
        for method in handlers.methods(self.config):
            if method.kind == "model" and not Path(method.name).is_relative_to(self.root):
                choices.append((f"{method.label} (this app's model)", method.name))
        runs = [run for run in list_runs(self.root) if _has_model(self.root / run)]
        return choices + [(f"Run {run} (its best model)", RUN_PREFIX + run) for run in runs]

    def init_from(self, choice: str) -> str | None:
        """The ``train.init_from`` value of a starting-weights choice (None: keep the config's)."""
        offered = {value for _, value in self.init_choices()}
        if choice not in offered:
            raise RunError(f"The starting weights {choice!r} are not on offer here; pick one from the list.")
        if choice == INIT_CONFIG:
            return None
        if choice == INIT_NONE:
            return "null"
        if choice.startswith(RUN_PREFIX):
            return quoted(model_source(self.root / choice.removeprefix(RUN_PREFIX)))
        return quoted(Path(choice)) if Path(choice).is_dir() else choice

    # ---------------------------------------------------------------------------------------- operations

    def start(self, data: DataChoice, recipe: Recipe) -> str:
        """Validate, put the data in place and launch a new run; returns its id."""
        with self.manager.lock:
            self._refuse_if_busy()
            items = overrides(recipe, self.init_from(recipe.init))
            folder = new_run_folder(self.root, recipe.config)
            try:
                check(recipe.config, [f"output_dir={quoted(folder)}", *_planned_data(data, folder), *items])
                items = [f"output_dir={quoted(folder)}", *prepare(data, self.root, folder), *items]
                total = check(recipe.config, items).train.steps
                args = ["--config", str(config_path(recipe.config)), *items]
                write_run(folder, {"id": folder.name, "created": time.time(), "config": recipe.config,
                                   "args": args, "total_steps": total, "data": data.source})  # fmt: skip
                self._launch(folder, args)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        return folder.name

    def resume(self, run_id: str | None, steps: int | None = None) -> str:
        """Continue a stopped or interrupted run from its checkpoint, to its own total or to ``steps``; returns its id.

        A new total also continues a finished run (training it further)."""
        with self.manager.lock:
            self._refuse_if_busy()
            folder = run_folder(self.root, run_id)
            state, info = state_of(folder, alive=False), read_json(folder / RUN_FILE)
            if not can_resume(folder):
                raise RunError(f"Run {folder.name} has no checkpoint to resume from; start a new run instead.")
            args = [a for a in info.get("args", []) if a != "--resume"]
            if steps:
                if steps <= state.step:
                    raise RunError(f"Run {folder.name} is at step {state.step} already; resume it to a later step.")
                args = [a for a in args if not a.startswith("train.steps=")] + [f"train.steps={steps}"]
                check(info.get("config", ""), args[2:])
                write_run(folder, {**info, "args": args, "total_steps": steps})
            elif state.state == "finished":
                raise RunError(f"Run {folder.name} has finished all {state.total_steps} steps; nothing to resume.")
            self._launch(folder, [*args, "--resume"])
        return folder.name

    def stop(self, run_id: str | None) -> str:
        """Ask the run going now (or ``run_id``) to stop after its current step; returns its id."""
        target = run_id or self.manager.active()
        if not target:
            raise RunError("No training run is going; there is nothing to stop.")
        self.manager.stop(run_folder(self.root, target).name)
        return target

    def status(self, run_id: str | None) -> RunState | None:
        """The state of ``run_id`` (the newest run for an empty id); None when there are no runs."""
        if not run_id and not list_runs(self.root):
            return None
        folder = run_folder(self.root, run_id)
        return state_of(folder, alive=self.manager.alive(folder.name))

    def use(self, run_id: str | None) -> MethodInfo:
        """Offer the run's model (best/, else last/) as a method of this app; returns the method."""
        return offer_method(self.config, snapshot(run_folder(self.root, run_id)))

    def download(self, run_id: str | None) -> Path:
        """A zip of the run's model folder to download."""
        return zip_model(run_folder(self.root, run_id))

    # ------------------------------------------------------------------------------------------- helpers

    def _refuse_if_busy(self) -> None:
        busy = self.manager.active()
        if busy:
            raise RunError(f"A training run is already going ({busy}); stop it or wait for it to end first.")

    def _launch(self, folder: Path, args: list[str]) -> None:
        cpu = self.config.device == "cpu" or not torch.cuda.is_available()
        pid = self.manager.launch(folder, launch_command(args, cpu=cpu), trainer_env(self.config.weights_dir))
        write_run(folder, {**read_json(folder / RUN_FILE), "pid": pid, "launched": time.time()})


def _has_model(folder: Path) -> bool:
    try:
        model_source(folder)
    except RunError:
        return False
    return True


def _planned_data(data: DataChoice, folder: Path) -> list[str]:
    """Data overrides shaped like :func:`~sr_app.training.data.prepare`'s, to check the recipe before any copying."""
    if data.source == HUB:
        return []
    return [f"data.train_dir={quoted(folder / 'data' / 'train')}", f"data.val_dir={quoted(folder / 'data' / 'val')}"]
