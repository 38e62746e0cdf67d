"""Window arithmetic: where a budget's current window starts and ends."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .._safety import shown

__all__ = ["Window"]

_PERIOD = re.compile(r"^(\d+)\s*([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Window:
    """A budget's window: ``per_run``, a fixed period aligned to the epoch, or a calendar ``day``."""

    def __init__(self, spec: str, timezone: str | None) -> None:
        self.spec = spec
        self.seconds: int | None = None
        self.zone: Any = None
        if timezone is not None and not isinstance(timezone, str):
            raise ValueError(
                f"budget: timezone must be an IANA name such as 'Europe/Paris', not {shown(timezone)}"
            )
        if spec == "per_run":
            if timezone:
                raise ValueError("budget: timezone applies only to window='day'")
            return
        if spec == "day":
            try:
                self.zone = ZoneInfo(timezone or "UTC")
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"budget: unknown timezone {shown(timezone)} (use an IANA name)") from exc
            return
        # fullmatch: "$" alone would also accept a trailing newline ("1h\n").
        match = _PERIOD.fullmatch(spec) if isinstance(spec, str) else None
        if match is None or int(match.group(1)) <= 0:
            raise ValueError(
                f"budget: window {shown(spec)} is not valid; use 'per_run', a period like '30m', '1h', '1d', "
                "or 'day' (a calendar day, with timezone=...)"
            )
        if timezone:
            raise ValueError("budget: timezone applies only to window='day'")
        self.seconds = int(match.group(1)) * _SECONDS[match.group(2)]

    def start(self, now: float) -> float | None:
        """The start of the window holding ``now`` (epoch seconds); ``None`` for per_run."""
        if self.seconds is not None:
            return now - now % self.seconds
        if self.zone is not None:
            local = datetime.fromtimestamp(now, self.zone)
            return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        return None

    def end(self, start: float | None) -> float | None:
        if start is None:
            return None
        if self.seconds is not None:
            return start + self.seconds
        day = datetime.fromtimestamp(start, self.zone)
        return (day.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=self.zone).timestamp()
