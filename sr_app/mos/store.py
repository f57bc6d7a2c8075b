"""SQLite storage of a blind rating study: the items, which item was shown to which visitor, and the scores.

One file (default ``./ratings.db``), stdlib ``sqlite3``, WAL journal so readers never block the writer, a
busy timeout so concurrent writers wait instead of failing, ``synchronous=FULL`` so a committed rating
survives a crash, and one ``BEGIN IMMEDIATE`` transaction per write. Every call opens its own short-lived
connection, so a store can be shared freely between threads and processes.

A rating is accepted only for an item that was shown to that visitor: :meth:`RatingStore.show` hands out a
random one-time token, :meth:`RatingStore.add_rating` must quote it. A second rating with the same token, a
rating of an item never shown to the visitor, an unknown item or a score that is not a whole number from 1
to 5 raises a :class:`RatingError` subclass and writes nothing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from sr_core.errors import SRError
from sr_core.stats import ScoreSummary, summarize_scores

logger = logging.getLogger(__name__)

DEFAULT_DB = "ratings.db"
"""Default database file, relative to the working directory."""

GROUND_TRUTH = "ground-truth"
"""Method name of the control items: the high-resolution original itself."""

SCORE_LABELS = {1: "Bad", 2: "Poor", 3: "Fair", 4: "Good", 5: "Excellent"}
"""The absolute category rating scale (ITU-T P.800), as used in the SRGAN paper's MOS test."""

