"""Budgets: alerts before the bill, and hard stops before the request.

:mod:`.budget`: the budget and its state; :mod:`.window`: window arithmetic; :mod:`.enforcement`:
the lifecycle's side (reserve, settle, announce); :mod:`.loading`: configured budgets;
:mod:`.status`: status rows for the CLI and the API.

A :class:`budget` is a USD limit over the calls whose attribution matches its ``scope`` (all calls
when the scope is empty), within a window: ``per_run`` (the life of the budget object), a fixed
period (``30m``, ``1h``, ``1d``: aligned to the epoch) or ``day`` (a calendar day in a time zone).

Before each call the lifecycle asks :func:`check` for the call's *worst case* (estimated input
tokens plus their margin, plus the request's ``max_tokens`` or
:data:`~tokentrail.estimate.DEFAULT_MAX_OUTPUT_TOKENS`, at the model's prices) and reserves it on
every budget that applies. In ``raise`` mode a reservation that would take spend + reservations
over the limit is refused with :class:`BudgetExceeded`, before any request is sent. When the call
has ended, tokentrail's recorder thread prices it and replaces its reservation by its real cost
(:func:`settle_budgets`); thresholds crossed then fire once each, from that thread: a span event
on that call (added by the lifecycle), a warning log, and the ``on_alert`` callback.

Until then the call's reservation, its worst case, stands in for its cost, so a decision can only
be more cautious than one made on real spend. It is never more cautious than that: before it
refuses a call, :func:`check` has every ended call settled and decides again; and reading a
budget (``spent_usd``, ``status()``) settles ended calls first. Pricing at the end of the call on
the application's thread instead would cost every budgeted call about 25 microseconds.

Budgets declared with ``shared=True`` add the ledger's spend for the window (other processes'
calls), re-read at most every ``refresh_s`` seconds through the reader ``instrument()`` hands in;
other budgets keep their spend in memory.
"""

from __future__ import annotations

from .. import semconv as sc
from .budget import (
    MODES,
    UNKNOWN_POLICIES,
    BudgetAlert,
    BudgetExceeded,
    Reservation,
    _by_name,
    active_budgets,
    budget,
    configure,
    configured,
    named_budgets,
    read_spend_with,
    settle_ended_with,
)
from .enforcement import announce, check, settle_budgets, worst_case
from .loading import load
from .status import budget_statuses

__all__ = [
    "EVENT_THRESHOLD",
    "METRIC_REMAINING",
    "METRIC_SPEND",
    "MODES",
    "UNKNOWN_POLICIES",
    "BudgetAlert",
    "BudgetExceeded",
    "Reservation",
    "_by_name",
    "active_budgets",
    "announce",
    "budget",
    "budget_statuses",
    "check",
    "configure",
    "configured",
    "load",
    "named_budgets",
    "read_spend_with",
    "settle_budgets",
    "settle_ended_with",
    "worst_case",
]

EVENT_THRESHOLD = sc.BUDGET_THRESHOLD_EVENT
METRIC_SPEND = sc.METRIC_BUDGET_SPEND
METRIC_REMAINING = sc.METRIC_BUDGET_REMAINING
