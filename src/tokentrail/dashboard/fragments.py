"""The parts of the dashboard loaded after the first paint: the per-call figures (the most
expensive calls, latency per model, cache writes never read), savings advice and what-if
repricing. Each reads every call in the range, which takes longer than the rollup's figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from .page import NONE, count, local_time, usd

__all__ = ["render_advice", "render_details", "render_whatif"]

# Columns each kind of advice lists (key, heading), besides the dollars at stake.
_ADVICE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "uncached_inputs": (("model", "model"), ("pipeline", "pipeline"), ("agent", "agent"), ("calls", "calls"),
                        ("prefix_tokens", "cacheable prefix")),
    "unread_cache_writes": (("model", "model"), ("writes", "writes"), ("tokens", "tokens")),
    "batch": (("pipeline", "pipeline"), ("calls", "calls"), ("cost_usd", "cost"),
              ("batch_usd", "at batch prices")),
    "reasoning": (("model", "model"), ("reasoning_tokens", "reasoning tokens"), ("reasoning_share", "share")),
    "cheaper_model": (("model", "model"), ("cheaper_model", "cheaper model"), ("calls", "calls"),
                      ("cost_usd", "cost"), ("cheaper_usd", "at its prices")),
}  # fmt: skip


def _cell(key: str, value: Any) -> str:
    if value is None:
        return f"<td>{NONE}</td>"
    if key.endswith("_usd") or key == "usd_at_stake":
        return f'<td class="num">{usd(value)}</td>'
    if key.endswith("_share"):
        return f'<td class="num">{value * 100:.1f}%</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{escape(str(value))}</td>"


def render_advice(items: Sequence[Mapping[str, Any]]) -> str:
    """Each kind of advice: its dollars at stake, what it means, and its largest items."""
    parts = []
    for advice in items:
        columns = _ADVICE_COLUMNS.get(advice["kind"], ())
        head = "".join(f'<th scope="col">{escape(label)}</th>' for _, label in columns)
        rows = "".join(
            "<tr>"
            + "".join(_cell(key, item.get(key)) for key, _ in columns)
            + _cell("usd_at_stake", item["usd_at_stake"])
            + "</tr>"
            for item in advice["items"][:10]
        )
        table = (
            f'<table><caption>{escape(advice["title"])}</caption><thead><tr>{head}<th scope="col">at '
            "stake</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
            if advice["items"]
            else '<p class="note">nothing found</p>'
        )
        parts.append(
            f'<article class="advice" data-kind="{escape(advice["kind"])}"><h3>{escape(advice["title"])}: '
            f'<span data-usd="{advice["usd_at_stake"]!r}">{usd(advice["usd_at_stake"])}</span></h3>'
            f'<p class="note">{escape(advice["detail"])}</p>{table}</article>'
        )
    return "".join(parts)


def render_whatif(found: Mapping[str, Any]) -> str:
    """The candidates side by side against what the calls cost, with the caveats."""
    if "error" in found:
        return f'<p role="alert" class="error">{escape(found["error"])}</p>'
    mix = found["mix"]
    kinds = (
        ("uncached_input_tokens", "uncached input"),
        ("cache_read_tokens", "cache read"),
        ("cache_write_tokens", "cache write"),
        ("output_tokens", "output"),
        ("reasoning_tokens", "reasoning"),
    )
    mix_text = ", ".join(f"{label} {mix[key]:,}" for key, label in kinds)
    rows = "".join(
        f'<tr><th scope="row">{escape(c["provider"])}:{escape(c["model"])}</th>'
        f"<td>{escape(c['priced_model'] or '-')}</td>"
        f'<td class="num" data-usd="{c["cost_of_priced_calls_usd"]!r}">'
        f"{usd(c['cost_of_priced_calls_usd'])}</td>"
        f'<td class="num">{usd(c["difference_usd"])}</td>'
        f'<td class="num">{"-" if c["ratio"] is None else format(c["ratio"], ".3f") + "x"}</td></tr>'
        for c in found["candidates"]
    )
    caveats = "".join(f"<li>{escape(text)}</li>" for text in found["caveats"])
    unpriced = (
        f' <span class="unpriced">{found["unpriced_calls"]:,} calls had no known price: left out of the '
        "comparison"
        "</span>"
        if found["unpriced_calls"]
        else ""
    )
    return (
        f"<p>{mix['calls']:,} calls with usage: {mix_text}.{unpriced}</p>"
        '<table id="whatif-table"><caption>What the same calls would have cost</caption><thead><tr>'
        '<th scope="col">candidate</th><th scope="col">priced as</th><th scope="col">cost</th>'
        '<th scope="col">vs actual</th><th scope="col">ratio</th></tr></thead><tbody>'
        f'<tr><th scope="row">actual</th><td>-</td><td class="num" data-usd="{found["actual_usd"]!r}">'
        f'{usd(found["actual_usd"])}</td><td class="num">-</td><td class="num">1.000x</td></tr>'
        f"{rows}</tbody></table>"
        f'<ul class="note">{caveats}</ul>'
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _name(value: str | None) -> str:
    return escape(NONE if value is None else value)


def render_details(details: Mapping[str, Any]) -> dict[str, str]:
    """The per-call figures as HTML for their three places on the page (element id -> HTML)."""
    calls = []
    for call in details["top_calls"]:
        link = (
            f'<a href="{escape(call["trace_url"])}" rel="noreferrer" target="_blank">'
            f"{escape(call['trace_id'][:16])}…</a>"
            if call["trace_url"]
            else "-"
        )
        calls.append(
            f"<tr><td>{escape(local_time(call['start_time']))}</td><td>{_name(call['model'])}</td>"
            f"<td>{_name(call['pipeline'])}</td><td>{_name(call['agent'])}</td>"
            f'<td class="num">{count(call["input_tokens"])}</td><td class="num">'
            f"{count(call['output_tokens'])}</td>"
            f'<td class="num" data-usd="{call["cost_usd"]!r}">{usd(call["cost_usd"])}</td><td>{link}</td>'
            "</tr>"
        )
    heads = ("when", "model", "pipeline", "agent", "input", "output", "cost", "trace")
    top = (
        '<div class="scroll"><table id="top-calls"><caption>Most expensive calls</caption><thead><tr>'
        + "".join(f'<th scope="col">{head}</th>' for head in heads)
        + f"</tr></thead><tbody>{''.join(calls)}</tbody></table></div>"
    )
    latency_rows = "".join(
        f'<tr><th scope="row">{_name(row["model"])}</th><td class="num">{_seconds(row["p50_s"])}</td>'
        f'<td class="num">{_seconds(row["p95_s"])}</td><td class="num">{_seconds(row["ttfc_p50_s"])}</td>'
        f'<td class="num">{_seconds(row["ttfc_p95_s"])}</td></tr>'
        for row in details["latency"]
    )
    latency = (
        '<table id="latency-table"><caption>Latency per model (nearest-rank percentiles)</caption><thead><tr>'
        '<th scope="col">model</th><th scope="col">p50</th><th scope="col">p95</th>'
        '<th scope="col">first chunk p50</th><th scope="col">first chunk p95</th></tr></thead>'
        f"<tbody>{latency_rows}</tbody></table>"
    )
    writes = details["cache_writes"]
    rows = (
        ("cache writes read again (calls)", count(writes["writes_read"]), "cache-read-again"),
        ("cache writes never read again (calls)", count(writes["writes_never_read"]), "cache-unread"),
        ("… their tokens", count(writes["writes_never_read_tokens"]), "cache-unread-tokens"),
        ("… paid above plain input", usd(writes["writes_never_read_usd"]), "cache-unread-usd"),
    )
    cache = (
        "<table><caption>Cache writes</caption><tbody>"
        + "".join(
            f'<tr><th scope="row">{name}</th><td class="num" id="{ident}">{value}</td></tr>'
            for name, value, ident in rows
        )
        + "</tbody></table><p class=note>A write counts as read when a later call of the same provider and "
        "model read the cache within the entry's lifetime (5 minutes, 1 hour for 1-hour writes).</p>"
    )
    return {"details": top, "latency": latency, "cache-writes": cache}
