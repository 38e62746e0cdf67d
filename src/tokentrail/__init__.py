"""tokentrail: know what every LLM call costs.

Instrument once, at start-up::

    import tokentrail
    tokentrail.instrument()

Every call made through an instrumented SDK then produces an OpenTelemetry span and metrics with
exact token counts and its cost in USD. See the README for configuration and the attribute and
metric reference.
"""

from __future__ import annotations

from ._setup import add_sink, flush, instrument, instrumented, reset_summary, summary, uninstrument
from ._version import __version__
from .budgets import BudgetAlert, BudgetExceeded, budget
from .config import ConfigError
from .context import attribute, price_context, span
from .estimation import Estimate, estimate
from .pricing import Cost, PriceOverrideError
from .records import CallRecord
from .usage import Usage

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
