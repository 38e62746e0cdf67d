"""The dashboard's figures for one view (a time range and filters), as one JSON-ready dict.

Every figure comes from the ledger's own queries (:func:`~tokentrail.ledger.query.report` and
:mod:`~tokentrail.ledger.details`), so the page shows what ``tokentrail report`` prints for the
same filters. The page renders this dict and nothing else (``/v1/dashboard`` serves it as JSON).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..budgets import budget_statuses
from ..ledger.query import Filters, Totals
from ..ledger.source import CallSource, spend_reader
from ..pricing import Pricer
from ..timespec import FORMS, PATTERN, parse_when
from ..usage import Usage
from .forecast import fit, project

__all__ = [
    "DEFAULT_SINCE",
    "DEFAULT_TRACE_URL",
    "FILTER_KEYS",
    "STACK_KEYS",
    "View",
    "call_details",
    "overview",
]

STACK_KEYS = ("model", "provider", "agent", "pipeline")
FILTER_KEYS = ("provider", "model", "agent", "pipeline", "user")
DEFAULT_SINCE = "30d"
DEFAULT_TRACE_URL = "http://localhost:16686/trace/{trace_id}"
TOP_N = 10
HOURLY_UP_TO_S = 3 * 86400
"""Ranges up to three days are drawn per hour, longer ones per day."""
REFUSED_NOTE = "refused calls are not in the ledger: a refusal happens before any request or span"


@dataclass(frozen=True)
class View:
    """What the page shows: a time range (as typed: ``30d``, ``2026-11-01``), filters, a stack key."""

    since: str = DEFAULT_SINCE
    until: str = ""
    provider: str = ""
    model: str = ""
    agent: str = ""
    pipeline: str = ""
    user: str = ""
    stack: str = "model"

    def bounds(self, now: float) -> tuple[float, float]:
        """(since, until) in epoch seconds; raises ValueError naming the bad setting."""
        since = _when("since", self.since or DEFAULT_SINCE, now)
        until = _when("until", self.until or "now", now)  # parsed alike: "now" is the same instant
        if since > until:  # equal is an empty range: no calls, not an error
            raise ValueError(f"since {self.since!r} is after until {self.until or 'now'!r}")
        if self.stack not in STACK_KEYS:
            raise ValueError(f"stack {self.stack!r}: use one of {', '.join(STACK_KEYS)}")
        return since, until

    def filters(self, since: float | None, until: float | None) -> Filters:
        where = {key: getattr(self, key) for key in ("agent", "user") if getattr(self, key)}
        return Filters(since, until, self.pipeline or None, self.model or None, self.provider or None, where)

    def query(self) -> dict[str, str]:
        """The URL's query: only what differs from the default view."""
        default = View()
        return {
            key: getattr(self, key)
            for key in ("since", "until", *FILTER_KEYS, "stack")
            if getattr(self, key) != getattr(default, key)
        }


def _when(setting: str, text: str, now: float) -> float:
    # Only the documented forms (PATTERN): a URL is not a terminal, where " 7D" would be forgiven.
    try:
        if not PATTERN.fullmatch(text):
            raise ValueError(f"{text!r} is not a time: use {FORMS}")
        return parse_when(text, now)
    except ValueError as exc:
        raise ValueError(f"{setting}: {exc}") from None


def _labels(since: float, until: float, hourly: bool) -> list[str]:
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    start = datetime.fromtimestamp(since).replace(minute=0, second=0, microsecond=0)
    if not hourly:
        start = start.replace(hour=0)
    labels = []
    moment = start
    while moment.timestamp() < until:
        labels.append(moment.strftime("%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"))
        moment += step
    return labels


def _series(source: CallSource, view: View, since: float, until: float) -> dict[str, Any]:
    hourly = until - since <= HOURLY_UP_TO_S
    period = "hour" if hourly else "day"
    labels = _labels(since, until, hourly)
    position = {label: i for i, label in enumerate(labels)}
    filters = view.filters(since, until)
    stacked = source.report([period, view.stack], filters)
    totals = [Totals() for _ in labels]
    stacks: dict[str | None, list[float]] = {}
    for group in stacked.groups:
        index = position.get(group.value or "")
        if index is None:
            continue
        totals[index] = group.totals
        for child in group.children:
            stacks.setdefault(child.value, [0.0] * len(labels))[index] = child.totals.cost_usd
    order = sorted(stacks, key=lambda value: -sum(stacks[value]))
    # The previous period: the same length just before, period by period.
    length = until - since
    previous = source.report([period], view.filters(since - length, since))
    previous_labels = _labels(since - length, since, hourly)[-len(labels) :] if labels else []
    previous_cost = {group.value: group.totals.cost_usd for group in previous.groups}
    return {
        "period": period,
        "labels": labels,
        "stack_by": view.stack,
        "spend": {
            "series": [{"value": value, "cost_usd": stacks[value]} for value in order],
            "cost_usd": [t.cost_usd for t in totals],
            "calls": [t.calls for t in totals],
            "unpriced_calls": [t.unpriced_calls for t in totals],
            "previous_labels": previous_labels,
            "previous_cost_usd": [previous_cost.get(label, 0.0) for label in previous_labels],
            "previous_total_usd": previous.totals.cost_usd,
        },
        "tokens": {
            "uncached_input": [t.input_tokens - t.cache_read_tokens - t.cache_write_tokens for t in totals],
            "cache_read": [t.cache_read_tokens for t in totals],
            "cache_write": [t.cache_write_tokens for t in totals],
            "output": [t.output_tokens - t.reasoning_tokens for t in totals],
            "reasoning": [t.reasoning_tokens for t in totals],
        },
    }


