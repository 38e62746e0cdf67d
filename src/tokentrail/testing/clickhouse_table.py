"""The OpenTelemetry Collector ``clickhouse`` exporter's traces table, and spans written into it the
way the exporter writes them: for tests, benchmarks and local analysis with ``--url chdb:///DIR``.

:data:`TRACES_TABLE` is the exporter's documented default DDL (``internal/sqltemplates/traces_table.sql``
of opentelemetry-collector-contrib, ``MergeTree``, no TTL): the same columns, map and
low-cardinality types, indexes, partitioning and order. :func:`exporter_row` turns a finished SDK
span into the row the exporter inserts: ``Timestamp`` is the start, ``Duration`` nanoseconds,
``SpanKind`` / ``StatusCode`` the proto names (``SPAN_KIND_CLIENT``, ``STATUS_CODE_ERROR``), and
every attribute value a string (pdata's ``AsString``: ``true``/``false``, decimal integers, floats
in their shortest form, arrays as JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["INSERT_COLUMNS", "TRACES_TABLE", "attribute_text", "create_table", "exporter_row", "insert_rows"]

TRACES_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""

# The columns the exporter inserts, in exporter_row's order (the Nested columns as their arrays).
INSERT_COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)
# SpanKind's values in order, as traceutil.SpanKindStr names them.
_KINDS = tuple(f"SPAN_KIND_{kind}" for kind in ("INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"))
_STATUS = {"UNSET": "STATUS_CODE_UNSET", "OK": "STATUS_CODE_OK", "ERROR": "STATUS_CODE_ERROR"}


def attribute_text(value: Any) -> str:
    """An attribute value as the exporter stores it (pdata ``Value.AsString``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)  # shortest round-trip form, like Go's strconv with precision -1
    if isinstance(value, str):
        return value
    return json.dumps(list(value), separators=(",", ":"))


def _texts(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    return {name: attribute_text(value) for name, value in (attributes or {}).items()}


def exporter_row(span: Any) -> tuple[Any, ...]:
    """The row the collector's clickhouse exporter inserts for a finished SDK span
    (:data:`INSERT_COLUMNS` order; ``Timestamp`` as epoch nanoseconds)."""
    resource = _texts(getattr(span.resource, "attributes", None))
    scope = span.instrumentation_scope
    parent = span.parent
    status = span.status
    events = list(span.events or ())
    links = list(span.links or ())
    return (
        span.start_time,
        format(span.context.trace_id, "032x"),
        format(span.context.span_id, "016x"),
        format(parent.span_id, "016x") if parent is not None else "",
        "",
        span.name,
        _KINDS[span.kind.value],
        resource.get("service.name", ""),
        resource,
        scope.name if scope is not None else "",
        (scope.version or "") if scope is not None else "",
        _texts(span.attributes),
        max(0, (span.end_time or span.start_time) - span.start_time),
        _STATUS[status.status_code.name],
        status.description or "",
        [event.timestamp for event in events],
        [event.name for event in events],
        [_texts(event.attributes) for event in events],
        [format(link.context.trace_id, "032x") for link in links],
        [format(link.context.span_id, "016x") for link in links],
        ["" for _ in links],
        [_texts(link.attributes) for link in links],
    )


def create_table(session: Any, table: str = "default.otel_traces") -> None:
    """Create the exporter's traces table through a chdb session (``query(sql, fmt)``)."""
    session.query(TRACES_TABLE.format(table=table), "CSV")


def insert_rows(session: Any, table: str, rows: Iterable[Sequence[Any]]) -> int:
    """Insert exporter rows through a chdb session as JSON (one statement); how many."""
    lines = []
    for row in rows:
        record = dict(zip(INSERT_COLUMNS, row, strict=True))
        record["Timestamp"] = _datetime64(record["Timestamp"])
        record["Events.Timestamp"] = [_datetime64(stamp) for stamp in record["Events.Timestamp"]]
        lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    if not lines:
        return 0
    columns = ", ".join(f"`{name}`" for name in INSERT_COLUMNS)
    body = "\n".join(lines)
    session.query(
        f"INSERT INTO {table} ({columns}) SETTINGS date_time_input_format = 'best_effort' "
        f"FORMAT JSONEachRow\n{body}",
        "CSV",
    )
    return len(lines)


def _datetime64(nanos: int) -> str:
    """Epoch nanoseconds as DateTime64(9) text (seconds.fraction, read as a Unix time)."""
    seconds, fraction = divmod(int(nanos), 1_000_000_000)
    return f"{seconds}.{fraction:09d}"
