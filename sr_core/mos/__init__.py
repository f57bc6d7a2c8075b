"""Forwarder: ``python -m sr_core.mos report --db FILE [--csv OUT]`` runs :mod:`sr_app.mos.cli`.

The rating study (SQLite store, items, visitor tokens) moved to the app as :mod:`sr_app.mos`; its statistics
are :mod:`sr_core.stats`. This package only keeps the old command working, and imports the app only when run.
"""

from __future__ import annotations

from collections.abc import Sequence

PROG = "python -m sr_core.mos"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sr_app.mos``'s command line under this package's name; returns the exit status."""
    from sr_app.mos.cli import main as app_main  # lazy: importing sr_core must never import the app

    return app_main(argv, prog=PROG)


__all__ = ["main"]