def _usage_of(row: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=row["input_tokens"] or 0,
        output_tokens=row["output_tokens"] or 0,
        cache_read_tokens=row["cache_read_tokens"] or 0,
        cache_write_tokens=row["cache_write_tokens"] or 0,
        cache_write_1h_tokens=row["cache_write_1h_tokens"] or 0,
        reasoning_tokens=row["reasoning_tokens"] or 0,
        input_audio_tokens=row["input_audio_tokens"] or 0,
        output_audio_tokens=row["output_audio_tokens"] or 0,
        input_image_tokens=row["input_image_tokens"] or 0,
        web_searches=row["web_searches"] or 0,
    )


def write_premium_usd(pricer: Pricer, row: dict[str, Any]) -> float | None:
    """What a call's cache write cost above the same tokens as plain input (None: unpriced)."""
    card = None
    for name in (row["price_model"], row["model"], row["request_model"]):
        if name and card is None:
            card = pricer.card(row["provider"], name, row["start_time"])
    if card is None:
        return None
    usage = _usage_of(row)
    plain = Usage(**{**_fields(usage), "cache_write_tokens": 0, "cache_write_1h_tokens": 0})
    return card.price(usage)[2] - card.price(plain)[2]


def _fields(usage: Usage) -> dict[str, Any]:
    return {
        name: getattr(usage, name)
        for name in (
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
    }


def _cache(totals: Totals) -> dict[str, Any]:
    return {
        "hit_ratio": totals.cache_read_tokens / totals.input_tokens if totals.input_tokens else None,
        "input_tokens": totals.input_tokens,
        "cache_read_tokens": totals.cache_read_tokens,
        "cache_write_tokens": totals.cache_write_tokens,
        "savings_usd": totals.cache_savings_usd,
    }


def _unread_writes(source: CallSource, filters: Filters, pricer: Pricer) -> dict[str, Any]:
    unread, read = source.cache_writes(filters)
    premiums = [write_premium_usd(pricer, row) for row in unread]
    return {
        "writes_read": len(read),
        "writes_never_read": len(unread),
        "writes_never_read_tokens": sum(row["cache_write_tokens"] for row in unread),
        "writes_never_read_usd": sum(p for p in premiums if p is not None),
        "writes_never_read_unpriced": sum(1 for p in premiums if p is None),
    }


def budget_panel(source: CallSource, budgets_file: str | Path | None, now: float) -> dict[str, Any]:
    """Each configured budget: spend, percent, burn rate, projected end of window, breach date, all
    read from ``source`` (the ledger, or a fleet's ClickHouse)."""
    if not budgets_file:
        return {"configured": False, "items": [], "note": "no budgets file: start serve with --budgets FILE"}
    items = []
    for status in budget_statuses(str(budgets_file), source.name, spend_reader(source), now):
        item = dict(status)
        item["calls_refused"] = None
        if status["window_start"] is not None and status["window_end"] is not None:
            model = fit(source, Filters(where=dict(status["scope"])), now=now)
            found = project(
                model,
                f"budget:{status['name']}",
                status["window_start"],
                status["window_end"],
                status["spent_usd"],
                status["usd"],
            )
            item["burn_rate_usd_per_day"] = model.level_usd_per_day
            item["forecast"] = found.as_dict()
        else:
            item["burn_rate_usd_per_day"] = None
            item["forecast"] = None
        items.append(item)
    return {"configured": True, "items": items, "note": REFUSED_NOTE}


def _top(groups: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "value": g.value,
            "calls": g.totals.calls,
            "cost_usd": g.totals.cost_usd,
            "unpriced_calls": g.totals.unpriced_calls,
        }
        for g in groups[:TOP_N]
    ]


