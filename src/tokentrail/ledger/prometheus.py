"""``tokentrail report --source prometheus``: the ledger's report, from tokentrail's metrics in a
Prometheus that scrapes them (directly, or through a collector), for a fleet of machines.

Each figure is the growth of one counter or histogram series over the report's range, summed by
the labels the breakdown asks for. The growth of a series is its last value in the range minus its
value at the range's start: exact, unlike ``increase()``, which extrapolates to the range's edges.
A series born inside the range counts from zero (``increase()`` would miss its first value); a
series that reset inside the range (a restarted process keeping its labels) falls back to
``increase()``.

What the metrics do not carry has no figure here: cache savings and incomplete streams (ledger
only), and attribution keys that are not metric attributes (``TOKENTRAIL_METRIC_ATTRIBUTES``;
agent, task and phase by default).
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from .. import semconv as sc
from ..semconv import ATTRIBUTION_KEYS
from ..semconv import attribution_attribute as span_attribute_name
from .query import Filters, Report, Totals, _build, validate_key

__all__ = ["PrometheusError", "prometheus_name", "prometheus_report"]

DEFAULT_RANGE_DAYS = 30


class PrometheusError(Exception):
    """Prometheus cannot answer; the message says what to check."""


def prometheus_name(metric: str, unit: str, *, counter: bool = False, suffix: str = "") -> str:
    """The series name Prometheus exporters give an OpenTelemetry metric: dots to underscores,
    braced units dropped, ``s`` as ``_seconds``, other units kept as written, ``_total`` on
    counters, ``_sum`` / ``_count`` / ``_bucket`` on histograms."""
    name = metric.replace(".", "_")
    if unit == "s":
        name += "_seconds"
    elif unit and not unit.startswith("{"):
        name += f"_{unit}"
    return name + ("_total" if counter else suffix)


def label_name(attribute: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in attribute)


_DURATION_COUNT = prometheus_name(sc.METRIC_OPERATION_DURATION, "s", suffix="_count")
_TOKENS_SUM = prometheus_name(sc.METRIC_TOKEN_USAGE, "{token}", suffix="_sum")
_TOKENS_COUNT = prometheus_name(sc.METRIC_TOKEN_USAGE, "{token}", suffix="_count")
_PARTS = prometheus_name(sc.METRIC_TOKEN_PARTS, "{token}", counter=True)
_COST_SUM = prometheus_name(sc.METRIC_OPERATION_COST, "USD", suffix="_sum")
_COST_COUNT = prometheus_name(sc.METRIC_OPERATION_COST, "USD", suffix="_count")
_UNPRICED = prometheus_name(sc.METRIC_UNPRICED_CALLS, "{call}", counter=True)
# tokentrail's instrumentation scope (the meter name), which Prometheus exporters put on every
# series as otel_scope_name: another GenAI instrumentation's gen_ai_* series, beside tokentrail's
# under its own scope, are not counted.
SCOPE_NAME = "tokentrail"
_SCOPE = f'otel_scope_name="{SCOPE_NAME}"'
_TOKEN_TYPE = label_name(sc.TOKEN_TYPE)
_ERROR_TYPE = label_name(sc.ERROR_TYPE)

# Totals field -> (series, extra label matchers).
_FIGURES: dict[str, tuple[str, str]] = {
    "calls": (_DURATION_COUNT, ""),
    "errors": (_DURATION_COUNT, f'{_ERROR_TYPE}!=""'),
    "calls_with_usage": (_TOKENS_COUNT, f'{_TOKEN_TYPE}="input"'),
    "input_tokens": (_TOKENS_SUM, f'{_TOKEN_TYPE}="input"'),
    "output_tokens": (_TOKENS_SUM, f'{_TOKEN_TYPE}="output"'),
    "cache_read_tokens": (_PARTS, f'{_TOKEN_TYPE}="cache_read"'),
    "cache_write_tokens": (_PARTS, f'{_TOKEN_TYPE}="cache_creation"'),
    "reasoning_tokens": (_PARTS, f'{_TOKEN_TYPE}="reasoning"'),
    "cost_usd": (_COST_SUM, ""),
    "priced_calls": (_COST_COUNT, ""),
    "unpriced_calls": (_UNPRICED, ""),
}
_REQUEST_MODEL = label_name(sc.REQUEST_MODEL)
_RESPONSE_MODEL = label_name(sc.RESPONSE_MODEL)
_KEY_LABELS = {
    "provider": label_name(sc.PROVIDER_NAME),
    "operation": label_name(sc.OPERATION_NAME),
    "request_model": _REQUEST_MODEL,
    "service": "service_name",  # present when the collector copies resource attributes to series
    "error_type": _ERROR_TYPE,
    **{key: label_name(attribute) for key, attribute in ATTRIBUTION_KEYS.items()},
}


def _label_for(key: str) -> str:
    if key.startswith("label:"):
        return label_name(span_attribute_name(key))
    label = _KEY_LABELS.get(key)
    if label is None:
        raise PrometheusError(f"{key!r} is not on tokentrail's metrics; filter on it with the ledger")
    return label


def _quote(value: str) -> str:
    return json.dumps(value)  # PromQL string literals take the same escapes


def _growth(series: str, window_ms: int) -> str:
    """The growth of every matched series over the ``window_ms`` milliseconds up to evaluation time."""
    w = f"[{window_ms}ms]"
    return (
        f"((last_over_time({series}{w}) - ({series} offset {window_ms}ms)) unless (resets({series}{w}) > 0))"
        f" or (increase({series}{w}) and (resets({series}{w}) > 0))"
        f" or (last_over_time({series}{w}) unless ({series} offset {window_ms}ms))"
    )


def _expression(figure: str, filters: Filters, labels: Sequence[str], window_ms: int) -> str:
    metric, extra = _FIGURES[figure]
    matchers = [_SCOPE, extra] if extra else [_SCOPE]
    for key, value in filters.equalities().items():
        matchers.append(f"{_label_for(key)}={_quote(value)}")
    if filters.model is not None:
        variants = [
            f"{metric}{{{', '.join([*matchers, f'{label}={_quote(filters.model)}'])}}}"
            for label in (_RESPONSE_MODEL, _REQUEST_MODEL)
        ]
        growth = f"({_growth(variants[0], window_ms)}) or ({_growth(variants[1], window_ms)})"
    else:
        growth = _growth(f"{metric}{{{', '.join(matchers)}}}", window_ms)
    return f"sum by ({', '.join(labels)}) ({growth})" if labels else f"sum({growth})"


class _Client:
    def __init__(self, url: str, timeout: float = 15.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise PrometheusError(
                f"--url {url!r}: use the Prometheus server's address, e.g. http://localhost:9090"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, params: Mapping[str, Any]) -> Any:
        target = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(target, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", exc.reason)
            except Exception:
                detail = exc.reason
            raise PrometheusError(
                f"Prometheus at {self.url} refused the query ({exc.code}: {detail})"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(
                f"cannot reach Prometheus at {self.url} ({reason}): "
                "check --url and that Prometheus is running"
            ) from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus at {self.url} answered: {body.get('error', body)}")
        return body["data"]


def prometheus_report(
    url: str, by: Sequence[str] = (), filters: Filters | None = None, *, now: float | None = None
) -> Report:
    """The report :func:`~tokentrail.ledger.query.report` gives from the ledger, from Prometheus."""
    filters = filters or Filters()
    for key in by:
        validate_key(key)
    client = _Client(url)
    until = filters.until if filters.until is not None else (time.time() if now is None else now)
    notes = ["cache savings and incomplete streams are recorded in the ledger only"]
    since = filters.since
    if since is None:
        since = until - DEFAULT_RANGE_DAYS * 86400
        notes.append(
            f"from Prometheus, the range defaults to the last {DEFAULT_RANGE_DAYS} days (use --since)"
        )
    filters = Filters(since, until, filters.pipeline, filters.model, filters.provider, filters.where)
    time_keys = [key for key in by if key in ("day", "hour")]
    if len(time_keys) > 1:
        raise PrometheusError("--by day and --by hour together: choose one with --source prometheus")
    labels: list[str] = []
    for key in by:
        if key == "model":
            labels.extend((_RESPONSE_MODEL, _REQUEST_MODEL))
        elif key not in ("day", "hour"):
            labels.append(_label_for(key))
    labels = list(dict.fromkeys(labels))

    flat: dict[tuple[Any, ...], Totals] = {}

    def add(figure: str, metric_labels: Mapping[str, str], value: float, period: str | None) -> None:
        values = []
        for key in by:
            if key in ("day", "hour"):
                values.append(period)
            elif key == "model":
                values.append(metric_labels.get(_RESPONSE_MODEL) or metric_labels.get(_REQUEST_MODEL) or None)
            else:
                values.append(metric_labels.get(_label_for(key)) or None)
        totals = flat.get(tuple(values))
        if totals is None:
            totals = flat[tuple(values)] = Totals(incomplete=None, cache_savings_usd=None)
        amount = value if figure == "cost_usd" else round(value)
        setattr(totals, figure, getattr(totals, figure) + amount)

    if time_keys:
        step = 86400 if time_keys[0] == "day" else 3600
        first_end, last_end = _period_ends(since, until, hourly=step == 3600)
        for figure in _FIGURES:
            query = _expression(figure, filters, labels, step * 1000)
            data = client.get(
                "/api/v1/query_range", {"query": query, "start": first_end, "end": last_end, "step": step}
            )
            for series in data.get("result", []):
                for stamp, raw in series.get("values", []):
                    value = float(raw)
                    if value and math.isfinite(value):
                        period = datetime.fromtimestamp(float(stamp) - step)
                        label = period.strftime("%Y-%m-%d" if step == 86400 else "%Y-%m-%d %H:00")
                        add(figure, series.get("metric", {}), value, label)
        notes.append(f"from Prometheus, --by {time_keys[0]} counts whole {time_keys[0]}s")
    else:
        window = max(1, round((until - since) * 1000))  # ms: the range starts where --since says
        for figure in _FIGURES:
            data = client.get(
                "/api/v1/query", {"query": _expression(figure, filters, labels, window), "time": until}
            )
            for series in data.get("result", []):
                value = float(series["value"][1])
                if value and math.isfinite(value):
                    add(figure, series.get("metric", {}), value, None)
    for key in by:
        if (
            key not in ("day", "hour") and flat and all(values[by.index(key)] is None for values in flat)
        ):  # every value missing: the label is not on the metrics
            notes.append(
                f"no series carry {key} ({'model labels' if key == 'model' else _label_for(key)}): add it to "
                "TOKENTRAIL_METRIC_ATTRIBUTES to break down by it"
            )
    result = _build(
        by,
        {key: totals for key, totals in flat.items() if totals.calls or totals.cost_usd},
        filters,
        f"prometheus {client.url}",
    )
    result.notes.extend(notes)
    return result


def _period_ends(since: float, until: float, *, hourly: bool) -> tuple[float, float]:
    """The end of the local day (hour) containing ``since`` and of the one containing ``until``."""

    def end_of(epoch: float) -> float:
        moment = datetime.fromtimestamp(epoch)
        if hourly:
            return (moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).timestamp()
        return (moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).timestamp()

    return end_of(since), end_of(max(since, until - 1e-6))
