"""The ledger writer: a sink that queues each finished call and a background thread that writes.

The sink (:meth:`LedgerWriter.__call__`) only appends to a bounded queue. The writer thread turns
the queued calls into rows and writes them, with the rollup they add to, in one transaction per
flush interval (0.5 s by default, sooner past ``batch_size`` calls). A process killed outright
loses at most the calls of its last interval; SQLite's WAL keeps the file consistent.

Several processes may write one ledger: each transaction takes the write lock with
``BEGIN IMMEDIATE`` and waits for it (``busy_timeout``), retrying a few times after that.

Nothing here reaches the application. A full queue drops the call; a write that fails (disk
full, read-only file, lock never released, a newer schema) drops its batch. Both are counted in
``tokentrail.ledger.dropped`` (attribute ``tokentrail.ledger.reason``) and warned about once. A
ledger file deleted while the process runs is created again at the next flush.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry import metrics

from .. import _safety
from .. import semconv as sc
from .._batcher import Batcher
from .._version import __version__
from ..records import CallRecord
from ._rows import row_from_record
from ._schema import BUCKET_SECONDS, COLUMN_NAMES, DIMENSIONS, MEASURES, LedgerError, open_ledger

__all__ = ["LedgerWriter"]

_COLUMN_SQL = ", ".join(f'"{name}"' for name in COLUMN_NAMES)
_ROW_PLACEHOLDERS = f"({', '.join('?' * len(COLUMN_NAMES))})"
# Rows go in many to a statement: executemany() steps SQLite once per row, releasing and retaking
# the GIL each time, and with the application's thread busy in Python every retake waits for a
# switch interval (CPython's convoy effect): 2,000 rows took 3 s instead of 5 ms. So rows go in
# as many to a statement as the SQLite library's parameter limit allows (32,766 since 3.32), and
# the rest in statements of 512, 256, ... 1 rows: a dozen statement sizes in all, since sqlite3
# keeps every prepared statement it has seen (128 of them), and one for each batch size seen
# would hold hundreds of megabytes.


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    return f"INSERT INTO calls ({_COLUMN_SQL}) VALUES " + ", ".join([_ROW_PLACEHOLDERS] * rows)


def _statement_sizes(rows: int, largest: int) -> list[int]:
    sizes = [largest] * (rows // largest)
    rest = rows % largest
    size = 1 << max(0, min(rest, largest).bit_length() - 1)
    while rest:
        if size <= rest:
            sizes.append(size)
            rest -= size
        size >>= 1
    return sizes


def _insert(connection: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    largest = max(1, connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMN_NAMES))
    start = 0
    for size in _statement_sizes(len(rows), largest):
        part = rows[start : start + size]
        start += size
        connection.execute(_insert_sql(size), [value for row in part for value in row])


_DIMENSION_SQL = ", ".join(f'"{name}"' for name in DIMENSIONS)
# The batch just inserted (ids from ? on), added up per bucket and dimensions into the rollup by
# SQLite itself: the same MEASURES a report computes over raw rows.
_ROLLUP_UPSERT = (
    f"INSERT INTO rollup (bucket, {_DIMENSION_SQL}, {', '.join(MEASURES)}) "
    f"SELECT CAST(start_time / {BUCKET_SECONDS} AS INTEGER) * {BUCKET_SECONDS}, "
    + ", ".join(f"COALESCE(\"{name}\", '{'{}' if name == 'labels' else ''}')" for name in DIMENSIONS)
    + f", {', '.join(MEASURES.values())} FROM calls WHERE id >= ? "
    f"GROUP BY {', '.join(str(i) for i in range(1, len(DIMENSIONS) + 2))} "
    f"ON CONFLICT (bucket, {_DIMENSION_SQL}) DO UPDATE SET "
    + ", ".join(f"{m} = {m} + excluded.{m}" for m in MEASURES)
)
_RETRIES = 3


class LedgerWriter:
    """A sink (``CallRecord -> None``) writing every call to the ledger at ``path``.

    Also accepts ready-made rows (:meth:`submit_row`), which the span exporter uses.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        service: str = "python",
        meter_provider: Any = None,
        flush_interval: float = 0.5,
        batch_size: int = 5_000,
        queue_size: int = 50_000,
    ) -> None:
        self.path = Path(path).expanduser()
        self.service = service
        self.written = 0
        self.dropped = 0
        self._connection: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._disabled_reason: str | None = None
        self._counter_lock = threading.Lock()
        self._dropped_counter = _dropped_counter(meter_provider)
        self._batcher = Batcher(
            "tokentrail-ledger",
            self._write,
            on_drop=self._drop,
            queue_size=queue_size,
            flush_interval=flush_interval,
            batch_size=batch_size,
            on_close=self._close_connection,
            on_fork=self._forget_connection,
        )
        self._submit = self._batcher.submit

    # --- the sink: tokentrail's recorder thread (or whichever drains it) ---------------------------

    def __call__(self, record: CallRecord) -> None:
        self._submit(record)

    def submit_row(self, row: tuple[Any, ...]) -> None:
        """Queue a ready-made ``calls`` row (in :data:`COLUMN_NAMES` order)."""
        self._submit(row)

    # --- control ------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything queued so far, on this thread."""
        self._batcher.flush()

    def close(self) -> None:
        """Write everything queued, stop the writer thread and close the database."""
        self._batcher.close()

    @property
    def pending(self) -> int:
        return self._batcher.pending

    # --- the writer thread ------------------------------------------------------------------------

    def _write(self, batch: list[Any]) -> None:
        service = self.service
        rows = [item if isinstance(item, tuple) else row_from_record(item, service) for item in batch]
        connection = self._open()
        if connection is None:
            self._drop(len(rows), "write_error")
            return
        for attempt in range(_RETRIES + 1):
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    # Holding the write lock, this batch's ids follow the largest one so far.
                    first = connection.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM calls").fetchone()[0]
                    _insert(connection, rows)
                    connection.execute(_ROLLUP_UPSERT, (first,))
                    connection.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if _is_busy(exc) and attempt < _RETRIES:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                self._failed(exc, len(rows))
                return
            except sqlite3.DatabaseError as exc:
                self._failed(exc, len(rows))
                return
            self.written += len(rows)
            return

    def _open(self) -> sqlite3.Connection | None:
        """The connection, (re)opened when missing or when the file was deleted or replaced."""
        connection = self._connection
        if connection is not None:
            try:
                stat = os.stat(self.path)
                identity = (stat.st_dev, stat.st_ino)
            except OSError:
                identity = None
            if identity == self._identity:
                return connection
            _safety.warn_once(
                ("ledger.replaced", str(self.path)),
                "tokentrail: the ledger %s was deleted or replaced while in use; writing to a new one",
                self.path,
            )
            self._close_connection()
        try:
            connection = open_ledger(self.path)
            stat = os.stat(self.path)
        except (LedgerError, sqlite3.Error, OSError) as exc:
            self._failed(exc, 0)
            return None
        self._connection = connection
        self._identity = (stat.st_dev, stat.st_ino)
        return connection

    def _forget_connection(self) -> None:
        # A connection must not cross a fork (SQLite's locks belong to the parent): the child
        # opens its own at its first flush and leaves the parent's alone.
        self._connection = None
        self._identity = None
        self.written = self.dropped = 0

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    def _failed(self, exc: BaseException, rows: int) -> None:
        if rows:
            self._drop(rows, "write_error")
        message = str(exc)
        # A broken connection (file gone, I/O error) is reopened at the next flush.
        broken = any(word in message for word in ("disk I/O", "readonly", "no such table"))
        if isinstance(exc, sqlite3.OperationalError) and self._connection is not None and broken:
            self._close_connection()
        _safety.warn_once(
            ("ledger.write", str(self.path), type(exc).__name__, _category(message)),
            "tokentrail: cannot write the ledger at %s (%s); calls are not being recorded there. "
            "The application is unaffected; dropped calls are counted in tokentrail.ledger.dropped. "
            "Set TOKENTRAIL_LEDGER to another file, or TOKENTRAIL_LEDGER=off.",
            self.path,
            message,
        )

    def _drop(self, count: int, reason: str) -> None:
        with self._counter_lock:
            self.dropped += count
        try:
            self._dropped_counter.add(count, {sc.LEDGER_DROP_REASON: reason})
        except Exception as exc:
            _safety.internal_error("ledger.dropped", exc)
        if reason == "queue_full":
            _safety.warn_once(
                ("ledger.queue_full", str(self.path)),
                "tokentrail: the ledger's queue is full (the writer cannot keep up); calls are being "
                "dropped from the ledger, counted in tokentrail.ledger.dropped. Spans and metrics are "
                "unaffected.",
            )


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _category(message: str) -> str:
    lowered = message.lower()
    for word in ("locked", "busy", "full", "readonly", "disk i/o", "unable to open", "newer"):
        if word in lowered:
            return word
    return "other"


def _dropped_counter(meter_provider: Any) -> Any:
    meter = metrics.get_meter("tokentrail", __version__, meter_provider)
    return meter.create_counter(
        sc.METRIC_LEDGER_DROPPED,
        unit="{call}",
        description="Calls not written to the local ledger (queue full or write error)",
    )
