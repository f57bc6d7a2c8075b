"""``python -m sr_app.mos report --db FILE [--csv OUT]``: MOS table of a ratings database, and its CSV.

``python -m sr_core.mos report ...``, the command's former home, forwards here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sr_core.errors import SRError

from .store import DEFAULT_DB, GROUND_TRUTH, MethodScore, RatingStore

PROG = "python -m sr_app.mos"
"""The command's name in its help text."""


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(scores: Sequence[MethodScore]) -> str:
    """The per-(method, scale) MOS as a Markdown table: n, MOS, 95% CI, ± half-width and std."""
    lines = [
        "| method | scale | n | MOS | 95% CI | ± | std |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in scores:
        s = row.summary
        name = f"{row.method} (control)" if row.method == GROUND_TRUTH else row.method
        interval = "n/a" if s.ci_low is None else f"[{s.ci_low:.3f}, {s.ci_high:.3f}]"
        lines.append(
            f"| {name} | x{row.scale} | {s.n} | {s.mean:.3f} | {interval} | "
            f"{_number(s.half_width, 3)} | {_number(s.std, 3)} |"
        )
    return "\n".join(lines)


def report(store: RatingStore) -> str:
    """What ``report`` prints: a one-line count and the MOS table (or a note when there are no ratings)."""
    count = store.count()
    if count == 0:
        return f"No ratings yet in {store.path}."
    head = f"{count} ratings from {store.visitors()} visitors in {store.path}; 95% CI from Student's t.\n\n"
    return head + markdown_table(store.method_scores())


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The ``report`` command line; ``prog`` is the name the help text shows."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Mean opinion score (MOS) study: report on a ratings database.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="print MOS, 95%% CI and n per method as a Markdown table")
    rep.add_argument("--db", default=DEFAULT_DB, help="ratings database (default: %(default)s)")
    rep.add_argument("--csv", metavar="OUT", help="also write every rating as CSV to OUT ('-' for stdout)")
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Run the command line; returns the exit status (2 when the database is missing or unusable)."""
    args = build_parser(prog).parse_args(argv)
    try:
        store = RatingStore(args.db, create=False)
        text = report(store)
        if args.csv == "-":
            store.write_csv(sys.stdout)
            return 0
        print(text)
        if args.csv:
            rows = store.write_csv(args.csv)
            print(f"\nWrote {rows} ratings to {args.csv}")
    except SRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
