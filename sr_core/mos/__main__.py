"""``python -m sr_core.mos report --db FILE [--csv OUT]``."""

from .cli import main

raise SystemExit(main())
