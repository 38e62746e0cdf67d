"""What the active instrumentation shares with the layers below the call lifecycle.

``instrument()`` builds one :class:`Runtime` (settings and pricer) and the lifecycle installs it
together with the services only the lifecycle can provide (opening a roll-up span). Attribution,
estimates and budgets read it here: they sit below the lifecycle and never import it, so the
dependency graph stays one-way (see ``docs/architecture.md``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .pricing import Pricer

__all__ = ["Runtime", "current", "install", "pricer"]

UnitStarter = Callable[[str, Mapping[str, str]], Any]
"""Opens a roll-up span for a unit of work: ``(name, span attributes) -> unit or None``."""


@dataclass(slots=True)
class Runtime:
    """The settings and pricer of the current ``instrument()``, and the lifecycle's services."""

    settings: Settings
    pricer: Pricer
    start_unit: UnitStarter | None = None
    """Set by the lifecycle when it installs this runtime; None: no roll-up spans."""


_current: Runtime | None = None
_default_pricer: Pricer | None = None
_lock = threading.Lock()


def current() -> Runtime | None:
    """The runtime of the active instrumentation; None when tokentrail is not instrumented."""
    return _current


def install(runtime: Runtime | None) -> None:
    """Make ``runtime`` the active one (``None``: not instrumented). Called by the lifecycle."""
    global _current
    _current = runtime


def pricer() -> Pricer:
    """The active instrumentation's pricer (with the user's overrides), else one shared pricer
    over the bundled catalogue: estimates made before ``instrument()`` price the same way."""
    active = _current
    if active is not None:
        return active.pricer
    global _default_pricer
    with _lock:
        if _default_pricer is None:
            _default_pricer = Pricer()
        return _default_pricer
