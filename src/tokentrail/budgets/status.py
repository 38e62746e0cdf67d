"""Budget status for the CLI (``tokentrail budget status``) and the API (``/v1/budgets``)."""

from __future__ import annotations

import time
from typing import Any

from .budget import SpendReader
from .loading import load

__all__ = ["budget_statuses"]


def budget_statuses(
    path: str, ledger: Any, spend: SpendReader, now: float | None = None
) -> list[dict[str, Any]]:
    """Each budget configured in ``path`` with its spend in its current window, from the ledger.

    What ``tokentrail budget status`` prints and ``tokentrail serve`` answers on ``/v1/budgets``;
    ``spend`` reads the ledger (``tokentrail.ledger.spend``)."""
    now = time.time() if now is None else now
    found = []
    for each in load(path):
        start = each._window.start(now)
        per_run = each.window == "per_run"
        # A per_run budget lives in one process; the ledger can show only all-time spend in scope.
        spent = spend(ledger, each.scope, start, now + 1)
        note = "per_run: in-process only; the ledger shows all-time spend in scope" if per_run else ""
        found.append({**each.status_row(spent, start), "note": note})
    return found
