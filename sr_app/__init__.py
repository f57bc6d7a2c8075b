"""SR Studio's Gradio demo: ``build_demo()`` in :mod:`sr_app.ui`, plain request handlers in
:mod:`sr_app.handlers`, command-line launcher in :mod:`sr_app.cli`, the Rate tab in :mod:`sr_app.rate` over the
rating study of :mod:`sr_app.mos`. Importing this package starts nothing."""

from __future__ import annotations

from .handlers import AppConfig

__all__ = ["AppConfig"]
