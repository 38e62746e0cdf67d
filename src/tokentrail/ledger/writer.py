"""The ledger writer: a sink that queues each finished call and a background thread that writes.

The sink (:meth:`LedgerWriter.__call__`) only appends to a bounded queue. The writer thread turns
the queued calls into rows and writes them, with the rollup they add to, in one transaction per
flush interval (0.5 s by default, sooner past ``batch_size`` calls). A process killed outright
loses at most the calls of its last interval; SQLite's WAL keeps the file consistent.

Several processes may write one ledger: each transaction takes the write lock with
``BEGIN IMMEDIATE`` and waits for it at most ``TOKENTRAIL_FLUSH_TIMEOUT`` (1.5 s by default). A
ledger another process keeps locked longer never holds up the application: the writer thread gives
the batch back to its queue and tries again at its next interval (the queue's bound applies);
``flush()`` returns after that wait, the rows still queued and said so; at exit and on
``uninstrument()`` the rows left are counted as dropped (reason ``locked``) and said so. There,
where giving up loses rows, a ledger whose lock changes hands (other processes committing: many
workers sharing one ledger, all exiting at once) is not a locked one: the wait goes on while they
commit, up to 30 s in all.

A row SQLite refuses (text with a lone surrogate, an integer past 64 bits, a value of the wrong
type) never costs another row: the batch is sanitised (:func:`._rows.sanitise`: surrogates
escaped, integers clamped and the row flagged ``usage_inconsistent``) and tried again, then row by
row, so only a row that still fails is dropped (reason ``bad_row``).

Nothing here reaches the application. A full queue drops the call; a write that fails (disk
full, read-only file, a newer schema) drops its batch. All are counted in
``tokentrail.ledger.dropped`` (attribute ``tokentrail.ledger.reason``) and warned about once. A
ledger file deleted while the process runs is created again at the next flush. Expired rows are
pruned on the writer's thread (see :mod:`.retention`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import operator
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry import metrics

from .. import _safety, _waits
from .. import semconv as sc
from .._batcher import Batcher
from .._version import __version__
from ..records import CallRecord
from . import retention
from ._rows import row_from_record, sanitise
from ._schema import BUCKET_SECONDS, COLUMN_NAMES, DIMENSIONS, MEASURES, LedgerError, open_ledger

__all__ = ["LedgerWriter"]

# Rows go in many to a statement: executemany() steps SQLite once per row, releasing and retaking
# the GIL each time, and with the application's thread busy in Python every retake waits for a
# switch interval (CPython's convoy effect): 2,000 rows took 3 s instead of 5 ms. So rows go in
# up to _STATEMENT_ROWS to a statement, and the rest in statements of 64, 32, ... 1 rows.
#
# A statement names only the columns some row of its batch fills: binding a NULL costs pysqlite
# ~0.4 us (it looks for an adapter for None and finds none) where an int costs ~0.15, and a call's
# row is half NULLs (attribution, errors, cache and price details): naming only the filled columns
# took a batch's insert from ~21 to ~15 us a row. The columns left out take their default (NULL).
#
# sqlite3 keeps every prepared statement it has seen (up to 128; ~0.5 MiB for one of 128 rows),
# so the statements are bounded: eight sizes for each of at most _COLUMN_SETS sets of columns
# (~1 MiB a set); a batch filling another set names every column.
_STATEMENT_ROWS = 128
_COLUMN_SETS = 8
_ALL_COLUMNS = tuple(range(len(COLUMN_NAMES)))


@functools.lru_cache(maxsize=(_COLUMN_SETS + 1) * _STATEMENT_ROWS.bit_length())
def _insert_sql(columns: tuple[int, ...], rows: int) -> str:
    names = ", ".join(f'"{COLUMN_NAMES[i]}"' for i in columns)
    placeholders = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO calls ({names}) VALUES " + ", ".join([placeholders] * rows)


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


class _Inserter:
    """Inserts rows (in :data:`COLUMN_NAMES` order) naming only the columns they fill."""

    __slots__ = ("_column_sets", "_largest")

    def __init__(self) -> None:
        self._column_sets: set[tuple[int, ...]] = set()
        self._largest: int | None = None

    def __call__(self, connection: sqlite3.Connection, rows: list[Row]) -> int:
        """Insert ``rows``; returns the id of the last one."""
        columns = self._columns(rows)
        largest = self._largest
        if largest is None:  # the SQLite library's parameter limit (999 before 3.32)
            limit = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            largest = self._largest = max(1, min(_STATEMENT_ROWS, limit // len(COLUMN_NAMES)))
        pick = operator.itemgetter(*columns)
        start = 0
        last = 0
        for size in _statement_sizes(len(rows), largest):
            part = rows[start : start + size]
            start += size
            last = connection.execute(
                _insert_sql(columns, size), list(itertools.chain.from_iterable(map(pick, part)))
            ).lastrowid
        return last

    def _columns(self, rows: list[Row]) -> tuple[int, ...]:
        count = len(rows)
        if len(rows[0]) != len(COLUMN_NAMES):  # refused like a row SQLite refuses (zip checks the rest)
            raise ValueError(f"a row of {len(rows[0])} values for {len(COLUMN_NAMES)} columns")
        # The columns where some row is not None, counted in C (a generator here cost ~10 us cold).
        nones = map(tuple.count, zip(*rows, strict=True), itertools.repeat(None))
        filled = tuple(itertools.compress(_ALL_COLUMNS, map(operator.ne, nones, itertools.repeat(count))))
        if filled in self._column_sets:
            return filled
        if len(self._column_sets) < _COLUMN_SETS and len(filled) > 1:  # itemgetter of one: no tuple
            self._column_sets.add(filled)
            return filled
        return _ALL_COLUMNS


_DIMENSION_SQL = ", ".join(f'"{name}"' for name in DIMENSIONS)
# The batch just inserted (ids from ? on: see _transaction), added up per bucket and dimensions
# into the rollup by SQLite itself: the same MEASURES a report computes over raw rows.
_ROLLUP_UPSERT = (
    f"INSERT INTO rollup (bucket, {_DIMENSION_SQL}, {', '.join(MEASURES)}) "
    f"SELECT CAST(start_time / {BUCKET_SECONDS} AS INTEGER) * {BUCKET_SECONDS}, "
    + ", ".join(f"COALESCE(\"{name}\", '{'{}' if name == 'labels' else ''}')" for name in DIMENSIONS)
    + f", {', '.join(MEASURES.values())} FROM calls WHERE id >= ? "
    f"GROUP BY {', '.join(str(i) for i in range(1, len(DIMENSIONS) + 2))} "
    f"ON CONFLICT (bucket, {_DIMENSION_SQL}) DO UPDATE SET "
    + ", ".join(f"{m} = {m} + excluded.{m}" for m in MEASURES)
)
# A refused row, rather than a refusing database: sanitise and retry, row by row if need be.
_ROW_ERRORS = (
    OverflowError,
    UnicodeError,
    ValueError,
    TypeError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
)
_PRUNE_EVERY_S = 3600.0
# Waiting for the write lock: in slices, to notice other writers' commits between them, and never
# longer than this in all, however busy the ledger.
_BUSY_SLICE_MS = 100
_BUSY_CAP_S = 30.0


Row = tuple[Any, ...]


def _refused(exc: BaseException) -> bool:
    """A row SQLite refused (the row's fault), rather than a database that refuses writes."""
    if isinstance(exc, sqlite3.OperationalError):
        return "overflow" in str(exc)  # SQLite's SUM() in the rollup: an integer overflow
    return isinstance(exc, _ROW_ERRORS)


class _Locked(Exception):
    """Another process held the write lock past the wait allowed."""


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
        self._busy_ms: int | None = None  # the connection's busy_timeout, as last set by _transaction
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
        self._insert = _Inserter()
        self.retention = retention.Retention.from_env()
        self._next_prune = 0.0  # the first write prunes: a ledger may have been idle for months
        self._give_up_at: float | None = None  # set by flush() / close(): no wait beyond it

    # --- the sink: tokentrail's recorder thread (or whichever drains it) ---------------------------

    def __call__(self, record: CallRecord) -> None:
        self._submit(record)

    def submit_row(self, row: tuple[Any, ...]) -> None:
        """Queue a ready-made ``calls`` row (in :data:`COLUMN_NAMES` order)."""
        self._submit(row)

    # --- control ------------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything queued so far, on this thread, waiting at most ``timeout`` seconds
        (default ``TOKENTRAIL_FLUSH_TIMEOUT``) for a ledger locked by another process. False when
        calls are left queued (written later by the writer thread), which is said once."""
        limit = _waits.flush_timeout() if timeout is None else timeout
        self._give_up_at = time.monotonic() + limit
        try:
            done = self._batcher.flush(limit)
        finally:
            self._give_up_at = None
        if not done:
            _safety.warn_once(
                ("ledger.flush_locked", str(self.path)),
                "tokentrail: flush() stopped waiting for the ledger at %s after %.1f s (another "
                "process holds it locked); %d call(s) are still queued and will be written when it "
                "is free. TOKENTRAIL_FLUSH_TIMEOUT sets the wait.",
                self.path,
                limit,
                self.pending,
            )
        return done

    def close(self) -> None:
        """Write everything queued, stop the writer thread and close the database, waiting at
        most ``TOKENTRAIL_FLUSH_TIMEOUT`` for a locked ledger: rows still queued are dropped then,
        counted and said."""
        self._give_up_at = time.monotonic() + _waits.flush_timeout()
        self._batcher.close()
        left = self._batcher.take_all()
        if left:
            self._gave_up(len(left))

    @property
    def pending(self) -> int:
        return self._batcher.pending

    # --- the writer thread ------------------------------------------------------------------------

    def _write(self, batch: list[Any]) -> list[Any] | None:
        """Write one batch; give it back (to be tried again later) when the ledger stays locked."""
        rows = self._rows(batch)
        connection = self._open()
        if connection is None:
            self._drop(len(rows), "write_error")
            return None
        give_up_at = time.monotonic() + _waits.flush_timeout()
        if self._give_up_at is not None:
            give_up_at = min(give_up_at, self._give_up_at)
        try:
            self._write_rows(connection, rows, give_up_at)
        except _Locked:
            if self._batcher._exiting or self._batcher._closed:
                self._gave_up(len(rows))
                return None
            _safety.warn_once(
                ("ledger.locked", str(self.path)),
                "tokentrail: the ledger at %s has been locked by another process for more than "
                "%.1f s; %d call(s) wait in memory and are written when it is free (calls beyond the "
                "queue's bound are dropped and counted in tokentrail.ledger.dropped). The "
                "application is unaffected.",
                self.path,
                _waits.flush_timeout(),
                len(rows),
            )
            return rows
        except sqlite3.DatabaseError as exc:
            self._failed(exc, len(rows))
            return None
        if threading.current_thread() is self._batcher._thread:
            self._prune_if_due(connection)
        return None

    def _rows(self, batch: list[Any]) -> list[tuple[Any, ...]]:
        service = self.service
        rows = []
        for item in batch:
            if isinstance(item, tuple):
                rows.append(item)
                continue
            try:
                rows.append(row_from_record(item, service))
            except Exception as exc:  # a record we cannot read: that call alone is lost
                _safety.internal_error("ledger.row", exc)
                self._drop(1, "bad_row")
        return rows

    def _write_rows(self, connection: sqlite3.Connection, rows: list[Row], give_up_at: float) -> None:
        """Write ``rows``; a batch SQLite refuses is sanitised, then split row by row, so only
        the rows that still fail are dropped (counted as ``bad_row``)."""
        try:
            self._transaction(connection, rows, give_up_at)
            return
        except Exception as exc:
            if not _refused(exc):
                raise
            first_error: BaseException = exc
        cleaned = [sanitise(row)[0] for row in rows]
        try:
            self._transaction(connection, cleaned, give_up_at)
        except Exception as exc:
            if not _refused(exc):
                raise
        else:
            _safety.warn_once(
                ("ledger.sanitised", str(self.path), type(first_error).__name__),
                "tokentrail: a call's row could not be stored as it was (%s); it was stored with "
                "the value escaped or clamped (clamped counts are flagged usage_inconsistent).",
                type(first_error).__name__,
            )
            return
        bad = 0
        for row in cleaned:
            try:
                self._transaction(connection, [row], give_up_at)
            except Exception as exc:
                if not _refused(exc):
                    raise
                bad += 1
                _safety.internal_error("ledger.bad_row", exc)
        if bad:
            self._drop(bad, "bad_row")

    def _transaction(self, connection: sqlite3.Connection, rows: list[Row], give_up_at: float) -> None:
        """One transaction: the rows and the rollup they add to. Waits for the write lock until
        ``give_up_at`` (monotonic), then raises :class:`_Locked`.

        When giving up would lose the rows (closing, exiting), a lock that changes hands is not
        a locked ledger: while other writers commit (``PRAGMA data_version`` moves), the wait goes
        on, up to :data:`_BUSY_CAP_S`; it ends at ``give_up_at`` only when nobody commits."""
        if not rows:
            return
        patient = self._batcher._closed or self._batcher._exiting
        cap = time.monotonic() + _BUSY_CAP_S
        seen = None
        while True:
            now = time.monotonic()
            left_ms = int((min(give_up_at, cap) - now) * 1000)
            try:
                busy_ms = max(0, min(left_ms, _BUSY_SLICE_MS))
                if busy_ms != self._busy_ms:  # the same slice every time but the last few: set once
                    connection.execute(f"PRAGMA busy_timeout = {busy_ms}")
                    self._busy_ms = busy_ms
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                now = time.monotonic()
                if patient:
                    version = connection.execute("PRAGMA data_version").fetchone()[0]
                    if seen is not None and version != seen:  # another process committed
                        give_up_at = max(give_up_at, now + _waits.flush_timeout())
                    seen = version
                if now >= give_up_at or now >= cap:
                    raise _Locked from None
                time.sleep(0.005)  # SQLite's own wait can end early (a reader's WAL snapshot)
                continue
            break
        try:
            # Holding the write lock, the batch's ids run on from the largest one so far (SQLite
            # gives a row without one the largest id plus one; it would pick at random only past
            # 2**63 - 1, which takes an id set by hand: tokentrail sets none), so they end at the
            # last one inserted, with no query for the largest id first.
            last = self._insert(connection, rows)
            connection.execute(_ROLLUP_UPSERT, (last - len(rows) + 1,))
            connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        self.written += len(rows)

    def _prune_if_due(self, connection: sqlite3.Connection) -> None:
        """One step of pruning, at most once an hour (sooner while a step finds more to do)."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        try:
            deleted = retention.prune_step(connection, self.retention)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                _safety.internal_error("ledger.prune", exc)
            deleted = 0
        except sqlite3.DatabaseError as exc:
            _safety.internal_error("ledger.prune", exc)
            deleted = 0
        more = deleted >= retention.STEP_ROWS
        self._next_prune = now + (0.0 if more else _PRUNE_EVERY_S)

    def _gave_up(self, rows: int) -> None:
        """Exit or uninstrument() with the ledger still locked: the rows left are lost, and said."""
        self._drop(rows, "locked")
        _safety.warn_once(
            ("ledger.gave_up", str(self.path)),
            "tokentrail: %d call(s) not written to the ledger at %s: another process kept it locked "
            "for more than %.1f s (TOKENTRAIL_FLUSH_TIMEOUT); counted in tokentrail.ledger.dropped.",
            rows,
            self.path,
            _waits.flush_timeout(),
        )

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
        self._busy_ms = None
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
        description="Calls not written to the local ledger (queue full, write error, bad row, locked)",
    )
