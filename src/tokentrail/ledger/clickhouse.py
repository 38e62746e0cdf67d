"""``--source clickhouse``: the ledger's reports, trends and exports, over the spans the OpenTelemetry
Collector's ``clickhouse`` exporter stores (its ``otel_traces`` table), for every call of every
service of a fleet.

The exporter writes one row per span: ``Timestamp`` (the span's start), ``ServiceName``,
``ScopeName``, ``SpanKind``, ``Duration`` (ns) and every attribute as a string in the
``SpanAttributes`` map. A call here is a row of tokentrail's scope (``ScopeName``) and of kind
CLIENT that names an operation: what the ledger's span exporter counts (``_rows.is_call_span``).
Roll-up spans (INTERNAL) and other libraries' spans are never counted.

Every figure is aggregated by ClickHouse (``GROUP BY`` over the range of ``Timestamp``, the
column the table is partitioned by); Python only nests the groups. Local days and hours are folded
from 15-minute buckets of UTC (every time zone's offset is a multiple of 15 minutes), so they are
the local days of the machine running the report, as in the ledger. Cache savings need the price
card's rates, which the spans do not carry: a report leaves them unknown (``None``); an export
prices each row as the ledger's span exporter does.

Two ways in, same SQL: ``http(s)://HOST:8123`` through ``clickhouse-connect``
(``pip install 'tokentrail[clickhouse]'``; the password from ``TOKENTRAIL_CLICKHOUSE_PASSWORD``,
never on the command line), and ``chdb:///DIR``, an embedded ClickHouse (``chdb``) database
directory with the same table (local analysis, tests).

:class:`ClickHouseSource` has the ledger's question set as methods (``report``, ``trend``,
``export_rows``, with :mod:`.query`'s signatures less the connection): commands that take a
:class:`~tokentrail.ledger.source.CallSource` work over either.
"""

from __future__ import annotations

import math
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from .. import semconv as sc
from ..pricing import Pricer
from ..semconv import ATTRIBUTION_KEYS, LABEL_PREFIX
from ..totals import FIELDS as _TOTAL_FIELDS
from ..usage import SUMMED_FIELDS, USAGE_FIELDS
from ._rows import row_from_span
from ._schema import COLUMN_NAMES
from .details import CACHE_COLUMNS, TOP_CALL_COLUMNS, ModelLatency, read_window, split_cache_writes
from .query import (
    _LABEL,
    _TIME_KEYS,
    Filters,
    Group,
    Report,
    Totals,
    UnknownKeyError,
    _build,
    _periods,
    validate_key,
)

__all__ = [
    "CALL_SPAN_KINDS",
    "DEFAULT_DATABASE",
    "DEFAULT_TABLE",
    "ENV_PASSWORD",
    "ENV_USER",
    "ClickHouseError",
    "ClickHouseSource",
    "chdb_session",
    "open_source",
]

DEFAULT_DATABASE = "default"  # the exporter's defaults
DEFAULT_TABLE = "otel_traces"
DEFAULT_USER = "default"
ENV_PASSWORD = "TOKENTRAIL_CLICKHOUSE_PASSWORD"
ENV_USER = "TOKENTRAIL_CLICKHOUSE_USER"
SCOPE = "tokentrail"  # the tracer's name (lifecycle.py)
# How the exporter spells a CLIENT span: the proto name (traceutil.SpanKindStr), or pdata's String()
# in exporter versions that write that.
CALL_SPAN_KINDS = ("SPAN_KIND_CLIENT", "Client")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_TRUE = "('true', 'True', '1')"
_EXPORT_BATCH = 5000


class ClickHouseError(Exception):
    """ClickHouse cannot answer; the message says what to check (never a credential)."""


def _attr(name: str) -> str:
    # Our attribute names are constants of [a-z0-9._] and validated label keys: safe to inline.
    return f"SpanAttributes['{name}']"


def _has(name: str) -> str:
    return f"mapContains(SpanAttributes, '{name}')"


def _int(name: str) -> str:
    return f"toInt64OrZero({_attr(name)})"


