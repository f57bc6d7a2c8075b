"""SR Studio demo: ``python app.py [--host H] [--port P] [--share] [--mcp] [--device auto|cpu|cuda]``."""

from sr_app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
