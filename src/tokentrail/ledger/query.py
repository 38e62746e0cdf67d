"""Reports over the ledger: totals, nested breakdowns, daily trends, raw rows for export.

A report reads the ``rollup`` table (calls summed per 15-minute bucket and dimension) for the
whole buckets inside its time range, and the ``calls`` table for the partial buckets at its
edges, so a report over a million calls reads thousands of rows, not a million. Filters on keys
the rollup does not carry (session, conversation, agent_id) read the ``calls`` table alone. Either
way every figure is the sum of the corresponding ``calls`` rows.

Days and hours are those of the local time zone of the machine running the report.
"""

from __future__ import annotations

import functools
import math
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..totals import FIELDS as TOTAL_FIELDS
from ..totals import Totals
from ._schema import BUCKET_SECONDS, COLUMN_NAMES, MEASURES

__all__ = [
    "BY_KEYS",
    "Filters",
    "Group",
    "Report",
    "Totals",
    "UnknownKeyError",
    "export_rows",
    "report",
    "trend",
    "validate_key",
]

# Keys a report can break down by, in the order the help lists them.
BY_KEYS = (
    "provider",
    "model",
    "operation",
    "agent",
    "task",
    "pipeline",
    "phase",
    "role",
    "user",
    "day",
    "hour",
    "service",
    "request_model",
)
# Keys only the raw rows carry: a filter on them reads the calls table.
RAW_ONLY_KEYS = ("agent_id", "session", "conversation", "error_type", "cost_source")
_TIME_KEYS = ("day", "hour")
_LABEL = re.compile(r"^label:([a-z][a-z0-9_]{0,63})$")  # anchored: also a JSON-schema pattern


class UnknownKeyError(ValueError):
    """A --by or --where key the ledger does not know."""


def validate_key(key: str, *, for_filter: bool = False) -> str:
    """``key`` if a report can break down (or, ``for_filter``, filter) by it; else raises."""
    if key in BY_KEYS or _LABEL.fullmatch(key) or (for_filter and key in RAW_ONLY_KEYS):
        if for_filter and key in _TIME_KEYS:
            raise UnknownKeyError(f"--where {key}=...: filter time with --since / --until")
        return key
    known = ", ".join((*BY_KEYS, *(RAW_ONLY_KEYS if for_filter else ())))
    option = "--where" if for_filter else "--by"
    raise UnknownKeyError(f"unknown {option} key {key!r}: use one of {known}, or label:KEY")


@dataclass(frozen=True)
class Filters:
    since: float | None = None
    """Epoch seconds, inclusive."""
    until: float | None = None
    """Epoch seconds, exclusive."""
    pipeline: str | None = None
    model: str | None = None
    """Matches the response model or the request model."""
    provider: str | None = None
    where: Mapping[str, str] = field(default_factory=dict)

    def equalities(self) -> dict[str, str]:
        """Every key = value the filters ask for (the model filter aside)."""
        found = dict(self.where)
        if self.pipeline is not None:
            found["pipeline"] = self.pipeline
        if self.provider is not None:
            found["provider"] = self.provider
        return found

    def describe(self) -> dict[str, str]:
        found = self.equalities()
        if self.model is not None:
            found["model"] = self.model
        return found


assert tuple(MEASURES) == TOTAL_FIELDS  # Totals(*row) takes a row of MEASURES in order


@dataclass
class Group:
    """One value of one breakdown key, with its totals and the next key's groups inside it."""

    key: str
    value: str | None
    totals: Totals
    children: list[Group] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "value": self.value, **self.totals.as_dict()}
        if self.children:
            data["breakdown"] = [child.as_dict() for child in self.children]
        return data


@dataclass
class Report:
    by: tuple[str, ...]
    totals: Totals
    groups: list[Group]
    filters: Filters
    source: str
    """``ledger <path>`` or ``prometheus <url>``."""
    generated_at: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)

    def leaves(self) -> Iterator[tuple[tuple[str | None, ...], Totals]]:
        """(values of every --by key, totals) for each finest-level group."""

        def walk(groups: list[Group], prefix: tuple[str | None, ...]) -> Iterator[Any]:
            for group in groups:
                values = (*prefix, group.value)
                if group.children:
                    yield from walk(group.children, values)
                else:
                    yield values, group.totals

        return walk(self.groups, ())

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "generated_at": datetime.fromtimestamp(self.generated_at).astimezone().isoformat(),
            "since": _iso(self.filters.since),
            "until": _iso(self.filters.until),
            "filters": self.filters.describe(),
            "by": list(self.by),
            "totals": self.totals.as_dict(),
            "breakdown": [group.as_dict() for group in self.groups],
            "notes": self.notes,
        }


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch).astimezone().isoformat()


