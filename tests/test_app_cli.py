"""``python app.py``: options, refusing a missing GPU, and --share without a network still serving locally."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from sr_app import cli  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = cli.build_parser().parse_args([])
    assert (args.host, args.port, args.share, args.device) == ("127.0.0.1", 7860, False, "auto")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    args = cli.build_parser().parse_args(["--max-pixels", "1_000", "--weights-dir", "/w", "--concurrency", "2"])
    assert (args.host, args.port) == ("0.0.0.0", 7999)
    config = cli.config_from_args(args)
    assert (config.max_pixels, config.weights_dir, config.concurrency_limit) == (1000, "/w", 2)


@pytest.mark.parametrize("argv", [["--device", "tpu"], ["--port", "0"], ["--max-pixels", "many"]])
def test_bad_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(argv)
    assert info.value.code == 2


def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert cli.main(["--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.slow
def test_share_without_network_says_so_and_keeps_serving(tmp_path):
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--share", "--port", str(port)],
        cwd=tmp_path,  # anything the app writes to its working folder stays out of the repository
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith(("No share link", "Public share link")):
                break
        assert any(line.startswith(f"SR Studio is running at http://127.0.0.1:{port}") for line in lines), lines
        share_lines = [line for line in lines if "share link" in line]
        assert len(share_lines) == 1, lines
        if share_lines[0].startswith("No share link"):
            assert "still serving locally" in share_lines[0]
            assert not any("Could not create share link" in line for line in lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# ------------------------------------------------------------------------------------- --model (Hub ids)


def test_model_flags_become_extra_methods_of_this_app(hub_cache, tiny_srresnet, tmp_path):
    import numpy as np
    from PIL import Image

    import sr_core
    from sr_app import handlers
    from sr_core.errors import UnknownMethodError

    model = tiny_srresnet(scale=2)
    hub_cache(model, "someone/tiny-x2")
    args = cli.build_parser().parse_args(["--model", "someone/tiny-x2", "--model", "someone/tiny-x2"])
    config = cli.config_from_args(args)
    assert config.models == ("someone/tiny-x2",)
    assert cli.model_problem(args.model, None) is None
    config = handlers.AppConfig(models=config.models, output_dir=str(tmp_path / "out"))
    assert ("someone/tiny-x2", "someone/tiny-x2") in handlers.method_choices(config)
    Image.new("RGB", (9, 7), (10, 200, 30)).save(tmp_path / "in.png")
    outcome = handlers.upscale_image(str(tmp_path / "in.png"), "someone/tiny-x2", 2, config=config)
    model.save_pretrained(tmp_path / "local")
    expected = sr_core.upscale(tmp_path / "in.png", method=str(tmp_path / "local"), scale=2)
    assert np.array_equal(np.asarray(Image.open(outcome.png_path)), np.asarray(expected))
    with pytest.raises(UnknownMethodError):  # a Hub id the operator did not name stays out of reach
        handlers.find_method("someone/tiny-x2", handlers.AppConfig())


def test_model_not_cached_offline_exits_2_with_one_sentence(hub_cache, capsys):
    assert cli.main(["--model", "some-user/some-model"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "some-user/some-model" in line and "hf download some-user/some-model" in line
    assert cli.main(["--model", "not a model"]) == 2
    assert "neither a Hugging Face Hub id" in capsys.readouterr().err
