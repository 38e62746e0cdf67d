"""``tokentrail export``: the ledger's raw rows as CSV or JSON Lines.

CSV for spreadsheets, JSON Lines for pipelines (labels stay an object; in CSV they are a JSON
string). Parquet is left out on purpose: it would pull in a dependency far heavier than tokentrail,
and ``duckdb`` or ``pandas`` turn either format into Parquet in one line. A progress bar goes to
standard error when it is a terminal and the export is large.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from typing import IO

from ..ledger._schema import COLUMN_NAMES
from ._common import (
    add_filter_arguments,
    add_output_arguments,
    filters_from,
    open_output,
)
from ._source import add_source_arguments, reading_source

HELP = "export the raw rows (one per call) as CSV or JSON Lines"
PROGRESS_FROM = 50_000  # rows: smaller exports finish before a bar would be read


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("export", help=HELP, description=HELP + ".")
    add_filter_arguments(parser)
    add_output_arguments(parser, formats=("csv", "jsonl"))
    add_source_arguments(parser)


class Progress:
    """``export  [#######.....]  42%  420,000 / 1,000,000 rows`` on a terminal's stderr."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self._shown = -1.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._shown >= 0.1 or self.done >= self.total:
            self._shown = now
            fraction = self.done / self.total if self.total else 1.0
            filled = int(fraction * 30)
            self.stream.write(
                f"\rexport  [{'#' * filled}{'.' * (30 - filled)}]  {fraction * 100:3.0f}%  "
                f"{self.done:,} / {self.total:,} rows"
            )
            self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:

    filters = filters_from(args)
    with reading_source(args) as source:
        total, rows = source.export_rows(filters)
        progress = Progress(total, sys.stderr) if total >= PROGRESS_FROM and sys.stderr.isatty() else None
        labels_at = COLUMN_NAMES.index("labels")
        with open_output(args, newline="" if args.format == "csv" else None) as (out, _terminal):
            if args.format == "csv":
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(COLUMN_NAMES)
                for row in rows:
                    writer.writerow(row)
                    if progress is not None:
                        progress.advance()
            else:
                for row in rows:
                    record = dict(zip(COLUMN_NAMES, row, strict=True))
                    record["labels"] = json.loads(row[labels_at]) if row[labels_at] else {}
                    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                    if progress is not None:
                        progress.advance()
        if progress is not None:
            progress.finish()
    return 0