def _count(usage_field: str) -> str:
    """A token count, under its current name or the previous release's (a span an older tokentrail
    wrote)."""
    field = next(f for f in USAGE_FIELDS if f.name == usage_field)
    if field.previous_attribute is None:
        return _int(field.span_attribute)
    current, previous = field.span_attribute, field.previous_attribute
    return f"toInt64OrZero(if({_has(current)}, {_attr(current)}, {_attr(previous)}))"


_HAS_USAGE = f"({_has(sc.USAGE_INPUT_TOKENS)} AND {_attr(sc.USAGE_MISSING)} NOT IN {_TRUE})"
_HAS_COST = _has(sc.COST_AMOUNT)
# Totals field -> its aggregate over the call spans (row_from_span's reading of the attributes).
_MEASURES: dict[str, str] = {
    "calls": "count()",
    "calls_with_usage": f"countIf({_HAS_USAGE})",
    "priced_calls": f"countIf({_HAS_COST})",
    "unpriced_calls": f"countIf({_HAS_USAGE} AND NOT {_HAS_COST})",
    "errors": f"countIf({_has(sc.ERROR_TYPE)})",
    "incomplete": f"countIf({_attr(sc.STREAM_INCOMPLETE)} IN {_TRUE})",
    **{name: f"sumIf({_count(name)}, {_HAS_USAGE})" for name in SUMMED_FIELDS},
    "cost_usd": f"sum(toFloat64OrZero({_attr(sc.COST_AMOUNT)}))",
}
_MEASURE_FIELDS = tuple(name for name in _TOTAL_FIELDS if name in _MEASURES)
_MEASURES_SQL = ", ".join(_MEASURES[name] for name in _MEASURE_FIELDS)
_CALL_SPANS = f"ScopeName = '{SCOPE}' AND SpanKind IN {CALL_SPAN_KINDS!r} AND {_has(sc.OPERATION_NAME)}"
_RESPONSE_MODEL = _attr(sc.RESPONSE_MODEL)
_REQUEST_MODEL = _attr(sc.REQUEST_MODEL)
# Keys whose value is one span attribute (missing: '' in the map, None in a report).
_KEY_ATTRIBUTES: dict[str, str] = {
    "provider": sc.PROVIDER_NAME,
    "operation": sc.OPERATION_NAME,
    "request_model": sc.REQUEST_MODEL,
    "error_type": sc.ERROR_TYPE,
    "cost_source": sc.COST_SOURCE,
    **ATTRIBUTION_KEYS,
}
_BUCKET = "toUnixTimestamp(toStartOfFifteenMinutes(Timestamp))"


def _value_sql(key: str) -> str:
    """The SQL of a key's value as a filter compares it ('' for none)."""
    if key == "service":
        return "ServiceName"
    if key == "model":
        return f"if({_RESPONSE_MODEL} != '', {_RESPONSE_MODEL}, {_REQUEST_MODEL})"
    label = _LABEL.fullmatch(key)
    if label:
        return _attr(LABEL_PREFIX + label.group(1))
    return _attr(_KEY_ATTRIBUTES[key])


def _key_sql(key: str) -> str:
    """The SQL of a key's value as a breakdown groups by it (NULL for none)."""
    if key in _TIME_KEYS:
        return _BUCKET  # folded into local days / hours in Python
    return f"nullIf({_value_sql(key)}, '')"


