"""One ledger row from one call: from a :class:`~tokentrail.records.CallRecord` (the sink) or from a
finished span's attributes (the span exporter). Runs on the writer's thread, never the caller's.
"""

from __future__ import annotations

import json
import operator
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import semconv as sc
from ..records import CallRecord
from ..semconv import ATTRIBUTION_KEYS, LABEL_PREFIX
from ..usage import COUNT_FIELDS, USAGE_FIELDS
from ._schema import COLUMN_NAMES

__all__ = [
    "ATTRIBUTION_COLUMNS",
    "row_dict",
    "row_from_record",
    "row_from_span",
    "sanitise",
    "service_name",
]

# Attribution keys with a column of their own; labels go to the JSON column.
ATTRIBUTION_COLUMNS = tuple(ATTRIBUTION_KEYS)
# The row ends with the attribution columns, then labels, in ATTRIBUTION_KEYS order.
assert COLUMN_NAMES[-len(ATTRIBUTION_COLUMNS) - 1 : -1] == ATTRIBUTION_COLUMNS
_SPAN_ATTRIBUTE_TO_KEY = {name: key for key, name in ATTRIBUTION_KEYS.items()}
_INDEX = {name: index for index, name in enumerate(COLUMN_NAMES)}
_USAGE_FIELDS = COUNT_FIELDS
_NO_USAGE = (None,) * len(_USAGE_FIELDS)
_NO_ATTRIBUTION = (None,) * (len(ATTRIBUTION_COLUMNS) + 1)  # and no labels
_NOT_PRICED = (None,) * 10


def service_name(tracer_provider: Any = None) -> str:
    """The service the calls belong to: the tracer provider's ``service.name`` if it set one, else
    ``OTEL_SERVICE_NAME``, else the script's name."""
    resource = getattr(tracer_provider, "resource", None)
    attributes = getattr(resource, "attributes", None) or {}
    name = attributes.get("service.name")
    if isinstance(name, str) and name and not name.startswith("unknown_service"):
        return name
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return name
    script = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if script in ("", "-", "-c", "-m"):
        return "python"
    return Path(script).stem or "python"


def labels_json(labels: Mapping[str, str]) -> str | None:
    return (
        json.dumps(dict(sorted(labels.items())), ensure_ascii=False, separators=(",", ":"))
        if labels
        else None
    )


def rates(card: Any, input_tokens: int) -> tuple[float | None, float | None]:
    """(input, cache-read) USD per million tokens that applied to a call of ``input_tokens``."""
    if card is None:
        return None, None
    input_rate = card.rate_per_million("input_tokens", input_tokens)
    cache_rate = card.rate_per_million("cache_read_tokens", input_tokens)
    if input_rate is None:
        return None, cache_rate
    # A model without a cache-read price bills cached tokens as plain input.
    return input_rate, input_rate if cache_rate is None else cache_rate


def savings(
    cache_read_tokens: int | None, input_rate: float | None, cache_rate: float | None
) -> float | None:
    if not cache_read_tokens or input_rate is None or cache_rate is None:
        return None if cache_read_tokens is None else 0.0
    return cache_read_tokens * (input_rate - cache_rate) / 1_000_000


_usage_tokens = operator.attrgetter(*_USAGE_FIELDS)
_cost_fields = operator.attrgetter(
    "total", "input", "output", "source", "local_estimate", "priced_model", "price_source"
)
# Caches of the writer thread. Calls inside one ``attribute()`` block share one attribution
# mapping, and calls of one model one price card: each is converted once, not per call. An entry
# holds its object, so its id() cannot be reused while cached.
_attribution_cache: dict[int, tuple[Any, tuple[Any, ...]]] = {}
_rate_cache: dict[int, tuple[Any, tuple[float | None, float | None] | None]] = {}
_CACHE_LIMIT = 4096


def _attribution_columns(attribution: Mapping[str, str]) -> tuple[Any, ...]:
    """The attribution columns and the labels JSON of one attribution mapping."""
    cached = _attribution_cache.get(id(attribution))
    if cached is not None and cached[0] is attribution:
        return cached[1]
    get = attribution.get
    labels = {key[6:]: value for key, value in attribution.items() if key.startswith("label:")}
    columns = (*(get(key) for key in ATTRIBUTION_COLUMNS), labels_json(labels))
    if len(_attribution_cache) >= _CACHE_LIMIT:
        _attribution_cache.clear()
    _attribution_cache[id(attribution)] = (attribution, columns)
    return columns