# --- SQL ------------------------------------------------------------------------------------------


def _key_sql(key: str, *, rollup: bool) -> str:
    time_column = "bucket" if rollup else "start_time"
    if rollup and key in _TIME_KEYS:
        # Grouped by bucket here and folded into local days or hours in Python (_local_period):
        # SQLite's 'localtime' per rollup row was a third of a 30-day report by day and model.
        return "bucket"
    if key == "day":
        return f"date({time_column}, 'unixepoch', 'localtime')"
    if key == "hour":
        return f"strftime('%Y-%m-%d %H:00', {time_column}, 'unixepoch', 'localtime')"
    label = _LABEL.fullmatch(key)
    if label:
        return f"json_extract(labels, '$.\"{label.group(1)}\"')"
    return f"NULLIF(\"{key}\", '')" if rollup else f'"{key}"'


def _where(filters: Filters, *, rollup: bool, low: float | None, high: float | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    time_column = "bucket" if rollup else "start_time"
    if low is not None:
        clauses.append(f"{time_column} >= ?")
        params.append(low)
    if high is not None:
        clauses.append(f"{time_column} < ?")
        params.append(high)
    for key, value in filters.equalities().items():
        if _LABEL.fullmatch(key):
            clauses.append(f"{_key_sql(key, rollup=rollup)} IS ?")
            params.append(value or None)
        elif value == "":
            clauses.append(f"\"{key}\" = ''" if rollup else f'"{key}" IS NULL')
        else:
            clauses.append(f'"{key}" = ?')
            params.append(value)
    if filters.model is not None:
        clauses.append("(model = ? OR request_model = ?)")
        params.extend((filters.model, filters.model))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_ROLLUP_MEASURES_SQL = ", ".join(
    f"TOTAL({name})" if name.endswith("_usd") else f"SUM({name})" for name in MEASURES
)
_RAW_MEASURES_SQL = ", ".join(MEASURES.values())


def _query(
    connection: sqlite3.Connection,
    by: Sequence[str],
    filters: Filters,
    *,
    rollup: bool,
    low: float | None,
    high: float | None,
) -> list[tuple[Any, ...]]:
    keys = [_key_sql(key, rollup=rollup) for key in by]
    where, params = _where(filters, rollup=rollup, low=low, high=high)
    measures = _ROLLUP_MEASURES_SQL if rollup else _RAW_MEASURES_SQL
    select = ", ".join([*keys, measures])
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    sql = f"SELECT {select} FROM {'rollup' if rollup else 'calls'}{where}{group}"
    return connection.execute(sql, params).fetchall()


@functools.lru_cache(maxsize=8192)
def _local_period(key: str, bucket: float) -> str:
    """The local day or hour of a rollup bucket, as SQLite's ``date(..., 'localtime')`` gives it."""
    moment = datetime.fromtimestamp(bucket)
    return moment.strftime("%Y-%m-%d" if key == "day" else "%Y-%m-%d %H:00")


_ZEROS = tuple(0.0 if name.endswith("_usd") else 0 for name in TOTAL_FIELDS)


def _sums(values: Sequence[Any]) -> list[Any]:
    """A row's measures as a list of numbers: SUM() over no rows is NULL, an empty range adds up to zero."""
    return [zero if value is None else value for value, zero in zip(values, _ZEROS, strict=True)]


def _add(into: list[Any], values: Sequence[Any]) -> None:
    # Reports merge tens of thousands of groups (20,000 pipelines on the dashboard's first load):
    # plain lists of figures add several times faster than Totals objects field by field. As in
    # Totals.add, an unknown figure (None: cache savings over spans) stays unknown.
    into[:] = [
        None if mine is None or theirs is None else mine + theirs
        for mine, theirs in zip(into, values, strict=True)
    ]


def report(
    connection: sqlite3.Connection,
    by: Sequence[str] = (),
    filters: Filters | None = None,
    *,
    source: str = "ledger",
    use_rollup: bool = True,
) -> Report:
    """Totals and a nested breakdown ``by`` the given keys (outermost first)."""
    filters = filters or Filters()
    for key in by:
        validate_key(key)
    for key in filters.where:
        validate_key(key, for_filter=True)
    flat: dict[tuple[Any, ...], list[Any]] = {}
    width = len(by)
    periods = [(index, key) for index, key in enumerate(by) if key in _TIME_KEYS]

    def collect(rows: list[tuple[Any, ...]], *, rollup: bool = False) -> None:
        for row in rows:
            if not row[width]:
                continue  # no calls (the measures start with the count)
            key = row[:width]
            if rollup and periods:
                folded = list(key)
                for index, name in periods:
                    folded[index] = _local_period(name, folded[index])
                key = tuple(folded)
            sums = _sums(row[width:])
            existing = flat.get(key)
            if existing is None:
                flat[key] = sums
            else:
                _add(existing, sums)

    raw_only = any(key in RAW_ONLY_KEYS for key in filters.where)
    since, until = filters.since, filters.until
    first = None if since is None else math.ceil(since / BUCKET_SECONDS) * BUCKET_SECONDS
    last = None if until is None else math.floor(until / BUCKET_SECONDS) * BUCKET_SECONDS
    if raw_only or not use_rollup or (first is not None and last is not None and first >= last):
        collect(_query(connection, by, filters, rollup=False, low=since, high=until))
    else:
        collect(_query(connection, by, filters, rollup=True, low=first, high=last), rollup=True)
        if since is not None and first is not None and since < first:
            collect(_query(connection, by, filters, rollup=False, low=since, high=first))
        if until is not None and last is not None and last < until:
            collect(_query(connection, by, filters, rollup=False, low=last, high=until))
    return _build(by, flat, filters, source)


_OUTER_MEASURES_SQL = ", ".join(
    f"TOTAL({name})" if name.endswith("_usd") else f"SUM({name})" for name in MEASURES
)


def top_groups(connection: sqlite3.Connection, key: str, filters: Filters | None, limit: int) -> list[Group]:
    """The ``limit`` first groups of ``report(connection, [key], filters)`` (most cost first), added
    up and ranked by SQLite: the dashboard's top pipelines, out of tens of thousands, without
    building every group in Python (a third of its first load over 1,000,000 calls)."""
    filters = filters or Filters()
    validate_key(key)
    for name in filters.where:
        validate_key(name, for_filter=True)
    if key in _TIME_KEYS or key in RAW_ONLY_KEYS or any(name in RAW_ONLY_KEYS for name in filters.where):
        return report(connection, [key], filters).groups[:limit]
    since, until = filters.since, filters.until
    first = None if since is None else math.ceil(since / BUCKET_SECONDS) * BUCKET_SECONDS
    last = None if until is None else math.floor(until / BUCKET_SECONDS) * BUCKET_SECONDS
    if first is not None and last is not None and first >= last:
        return report(connection, [key], filters).groups[:limit]
    # The same three parts report() adds up: the rollup's whole buckets, the raw calls at each edge.
    parts = [(True, first, last)]
    if since is not None and first is not None and since < first:
        parts.append((False, since, first))
    if until is not None and last is not None and last < until:
        parts.append((False, last, until))
    selects, params = [], []
    for rollup, low, high in parts:
        where, values = _where(filters, rollup=rollup, low=low, high=high)
        measures = _ROLLUP_MEASURES_SQL if rollup else _RAW_MEASURES_SQL
        table = "rollup" if rollup else "calls"
        selects.append(f"SELECT {_key_sql(key, rollup=rollup)}, {measures} FROM {table}{where} GROUP BY 1")
        params.extend(values)
    columns = ", ".join(["k", *MEASURES])
    # Ranked as _build ranks: most cost, then most calls, then the value (none first, as "").
    sql = (
        f"WITH parts({columns}) AS ({' UNION ALL '.join(selects)}) "
        f"SELECT k, {_OUTER_MEASURES_SQL} FROM parts GROUP BY k HAVING SUM(calls) > 0 "
        "ORDER BY TOTAL(cost_usd) DESC, SUM(calls) DESC, COALESCE(k, '') LIMIT ?"
    )
    rows = connection.execute(sql, [*params, limit]).fetchall()
    return [Group(key, None if row[0] is None else str(row[0]), Totals(*_sums(row[1:]))) for row in rows]


def _build(
    by: Sequence[str], flat: Mapping[tuple[Any, ...], list[Any] | Totals], filters: Filters, source: str
) -> Report:
    """The report of ``flat`` (key values -> their figures, as :data:`TOTAL_FIELDS` in a list or as
    :class:`Totals`): totals, nested groups, each level sorted."""
    flat = {
        key: figures if isinstance(figures, list) else [getattr(figures, name) for name in TOTAL_FIELDS]
        for key, figures in flat.items()
    }
    overall = list(_ZEROS)
    for leaf in flat.values():
        _add(overall, leaf)
    if not by:
        return Report((), Totals(*overall), [], filters, source)
    root: dict[Any, Any] = {}
    for values, leaf in flat.items():
        level = root
        for depth, value in enumerate(values):
            entry = level.get(value)
            if entry is None:
                entry = level[value] = [list(leaf), {}]
            else:
                _add(entry[0], leaf)
            if depth == len(values) - 1:
                break
            level = entry[1]

    def groups(level: dict[Any, Any], depth: int) -> list[Group]:
        key = by[depth]
        made = [
            Group(
                key,
                None if value is None else str(value),
                Totals(*sums),
                groups(children, depth + 1) if children else [],
            )
            for value, (sums, children) in level.items()
        ]
        if key in _TIME_KEYS:
            made.sort(key=lambda g: g.value or "")
        else:
            made.sort(key=lambda g: (-g.totals.cost_usd, -g.totals.calls, g.value or ""))
        return made

    return Report(tuple(by), Totals(*overall), groups(root, 0), filters, source)


def trend(
    connection: sqlite3.Connection,
    periods: int,
    *,
    hourly: bool = False,
    filters: Filters | None = None,
    now: float | None = None,
) -> list[tuple[str, Totals]]:
    """Spend per local day (or hour) for the last ``periods`` of them, the current one included,
    with empty periods as zeros."""
    filters = filters or Filters()
    labels, since = _periods(periods, hourly=hourly, now=now)
    scoped = Filters(since, filters.until, filters.pipeline, filters.model, filters.provider, filters.where)
    found = report(connection, ["hour" if hourly else "day"], scoped)
    by_label = {group.value: group.totals for group in found.groups}
    return [(label, by_label.get(label, Totals())) for label in labels]


def _periods(periods: int, *, hourly: bool, now: float | None) -> tuple[list[str], float]:
    current = datetime.fromtimestamp(time.time() if now is None else now)
    if hourly:
        start = current.replace(minute=0, second=0, microsecond=0)
        moments = [start - timedelta(hours=i) for i in range(periods - 1, -1, -1)]
        labels = [moment.strftime("%Y-%m-%d %H:00") for moment in moments]
    else:
        start = current.replace(hour=0, minute=0, second=0, microsecond=0)
        moments = [start - timedelta(days=i) for i in range(periods - 1, -1, -1)]
        labels = [moment.strftime("%Y-%m-%d") for moment in moments]
    return labels, moments[0].timestamp()


def export_rows(connection: sqlite3.Connection, filters: Filters | None = None) -> tuple[int, Iterator[Any]]:
    """(how many, the ``calls`` rows in time order) matching ``filters``; rows are tuples in
    :data:`~tokentrail.ledger._schema.COLUMN_NAMES` order."""
    filters = filters or Filters()
    for key in filters.where:
        validate_key(key, for_filter=True)
        if key in _TIME_KEYS:
            raise UnknownKeyError(f"--where {key}=...: filter time with --since / --until")
    where, params = _where(filters, rollup=False, low=filters.since, high=filters.until)
    count = connection.execute(f"SELECT COUNT(*) FROM calls{where}", params).fetchone()[0]
    columns = ", ".join(f'"{name}"' for name in COLUMN_NAMES)
    cursor = connection.execute(f"SELECT {columns} FROM calls{where} ORDER BY start_time, id", params)

    def rows() -> Iterator[Any]:
        while True:
            chunk = cursor.fetchmany(2000)
            if not chunk:
                return
            yield from chunk

    return count, rows()
