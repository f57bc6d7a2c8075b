"""What the browser tests share: Debian's Chromium and its flags, the example photo, the artifacts folder.

:func:`require_browser` skips the importing test module when Chromium, Playwright or Gradio is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("SR_STUDIO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
PHOTO = REPO / "examples" / "astronaut.png"  # 256x256


def require_browser() -> ModuleType:
    """playwright.sync_api, or a skip of the calling test module (never a downloaded browser)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
    sync_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("gradio")
    return sync_api


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, through a started Playwright."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