def _card_rates(card: Any, input_tokens: int) -> tuple[float | None, float | None]:
    cached = _rate_cache.get(id(card))
    if cached is not None and cached[0] is card:
        fixed = cached[1]
        return rates(card, input_tokens) if fixed is None else fixed
    tiered = any(
        line.tiers for line in card.lines if line.usage_field in ("input_tokens", "cache_read_tokens")
    )
    if len(_rate_cache) >= _CACHE_LIMIT:
        _rate_cache.clear()
    found = rates(card, input_tokens)
    _rate_cache[id(card)] = (card, None if tiered else found)
    return found


def row_from_record(record: CallRecord, service: str) -> tuple[Any, ...]:
    """The ``calls`` row of a finished call, in :data:`COLUMN_NAMES` order."""
    usage = record.usage
    cost = record.cost
    if usage is not None:
        tokens: tuple[Any, ...] = _usage_tokens(usage)
        inconsistent = 1 if usage.problems else 0
    else:
        tokens, inconsistent = _NO_USAGE, 0
    if cost is not None:
        card = cost.card
        if card is not None:
            input_rate, cache_rate = _card_rates(card, usage.input_tokens if usage is not None else 0)
            saved = savings(usage.cache_read_tokens if usage is not None else None, input_rate, cache_rate)
        else:
            input_rate = cache_rate = saved = None
        priced: tuple[Any, ...] = (*_cost_fields(cost), input_rate, cache_rate, saved)
    else:
        priced = _NOT_PRICED
    attribution = record.attribution
    who = _attribution_columns(attribution) if attribution else _NO_ATTRIBUTION
    response_model = record.response_model
    return (
        record.start_time,
        record.duration_s,
        record.time_to_first_chunk_s,
        record.trace_id,
        record.span_id,
        service,
        record.provider,
        record.operation,
        record.request_model,
        response_model,
        response_model or record.request_model,
        record.server_address,
        1 if record.stream else 0,
        record.response_id,
        *tokens,
        inconsistent,
        *priced,
        record.error_type,
        1 if record.incomplete else 0,
        *who,
    )


# (attribute, the previous release's name or None) of each count, in column order: a span written by
# the previous release (an older process, a store) reads the same.
_SPAN_USAGE = tuple((field.span_attribute, field.previous_attribute) for field in USAGE_FIELDS)


def is_call_span(span: Any) -> bool:
    """A span tokentrail made for one LLM call (not a roll-up span, not another library's)."""
    scope = getattr(span, "instrumentation_scope", None)
    attributes = span.attributes or {}
    return (
        scope is not None
        and scope.name == "tokentrail"
        and getattr(span.kind, "name", "") == "CLIENT"
        and sc.OPERATION_NAME in attributes
    )


