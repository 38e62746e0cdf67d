"""How long tokentrail may make the application wait: ``TOKENTRAIL_FLUSH_TIMEOUT`` seconds.

The application's thread waits for tokentrail in ``flush()``, ``uninstrument()``, at exit, and in
a ``multiprocessing`` worker after each call (see :mod:`._fork`). What it may wait for is outside
our control: a ledger another process holds locked, an exporter's collector that does not answer.
Each such wait is bounded by this setting (default 1.5 s); what is left undone when it runs out
is counted, and said, never waited for longer.
"""

from __future__ import annotations

import math
import os

from .config import ConfigError, shown

__all__ = ["ENV_FLUSH_TIMEOUT", "configure", "flush_timeout"]

ENV_FLUSH_TIMEOUT = "TOKENTRAIL_FLUSH_TIMEOUT"
DEFAULT_FLUSH_TIMEOUT_S = 1.5
_MAX_S = 3600.0

_timeout = DEFAULT_FLUSH_TIMEOUT_S


def flush_timeout() -> float:
    """The bound, in seconds."""
    return _timeout


def parse(value: str | float | None, name: str = ENV_FLUSH_TIMEOUT) -> float:
    """Seconds from a setting: a number from 0 to 3600. Raises a one-line :class:`ConfigError`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_FLUSH_TIMEOUT_S
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().removesuffix("s"))
        except (ValueError, OverflowError):
            number = math.nan
    if not 0 <= number <= _MAX_S:  # NaN fails too
        raise ConfigError(f"{name}={shown(value)}: use a number of seconds from 0 to {_MAX_S:.0f}, e.g. 1.5")
    return number


def configure(environ: dict[str, str] | None = None) -> None:
    """Read the setting (at ``instrument()``: a bad value fails there, in one line)."""
    global _timeout
    env = os.environ if environ is None else environ
    _timeout = parse(env.get(ENV_FLUSH_TIMEOUT))
