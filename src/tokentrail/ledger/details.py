"""Questions about single calls, which the rollup cannot answer: the most expensive calls, latency
percentiles per model, and which cache writes were read again.

They read the ``calls`` table over the filters' time range (its ``start_time`` index), selecting
only the columns each question needs.
"""

from __future__ import annotations

import math
import sqlite3
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .query import Filters, _where, validate_key

__all__ = [
    "CACHE_COLUMNS",
    "CACHE_TTL_S",
    "TOP_CALL_COLUMNS",
    "ModelLatency",
    "cache_writes",
    "latency_by_model",
    "percentile",
    "read_window",
    "select_calls",
    "split_cache_writes",
    "top_calls",
]

CACHE_TTL_S = 300.0
"""How long a prompt-cache entry lives unless written with a one-hour TTL (Anthropic's default;
OpenAI keeps entries 5-10 minutes, Gemini's implicit cache a few minutes)."""
CACHE_TTL_1H_S = 3600.0

TOP_CALL_COLUMNS = (
    "start_time",
    "trace_id",
    "span_id",
    "provider",
    "model",
    "operation",
    "pipeline",
    "agent",
    "user",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "duration_s",
)


def _checked(filters: Filters) -> Filters:
    for key in filters.where:
        validate_key(key, for_filter=True)
    return filters


def top_calls(connection: sqlite3.Connection, filters: Filters, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most expensive calls (priced ones; ties: the latest first)."""
    where, params = _where(_checked(filters), rollup=False, low=filters.since, high=filters.until)
    where = (where + " AND" if where else " WHERE") + " cost_usd IS NOT NULL"
    columns = ", ".join(f'"{name}"' for name in TOP_CALL_COLUMNS)
    rows = connection.execute(
        f"SELECT {columns} FROM calls{where} ORDER BY cost_usd DESC, start_time DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [dict(zip(TOP_CALL_COLUMNS, row, strict=True)) for row in rows]


def select_calls(
    connection: sqlite3.Connection, filters: Filters, columns: Sequence[str], *, with_usage: bool = False
) -> Iterator[tuple[Any, ...]]:
    """``columns`` of the calls matching ``filters`` (only those that reported usage, if
    ``with_usage``), in time order: a scan of the range that reads only what is asked."""
    where, params = _where(_checked(filters), rollup=False, low=filters.since, high=filters.until)
    if with_usage:
        where = (where + " AND" if where else " WHERE") + " input_tokens IS NOT NULL"
    selected = ", ".join(f'"{name}"' for name in columns)
    cursor = connection.execute(f"SELECT {selected} FROM calls{where} ORDER BY start_time, id", params)
    while chunk := cursor.fetchmany(10_000):
        yield from chunk


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values (None for none)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class ModelLatency:
    p50_s: float | None
    p95_s: float | None
    ttfc_p50_s: float | None
    """Time to the first chunk, over the streamed calls that have one."""
    ttfc_p95_s: float | None


def latency_by_model(connection: sqlite3.Connection, filters: Filters) -> dict[str | None, ModelLatency]:
    """Nearest-rank p50 / p95 of call duration and time to first chunk, per model."""
    where, params = _where(_checked(filters), rollup=False, low=filters.since, high=filters.until)
    durations: dict[str | None, list[float]] = {}
    firsts: dict[str | None, list[float]] = {}
    cursor = connection.execute(f"SELECT model, duration_s, ttfc_s FROM calls{where}", params)
    while chunk := cursor.fetchmany(10_000):
        for model, duration, ttfc in chunk:
            if duration is not None:
                durations.setdefault(model, []).append(duration)
            if ttfc is not None:
                firsts.setdefault(model, []).append(ttfc)
    found = {}
    for model in durations.keys() | firsts.keys():
        spans = sorted(durations.get(model, ()))
        first = sorted(firsts.get(model, ()))
        found[model] = ModelLatency(
            percentile(spans, 0.5), percentile(spans, 0.95), percentile(first, 0.5), percentile(first, 0.95)
        )
    return found


CACHE_COLUMNS = (
    "start_time",
    "provider",
    "model",
    "price_model",
    "request_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "web_searches",
)


def cache_writes(
    connection: sqlite3.Connection, filters: Filters
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the calls matching ``filters`` that wrote to the prompt cache and that no later call of the
    same provider and model read from the cache within the entry's lifetime, the ones that were).

    A read is any call of that provider and model with cache reads, whatever its attribution: the
    cache is shared by every caller of the account. Provider and model are the nearest a ledger
    gets to "the same prompt prefix"; a read of another prefix counts as a read, so the unread
    writes are a lower bound."""
    where, params = _where(_checked(filters), rollup=False, low=filters.since, high=filters.until)
    where = (where + " AND" if where else " WHERE") + " cache_write_tokens > 0"
    columns = ", ".join(f'"{name}"' for name in CACHE_COLUMNS)
    writes = [
        dict(zip(CACHE_COLUMNS, row, strict=True))
        for row in connection.execute(f"SELECT {columns} FROM calls{where} ORDER BY start_time", params)
    ]
    if not writes:
        return [], []
    low, high = read_window(writes)
    reads = connection.execute(
        "SELECT provider, model, start_time FROM calls WHERE start_time > ? AND start_time <= ? "
        "AND cache_read_tokens > 0 ORDER BY start_time",
        (low, high),
    )
    return split_cache_writes(writes, reads)


def read_window(writes: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """(after, until): where the reads of these writes (in time order) can be."""
    return writes[0]["start_time"], writes[-1]["start_time"] + CACHE_TTL_1H_S


def split_cache_writes(
    writes: list[dict[str, Any]], reads: Iterable[tuple[str, str | None, float]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(unread, read) of ``writes`` (:data:`CACHE_COLUMNS` dicts, in time order) given the calls
    with cache reads in their :func:`read_window` as (provider, model, start time), in time order:
    the ledger's and any other source's answer alike."""
    reads_of: dict[tuple[str, str | None], list[float]] = {}
    for provider, model, at in reads:
        reads_of.setdefault((provider, model), []).append(at)
    unread, read = [], []
    for write in writes:
        times = reads_of.get((write["provider"], write["model"]), [])
        ttl = CACHE_TTL_1H_S if write["cache_write_1h_tokens"] else CACHE_TTL_S
        (read if _any_between(times, write["start_time"], write["start_time"] + ttl) else unread).append(
            write
        )
    return unread, read


def _any_between(ordered: list[float], after: float, until: float) -> bool:
    index = bisect_right(ordered, after)
    return index < len(ordered) and ordered[index] <= until
