"""The dashboard page: HTML with server-drawn SVG charts, from the dict of
:func:`tokentrail.insights.overview.overview` and nothing else.

Why SVG drawn here rather than a vendored chart library: the charts are a few stacked bars and a
line, which take less code to draw than a library takes to configure; nothing third-party ships
in the wheel; the page shows its figures without JavaScript (which only refreshes it and submits
the filters); and every chart is drawn from the same numbers as the table under it, which is what
a screen reader reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from ..insights.overview import FILTER_KEYS, STACK_KEYS, View

__all__ = ["NONE", "count", "local_time", "render_error", "render_main", "render_page", "usd"]

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
OTHER_COLOUR = "#8c8c8c"
MAX_STACKS = len(PALETTE)
TOKEN_KINDS = (
    ("uncached_input", "uncached input"),
    ("cache_read", "cache read"),
    ("cache_write", "cache write"),
    ("output", "output"),
    ("reasoning", "reasoning"),
)
NONE = "(none)"


def usd(value: float | None) -> str:
    """Dollars as the report prints them (six decimals)."""
    return "-" if value is None else f"${value:,.6f}"


def count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _name(value: str | None) -> str:
    return escape(NONE if value is None else value)


def _cost_cell(cost: float, unpriced: int) -> str:
    """A cost, never a bare $0 for calls without a price."""
    text = f'<td class="num" data-usd="{cost!r}">{usd(cost)}'
    if unpriced:
        text += f' <span class="unpriced">+ {unpriced:,} unpriced</span>'
    return text + "</td>"


def _bars(
    labels: Sequence[str],
    layers: Sequence[tuple[str, str, Sequence[float]]],
    *,
    title: str,
    unit: str,
    line: Sequence[float] | None = None,
    line_label: str = "",
) -> str:
    """A stacked bar chart (one bar per label, one layer per (name, colour, values)), with an
    optional line over it; an image for screen readers, whose figures are in the table below."""
    width, height, left, bottom = 760, 220, 64, 22
    plot_w, plot_h = width - left - 8, height - bottom - 10
    count = max(1, len(labels))
    sums = [sum(values[i] for _, _, values in layers) for i in range(len(labels))]
    top = max([*sums, *(line or ()), 0.0]) or 1.0
    step = plot_w / count
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'preserveAspectRatio="none">',
        f'<line class="axis" x1="{left}" y1="{10 + plot_h}" x2="{width - 8}" y2="{10 + plot_h}"/>',
        f'<text class="tick" x="{left - 6}" y="16" text-anchor="end">{escape(_tick(top, unit))}</text>',
        f'<text class="tick" x="{left - 6}" y="{10 + plot_h}" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(labels):
        y = 10 + plot_h
        for name, colour, values in layers:
            value = values[i]
            if value <= 0:
                continue
            h = value / top * plot_h
            y -= h
            parts.append(
                f'<rect x="{left + i * step + step * 0.1:.2f}" y="{y:.2f}" width="{step * 0.8:.2f}" '
                f'height="{h:.2f}" fill="{colour}"><title>{escape(label)} · {escape(name)}: '
                f"{escape(_tick(value, unit))}</title></rect>"
            )
    if labels:
        for i in (0, len(labels) - 1):
            anchor = "start" if i == 0 else "end"
            x = left + (i * step if i == 0 else (i + 1) * step)
            parts.append(
                f'<text class="tick" x="{x:.2f}" y="{height - 6}" text-anchor="{anchor}">'
                f"{escape(labels[i])}</text>"
            )
    if line:
        points = " ".join(
            f"{left + (i + 0.5) * step:.2f},{10 + plot_h - v / top * plot_h:.2f}" for i, v in enumerate(line)
        )
        parts.append(
            f'<polyline class="previous" points="{points}"><title>{escape(line_label)}</title></polyline>'
        )
    parts.append("</svg>")
    legend = "".join(
        f'<li><svg class="swatch" viewBox="0 0 10 10"><rect width="10" height="10" fill="{colour}"/></svg>'
        f"{escape(name)}</li>"
        for name, colour, _ in layers
    )
    if line:
        legend += (
            '<li><svg class="swatch" viewBox="0 0 10 10"><line class="previous" x1="0" y1="5" x2="10" '
            'y2="5"/>'
            f"</svg>{escape(line_label)}</li>"
        )
    return "".join(parts) + f'<ul class="legend" aria-hidden="true">{legend}</ul>'


def _tick(value: float, unit: str) -> str:
    return f"${value:,.4f}" if unit == "usd" else f"{value:,.0f}"


def _spend(data: Mapping[str, Any]) -> str:
    spend = data["spend"]
    labels = data["labels"]
    series = spend["series"]
    shown = series[: MAX_STACKS - 1] if len(series) > MAX_STACKS else series
    layers = [
        (NONE if s["value"] is None else s["value"], PALETTE[i], s["cost_usd"]) for i, s in enumerate(shown)
    ]
    if len(series) > len(shown):
        rest = [sum(s["cost_usd"][i] for s in series[len(shown) :]) for i in range(len(labels))]
        layers.append((f"{len(series) - len(shown)} more", OTHER_COLOUR, rest))
    chart = _bars(
        labels,
        layers,
        title=f"spend per {data['period']} by {data['stack_by']}",
        unit="usd",
        line=spend["previous_cost_usd"],
        line_label="previous period",
    )
    names = [NONE if s["value"] is None else s["value"] for s in series]
    head = "".join(f'<th scope="col">{escape(n)}</th>' for n in names)
    rows = []
    for i, label in enumerate(labels):
        cells = "".join(
            f'<td class="num" data-usd="{s["cost_usd"][i]!r}">{usd(s["cost_usd"][i])}</td>' for s in series
        )
        rows.append(
            f'<tr><th scope="row">{escape(label)}</th>'
            f"{_cost_cell(spend['cost_usd'][i], spend['unpriced_calls'][i])}"
            f'<td class="num" data-usd="{spend["previous_cost_usd"][i]!r}">'
            f"{usd(spend['previous_cost_usd'][i])}</td>"
            f"{cells}</tr>"
        )
    total = data["totals"]
    change = total["cost_usd"] - spend["previous_total_usd"]
    summary = (
        f'<p class="big"><span id="total-cost" data-usd="{total["cost_usd"]!r}">'
        f"{usd(total['cost_usd'])}</span> "
        f'over <span id="total-calls">{total["calls"]:,}</span> calls'
        + (
            f' <span class="unpriced" id="total-unpriced">+ {total["unpriced_calls"]:,} unpriced calls</span>'
            if total["unpriced_calls"]
            else ""
        )
        + f'<br><small>previous period <span data-usd="{spend["previous_total_usd"]!r}">'
        f"{usd(spend['previous_total_usd'])}</span>"
        f" ({'+' if change >= 0 else '-'}{usd(abs(change))})</small></p>"
    )
    table = (
        f'<div class="scroll"><table id="spend-table"><caption>Spend per {data["period"]} by '
        f"{escape(data['stack_by'])}"
        f'</caption><thead><tr><th scope="col">{data["period"]}</th><th scope="col">total</th>'
        f'<th scope="col">previous period</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    )
    return _panel("spend", "Spend over time", summary + chart + table)


def _tokens(data: Mapping[str, Any]) -> str:
    tokens = data["tokens"]
    layers = [(label, PALETTE[i], tokens[key]) for i, (key, label) in enumerate(TOKEN_KINDS)]
    chart = _bars(data["labels"], layers, title=f"tokens per {data['period']} by kind", unit="tokens")
    head = "".join(f'<th scope="col">{label}</th>' for _, label in TOKEN_KINDS)
    rows = "".join(
        f'<tr><th scope="row">{escape(label)}</th>'
        + "".join(f'<td class="num">{tokens[key][i]:,}</td>' for key, _ in TOKEN_KINDS)
        + "</tr>"
        for i, label in enumerate(data["labels"])
    )
    table = (
        f'<div class="scroll"><table id="tokens-table"><caption>Tokens per {data["period"]} by kind</caption>'
        f'<thead><tr><th scope="col">{data["period"]}</th>{head}</tr></thead><tbody>{rows}</tbody></table>'
        "</div>"
    )
    return _panel("tokens", "Tokens by kind", chart + table)


def _cache(data: Mapping[str, Any]) -> str:
    cache = data["cache"]
    rows = [
        ("hit ratio (cache reads / input tokens)", _percent(cache["hit_ratio"]), "cache-hit-ratio"),
        ("cache read tokens", count(cache["cache_read_tokens"]), "cache-read"),
        ("cache write tokens", count(cache["cache_write_tokens"]), "cache-write"),
        ("saved by cache reads", usd(cache["savings_usd"]), "cache-saved"),
    ]
    body = "".join(
        f'<tr><th scope="row">{name}</th><td class="num" id="{ident}">{value}</td></tr>'
        for name, value, ident in rows
    )
    unread = '<div id="cache-writes" aria-live="polite"><p class="note">cache writes: loading…</p></div>'
    return _panel(
        "cache",
        "Prompt cache",
        f"<table><caption>Prompt cache</caption><tbody>{body}</tbody></table>{unread}",
    )


def _budgets(data: Mapping[str, Any]) -> str:
    budgets = data["budgets"]
    if not budgets["configured"]:
        return _panel("budgets", "Budgets", f'<p class="note">{escape(budgets["note"])}</p>')
    rows = []
    for item in budgets["items"]:
        forecast = item.get("forecast") or {}
        percent = min(item["percent_used"], 100.0)
        bar = (
            f'<svg class="meter" viewBox="0 0 100 8" role="img" aria-label="{item["percent_used"]:.1f}% '
            'used" '
            f'preserveAspectRatio="none"><rect width="100" height="8" class="meter-bg"/>'
            f'<rect width="{percent:.2f}" height="8" '
            f'fill="{"#e15759" if item["over_budget"] else "#59a14f"}"/></svg>'
        )
        projected = (
            f"{usd(forecast['projected_usd'])} <small>"
            f"({usd(forecast['low_usd'])} to {usd(forecast['high_usd'])}, "
            f"{escape(forecast['confidence'])})</small>"
            if forecast
            else "-"
        )
        breach = escape(forecast.get("exhausted_at") or "not in this window") if forecast else "-"
        rows.append(
            f'<tr><th scope="row">{escape(item["name"])}</th><td>{escape(item["window"])}</td>'
            f'<td class="num">{usd(item["usd"])}</td><td class="num" data-usd="{item["spent_usd"]!r}">'
            f"{usd(item['spent_usd'])}</td>"
            f'<td class="num">{item["percent_used"]:.1f}% {bar}</td>'
            f'<td class="num">{usd(item["burn_rate_usd_per_day"])}/day</td><td class="num">{projected}</td>'
            f"<td>{breach}</td><td>not recorded</td></tr>"
        )
    table = (
        '<div class="scroll"><table id="budgets-table"><caption>Budgets in their current window</caption>'
        "<thead><tr>"
        '<th scope="col">budget</th><th scope="col">window</th><th scope="col">limit</th><th scope="col">'
        "spent</th>"
        '<th scope="col">used</th><th scope="col">burn rate</th><th scope="col">projected at window end</th>'
        '<th scope="col">breach</th><th scope="col">calls refused</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    return _panel("budgets", "Budgets", table + f'<p class="note">{escape(budgets["note"])}</p>')


def _top(data: Mapping[str, Any]) -> str:
    top = data["top"]

    def groups(ident: str, key: str) -> str:
        rows = "".join(
            f'<tr><th scope="row">{_name(g["value"])}</th><td class="num">{g["calls"]:,}</td>'
            f"{_cost_cell(g['cost_usd'], g['unpriced_calls'])}</tr>"
            for g in top[ident]
        )
        return (
            f'<table id="top-{ident}"><caption>Most expensive {ident}</caption><thead><tr><th scope="col">'
            f"{key}</th>"
            f'<th scope="col">calls</th><th scope="col">cost</th></tr></thead><tbody>{rows}</tbody></table>'
        )

    return _panel(
        "top",
        "Most expensive",
        '<div id="details" aria-live="polite"><p class="note">most expensive calls: loading…</p></div>'
        f'<div class="pair">{groups("pipelines", "pipeline")}{groups("agents", "agent")}</div>',
    )


def _models(data: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{_name(m["model"])}</th><td class="num">{m["calls"]:,}</td>'
        f"{_cost_cell(m['cost_usd'], m['unpriced_calls'])}"
        f'<td class="num">{usd(m["avg_cost_per_call_usd"]) if m["priced_calls"] else "unpriced"}</td>'
        f'<td class="num">{count(m["avg_tokens_per_call"])}</td>'
        f'<td class="num">{_percent(m["error_rate"])}</td></tr>'
        for m in data["models"]
    )
    table = (
        '<div class="scroll"><table id="models-table"><caption>Models</caption><thead><tr><th scope="col">'
        "model</th>"
        '<th scope="col">calls</th><th scope="col">cost</th><th scope="col">cost / call</th>'
        '<th scope="col">tokens / call</th><th scope="col">error rate</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )
    unpriced = data["unpriced"]
    note = (
        f'<p class="note" id="catalogue">Prices: {escape(unpriced["catalogue"])}. '
        + (
            f'<span class="unpriced">{unpriced["calls"]:,} calls have no known price and are not counted '
            "as $0.</span>"
            if unpriced["calls"]
            else "Every call with usage is priced."
        )
        + "</p>"
    )
    latency = '<div id="latency" aria-live="polite"><p class="note">latency per model: loading…</p></div>'
    return _panel("models", "Models", table + latency + note)


def _panel(ident: str, title: str, body: str) -> str:
    return (
        f'<section class="panel" id="panel-{ident}" aria-labelledby="h-{ident}">'
        f'<h2 id="h-{ident}">{title}</h2>{body}</section>'
    )


def _filters(view: View) -> str:
    def field(name: str, label: str, hint: str) -> str:
        return (
            f'<label>{label}<input name="{name}" value="{escape(getattr(view, name))}" placeholder="{hint}" '
            f'aria-describedby="filters-help"></label>'
        )

    stack = "".join(
        f'<option value="{key}"{" selected" if key == view.stack else ""}>{key}</option>'
        for key in STACK_KEYS
    )
    fields = [field("since", "from", "30d"), field("until", "to", "now")]
    fields += [field(key, key, "any") for key in FILTER_KEYS]
    return (
        '<form id="filters" method="get" action="/" role="search" aria-label="filters">'
        + "".join(fields)
        + f'<label>stack by<select name="stack">{stack}</select></label><button type="submit">Apply</button>'
        '<p id="filters-help" class="note">Times: 30m, 24h, 7d, a date (2026-11-01) or date and time. '
        "Empty: any. The URL keeps the view: bookmark or share it.</p></form>"
    )


def _whatif(view: View, whatif: str) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{escape(key)}" value="{escape(value)}">'
        for key, value in view.query().items()
    )
    return _panel(
        "whatif",
        "What if these calls ran on another model?",
        '<form id="whatif-form" method="get" action="/">'
        f'{hidden}<label>candidates (PROVIDER:MODEL, comma-separated)<input name="whatif" size="48" '
        f'value="{escape(whatif)}" placeholder="openai:gpt-4o-mini, anthropic:claude-haiku-4-5"></label>'
        '<button type="submit">Reprice</button></form>'
        '<div id="whatif-result" aria-live="polite">'
        f"{'<p class=note>computing…</p>' if whatif else ''}</div>",
    )


def render_main(data: Mapping[str, Any], view: View, *, whatif: str = "") -> str:
    """The panels (what the page refreshes)."""
    return (
        f'<p class="period" id="period">{escape(data["since"])} → {escape(data["until"])} · '
        f"updated {escape(data['generated_at'])}</p>"
        + _spend(data)
        + _tokens(data)
        + '<div class="pair">'
        + _cache(data)
        + _budgets(data)
        + "</div>"
        + _top(data)
        + _models(data)
        + _whatif(view, whatif)
        + '<section class="panel" id="panel-advice" aria-labelledby="h-advice"><h2 id="h-advice">Savings '
        "advice</h2>"
        '<div id="advice" aria-live="polite"><p class="note">computing…</p></div></section>'
        + f'<script type="application/json" id="dashboard-data">{_json(data)}</script>'
    )


def local_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _json(data: Mapping[str, Any]) -> str:
    # "</" never appears inside a script element.
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def render_page(data: Mapping[str, Any], view: View, *, refresh_s: float, whatif: str = "") -> str:
    """The whole page for ``view`` (and the what-if candidates, if any)."""
    query = urlencode({**view.query(), **({"whatif": whatif} if whatif else {})})
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>tokentrail · cost dashboard</title>"
        '<link rel="stylesheet" href="/static/dashboard.css"><link rel="icon" href="data:,">'
        '</head><body><a class="skip" href="#main">Skip to the figures</a>'
        "<header><h1>tokentrail <span>cost dashboard</span></h1>"
        f"{_filters(view)}</header>"
        f'<main id="main" data-query="{escape(query)}" data-refresh-ms="{int(refresh_s * 1000)}" '
        'tabindex="-1">'
        f"{render_main(data, view, whatif=whatif)}</main>"
        '<script src="/static/dashboard.js" defer></script></body></html>'
    )


def render_error(message: str, view: View) -> str:
    """The page when a filter cannot be used: the message names the setting to fix."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tokentrail · cost '
        "dashboard</title>"
        '<link rel="stylesheet" href="/static/dashboard.css"><link rel="icon" href="data:,"></head><body>'
        f"<header><h1>tokentrail <span>cost dashboard</span></h1>{_filters(view)}</header>"
        f'<main id="main"><p role="alert" class="error">{escape(message)}</p></main></body></html>'
    )
