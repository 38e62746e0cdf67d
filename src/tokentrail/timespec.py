"""Times as people type them: ``7d``, ``24h``, ``today``, ``2026-11-01T14:30``.

One parser for every place that takes a time from a person (the CLI's ``--since`` / ``--until``,
the dashboard's URL), so both accept the same forms and say the same thing about a bad one.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

__all__ = ["FORMS", "PATTERN", "parse_when"]

FORMS = "a date (2026-11-01), a date and time (2026-11-01T14:30), or a span back from now (30m, 24h, 7d, 2w)"

# The forms as a regular expression (an HTTP API documents and holds its parameters to it; a string
# can match it and still not be a date, e.g. 2026-02-30, which parse_when then refuses).
PATTERN = re.compile(
    r"^(\d+(\.\d+)?(s|m|min|h|d|w)|now|today|yesterday|"
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)$"
)
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_FARTHEST_BACK_S = 200 * 365 * 86400  # farther back than any ledger, near enough for every date type


def shown(text: str, limit: int = 60) -> str:
    """A time as typed, for a one-line error: quoted, undecodable bytes escaped, cut short."""
    quoted = f"'{text.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')}'"
    return quoted if len(quoted) <= limit else f"{quoted[: limit - 4]}...'"


def parse_when(text: str, now: float | None = None) -> float:
    """Epoch seconds from ``7d`` / ``24h`` / ``30m`` (that long ago), ``today``, ``yesterday``,
    ``now``, a date (local midnight) or an ISO 8601 date and time (local unless it has an offset).

    Raises ``ValueError`` naming the accepted forms."""
    current = datetime.now() if now is None else datetime.fromtimestamp(now)
    value = text.strip().lower()
    relative = _RELATIVE.match(value)
    if relative:
        back = float(relative.group(1)) * _UNITS[relative.group(2)]
        if back > _FARTHEST_BACK_S:
            raise ValueError(f"{shown(text)} is too far back: use at most 200 years (e.g. 7d, 52w)")
        return current.timestamp() - back
    midnight = current.replace(hour=0, minute=0, second=0, microsecond=0)
    if value == "now":
        return current.timestamp()
    if value == "today":
        return midnight.timestamp()
    if value == "yesterday":
        return (midnight - timedelta(days=1)).timestamp()
    try:
        return datetime.fromisoformat(text.strip()).timestamp()  # naive: local time
    except (ValueError, OverflowError, OSError):  # not a time, or one no clock can show (year 1)
        raise ValueError(f"{shown(text)} is not a time: use {FORMS}") from None
