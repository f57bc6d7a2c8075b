"""The Hugging Face Space: front matter, requirements, the dry-run folder (which must boot on its own), uploads."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SPACE = REPO / "space"
DEPLOY = SPACE / "deploy.py"
HF_COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def load_deploy():
    spec = importlib.util.spec_from_file_location("sr_studio_space_deploy", DEPLOY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = line.split("==")[0].split(">=")[0].split("<")[0].strip().lower()
            found[name] = line
    return found


def run_deploy(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DEPLOY), *args], capture_output=True, text=True, timeout=300, env=env or dict(os.environ)
    )


def test_front_matter_pins_the_project_gradio():
    meta = front_matter((SPACE / "README.md").read_text())
    for key in (
        "title",
        "emoji",
        "colorFrom",
        "colorTo",
        "sdk",
        "sdk_version",
        "python_version",
        "app_file",
        "license",
    ):
        assert meta.get(key), key
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["colorFrom"] in HF_COLOURS and meta["colorTo"] in HF_COLOURS
    assert str(meta["python_version"]) in {"3.10", "3.12"}  # what ZeroGPU runs
    assert isinstance(meta["sdk_version"], str)
    assert pins(REPO / "requirements.txt")["gradio"] == f"gradio=={meta['sdk_version']}"
    assert len(meta.get("short_description", "")) <= 60
    assert meta["license"] == "apache-2.0"


def test_space_requirements_leave_gradio_to_the_sdk():
    space = pins(SPACE / "requirements.txt")
    assert "gradio" not in space
    assert space["torch"] == pins(REPO / "requirements.txt")["torch"]
    assert {"numpy", "pillow", "safetensors"} <= set(space)


def test_dry_run_writes_a_complete_folder(tmp_path):
    target = tmp_path / "space"
    result = run_deploy("--dry-run", str(target))
    assert result.returncode == 0, result.stderr
    files = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert {"app.py", "README.md", "requirements.txt", "sr_app/ui.py", "sr_app/cli.py", "sr_core/__init__.py"} <= files
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    examples = sorted(p.name for p in (REPO / "examples").glob("*.png"))
    assert examples and all(f"examples/{name}" in files for name in examples)
    assert "examples/README.md" in files and "examples/make_examples.py" not in files
    weights = REPO / "sr_core" / "weights"
    for path in weights.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
            assert (target / path.relative_to(REPO)).is_file(), path
    assert (target / "README.md").read_text() == (SPACE / "README.md").read_text()


def test_dry_run_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = run_deploy("--dry-run", str(tmp_path))
    assert result.returncode == 1
    assert "not an empty folder" in result.stderr and (tmp_path / "keep.txt").read_text() == "mine"


def test_repo_id_is_required_for_an_upload():
    result = run_deploy()
    assert result.returncode == 2 and "--repo-id" in result.stderr
    assert run_deploy("--repo-id", "no-slash").returncode == 2


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "cannot reach the Hugging Face Hub"),
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE"),
    ],
)
def test_offline_upload_fails_with_one_clear_line(tmp_path, extra, expected):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_TOKEN="hf_not_a_real_token", HF_HOME=str(tmp_path / "hf"), **extra)
    result = run_deploy("--repo-id", "someone/sr-studio", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: upload to Space someone/sr-studio failed")
    assert expected in lines[0]


def test_upload_without_a_token_says_how_to_log_in(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env["HF_HOME"] = str(tmp_path / "hf")
    result = run_deploy("--repo-id", "someone/sr-studio", env=env)
    assert result.returncode == 1 and "no Hugging Face token" in result.stderr


def fake_repo(tmp_path: Path, *, with_weights: bool = True) -> Path:
    """A copy of the app and library with a tiny 'tinysr' x4 model registered in sr_core/weights."""
    import torch

    from sr_core.models import SRResNet
    from sr_core.registry import write_manifest_entry

    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "sr_app", root / "sr_app", ignore=ignore)
    shutil.copytree(REPO / "sr_core", root / "sr_core", ignore=ignore)
    shutil.copytree(REPO / "examples", root / "examples", ignore=ignore)
    shutil.copy2(REPO / "app.py", root / "app.py")
    if with_weights:
        torch.manual_seed(0)
        model = SRResNet(scale=4, num_blocks=1, channels=8).eval()
        write_manifest_entry(root / "sr_core" / "weights", model, name="tinysr", label="Tiny SR", description="test")
    return root


def test_manifest_naming_a_missing_file_is_refused(tmp_path):
    deploy = load_deploy()
    root = fake_repo(tmp_path)
    (root / "sr_core" / "weights" / "tinysr_x4.safetensors").unlink()
    with pytest.raises(deploy.DeployError, match="tinysr_x4.safetensors"):
        deploy.assemble(tmp_path / "out", repo_root=root)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the Space exited early:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the Space did not answer at {url} within {timeout} s")


@pytest.mark.slow
def test_dry_run_folder_boots_on_its_own_and_answers(tmp_path):
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    deploy = load_deploy()
    folder = tmp_path / "space"
    deploy.assemble(folder, repo_root=fake_repo(tmp_path))
    shutil.rmtree(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SR_STUDIO_WEIGHTS_DIR")}
    env.update(GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp_path / "gradio"), HF_HUB_OFFLINE="1")
    where = subprocess.run(
        [sys.executable, "-c", "import sr_app, sr_core; print(sr_app.__file__); print(sr_core.__file__)"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert all(Path(p).resolve().is_relative_to(folder.resolve()) for p in where), where

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url, proc)
        photo = tmp_path / "in.png"
        Image.open(folder / "examples" / "astronaut.png").crop((0, 0, 48, 32)).save(photo)
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        try:
            _, png, psnr, _, summary = client.predict(
                handle_file(str(photo)), "tinysr", 4, None, False, 0, api_name="/upscale"
            )
        finally:
            client.close()
        assert np.asarray(Image.open(png)).shape == (128, 192, 3)
        assert psnr is None and "Tiny SR" in summary
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def requirement_lines(path: Path) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()]


@pytest.mark.parametrize("hardware", ["cpu-basic", "cpu-upgrade"])
def test_cpu_hardware_gets_the_cpu_torch_build(tmp_path, hardware):
    result = run_deploy("--dry-run", str(tmp_path / "space"), "--hardware", hardware)
    assert result.returncode == 0, result.stderr
    lines = requirement_lines(tmp_path / "space" / "requirements.txt")
    version = pins(REPO / "requirements.txt")["torch"].split("==")[1]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert [line for line in lines if line.startswith("torch")] == [f"torch=={version}+cpu"]
    assert {"numpy", "pillow", "safetensors"} <= set(pins(tmp_path / "space" / "requirements.txt"))
    assert "--index-url" not in " ".join(lines)  # PyPI stays the main index for everything else


@pytest.mark.parametrize("hardware", ["t4-small", "a10g-small", "zero-a10g"])
def test_gpu_and_zerogpu_hardware_get_the_cuda_build(tmp_path, hardware):
    result = run_deploy("--dry-run", str(tmp_path / "space"), "--hardware", hardware)
    assert result.returncode == 0, result.stderr
    lines = requirement_lines(tmp_path / "space" / "requirements.txt")
    assert [line for line in lines if line.startswith("torch")] == [pins(REPO / "requirements.txt")["torch"]]
    assert not any(line.startswith("--") for line in lines)


def test_the_default_is_cpu_basic(tmp_path):
    deploy = load_deploy()
    deploy.assemble(tmp_path / "space")
    assert any(line.endswith("+cpu") for line in requirement_lines(tmp_path / "space" / "requirements.txt"))


def test_gitattributes_send_every_binary_file_to_lfs(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    folder = tmp_path / "space"
    assert run_deploy("--dry-run", str(folder)).returncode == 0
    subprocess.run(["git", "init", "-q", str(folder)], check=True, timeout=60)
    files = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts
    )
    binary = [f for f in files if not f.endswith((".py", ".md", ".txt", ".json", ".gitattributes", "LICENSE"))]
    assert any(f.endswith(".safetensors") for f in binary) and any(f.endswith(".png") for f in binary)
    # Independent reference: git itself says which attribute each file gets.
    answer = subprocess.run(
        ["git", "check-attr", "filter", "--", *files], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    lfs = {line.split(": ")[0] for line in answer if line.endswith(": filter: lfs")}
    assert set(binary) <= lfs, sorted(set(binary) - lfs)
    assert not any(f.endswith(".py") for f in lfs)


def test_model_ids_go_into_the_front_matter(tmp_path):
    folder = tmp_path / "space"
    result = run_deploy("--dry-run", str(folder), "--model", "someone/sr-x4", "--model", "other/real-sr")
    assert result.returncode == 0, result.stderr
    text = (folder / "README.md").read_text()
    meta = front_matter(text)
    assert meta["models"] == ["someone/sr-x4", "other/real-sr"]
    original = front_matter((SPACE / "README.md").read_text())
    assert {k: v for k, v in meta.items() if k != "models"} == original
    assert text.split("\n---\n", 1)[1] == (SPACE / "README.md").read_text().split("\n---\n", 1)[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hardware", "gpu"], "not a Space hardware"),
        (["--model", "no-slash"], "USER/NAME"),
        (["--model", "a/b/c"], "USER/NAME"),
    ],
)
def test_bad_hardware_or_model_ids_are_usage_errors(tmp_path, args, message):
    result = run_deploy("--dry-run", str(tmp_path / "space"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "space").exists()
