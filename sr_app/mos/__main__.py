"""``python -m sr_app.mos report --db FILE [--csv OUT]``."""

from .cli import main

raise SystemExit(main())
