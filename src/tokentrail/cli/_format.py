"""Reports and trends as text tables, CSV, JSON and Markdown."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import datetime
from typing import IO, Any

from ..ledger.query import Group, Report, Totals

__all__ = ["render_report", "render_trend"]

_BOLD, _DIM, _RESET = "\033[1m", "\033[2m", "\033[0m"
NONE = "(none)"
# Leaf columns of the CSV and Markdown breakdowns, and of the JSON totals.
_FIGURES = (
    "calls",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "avg_cost_per_call_usd",
    "avg_tokens_per_call",
    "cache_savings_usd",
    "errors",
    "unpriced_calls",
    "incomplete",
)


def _money(value: float | None, digits: int = 6) -> str:
    return "-" if value is None else f"${value:,.{digits}f}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _when(epoch: float | None, default: str) -> str:
    return default if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def render_report(report: Report, fmt: str, out: IO[str], *, colour: bool = False) -> None:
    if fmt == "json":
        json.dump(report.as_dict(), out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif fmt == "csv":
        _report_csv(report, out)
    elif fmt == "markdown":
        _report_markdown(report, out)
    else:
        _report_table(report, out, colour)


def _figures(totals: Totals) -> list[Any]:
    values = totals.as_dict()
    return [values[name] for name in _FIGURES]


def _report_csv(report: Report, out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*report.by, *_FIGURES])
    if not report.by:
        writer.writerow(_figures(report.totals))
        return
    for values, totals in report.leaves():
        writer.writerow([*("" if value is None else value for value in values), *_figures(totals)])


def _summary_lines(report: Report) -> list[tuple[str, str]]:
    t = report.totals
    flags = [
        f"{t.errors:,} errors" if t.errors else "",
        f"{t.unpriced_calls:,} unpriced" if t.unpriced_calls else "",
    ]
    if t.incomplete:
        flags.append(f"{t.incomplete:,} incomplete")
    calls = f"{t.calls:,}" + (f"  ({', '.join(f for f in flags if f)})" if any(flags) else "")
    tokens = (
        f"{t.total_tokens:,}  input {t.input_tokens:,} (cached {t.cache_read_tokens:,}, cache writes "
        f"{t.cache_write_tokens:,})  output {t.output_tokens:,} (reasoning {t.reasoning_tokens:,})"
    )
    return [
        ("calls", calls),
        ("cost", _money(t.cost_usd)),
        ("avg cost / call", _money(t.avg_cost_per_call)),
        ("tokens", tokens),
        ("avg tokens / call", _count(t.avg_tokens_per_call)),
        (
            "cache savings",
            _money(t.cache_savings_usd) if t.cache_savings_usd is not None else "n/a from this source",
        ),
    ]


def _header(report: Report) -> list[str]:
    period = f"{_when(report.filters.since, 'the beginning')} → {_when(report.filters.until, 'now')}"
    lines = [f"tokentrail report · {report.source}", f"period: {period}"]
    described = report.filters.describe()
    if described:
        lines.append("filters: " + ", ".join(f"{key}={value}" for key, value in described.items()))
    return lines


_COLUMNS = ("calls", "input", "cached", "output", "reasoning", "cost USD", "avg/call", "share")


def _row_cells(totals: Totals, grand: Totals) -> list[str]:
    share = f"{totals.cost_usd / grand.cost_usd * 100:.1f}%" if grand.cost_usd else "-"
    return [
        f"{totals.calls:,}",
        f"{totals.input_tokens:,}",
        f"{totals.cache_read_tokens:,}",
        f"{totals.output_tokens:,}",
        f"{totals.reasoning_tokens:,}",
        f"{totals.cost_usd:,.6f}",
        "-" if totals.avg_cost_per_call is None else f"{totals.avg_cost_per_call:,.6f}",
        share,
    ]


def _report_table(report: Report, out: IO[str], colour: bool) -> None:
    bold = (lambda s: f"{_BOLD}{s}{_RESET}") if colour else (lambda s: s)
    dim = (lambda s: f"{_DIM}{s}{_RESET}") if colour else (lambda s: s)
    for line in _header(report):
        out.write(dim(line) + "\n")
    out.write("\n")
    summary = _summary_lines(report)
    width = max(len(name) for name, _ in summary)
    for name, value in summary:
        out.write(f"  {name:<{width}}  {bold(value) if name == 'cost' else value}\n")
    for note in report.notes:
        out.write(dim(f"  note: {note}") + "\n")
    if not report.by:
        return
    rows: list[tuple[int, str, list[str]]] = []

    def walk(groups: Sequence[Group], depth: int) -> None:
        for group in groups:
            rows.append(
                (
                    depth,
                    group.value if group.value is not None else NONE,
                    _row_cells(group.totals, report.totals),
                )
            )
            walk(group.children, depth + 1)

    walk(report.groups, 0)
    title = "by " + " > ".join(report.by)
    name_width = max([len(title), *(depth * 2 + len(name) for depth, name, _ in rows)])
    widths = [max(len(column), *(len(cells[i]) for _, _, cells in rows)) for i, column in enumerate(_COLUMNS)]
    out.write("\n")
    header = f"  {title:<{name_width}}" + "".join(
        f"  {c:>{w}}" for c, w in zip(_COLUMNS, widths, strict=True)
    )
    out.write(bold(header) + "\n")
    for depth, name, cells in rows:
        label = " " * (depth * 2) + name
        text = f"  {label:<{name_width}}" + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths, strict=True))
        out.write((dim(text) if name == NONE else text) + "\n")


def _markdown_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _report_markdown(report: Report, out: IO[str]) -> None:
    out.write(f"## tokentrail report\n\n{_markdown_escape(' · '.join(_header(report)))}\n\n")
    out.write("| | |\n|---|---:|\n")
    for name, value in _summary_lines(report):
        out.write(f"| {name} | {_markdown_escape(value)} |\n")
    if not report.by:
        return
    columns = [*report.by, *_COLUMNS]
    out.write("\n| " + " | ".join(columns) + " |\n")
    out.write("|" + "---|" * len(report.by) + "---:|" * len(_COLUMNS) + "\n")
    for values, totals in report.leaves():
        keys = [_markdown_escape(NONE if value is None else value) for value in values]
        out.write("| " + " | ".join([*keys, *_row_cells(totals, report.totals)]) + " |\n")
    cells = _row_cells(report.totals, report.totals)
    out.write("| " + " | ".join(["**total**", *([""] * (len(report.by) - 1)), *cells]) + " |\n")


# --- trend ----------------------------------------------------------------------------------------

_BLOCKS = " ▏▎▍▌▋▊▉█"


def _bar(value: float, top: float, width: int = 30) -> str:
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    return "█" * (eighths // 8) + (_BLOCKS[eighths % 8] if eighths % 8 else "")


def render_trend(
    points: Sequence[tuple[str, Totals]],
    fmt: str,
    out: IO[str],
    *,
    period: str,
    chart: bool,
    colour: bool,
    source: str,
) -> None:
    if fmt == "json":
        data = {
            "source": source,
            "period": period,
            "points": [{period: label, **t.as_dict()} for label, t in points],
        }
        json.dump(data, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([period, "calls", "total_tokens", "cost_usd"])
        for label, t in points:
            writer.writerow([label, t.calls, t.total_tokens, t.cost_usd])
        return
    if fmt == "markdown":
        out.write(f"| {period} | calls | tokens | cost USD |\n|---|---:|---:|---:|\n")
        for label, t in points:
            out.write(f"| {label} | {t.calls:,} | {t.total_tokens:,} | {t.cost_usd:,.6f} |\n")
        return
    top = max((t.cost_usd for _, t in points), default=0.0)
    total = sum(t.cost_usd for _, t in points)
    # The same precision as the report's cost, so the two commands agree to the last digit.
    costs = [_money(t.cost_usd) for _, t in points]
    width = max(len(c) for c in costs) if costs else 0
    head = f"spend per {period} · {source}"
    out.write((f"{_DIM}{head}{_RESET}" if colour else head) + "\n")
    for (label, t), cost in zip(points, costs, strict=True):
        bar = _bar(t.cost_usd, top) if chart else ""
        bar_cell = f"  {bar:<31}" if chart else ""
        out.write(f"  {label}  {cost:>{width}}{bar_cell}  {t.calls:>7,} calls\n")
    out.write(f"  {'total':<{len(points[0][0]) if points else 5}}  {_money(total):>{width}}\n")
