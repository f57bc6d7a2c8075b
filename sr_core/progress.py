"""The progress-report type of the library: sr_core never prints, it calls ``progress(done, total)``."""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]
"""Called with (units done, units in all) as work advances: tiles or pixels of an image, images of a folder or
dataset."""
