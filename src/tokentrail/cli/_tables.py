"""Plain tables in the four output formats: what forecast, whatif and advise print."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import IO, Any

__all__ = ["render_rows"]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.6f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_rows(
    fmt: str,
    out: IO[str],
    *,
    data: Any,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    heading: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> None:
    """``data`` as JSON, or ``rows`` under ``columns`` as a table, CSV or Markdown, with the
    ``heading`` lines above and the ``notes`` below (CSV: rows only)."""
    if fmt == "json":
        json.dump(data, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if value is None else value for value in row] for row in rows)
        return
    cells = [[_text(value) for value in row] for row in rows]
    if fmt == "markdown":
        for line in heading:
            out.write(line.replace("|", "\\|") + "\n\n")
        out.write("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n")
        for row in cells:
            out.write("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |\n")
        for note in notes:
            out.write(f"\n{note}\n")
        return
    for line in heading:
        out.write(line + "\n")
    if heading:
        out.write("\n")
    widths = [max(len(column), *(len(row[i]) for row in cells)) for i, column in enumerate(columns)]
    out.write(
        "  ".join(
            f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(columns, widths, strict=True))
        ).rstrip()
        + "\n"
    )
    for row in cells:
        out.write(
            "  ".join(
                f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            + "\n"
        )
    for note in notes:
        out.write(f"note: {note}\n")
