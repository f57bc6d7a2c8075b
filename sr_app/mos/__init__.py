"""Mean opinion score (MOS) study: blind 1-5 ratings of upscaled images in SQLite, summarised per method.

- :class:`RatingStore`: the SQLite database (items, what was shown to whom, one row per rating).
- :class:`Study`: the items (test image x method x scale, plus the ground truth as a control), their cached
  lossless renders, and the draw of the next unseen item for a visitor.
- :func:`summarize_scores` / :func:`t_quantile` (from :mod:`sr_core.stats`): MOS, sample std and Student-t 95%
  confidence interval.
- ``python -m sr_app.mos report --db FILE [--csv OUT]``: the MOS table as Markdown, and all ratings as CSV.

The web study lives with the app; the statistics stay in the library, which never imports this package.
"""

from __future__ import annotations

from sr_core.stats import ScoreSummary, summarize_scores, t_quantile

from .store import (
    CSV_FIELDS,
    DEFAULT_DB,
    GROUND_TRUTH,
    SCORE_LABELS,
    AlreadyShownError,
    BadScoreError,
    Item,
    MethodScore,
    NotShownError,
    Rating,
    RatingError,
    RatingStore,
    ReplayedRatingError,
    Shown,
    UnknownItemError,
    check_score,
)
from .study import DEFAULT_SCALES, Study, StudyItem, build_items, find_images, image_key, offered_methods

__all__ = [
    "CSV_FIELDS",
    "DEFAULT_DB",
    "DEFAULT_SCALES",
    "GROUND_TRUTH",
    "SCORE_LABELS",
    "AlreadyShownError",
    "BadScoreError",
    "Item",
    "MethodScore",
    "NotShownError",
    "Rating",
    "RatingError",
    "RatingStore",
    "ReplayedRatingError",
    "ScoreSummary",
    "Shown",
    "Study",
    "StudyItem",
    "UnknownItemError",
    "build_items",
    "check_score",
    "find_images",
    "image_key",
    "offered_methods",
    "summarize_scores",
    "t_quantile",
]
