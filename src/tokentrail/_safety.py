"""Instrumentation never raises into the application: errors are logged once and counted.

Every entry point that runs inside a user's call (the SDK wrappers, stream proxies, the call
lifecycle, sinks) catches its own exceptions and hands them here. A failure is logged with its
traceback the first time a (place, exception type) pair is seen and only counted after that, so
a bug on the hot path cannot flood the application's logs.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import _fork

log = logging.getLogger("tokentrail")

_seen: set[tuple[str, type[BaseException]]] = set()
_lock = threading.Lock()
_fork.renew_locks(sys.modules[__name__], "_lock")
_counter: Callable[[str], None] | None = None
errors_total = 0


def set_error_counter(counter: Callable[[str], None] | None) -> None:
    """Route error counts to a metric (installed by the telemetry set-up)."""
    global _counter
    _counter = counter


def internal_error(where: str, exc: BaseException) -> None:
    """Record an error inside tokentrail itself. Never raises."""
    global errors_total
    try:
        key = (where, type(exc))
        with _lock:
            errors_total += 1
            first = key not in _seen
            _seen.add(key)
        if first:
            log.warning(
                "tokentrail: internal error in %s (the application is unaffected; "
                "further errors of this kind are counted, not logged)",
                where,
                exc_info=exc,
            )
        if _counter is not None:
            _counter(where)
    except Exception:  # pragma: no cover - last line of defence
        pass


def warn_once(key: object, message: str, *args: object) -> None:
    """Log a warning the first time ``key`` is seen."""
    with _lock:
        if ("warn", key) in _seen:  # type: ignore[comparison-overlap]
            return
        _seen.add(("warn", key))  # type: ignore[arg-type]
    log.warning(message, *args)


def reset_for_tests() -> None:
    global errors_total
    with _lock:
        _seen.clear()
        errors_total = 0


def shown_path(path: Any, limit: int = 80) -> str:
    """A file path for an error message, cut to ``limit`` characters at its start, not its end: the
    file's name is the part a reader needs (``'.../config/budgets.toml'``)."""
    text = repr(os.fsdecode(path))
    if len(text) <= limit:
        return text
    return f"{text[0]}...{text[len(text) - (limit - 4) :]}"


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters: a bad value can be huge
    (an integer past Python's 4300-digit ``repr`` limit, a whole file), the message stays short."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails, or an integer too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
