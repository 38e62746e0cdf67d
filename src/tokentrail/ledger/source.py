"""Where the calls a report reads come from: one small interface over the local ledger and over a
fleet's store (ClickHouse), so every command asks its questions the same way of either.

A :class:`CallSource` answers :mod:`.query`'s questions with the same signatures, less the
connection, and the same results (:class:`~.query.Report`, ``(period, Totals)`` points, ledger
rows), and the questions about single calls of :mod:`.details` (the most expensive calls, latency
percentiles per model, cache writes read again, selected columns of every call). ``tokentrail
report | trend | export | forecast | whatif | advise | serve`` and the dashboard take one: a command
written against it works over the ledger and ClickHouse alike.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from . import details, query
from .details import ModelLatency
from .query import Filters, Group, Report, Totals

__all__ = ["CallSource", "LedgerSource", "spend_reader"]


class CallSource(Protocol):
    name: str
    """How reports name the source: ``ledger <path>``, ``clickhouse <url> <db>.<table>``."""

    def report(self, by: Sequence[str] = (), filters: Filters | None = None) -> Report: ...

    def top_groups(self, key: str, filters: Filters | None, limit: int) -> list[Group]:
        """The ``limit`` first groups of ``report([key], filters)``."""
        ...

    def trend(
        self, periods: int, *, hourly: bool = False, filters: Filters | None = None, now: float | None = None
    ) -> list[tuple[str, Totals]]: ...

    def export_rows(self, filters: Filters | None = None) -> tuple[int, Iterator[Any]]: ...

    def select_calls(
        self, filters: Filters, columns: Sequence[str], *, with_usage: bool = False
    ) -> Iterator[tuple[Any, ...]]:
        """``columns`` (ledger column names) of the matching calls in time order."""
        ...

    def top_calls(self, filters: Filters, limit: int) -> list[dict[str, Any]]: ...

    def latency_by_model(self, filters: Filters) -> dict[str | None, ModelLatency]: ...

    def cache_writes(self, filters: Filters) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    def check(self) -> None:
        """Raises unless the source can be read (a health check)."""

    def close(self) -> None: ...


class LedgerSource:
    """The local ledger (an open connection) as a :class:`CallSource`."""

    def __init__(self, connection: sqlite3.Connection, path: str | Path) -> None:
        self.connection = connection
        self.name = f"ledger {path}"

    def report(self, by: Sequence[str] = (), filters: Filters | None = None) -> Report:
        return query.report(self.connection, by, filters, source=self.name)

    def top_groups(self, key: str, filters: Filters | None, limit: int) -> list[Group]:
        return query.top_groups(self.connection, key, filters, limit)

    def trend(
        self, periods: int, *, hourly: bool = False, filters: Filters | None = None, now: float | None = None
    ) -> list[tuple[str, Totals]]:
        return query.trend(self.connection, periods, hourly=hourly, filters=filters, now=now)

    def export_rows(self, filters: Filters | None = None) -> tuple[int, Iterator[Any]]:
        return query.export_rows(self.connection, filters)

    def select_calls(
        self, filters: Filters, columns: Sequence[str], *, with_usage: bool = False
    ) -> Iterator[tuple[Any, ...]]:
        return details.select_calls(self.connection, filters, columns, with_usage=with_usage)

    def top_calls(self, filters: Filters, limit: int) -> list[dict[str, Any]]:
        return details.top_calls(self.connection, filters, limit)

    def latency_by_model(self, filters: Filters) -> dict[str | None, ModelLatency]:
        return details.latency_by_model(self.connection, filters)

    def cache_writes(self, filters: Filters) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return details.cache_writes(self.connection, filters)

    def check(self) -> None:
        self.connection.execute("SELECT 1 FROM calls LIMIT 1").fetchall()

    def close(self) -> None:
        self.connection.close()


def spend_reader(source: CallSource) -> Any:
    """A budget spend reader (``budgets.status.SpendReader``) over ``source``: what budget status and
    forecasts use when they read somewhere else than the local ledger (its first argument, the
    ledger's path, is ignored)."""

    def spent(_ledger: object, scope: Mapping[str, str], since: float | None, until: float) -> float:
        return source.report((), Filters(since, until, where=dict(scope))).totals.cost_usd or 0.0

    return spent
