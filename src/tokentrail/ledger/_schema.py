"""The ledger's SQLite schema: its versions, the forward migrations, and opening a ledger safely.

Two tables:

* ``calls``: one row per LLM call, every field of the call (see :data:`CALL_COLUMNS`).
* ``rollup``: the same calls added up per 15-minute bucket and per combination of the
  dimensions reports break down by (provider, model, operation, attribution, labels). It is
  written in the same transaction as the rows it sums, so it is never out of step with them; a
  report reads it instead of scanning every call, and reads raw rows only for the partial
  buckets at the edges of a time range. It is derived data: a migration may drop and rebuild it.

Every bucket is aligned to 15 minutes of UTC, which every time zone's offset is a multiple of, so
a bucket lies inside one local hour and one local day wherever the report runs.

``PRAGMA user_version`` holds the schema version. Opening a ledger applies the missing forward
migrations in one transaction; a ledger written by a newer tokentrail is refused with
:class:`LedgerVersionError` rather than written in a shape it does not have.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from .._version import __version__
from ..usage import SUMMED_FIELDS, USAGE_FIELDS

__all__ = [
    "BUCKET_SECONDS",
    "CALL_COLUMNS",
    "DIMENSIONS",
    "MEASURES",
    "SCHEMA_VERSION",
    "LedgerError",
    "LedgerVersionError",
    "connect",
    "open_ledger",
]

SCHEMA_VERSION = 1
BUCKET_SECONDS = 900
BUSY_TIMEOUT_MS = 10_000

# (column, SQL type): one row per call. Tokens are NULL when the call reported no usage; cost is
# NULL when the call could not be priced (never a made-up 0).
CALL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("start_time", "REAL NOT NULL"),  # epoch seconds (UTC) when the request started
    ("duration_s", "REAL"),
    ("ttfc_s", "REAL"),  # time to first chunk of a stream
    ("trace_id", "TEXT"),
    ("span_id", "TEXT"),
    ("service", "TEXT"),
    ("provider", "TEXT NOT NULL"),
    ("operation", "TEXT NOT NULL"),
    ("request_model", "TEXT"),
    ("response_model", "TEXT"),
    ("model", "TEXT"),  # the response model, else the request model: what reports group by
    ("server_address", "TEXT"),
    ("stream", "INTEGER NOT NULL DEFAULT 0"),
    ("response_id", "TEXT"),
    # The token counts, one column each, named and ordered as the usage table (usage.USAGE_FIELDS).
    *((usage_field.name, "INTEGER") for usage_field in USAGE_FIELDS),
    ("usage_inconsistent", "INTEGER NOT NULL DEFAULT 0"),
    ("cost_usd", "REAL"),
    ("cost_input_usd", "REAL"),
    ("cost_output_usd", "REAL"),
    ("cost_source", "TEXT"),  # provider | local
    ("local_estimate_usd", "REAL"),  # our own figure beside a provider-reported cost
    ("price_model", "TEXT"),  # the catalogue model the price came from
    ("price_source", "TEXT"),  # genai-prices <version> | override
    ("input_rate_mtok", "REAL"),  # USD per million input tokens that applied to this call
    ("cache_read_rate_mtok", "REAL"),  # USD per million cache-read tokens that applied
    ("cache_savings_usd", "REAL"),  # cache reads at the input rate minus at the cache-read rate
    ("error_type", "TEXT"),
    ("incomplete", "INTEGER NOT NULL DEFAULT 0"),
    ("pipeline", "TEXT"),
    ("phase", "TEXT"),
    ("role", "TEXT"),
    ("agent", "TEXT"),
    ("agent_id", "TEXT"),
    ("task", "TEXT"),
    ("user", "TEXT"),
    ("session", "TEXT"),
    ("conversation", "TEXT"),
    ("labels", "TEXT"),  # JSON object of free-form labels, keys sorted; NULL when none
)
COLUMN_NAMES = tuple(name for name, _ in CALL_COLUMNS)

# The rollup's key besides the bucket. '' stands for "none" there (a NULL cannot be part of a
# unique key); labels are the canonical JSON of the calls' labels ('{}' for none).
DIMENSIONS = (
    "service",
    "provider",
    "operation",
    "request_model",
    "model",
    "pipeline",
    "phase",
    "role",
    "agent",
    "task",
    "user",
    "labels",
)
# Rollup measure -> the aggregate over raw rows it stores.
MEASURES: dict[str, str] = {
    "calls": "COUNT(*)",
    "calls_with_usage": "COUNT(input_tokens)",
    "priced_calls": "COUNT(cost_usd)",
    "unpriced_calls": "COALESCE(SUM(input_tokens IS NOT NULL AND cost_usd IS NULL), 0)",
    "errors": "COALESCE(SUM(error_type IS NOT NULL), 0)",
    "incomplete": "COALESCE(SUM(incomplete), 0)",
    **{name: f"COALESCE(SUM({name}), 0)" for name in SUMMED_FIELDS},  # the token counts totals add up
    "cost_usd": "TOTAL(cost_usd)",
    "cache_savings_usd": "TOTAL(cache_savings_usd)",
}


def _v1(connection: sqlite3.Connection) -> None:
    columns = ",\n    ".join(f'"{name}" {kind}' for name, kind in CALL_COLUMNS)
    connection.execute(f"CREATE TABLE calls (\n    id INTEGER PRIMARY KEY,\n    {columns}\n)")
    # Time ranges: reports' edge buckets, exports, trends. Every other question is answered from
    # the rollup, so the calls table carries no more indexes (each one costs every insert).
    connection.execute("CREATE INDEX ix_calls_start_time ON calls (start_time)")
    dimensions = ", ".join(f"\"{name}\" TEXT NOT NULL DEFAULT ''" for name in DIMENSIONS)
    measures = ", ".join(
        f"{name} {'REAL' if name.endswith('_usd') else 'INTEGER'} NOT NULL DEFAULT 0" for name in MEASURES
    )
    key = ", ".join(f'"{name}"' for name in DIMENSIONS)
    connection.execute(
        f"CREATE TABLE rollup (bucket INTEGER NOT NULL, {dimensions}, {measures}, "
        f"PRIMARY KEY (bucket, {key})) WITHOUT ROWID"
    )
    # The rollup's primary key starts with the bucket (time ranges, day and hour breakdowns). A
    # pipeline's spend (budgets) is one pipeline among thousands over all time: indexed. The other
    # keys have few values each; a scan of the rollup answers them in milliseconds.
    connection.execute("CREATE INDEX ix_rollup_pipeline ON rollup (pipeline, bucket)")


# MIGRATIONS[n] takes a ledger from version n to n + 1. Append only; never edit a released step.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1]
assert len(MIGRATIONS) == SCHEMA_VERSION


class LedgerError(Exception):
    """The ledger cannot be used; the message says why and what to do."""


class LedgerVersionError(LedgerError):
    """The ledger was written by a newer tokentrail than this one."""


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the ledger's settings (autocommit: transactions are explicit)."""
    if readonly:
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