def overview(
    source: CallSource,
    view: View,
    *,
    budgets_file: str | Path | None = None,
    pricer: Pricer | None = None,
    now: float | None = None,
    alongside: Callable[[], AbstractContextManager[CallSource]] | None = None,
) -> dict[str, Any]:
    """The figures the rollup answers (the page's first load): spend and tokens over time, the
    cache, budgets with forecasts, the most expensive pipelines and agents, the model table.

    ``alongside`` opens a second source over the same calls (the ledger, opened again): given, the
    top pipelines and agents are read from it on another thread while ``source`` answers the rest.
    Raises ValueError for a bad view setting."""
    now = time.time() if now is None else now
    pricer = pricer or Pricer()
    since, until = view.bounds(now)
    filters = view.filters(since, until)
    if alongside is None:
        top = _top_pipelines_and_agents(source, filters)
        figures = _rollup_figures(source, view, filters, since, until, budgets_file, now)
    else:
        # Over 1,000,000 calls the top groups are half of the first load's reading (0.4 of 0.8 s).
        # SQLite lets the GIL go while it runs a query, so on a second connection and thread the two
        # halves overlap on two cores; a view's figures are read statement by statement either way.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokentrail-overview") as pool:
            pending = pool.submit(_read_top, alongside, filters)
            figures = _rollup_figures(source, view, filters, since, until, budgets_file, now)
            top = pending.result()
    return _assemble(view, since, until, now, pricer, figures, top)


def _read_top(
    alongside: Callable[[], AbstractContextManager[CallSource]], filters: Filters
) -> dict[str, Any]:
    with alongside() as other:
        return _top_pipelines_and_agents(other, filters)


def _top_pipelines_and_agents(source: CallSource, filters: Filters) -> dict[str, Any]:
    return {
        "pipelines": _top(source.top_groups("pipeline", filters, TOP_N)),
        "agents": _top(source.top_groups("agent", filters, TOP_N)),
    }


def _rollup_figures(
    source: CallSource,
    view: View,
    filters: Filters,
    since: float,
    until: float,
    budgets_file: str | Path | None,
    now: float,
) -> dict[str, Any]:
    """Everything but the top groups: the model table, the series, the budgets."""
    return {
        "by_model": source.report(["model"], filters),
        "series": _series(source, view, since, until),
        "budgets": budget_panel(source, budgets_file, now),
    }


def _assemble(
    view: View,
    since: float,
    until: float,
    now: float,
    pricer: Pricer,
    figures: dict[str, Any],
    top: dict[str, Any],
) -> dict[str, Any]:
    by_model = figures["by_model"]
    totals = by_model.totals
    models = [
        {
            "model": group.value,
            "calls": group.totals.calls,
            "priced_calls": group.totals.priced_calls,
            "unpriced_calls": group.totals.unpriced_calls,
            "cost_usd": group.totals.cost_usd,
            "avg_cost_per_call_usd": group.totals.avg_cost_per_call,
            "avg_tokens_per_call": group.totals.avg_tokens_per_call,
            "errors": group.totals.errors,
            "error_rate": group.totals.errors / group.totals.calls if group.totals.calls else None,
        }
        for group in by_model.groups
    ]
    return {
        "view": {**view.query(), "since_epoch": since, "until_epoch": until},
        "since": _iso(since),
        "until": _iso(until),
        "generated_at": _iso(now),
        "catalogue": pricer.catalogue_version,
        "totals": totals.as_dict(),
        **figures["series"],
        "cache": _cache(totals),
        "budgets": figures["budgets"],
        "top": top,
        "models": models,
        "unpriced": {"calls": totals.unpriced_calls, "catalogue": pricer.catalogue_version},
    }


def call_details(
    source: CallSource,
    view: View,
    *,
    trace_url: str = DEFAULT_TRACE_URL,
    pricer: Pricer | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The figures only single calls answer (loaded after the first paint, as they read every
    call in the range): the most expensive calls with trace links, latency and time to first chunk
    per model, and the cache writes never read again."""
    now = time.time() if now is None else now
    pricer = pricer or Pricer()
    since, until = view.bounds(now)
    filters = view.filters(since, until)
    calls = source.top_calls(filters, TOP_N)
    for call in calls:
        call["trace_url"] = trace_url.replace("{trace_id}", call["trace_id"]) if call["trace_id"] else None
    latency = source.latency_by_model(filters)
    return {
        "view": {**view.query(), "since_epoch": since, "until_epoch": until},
        "top_calls": calls,
        "latency": [
            {
                "model": model,
                "p50_s": timing.p50_s,
                "p95_s": timing.p95_s,
                "ttfc_p50_s": timing.ttfc_p50_s,
                "ttfc_p95_s": timing.ttfc_p95_s,
            }
            for model, timing in sorted(latency.items(), key=lambda item: item[0] or "")
        ],
        "cache_writes": _unread_writes(source, filters, pricer),
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")
