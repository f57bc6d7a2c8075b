"""``python -m sr_core.mos report --db FILE [--csv OUT]``: forwards to ``python -m sr_app.mos``."""

from . import main

raise SystemExit(main())
