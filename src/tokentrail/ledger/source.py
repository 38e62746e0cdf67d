"""Where the calls a report reads come from: one small interface over the local ledger and over a
fleet's store (ClickHouse), so every command asks its questions the same way of either.

A :class:`CallSource` answers :mod:`.query`'s questions with the same signatures, less the
connection, and the same results (:class:`~.query.Report`, ``(period, Totals)`` points, ledger
rows). ``tokentrail report | trend | export | serve`` take one; a new command (a forecast, a
what-if) written against it works over the ledger and ClickHouse alike.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from . import query
from .query import Filters, Report, Totals

__all__ = ["CallSource", "LedgerSource"]


class CallSource(Protocol):
    name: str
    """How reports name the source: ``ledger <path>``, ``clickhouse <url> <db>.<table>``."""

    def report(self, by: Sequence[str] = (), filters: Filters | None = None) -> Report: ...

    def trend(
        self, periods: int, *, hourly: bool = False, filters: Filters | None = None, now: float | None = None
    ) -> list[tuple[str, Totals]]: ...

    def export_rows(self, filters: Filters | None = None) -> tuple[int, Iterator[Any]]: ...

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

    def trend(
        self, periods: int, *, hourly: bool = False, filters: Filters | None = None, now: float | None = None
    ) -> list[tuple[str, Totals]]:
        return query.trend(self.connection, periods, hourly=hourly, filters=filters, now=now)

    def export_rows(self, filters: Filters | None = None) -> tuple[int, Iterator[Any]]:
        return query.export_rows(self.connection, filters)

    def check(self) -> None:
        self.connection.execute("SELECT 1 FROM calls LIMIT 1").fetchall()

    def close(self) -> None:
        self.connection.close()
