"""tokentrail: know what every LLM call costs.

Instrument once, at start-up::

    import tokentrail
    tokentrail.instrument()

Every call made through an instrumented SDK then produces an OpenTelemetry span and metrics with
exact token counts and its cost in USD. See the README for configuration and the attribute and
metric reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._setup import add_sink, flush, instrument, instrumented, reset_summary, summary, uninstrument
from ._version import __version__
from .budgets import BudgetAlert, BudgetExceeded, budget
from .config import ConfigError
from .context import attribute, price_context, span
from .pricing import Cost, PriceOverrideError
from .records import CallRecord
from .usage import Usage

if TYPE_CHECKING:
    from .estimation import Estimate, estimate

__all__ = [
    "BudgetAlert",
    "BudgetExceeded",
    "CallRecord",
    "ConfigError",
    "Cost",
    "Estimate",
    "PriceOverrideError",
    "Usage",
    "__version__",
    "add_sink",
    "attribute",
    "budget",
    "estimate",
    "flush",
    "instrument",
    "instrumented",
    "price_context",
    "reset_summary",
    "span",
    "summary",
    "uninstrument",
]


def __getattr__(name: str) -> Any:
    # The pre-flight estimate loads on first use: it is not needed to instrument (start-up).
    if name in ("Estimate", "estimate"):
        from . import estimation

        return getattr(estimation, name)
    raise AttributeError(f"module 'tokentrail' has no attribute {name!r}")
