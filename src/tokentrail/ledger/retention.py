"""How long the ledger keeps what: raw call rows 90 days, the 15-minute roll-ups two years.

A ledger is on by default and a busy service adds hundreds of megabytes a day to it, so old rows
go. Reports answer from the roll-up for whole 15-minute buckets and from raw rows only for the
edges and for the keys the roll-up does not carry (session, conversation, agent_id), so reports
over periods older than the raw rows still answer, from the roll-up, at 15-minute resolution.

* ``TOKENTRAIL_LEDGER_RETENTION``: days of raw rows (default 90; ``0`` keeps them for ever);
* ``TOKENTRAIL_LEDGER_ROLLUP_RETENTION``: days of roll-ups (default 730; ``0``: for ever; never
  fewer than the raw rows').

The writer prunes on its own thread, at most once an hour and in steps of a few thousand rows (a
step is one short transaction, so other writers wait milliseconds, not the length of a purge);
``tokentrail ledger prune`` does it now and ``tokentrail ledger info`` shows where a ledger
stands. Pruning keeps whole 15-minute buckets, so a bucket is never half raw rows.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, shown
from ._schema import BUCKET_SECONDS

__all__ = ["ENV_RAW_DAYS", "ENV_ROLLUP_DAYS", "Retention", "info", "prune", "prune_step"]

ENV_RAW_DAYS = "TOKENTRAIL_LEDGER_RETENTION"
ENV_ROLLUP_DAYS = "TOKENTRAIL_LEDGER_ROLLUP_RETENTION"
DEFAULT_RAW_DAYS = 90.0
DEFAULT_ROLLUP_DAYS = 730.0
STEP_ROWS = 5_000  # rows deleted per transaction
_DAY = 86_400.0
_MAX_DAYS = 100 * 365.0


@dataclass(frozen=True, slots=True)
class Retention:
    """Days kept; 0 means for ever."""

    raw_days: float = DEFAULT_RAW_DAYS
    rollup_days: float = DEFAULT_ROLLUP_DAYS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Retention:
        """From the environment; a bad value raises a one-line :class:`ConfigError`."""
        env = os.environ if environ is None else environ
        raw = _days(env.get(ENV_RAW_DAYS), ENV_RAW_DAYS, DEFAULT_RAW_DAYS)
        rollup = _days(env.get(ENV_ROLLUP_DAYS), ENV_ROLLUP_DAYS, DEFAULT_ROLLUP_DAYS)
        if raw == 0 or (rollup and raw > rollup):
            rollup = 0.0 if raw == 0 else raw  # a roll-up never goes before the rows it sums
        return cls(raw, rollup)

    def cutoffs(self, now: float) -> tuple[float | None, int | None]:
        """(raw rows before this time go, roll-up buckets before this one go); None: keep all.
        The raw cut-off is a bucket boundary."""
        raw = None
        if self.raw_days:
            raw = float(int((now - self.raw_days * _DAY) // BUCKET_SECONDS) * BUCKET_SECONDS)
        rollup = None
        if self.rollup_days:
            rollup = int((now - self.rollup_days * _DAY) // BUCKET_SECONDS) * BUCKET_SECONDS
        return raw, rollup

    def describe(self) -> str:
        def days(value: float) -> str:
            return "for ever" if not value else f"{value:g} days"

        return f"raw rows {days(self.raw_days)}, 15-minute roll-ups {days(self.rollup_days)}"


def _days(value: str | None, name: str, default: float) -> float:
    if value is None or not value.strip():
        return default
    text = value.strip().lower().removesuffix("d")
    try:
        number = float(text)
    except (ValueError, OverflowError):
        number = math.nan
    if not 0 <= number <= _MAX_DAYS:  # NaN fails too
        raise ConfigError(f"{name}={shown(value)}: use a number of days from 0 (for ever) to 36500, e.g. 90")
    return number


def prune_step(connection: sqlite3.Connection, retention: Retention, now: float | None = None) -> int:
    """Delete at most :data:`STEP_ROWS` expired raw rows and expired roll-ups, in one transaction
    (the caller holds no other). Returns the raw rows deleted: a full step means there are more."""
    raw_cutoff, rollup_cutoff = retention.cutoffs(time.time() if now is None else now)
    if raw_cutoff is None and rollup_cutoff is None:
        return 0
    connection.execute("BEGIN IMMEDIATE")
    try:
        deleted = 0
        if raw_cutoff is not None:
            deleted = connection.execute(
                "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE start_time < ? LIMIT ?)",
                (raw_cutoff, STEP_ROWS),
            ).rowcount
        if rollup_cutoff is not None:
            connection.execute("DELETE FROM rollup WHERE bucket < ?", (rollup_cutoff,))
        connection.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    return deleted


def prune(connection: sqlite3.Connection, retention: Retention, now: float | None = None) -> int:
    """Delete everything expired, step by step. Returns the raw rows deleted."""
    total = 0
    while True:
        deleted = prune_step(connection, retention, now)
        total += deleted
        if deleted < STEP_ROWS:
            return total


def info(connection: sqlite3.Connection, path: Path, retention: Retention) -> dict[str, Any]:
    """Where a ledger stands: file size, rows, oldest and newest call, roll-up span, retention."""
    calls, oldest, newest = connection.execute(
        "SELECT COUNT(*), MIN(start_time), MAX(start_time) FROM calls"
    ).fetchone()
    buckets, first_bucket = connection.execute("SELECT COUNT(*), MIN(bucket) FROM rollup").fetchone()
    size = 0
    for suffix in ("", "-wal"):
        try:
            size += os.stat(f"{path}{suffix}").st_size
        except OSError:
            pass
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    free_pages = connection.execute("PRAGMA freelist_count").fetchone()[0]
    raw_cutoff, _ = retention.cutoffs(time.time())
    expired = 0
    if raw_cutoff is not None:
        (expired,) = connection.execute(
            "SELECT COUNT(*) FROM calls WHERE start_time < ?", (raw_cutoff,)
        ).fetchone()
    return {
        "path": str(path),
        "size_bytes": size,
        "free_bytes": page_size * free_pages,
        "calls": calls,
        "oldest_call": oldest,
        "newest_call": newest,
        "rollup_rows": buckets,
        "oldest_rollup_bucket": first_bucket,
        "retention": {"raw_days": retention.raw_days, "rollup_days": retention.rollup_days},
        "expired_calls": expired,
    }