def open_ledger(path: Path, *, create: bool = True, readonly: bool = False) -> sqlite3.Connection:
    """Open (and create or migrate) the ledger at ``path``.

    Raises :class:`LedgerError` if it does not exist and ``create`` is false, or cannot be
    opened; :class:`LedgerVersionError` if a newer tokentrail wrote it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        if not create or readonly:
            raise LedgerError(
                f"no ledger at {path}: run an instrumented application first (tokentrail.instrument() "
                "records every call there), or point --ledger / TOKENTRAIL_LEDGER at an existing ledger"
            )
        _create_private_file(path)
    elif path.is_dir():
        raise LedgerError(f"{path} is a directory: point TOKENTRAIL_LEDGER / --ledger at a file")
    try:
        connection = connect(path, readonly=readonly)
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"cannot open the ledger at {path}: {exc} (is it a tokentrail ledger?)") from None
    try:
        _check_version(path, version)
        if version < SCHEMA_VERSION:
            if readonly:
                raise LedgerError(
                    f"the ledger at {path} has schema version {version}; this tokentrail uses "
                    f"{SCHEMA_VERSION}: open it once read-write (e.g. tokentrail report) to upgrade it"
                )
            _migrate(connection, path)
        if not readonly:
            _set_wal(connection)
            # The writer's batches touch the time index and the rollup's key all over: 16 MB of
            # page cache keeps them in memory (inserts ~40% cheaper than the 2 MB default).
            connection.execute("PRAGMA cache_size = -16384")
    except BaseException:
        connection.close()
        raise
    return connection


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise LedgerVersionError(
            f"the ledger at {path} was written by a newer tokentrail (schema version {version}; "
            f"tokentrail {__version__} understands up to {SCHEMA_VERSION}): upgrade tokentrail "
            "(pip install -U tokentrail), or point TOKENTRAIL_LEDGER / --ledger at another file"
        )


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    # BEGIN IMMEDIATE: two processes opening a new ledger at once migrate it once, in turn.
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        _check_version(path, version)
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](connection)
            connection.execute(f"PRAGMA user_version = {step + 1}")
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise


def _set_wal(connection: sqlite3.Connection) -> None:
    # WAL: readers never block the writer and a killed writer never corrupts the file.
    # NORMAL: a commit survives a crash of the process (not of the machine), at WAL speed.
    for attempt in range(50):
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError:  # another process holds a lock while changing modes
            if attempt == 49:
                raise
            time.sleep(0.05)
    if str(mode).lower() != "wal":
        raise LedgerError(f"the ledger could not switch to WAL mode (got {mode!r})")
    connection.execute("PRAGMA synchronous = NORMAL")


def _create_private_file(path: Path) -> None:
    """The ledger file (0600) and, if missing, its directory (0700): calls are private data."""
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"cannot create the ledger directory {parent}: {exc.strerror or exc}") from None
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise LedgerError(f"cannot create the ledger at {path}: {exc.strerror or exc}") from None
    os.close(descriptor)
