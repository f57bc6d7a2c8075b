"""SR Studio demo: ``python app.py [--host H] [--port P] [--share] [--device auto|cpu|cuda]``."""

from sr_app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
