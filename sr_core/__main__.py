"""``python -m sr_core``: the same command as ``sr-upscale``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
