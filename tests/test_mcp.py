"""``python app.py --mcp``: one clear sentence without Gradio's MCP extra; with it, an `upscale_image` tool that an
MCP client can call and that returns the upscaled image."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from sr_app.cli import mcp_available  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "examples" / "astronaut.png"
BLOCK_MCP = "import runpy, sys; sys.modules['mcp'] = None; sys.argv = ['app.py', *sys.argv[1:]]; "
"""Run app.py as if the ``mcp`` package were not installed (a None entry makes every import of it fail)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
            "PYTHONUNBUFFERED": "1"}  # fmt: skip


def test_without_the_extra_it_says_so_in_one_sentence_and_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_MCP + "runpy.run_path('app.py', run_name='__main__')", "--mcp"],
        cwd=REPO, env=app_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "gradio[mcp]"' in lines[0] and "Traceback" not in proc.stderr
    assert "running at" not in proc.stdout  # refused before anything was served


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 180) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app.py exited early:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing answered at {url} within {timeout} s")


async def call_upscale_tool(url: str, image: Image.Image) -> tuple[list[str], Image.Image]:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        tools = [t.name for t in (await session.list_tools()).tools]
        result = await session.call_tool("upscale_image", {"image": data, "method": "bicubic", "outscale": 2.5})
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1, result.content
    return tools, Image.open(io.BytesIO(base64.b64decode(images[0].data))).convert("RGB")


@pytest.mark.slow
@pytest.mark.skipif(not mcp_available(), reason='gradio[mcp] is not installed (pip install "gradio[mcp]")')
def test_mcp_server_exposes_an_upscale_tool_that_returns_the_image(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--mcp", "--port", str(port)],
        cwd=REPO, env=app_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        schema = json.loads(wait_for(f"http://127.0.0.1:{port}/gradio_api/mcp/schema", proc))
        tool = next(t for t in schema if t["name"] == "upscale_image")
        assert tool["inputSchema"]["required"] == ["image"]
        assert {"image", "method", "scale", "outscale"} <= set(tool["inputSchema"]["properties"])
        assert tool["inputSchema"]["properties"]["scale"]["type"] == "number"
        source = Image.open(PHOTO).convert("RGB").crop((200, 60, 224, 78))  # 24x18
        tools, result = asyncio.run(call_upscale_tool(f"http://127.0.0.1:{port}/gradio_api/mcp/", source))
        assert "upscale_image" in tools
        expected = np.asarray(source.resize((60, 45), Image.Resampling.BICUBIC)).astype(int)
        assert np.abs(np.asarray(result).astype(int) - expected).max() <= 2
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
