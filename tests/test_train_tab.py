"""The Train tab through gradio_client: start, a second start refused, stop, resume from the checkpoint, use the
model in /upscale, download it; paths outside --training-root refused; without --enable-training no tab at all.

The runs are real: ``accelerate launch train/train.py`` subprocesses, on a tiny SRResNet registered as the app's
``srresnet`` and used as the starting weights, with a dozen 64x64 images."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from train_helpers import train_tab_app  # noqa: E402

from sr_app.training import ENABLE_ENV, training_tabs  # noqa: E402
from sr_app.training.launcher import RunManager  # noqa: E402

TIMEOUT_S = 300
RECIPE = {"config": "srresnet_x4", "init": "srresnet", "steps": 1000, "batch_size": 2, "patch_size": 32, "lr": 1e-3,
          "mixed_precision": "no", "validate_every": 100, "log_every": 2}  # fmt: skip


def images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        small = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        paths.append(folder / f"photo{i}.png")
        small.resize((64, 64), Image.Resampling.BICUBIC).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app with the Train tab on a temporary root; yields (client, root, uploads, config)."""
    base = tmp_path_factory.mktemp("train_tab")
    with train_tab_app(base) as (url, config):
        client = Client(url, verbose=False)
        try:
            yield client, (base / "root").resolve(), images(base / "uploads", 12), config
        finally:
            client.close()


def start(client: Client, files: list[Path], **changes):
    data = {"source": "upload", "uploads": [handle_file(p) for p in files], "folder": "", "val_source": "held_out",
            "val_share": 10, "val_uploads": [], "val_folder": ""}  # fmt: skip
    return client.predict(**{**data, **RECIPE, **changes}, api_name="/train_start")


def status(client: Client, run: str = "") -> dict:
    return client.predict(run=run, api_name="/train_status")


def wait_for(client: Client, done, what: str) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        state = status(client)
        if done(state):
            return state
        assert state["state"] in ("starting", "running", "stopping"), state
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}: {status(client)}")


def test_without_enable_training_there_is_no_tab_and_no_endpoint(tmp_path, monkeypatch):
    from sr_app import cli
    from sr_app.ui import build_demo, load_extra_tabs

    monkeypatch.delenv(ENABLE_ENV, raising=False)
    args = cli.build_parser().parse_args(["--training-root", str(tmp_path / "root")])
    assert args.enable_training is False
    tabs = [*load_extra_tabs(), *training_tabs(args.enable_training, args.training_root)]
    demo = build_demo(cli.config_from_args(args), extra_tabs=tabs)
    config = demo.get_config_file()
    assert not [d for d in config["dependencies"] if str(d.get("api_name") or "").startswith("train")]
    assert not [c for c in config["components"] if str(c["props"].get("elem_id") or "").startswith("train-")]
    assert not (tmp_path / "root").exists()
    monkeypatch.setenv(ENABLE_ENV, "1")
    assert cli.build_parser().parse_args([]).enable_training is True


@pytest.mark.parametrize(
    "changes",
    [{"source": "folder", "folder": "../"}, {"source": "folder", "folder": "/etc"},
     {"val_source": "folder", "val_folder": "/tmp"}, {"source": "folder", "folder": "escape"}],
)  # fmt: skip
def test_paths_outside_the_training_root_are_refused(served, changes):
    client, root, uploads, _ = served
    escape = root / "escape"
    if not escape.exists():
        escape.symlink_to(Path("/tmp"), target_is_directory=True)
    with pytest.raises(AppError, match="outside the training root"):
        start(client, uploads, **changes)
    assert not [p for p in root.iterdir() if (p / "run.json").exists()]  # nothing was started or left behind


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"steps": 0}, "train.steps: must be >= 1"), ({"patch_size": 30}, "data.patch_size: must be a positive multiple"),
     ({"lr": -1}, "train.lr: must be a positive number"), ({"init": "/etc"}, "are not on offer here"),
     ({"config": "nope"}, "nope is not in the list of choices"), ({"uploads": []}, "Upload some training images")],
)  # fmt: skip
def test_bad_values_get_the_trainers_own_errors(served, changes, message):
    client, root, uploads, _ = served
    with pytest.raises(AppError, match=message):
        start(client, uploads, **changes)
    assert not [p for p in root.iterdir() if (p / "run.json").exists()]


def test_start_refuse_stop_resume_use_download(served, tmp_path):
    client, root, uploads, _ = served
    message, run = start(client, uploads)
    assert run in message and (root / run / "run.json").is_file()
    assert [len(list((root / run / "data" / split).iterdir())) for split in ("train", "val")] == [11, 1]
    with pytest.raises(AppError, match=f"A training run is already going \\({run}\\)"):
        start(client, uploads)

    wait_for(client, lambda s: s["step"] >= 6, "step 6")
    # Reopened in another session, or found by an app started later (no process handle): the same running run.
    assert Client(client.src, verbose=False).predict(run="", api_name="/train_status")["run"] == run
    assert RunManager(root).active() == run
    assert run in client.predict(run="", api_name="/train_stop")
    stopped = wait_for(client, lambda s: s["state"] == "stopped", "the stop")
    step = stopped["step"]
    assert 6 <= step < 1000 and stopped["run"] == run
    assert json.loads((root / run / "checkpoints/last/checkpoint.json").read_text())["step"] == step
    with pytest.raises(AppError, match="nothing to stop"):
        client.predict(run="", api_name="/train_stop")

    with pytest.raises(AppError, match=f"is at step {step} already"):
        client.predict(run=run, steps=step, api_name="/train_resume")
    total = step + 20  # the rest of the run, made short: a resumed run may get a new total
    message, resumed = client.predict(run=run, steps=total, api_name="/train_resume")
    assert resumed == run
    finished = wait_for(client, lambda s: s["state"] == "finished", "the end of the run")
    assert finished["step"] == total and finished["val_psnr"] > 0 and finished["val_bicubic_psnr"] > 0
    output = (root / run / "train.out").read_text()
    assert f"resumed from {root / run / 'checkpoints' / 'last'} at step {step}" in output
    log = [json.loads(line) for line in (root / run / "log.jsonl").read_text().splitlines()]
    expected = [k for k in range(1, total + 1) if k % 2 == 0 or k == total]
    assert [r["step"] for r in log if "loss" in r] == expected  # no step lost or repeated
    with pytest.raises(AppError, match=f"has finished all {total} steps; nothing to resume"):
        client.predict(run=run, api_name="/train_resume")

    message, method = client.predict(run="", api_name="/train_use")
    assert run in message and Path(method).is_dir()
    result = client.predict(image=handle_file(uploads[0]), method=method, scale=4, api_name="/upscale_image")
    assert Image.open(result).size == (256, 256)

    archive = client.predict(run=run, api_name="/train_download")
    names = zipfile.ZipFile(archive).namelist()
    assert {f"{run}/config.json", f"{run}/model.safetensors"} <= set(names)


def test_a_trainer_failure_shows_the_trainers_own_message(served):
    client, root, uploads, _ = served
    _, run = start(client, uploads, source="hub", val_source="held_out")  # offline here: HF_HUB_OFFLINE=1
    failed = wait_for(client, lambda s: s["state"] == "failed", "the trainer to give up")
    assert failed["run"] == run and "error:" in failed["message"] and "goodfellowliu/DIV2K" in failed["message"]
    assert "Traceback" not in failed["message"]