class _Query:
    """SQL text with its values as server-side parameters (``{p0:String}``): never spliced in."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, kind: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{kind}}}"


def _where(filters: Filters, query: _Query) -> str:
    clauses = [_CALL_SPANS]
    # Each bound twice: on Timestamp itself with a microsecond to spare (what prunes partitions and
    # granules), then exactly as the ledger compares, start seconds as a float against the bound.
    if filters.since is not None:
        low = query.bind(_nanos(filters.since) - 1000, "Int64")
        clauses.append(f"Timestamp >= fromUnixTimestamp64Nano({low})")
        clauses.append(f"toUnixTimestamp64Nano(Timestamp) / 1e9 >= {query.bind(filters.since, 'Float64')}")
    if filters.until is not None:
        high = query.bind(_nanos(filters.until) + 1000, "Int64")
        clauses.append(f"Timestamp < fromUnixTimestamp64Nano({high})")
        clauses.append(f"toUnixTimestamp64Nano(Timestamp) / 1e9 < {query.bind(filters.until, 'Float64')}")
    for key, value in filters.equalities().items():
        clauses.append(f"{_value_sql(key)} = {query.bind(value, 'String')}")
    if filters.model is not None:
        model = query.bind(filters.model, "String")
        clauses.append(f"({_RESPONSE_MODEL} = {model} OR {_REQUEST_MODEL} = {model})")
    return " WHERE " + " AND ".join(clauses)


def _checked(filters: Filters) -> Filters:
    for key in filters.where:
        validate_key(key, for_filter=True)
        if key in _TIME_KEYS:
            raise UnknownKeyError(f"--where {key}=...: filter time with --since / --until")
    return filters


_TIME_ORDER = "Timestamp, TraceId, SpanId"
_COLUMN_INDEX = {name: index for index, name in enumerate(COLUMN_NAMES)}


def _nanos(epoch: float) -> int:
    return round(epoch * 1e9)


def _period_label(bucket: int, key: str) -> str:
    moment = datetime.fromtimestamp(bucket)
    return moment.strftime("%Y-%m-%d" if key == "day" else "%Y-%m-%d %H:00")


@dataclass(frozen=True)
class _Target:
    url: str
    database: str
    table: str
    user: str

    @property
    def shown(self) -> str:
        """The source as reports name it: no credentials, whatever the URL held."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "chdb":
            where = parts.path
        else:
            where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return f"clickhouse {where} {self.database}.{self.table}"