def row_from_span(span: Any, pricer: Any = None) -> tuple[Any, ...]:
    """The ``calls`` row of a finished tokentrail call span (see :func:`is_call_span`).

    The span carries everything but the price card; with a ``pricer``, the input and cache-read
    rates (and so the cache savings) are those of the priced model at its standard rates.
    """
    attributes: Mapping[str, Any] = span.attributes or {}
    get = attributes.get
    start = span.start_time / 1e9 if span.start_time else 0.0
    duration = (span.end_time - span.start_time) / 1e9 if span.end_time and span.start_time else None
    context = span.context
    resource_attributes = getattr(getattr(span, "resource", None), "attributes", None) or {}
    service = resource_attributes.get("service.name") or service_name()
    if isinstance(service, str) and service.startswith("unknown_service"):
        service = service_name()
    provider = get(sc.PROVIDER_NAME) or ""
    request_model = get(sc.REQUEST_MODEL)
    response_model = get(sc.RESPONSE_MODEL)
    if get(sc.USAGE_MISSING) or sc.USAGE_INPUT_TOKENS not in attributes:
        tokens: tuple[Any, ...] = _NO_USAGE
    else:
        tokens = tuple(int(get(name, get(previous, 0) if previous else 0)) for name, previous in _SPAN_USAGE)
    cost = get(sc.COST_AMOUNT)
    if cost is not None:
        card = None
        price_model = get(sc.PRICE_MODEL)
        if pricer is not None and price_model:
            try:
                card = pricer.card(provider, price_model, start)
            except Exception:  # an unknown model id: no rates, no savings
                card = None
        input_rate, cache_rate = rates(card, tokens[0] or 0)
        priced: tuple[Any, ...] = (
            float(cost),
            get(sc.COST_INPUT),
            get(sc.COST_OUTPUT),
            get(sc.COST_SOURCE),
            get(sc.COST_LOCAL_ESTIMATE),
            price_model,
            get(sc.PRICE_SOURCE),
            input_rate,
            cache_rate,
            savings(tokens[2], input_rate, cache_rate),
        )
    else:
        priced = (None,) * 10
    who = {key: None for key in ATTRIBUTION_COLUMNS}
    labels: dict[str, str] = {}
    for name, value in attributes.items():
        key = _SPAN_ATTRIBUTE_TO_KEY.get(name)
        if key is not None:
            who[key] = str(value)
        elif name.startswith(LABEL_PREFIX):
            labels[name[len(LABEL_PREFIX) :]] = str(value)
    return (
        start,
        duration,
        get(sc.RESPONSE_TIME_TO_FIRST_CHUNK),
        format(context.trace_id, "032x") if context is not None else None,
        format(context.span_id, "016x") if context is not None else None,
        service,
        provider,
        get(sc.OPERATION_NAME) or "",
        request_model,
        response_model,
        response_model or request_model,
        get(sc.SERVER_ADDRESS),
        1 if get(sc.REQUEST_STREAM) else 0,
        get(sc.RESPONSE_ID),
        *tokens,
        1 if get(sc.USAGE_INCONSISTENT) else 0,
        *priced,
        get(sc.ERROR_TYPE),
        1 if get(sc.STREAM_INCOMPLETE) else 0,
        *(who[key] for key in ATTRIBUTION_COLUMNS),
        labels_json(labels),
    )


def row_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row as a mapping of column -> value, labels decoded (for logs and JSON exports)."""
    values = dict(zip(COLUMN_NAMES, row, strict=True))
    labels = values.get("labels")
    values["labels"] = json.loads(labels) if labels else {}
    return values


# The largest count a row keeps: far beyond any real call (a trillion tokens), small enough that
# the rollup's sums of millions of rows stay inside SQLite's 64-bit integers.
MAX_COUNT = 10**12
_INCONSISTENT = _INDEX["usage_inconsistent"]


def sanitise(row: tuple[Any, ...]) -> tuple[tuple[Any, ...], bool]:
    """``row`` as SQLite can store it, and whether anything had to change.

    Text with lone surrogates (which ``attribute()`` accepts and UTF-8 cannot encode) gets them
    escaped (``\\udcff``); integers beyond :data:`MAX_COUNT` either way are clamped to it and the
    row flagged ``usage_inconsistent``; a value of any other type is stored as its text. Runs only
    for a batch SQLite refused, so the rows that were fine cost nothing.
    """
    values = list(row)
    changed = clamped = False
    for index, value in enumerate(values):
        if value is None or type(value) is float:
            continue
        if type(value) is str:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                values[index] = value.encode("utf-8", "backslashreplace").decode("utf-8")
                changed = True
        elif isinstance(value, int) and not isinstance(value, bool):
            if not -MAX_COUNT <= value <= MAX_COUNT:
                values[index] = MAX_COUNT if value > 0 else -MAX_COUNT
                changed = clamped = True
        elif isinstance(value, bool):
            values[index] = int(value)
            changed = True
        elif isinstance(value, float):
            values[index] = float(value)
            changed = True
        elif not isinstance(value, bytes):
            text = _text(value)
            values[index] = text.encode("utf-8", "backslashreplace").decode("utf-8")
            changed = True
    if clamped:
        values[_INCONSISTENT] = 1
    return (tuple(values), True) if changed else (row, False)


def _text(value: Any) -> str:
    try:
        return str(value)[:1000]
    except Exception:  # a __str__ that fails, an int past Python's digit limit
        return f"<{type(value).__name__}>"