CSV_FIELDS = ("id", "item_id", "image", "method", "scale", "score", "visitor_id", "created_at")
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
_MAX_ID_LENGTH = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    method TEXT NOT NULL,
    scale INTEGER NOT NULL CHECK (scale >= 1),
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shown (
    token TEXT PRIMARY KEY,
    visitor_id TEXT NOT NULL,
    item_id TEXT NOT NULL REFERENCES items (item_id),
    shown_at TEXT NOT NULL,
    UNIQUE (visitor_id, item_id)
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL REFERENCES items (item_id),
    method TEXT NOT NULL,
    scale INTEGER NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    visitor_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE REFERENCES shown (token),
    UNIQUE (visitor_id, item_id)
);
CREATE INDEX IF NOT EXISTS ratings_by_method ON ratings (method, scale);
"""


class RatingError(SRError, ValueError):
    """A rating submission was refused; nothing was written."""


class BadScoreError(RatingError):
    """The score is not a whole number from 1 to 5."""


class UnknownItemError(RatingError):
    """The item is not part of the study."""


class NotShownError(RatingError):
    """The item was not shown to this visitor (or the token does not belong to it)."""


class AlreadyShownError(RatingError):
    """The item was already shown to this visitor in this visit."""


class ReplayedRatingError(RatingError):
    """This showing of the item has already been rated."""


@dataclass(frozen=True)
class Item:
    """One thing to rate: ``image`` (the test image's key) upscaled by ``method`` at ``scale``."""

    item_id: str
    image: str
    method: str
    scale: int


@dataclass(frozen=True)
class Shown:
    """An item handed to a visitor, with the one-time token its rating must quote."""

    token: str
    visitor_id: str
    item_id: str


@dataclass(frozen=True)
class Rating:
    """One stored score."""

    id: int
    item_id: str
    image: str
    method: str
    scale: int
    score: int
    visitor_id: str
    created_at: str


@dataclass(frozen=True)
class MethodScore:
    """MOS of one (method, scale): the summary of all its scores."""

    method: str
    scale: int
    summary: ScoreSummary


def utc_now() -> str:
    """The current time as UTC ISO 8601 with microseconds, e.g. ``2025-01-31T12:00:00.123456+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def check_score(score: object) -> int:
    """``score`` as an int if it is a whole number from 1 to 5 (int or integral float); else BadScoreError."""
    value: int | None = None
    if isinstance(score, bool):
        value = None
    elif isinstance(score, int):
        value = score
    elif isinstance(score, float) and score.is_integer():
        value = int(score)
    if value is None or not 1 <= value <= 5:
        raise BadScoreError(f"The score must be a whole number from 1 (bad) to 5 (excellent), got {score!r}")
    return value


def check_text(value: object, what: str) -> str:
    """``value`` if it is a usable id (non-empty string, not too long); else RatingError."""
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID_LENGTH:
        raise RatingError(f"invalid {what}: expected a non-empty string of at most {_MAX_ID_LENGTH} characters")
    return value


class RatingStore:
    """The ratings database at ``path`` (created with its folder if missing, unless ``create=False``)."""

    def __init__(
        self, path: str | os.PathLike = DEFAULT_DB, *, create: bool = True, timeout_s: float = BUSY_TIMEOUT_S
    ) -> None:
        self.path = Path(path)
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise SRError("the ratings store needs a file path (every call opens its own connection)")
        self.timeout_s = float(timeout_s)
        if not self.path.exists():
            if not create:
                raise SRError(f"{self.path}: no ratings database there")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SRError(f"{self.path}: cannot create folder {self.path.parent} ({exc})") from exc
        elif self.path.is_dir():
            raise SRError(f"{self.path}: is a folder, not a ratings database")
        self._initialise()

    def _initialise(self) -> None:
        try:
            conn = self._open()
        except sqlite3.Error as exc:
            raise SRError(f"{self.path}: cannot open the ratings database ({exc})") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("%s: WAL journal not available (journal_mode=%s)", self.path, mode)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SRError(
                    f"{self.path}: ratings database schema {version} is newer than this program's ({SCHEMA_VERSION})"
                )
            conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;")
        except sqlite3.DatabaseError as exc:
            raise SRError(f"{self.path}: not a usable ratings database ({exc})") from exc
        finally:
            conn.close()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._open()
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed when the block ends, rolled back if it raises."""
        conn = self._open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def register_items(self, items: Iterable[Item]) -> int:
        """Add the study's items (already known ones are kept as they are); returns how many were new."""
        rows = []
        for item in items:
            check_text(item.item_id, "item id")
            if isinstance(item.scale, bool) or not isinstance(item.scale, int) or item.scale < 1:
                raise SRError(f"item {item.item_id}: scale must be a positive integer, got {item.scale!r}")
            rows.append((item.item_id, item.image, item.method, item.scale))
        now = utc_now()
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO items (item_id, image, method, scale, added_at) VALUES (?, ?, ?, ?, ?)",
                [(*row, now) for row in rows],
            )
            return conn.total_changes - before

    def items(self) -> list[Item]:
        """Every item ever registered, ordered by id."""
        with self._read() as conn:
            rows = conn.execute("SELECT item_id, image, method, scale FROM items ORDER BY item_id").fetchall()
        return [Item(*row) for row in rows]

    def show(self, visitor_id: str, item_id: str) -> Shown:
        """Record that ``item_id`` is being shown to ``visitor_id``; returns the token its rating must quote.

        Raises UnknownItemError for an item not in the study, AlreadyShownError if this visitor has seen it.
        """
        check_text(visitor_id, "visitor id")
        check_text(item_id, "item id")
        token = secrets.token_urlsafe(18)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM items WHERE item_id = ?", (item_id,)).fetchone() is None:
                raise UnknownItemError(f"unknown item {item_id!r}")
            try:
                conn.execute(
                    "INSERT INTO shown (token, visitor_id, item_id, shown_at) VALUES (?, ?, ?, ?)",
                    (token, visitor_id, item_id, utc_now()),
                )
            except sqlite3.IntegrityError:
                raise AlreadyShownError(f"item {item_id!r} was already shown to this visitor") from None
        return Shown(token=token, visitor_id=visitor_id, item_id=item_id)

    def seen(self, visitor_id: str) -> set[str]:
        """Ids of the items already shown to ``visitor_id``."""
        with self._read() as conn:
            rows = conn.execute("SELECT item_id FROM shown WHERE visitor_id = ?", (visitor_id,)).fetchall()
        return {row[0] for row in rows}

    def add_rating(self, visitor_id: str, item_id: str, score: object, *, token: str) -> Rating:
        """Store one score for an item shown to the visitor under ``token``, checked inside the transaction.

        Raises BadScoreError, UnknownItemError, NotShownError or ReplayedRatingError, writing nothing.
        """
        value = check_score(score)
        check_text(visitor_id, "visitor id")
        check_text(item_id, "item id")
        check_text(token, "token")
        created = utc_now()
        with self._write() as conn:
            item = conn.execute("SELECT image, method, scale FROM items WHERE item_id = ?", (item_id,)).fetchone()
            if item is None:
                raise UnknownItemError(f"unknown item {item_id!r}")
            shown = conn.execute("SELECT visitor_id, item_id FROM shown WHERE token = ?", (token,)).fetchone()
            if shown is None or shown[0] != visitor_id or shown[1] != item_id:
                raise NotShownError(f"item {item_id!r} was not shown to this visitor under this token")
            if conn.execute("SELECT 1 FROM ratings WHERE token = ?", (token,)).fetchone() is not None:
                raise ReplayedRatingError(f"item {item_id!r} has already been rated by this visitor")
            image, method, scale = item
            cursor = conn.execute(
                "INSERT INTO ratings (item_id, method, scale, score, visitor_id, created_at, token) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (item_id, method, scale, value, visitor_id, created, token),
            )
            rating_id = int(cursor.lastrowid or 0)
        return Rating(rating_id, item_id, image, method, scale, value, visitor_id, created)

    def count(self) -> int:
        """Number of stored ratings."""
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0])

    def ratings(self) -> list[Rating]:
        """Every stored rating, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT r.id, r.item_id, i.image, r.method, r.scale, r.score, r.visitor_id, r.created_at "
                "FROM ratings AS r JOIN items AS i ON i.item_id = r.item_id ORDER BY r.id"
            ).fetchall()
        return [Rating(*row) for row in rows]

    def visitors(self) -> int:
        """Number of distinct visitors who rated at least once."""
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(DISTINCT visitor_id) FROM ratings").fetchone()[0])

    def method_scores(self, confidence: float = 0.95) -> list[MethodScore]:
        """MOS, std and t confidence interval per (method, scale), best MOS first within each scale."""
        groups: dict[tuple[str, int], list[int]] = {}
        with self._read() as conn:
            for method, scale, score in conn.execute("SELECT method, scale, score FROM ratings ORDER BY id"):
                groups.setdefault((method, scale), []).append(score)
        result = [MethodScore(m, s, summarize_scores(v, confidence)) for (m, s), v in groups.items()]
        result.sort(key=lambda r: (r.scale, -r.summary.mean, r.method))
        return result

    def write_csv(self, target: str | os.PathLike | IO[str]) -> int:
        """Write all ratings as CSV (header :data:`CSV_FIELDS`) to a path or text stream; returns the rows."""
        rows = self.ratings()
        if isinstance(target, (str, os.PathLike)):
            path = Path(target)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "w", newline="", encoding="utf-8") as fh:
                    _write_rows(fh, rows)
            except OSError as exc:
                raise SRError(f"{path}: cannot write the CSV ({exc.strerror or exc})") from exc
        else:
            _write_rows(target, rows)
        return len(rows)

    def csv_text(self) -> str:
        """All ratings as CSV text."""
        buffer = io.StringIO()
        self.write_csv(buffer)
        return buffer.getvalue()


def _write_rows(fh: IO[str], rows: list[Rating]) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        writer.writerow([r.id, r.item_id, r.image, r.method, r.scale, r.score, r.visitor_id, r.created_at])
