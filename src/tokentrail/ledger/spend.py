"""What the ledger says was spent: the reader behind ``shared=True`` budgets and budget status."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..config import ENV_LEDGER, ledger_location
from ._schema import open_ledger

__all__ = ["spend"]


def spend(
    ledger: str | os.PathLike[str] | None, scope: Mapping[str, str], since: float | None, until: float
) -> float:
    """USD spent by the calls in ``scope`` in [since, until) according to the ledger at ``ledger``
    (None: ``TOKENTRAIL_LEDGER``, else the per-user default); 0 when there is no ledger yet."""
    path = Path(ledger).expanduser() if ledger else ledger_location(os.environ.get(ENV_LEDGER))
    if path is None or not path.exists():
        return 0.0
    # Imported at the first read, not with the ledger: instrument() hands this function to the
    # budgets, and an application without a shared budget never reads; the query module takes
    # about 2 ms of every start-up to import (tests/test_architecture.py lists it as deferred).
    from .query import Filters, report

    connection = open_ledger(path, create=False)
    try:
        filters = Filters(since=since, until=until, where=dict(scope))
        return report(connection, (), filters).totals.cost_usd or 0.0
    finally:
        connection.close()