class ClickHouseSource:
    """The tokentrail calls in a ClickHouse traces table; see the module's description.

    ``url`` is ``http(s)://HOST:PORT`` (clickhouse-connect) or ``chdb:///DIR``. The password is
    read from ``TOKENTRAIL_CLICKHOUSE_PASSWORD`` (``password`` overrides it); ``user`` defaults to
    ``TOKENTRAIL_CLICKHOUSE_USER``, else ``default``.
    """

    def __init__(
        self,
        url: str,
        *,
        database: str | None = None,
        table: str | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        database = database or DEFAULT_DATABASE
        table = table or DEFAULT_TABLE
        for option, name in (("--database", database), ("--table", table)):
            if not _IDENTIFIER.fullmatch(name):
                raise ClickHouseError(f"{option} {name!r}: use a plain ClickHouse name (letters, digits, _)")
        user = user or os.environ.get(ENV_USER) or DEFAULT_USER
        self._target = _Target(url, database, table, user)
        self.table_sql = f"`{database}`.`{table}`"
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme == "chdb":
            self._backend: _Backend = _ChdbBackend(url)
        elif scheme in ("http", "https"):
            secret = password if password is not None else os.environ.get(ENV_PASSWORD, "")
            self._backend = _HttpBackend(url, database, user, secret, timeout)
        else:
            raise ClickHouseError(
                f"--url {_without_credentials(url)!r}: use ClickHouse's HTTP address "
                "(http://HOST:8123, https://HOST:8443) or chdb:///DIR for an embedded database"
            )
        self.name = self._target.shown

    # --- the questions (query.py's, over this table) -----------------------------------------------

    def report(self, by: Sequence[str] = (), filters: Filters | None = None) -> Report:
        """The report :func:`~tokentrail.ledger.query.report` gives from the ledger."""
        filters = filters or Filters()
        for key in by:
            validate_key(key)
        for key in filters.where:
            validate_key(key, for_filter=True)
        query = _Query()
        keys = [_key_sql(key) for key in by]
        select = ", ".join([*keys, _MEASURES_SQL])
        group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
        sql = f"SELECT {select} FROM {self.table_sql}{_where(filters, query)}{group}"
        flat: dict[tuple[Any, ...], Totals] = {}
        for row in self._backend.rows(sql, query.params):
            values = tuple(
                _period_label(int(value), key) if key in _TIME_KEYS else value
                for key, value in zip(by, row, strict=False)
            )
            totals = Totals(cache_savings_usd=None)
            for name, value in zip(_MEASURE_FIELDS, row[len(by) :], strict=True):
                setattr(totals, name, float(value) if name == "cost_usd" else int(value))
            if totals.calls == 0:
                continue
            existing = flat.get(values)
            if existing is None:
                flat[values] = totals
            else:
                existing.add(totals)
        result = _build(by, flat, filters, self.name)
        result.notes.append("cache savings are in the ledger (and in exports) only: the spans carry no rates")
        return result

    def top_groups(self, key: str, filters: Filters | None, limit: int) -> list[Group]:
        """The ``limit`` first groups of :meth:`report` by ``key`` (aggregated by ClickHouse)."""
        return self.report([key], filters).groups[:limit]

    def trend(
        self, periods: int, *, hourly: bool = False, filters: Filters | None = None, now: float | None = None
    ) -> list[tuple[str, Totals]]:
        """Spend per local day (or hour), as :func:`~tokentrail.ledger.query.trend` gives it."""
        filters = filters or Filters()
        labels, since = _periods(periods, hourly=hourly, now=now)
        scoped = replace(filters, since=since)
        found = self.report(["hour" if hourly else "day"], scoped)
        by_label = {group.value: group.totals for group in found.groups}
        return [(label, by_label.get(label, Totals(cache_savings_usd=None))) for label in labels]

    def export_rows(self, filters: Filters | None = None) -> tuple[int, Iterator[Any]]:
        """(how many, the calls in time order) as ledger rows
        (:data:`~tokentrail.ledger._schema.COLUMN_NAMES`), each made from its span the way the
        ledger's span exporter makes it (rates and cache savings from the price catalogue)."""
        query = _Query()
        where = _where(_checked(filters or Filters()), query)
        count = int(self._backend.rows(f"SELECT count() FROM {self.table_sql}{where}", query.params)[0][0])
        return count, self._rows(where, query)

    def _rows(
        self, where: str, query: _Query, *, order: str = _TIME_ORDER, limit: int | None = None
    ) -> Iterator[Any]:
        """Ledger rows of the call spans ``where`` selects, in ``order``."""
        sql = (
            "SELECT toUnixTimestamp64Nano(Timestamp), Duration, TraceId, SpanId, ServiceName, SpanAttributes "
            f"FROM {self.table_sql}{where} ORDER BY {order}" + (f" LIMIT {int(limit)}" if limit else "")
        )
        pricer = Pricer()
        for start, duration, trace_id, span_id, service, attributes in self._backend.stream(
            sql, query.params
        ):
            yield row_from_span(_span(start, duration, trace_id, span_id, service, attributes), pricer)

    # --- single calls (details.py's questions, over this table) ------------------------------------

    def select_calls(
        self, filters: Filters, columns: Sequence[str], *, with_usage: bool = False
    ) -> Iterator[tuple[Any, ...]]:
        """``columns`` of the matching calls (with usage, if ``with_usage``) in time order."""
        indexes = [_COLUMN_INDEX[name] for name in columns]
        query = _Query()
        where = _where(_checked(filters), query) + (f" AND {_HAS_USAGE}" if with_usage else "")
        for row in self._rows(where, query):
            yield tuple(row[index] for index in indexes)

    def top_calls(self, filters: Filters, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most expensive priced calls (ties: the latest first); sorted and cut here."""
        query = _Query()
        where = _where(_checked(filters), query) + f" AND {_HAS_COST}"
        order = f"toFloat64OrZero({_attr(sc.COST_AMOUNT)}) DESC, Timestamp DESC"
        indexes = [_COLUMN_INDEX[name] for name in TOP_CALL_COLUMNS]
        return [
            {name: row[index] for name, index in zip(TOP_CALL_COLUMNS, indexes, strict=True)}
            for row in self._rows(where, query, order=order, limit=limit)
        ]

    def latency_by_model(self, filters: Filters) -> dict[str | None, ModelLatency]:
        """Nearest-rank p50 / p95 of duration and time to first chunk per model, picked here from
        each model's sorted values, as :func:`~tokentrail.ledger.details.percentile` picks them."""
        query = _Query()
        where = _where(_checked(filters), query)
        ttfc = f"toFloat64OrNull(nullIf({_attr(sc.RESPONSE_TIME_TO_FIRST_CHUNK)}, ''))"

        def rank(values: str, fraction: float) -> str:
            return (
                f"if(length({values}) = 0, NULL, "
                f"arrayElement({values}, toUInt64(greatest(1, ceil({fraction} * length({values}))))))"
            )

        sql = (
            f"SELECT model, {rank('d', 0.5)}, {rank('d', 0.95)}, {rank('t', 0.5)}, {rank('t', 0.95)} FROM ("
            f"SELECT {_key_sql('model')} AS model, arraySort(groupArray(Duration / 1e9)) AS d, "
            f"arraySort(groupArray({ttfc})) AS t FROM {self.table_sql}{where} GROUP BY model)"
        )
        found = {}
        for model, p50, p95, ttfc50, ttfc95 in self._backend.rows(sql, query.params):
            found[model] = ModelLatency(
                *(None if value is None else float(value) for value in (p50, p95, ttfc50, ttfc95))
            )
        return found

    def cache_writes(self, filters: Filters) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(unread, read) cache writes, as :func:`~tokentrail.ledger.details.cache_writes` answers."""
        query = _Query()
        where = _where(_checked(filters), query) + f" AND {_count('cache_write_tokens')} > 0"
        indexes = [_COLUMN_INDEX[name] for name in CACHE_COLUMNS]
        writes = [
            {name: row[index] for name, index in zip(CACHE_COLUMNS, indexes, strict=True)}
            for row in self._rows(where, query)
        ]
        if not writes:
            return [], []
        after, until = read_window(writes)
        reads_query = _Query()
        reads_where = _where(Filters(), reads_query) + (
            f" AND toUnixTimestamp64Nano(Timestamp) / 1e9 > {reads_query.bind(after, 'Float64')}"
            f" AND toUnixTimestamp64Nano(Timestamp) / 1e9 <= {reads_query.bind(until, 'Float64')}"
            f" AND Timestamp >= fromUnixTimestamp64Nano({reads_query.bind(_nanos(after) - 1000, 'Int64')})"
            f" AND {_count('cache_read_tokens')} > 0"
        )
        sql = (
            f"SELECT {_attr(sc.PROVIDER_NAME)}, {_key_sql('model')}, toUnixTimestamp64Nano(Timestamp) "
            f"FROM {self.table_sql}{reads_where} ORDER BY {_TIME_ORDER}"
        )
        reads = (
            (provider, model, int(at) / 1e9)
            for provider, model, at in self._backend.stream(sql, reads_query.params)
        )
        return split_cache_writes(writes, reads)

    def check(self) -> None:
        """Raises :class:`ClickHouseError` unless the table can be read."""
        self._backend.rows(f"SELECT count() FROM {self.table_sql} WHERE 0", {})

    def close(self) -> None:
        self._backend.close()


def open_source(
    url: str,
    *,
    database: str | None = None,
    table: str | None = None,
    user: str | None = None,
) -> ClickHouseSource:
    """A :class:`ClickHouseSource` whose table exists; else :class:`ClickHouseError`."""
    source = ClickHouseSource(url, database=database, table=table, user=user)
    try:
        source.check()
    except BaseException:
        source.close()
        raise
    return source


# --- spans back from the exporter's strings ------------------------------------------------------

# The attributes row_from_span reads as numbers or flags; the exporter stored every value as text.
_INTEGERS = frozenset(
    name for field in USAGE_FIELDS for name in (field.span_attribute, field.previous_attribute) if name
)
_FLOATS = frozenset(
    (
        sc.COST_AMOUNT,
        sc.COST_INPUT,
        sc.COST_OUTPUT,
        sc.COST_LOCAL_ESTIMATE,
        sc.RESPONSE_TIME_TO_FIRST_CHUNK,
    )
)
_FLAGS = frozenset((sc.USAGE_MISSING, sc.USAGE_INCONSISTENT, sc.REQUEST_STREAM, sc.STREAM_INCOMPLETE))


def _typed(name: str, text: str) -> Any:
    try:
        if name in _INTEGERS:
            return int(text)
        if name in _FLOATS:
            number = float(text)
            return number if math.isfinite(number) else None
    except ValueError:
        return None
    if name in _FLAGS:
        return text in ("true", "True", "1")
    return text


def _span(start_ns: int, duration_ns: int, trace_id: str, span_id: str, service: str, attributes: Any) -> Any:
    """A span as row_from_span reads one (the attributes it needs, typed back)."""
    pairs = attributes.items() if isinstance(attributes, Mapping) else attributes
    typed = {name: _typed(name, value) for name, value in pairs}
    start = int(start_ns)
    return SimpleNamespace(
        attributes={name: value for name, value in typed.items() if value is not None},
        start_time=start,
        end_time=start + int(duration_ns),
        context=SimpleNamespace(trace_id=int(trace_id, 16), span_id=int(span_id or "0", 16))
        if trace_id
        else None,
        resource=SimpleNamespace(attributes={"service.name": service} if service else {}),
    )


# --- the two ways in ----------------------------------------------------------------------------------


class _Backend:
    def rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def stream(self, sql: str, params: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
        yield from self.rows(sql, params)

    def close(self) -> None:
        pass


def _without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _HttpBackend(_Backend):
    def __init__(self, url: str, database: str, user: str, password: str, timeout: float) -> None:
        try:
            import clickhouse_connect
        except ImportError:
            raise ClickHouseError(
                "--source clickhouse needs clickhouse-connect: pip install 'tokentrail[clickhouse]'"
            ) from None
        parts = urllib.parse.urlsplit(url)
        self._shown = _without_credentials(url)
        if not parts.hostname:
            raise ClickHouseError(f"--url {self._shown!r}: name the host, e.g. http://clickhouse:8123")
        secure = parts.scheme == "https"
        try:
            port = parts.port or (8443 if secure else 8123)
        except ValueError:
            raise ClickHouseError(f"--url {self._shown!r}: the port is not a number") from None
        try:
            self._client = clickhouse_connect.get_client(
                host=parts.hostname,
                port=port,
                username=parts.username or user,
                password=parts.password or password,
                database=database,
                secure=secure,
                connect_timeout=timeout,
                send_receive_timeout=timeout,
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> ClickHouseError:
        text = " ".join(str(exc).split())
        if len(text) > 300:
            text = text[:300] + "..."
        return ClickHouseError(
            f"ClickHouse at {self._shown} did not answer ({text}): check --url, --user and "
            f"{ENV_PASSWORD}, and that the table exists (--database / --table)"
        )

    def rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        try:
            return [tuple(row) for row in self._client.query(sql, parameters=dict(params)).result_rows]
        except Exception as exc:
            raise self._error(exc) from None

    def stream(self, sql: str, params: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
        try:
            with self._client.query_rows_stream(sql, parameters=dict(params)) as stream:
                for row in stream:
                    yield tuple(row)
        except Exception as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass


# chdb runs one embedded server per process, on one directory: sessions are shared by path.
_chdb_lock = threading.RLock()
_chdb_sessions: dict[str, Any] = {}


def chdb_session(directory: str) -> Any:
    """The process's chdb session on ``directory`` (created on first use)."""
    try:
        from chdb import session
    except ImportError:
        raise ClickHouseError("--url chdb:///DIR needs chdb: pip install chdb") from None
    path = os.path.abspath(os.path.expanduser(directory))
    with _chdb_lock:
        found = _chdb_sessions.get(path)
        if found is None:
            if _chdb_sessions:
                other = next(iter(_chdb_sessions))
                raise ClickHouseError(
                    f"chdb:///{path}: this process already opened chdb:///{other} (chdb opens one "
                    "directory per process)"
                )
            try:
                found = _chdb_sessions[path] = session.Session(path)
            except Exception as exc:
                raise ClickHouseError(f"cannot open the chdb database at {path}: {exc}") from None
        return found


class _ChdbBackend(_Backend):
    def __init__(self, url: str) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        if not path or path == "/":
            raise ClickHouseError(f"--url {url!r}: name the database directory, e.g. chdb:///var/lib/calls")
        if not os.path.isdir(path):
            raise ClickHouseError(f"--url {url!r}: {path} is not a directory holding a chdb database")
        self._path = path
        self._session = chdb_session(path)

    def rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        import chdb

        try:
            with _chdb_lock:  # one embedded server: one query at a time (serve answers from threads)
                result = self._session.query(sql, "Arrow", params=dict(params))
            table = chdb.to_arrowTable(result)
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            raise ClickHouseError(
                f"chdb database at {self._path} cannot answer ({text}): check --database / --table"
            ) from None
        return list(zip(*table.to_pydict().values(), strict=True)) if table.num_columns else []
