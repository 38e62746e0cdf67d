"""``tokentrail advise``: where the ledger (or ``--source clickhouse``, a fleet's stored spans) says
money could be saved, with the dollars at stake."""

from __future__ import annotations

import argparse

from ..insights.advise import advise
from ._common import add_filter_arguments, add_output_arguments, filters_from, open_output
from ._source import add_source_arguments, reading_source
from ._tables import render_rows

HELP = "savings advice from the ledger, each item with the dollars at stake"
COLUMNS = ("advice", "usd_at_stake", "items", "largest")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("advise", help=HELP, description=HELP + ".")
    add_filter_arguments(parser)
    add_source_arguments(parser)
    add_output_arguments(parser)


def _largest(item: dict) -> str:
    named = [str(item[key]) for key in ("pipeline", "model", "agent", "cheaper_model") if item.get(key)]
    return " / ".join(named) + f" (${item['usd_at_stake']:,.6f})"


def run(args: argparse.Namespace) -> int:
    filters = filters_from(args)
    with reading_source(args) as source:
        found = advise(source, filters)
        name = source.name
    data = {"filters": filters.describe(), "advice": [a.as_dict() for a in found]}
    rows = [[a.title, a.usd_at_stake, len(a.items), _largest(a.items[0]) if a.items else "-"] for a in found]
    notes = [f"{a.title}: {a.detail}" for a in found]
    heading = [f"tokentrail advise · {name}"]
    with open_output(args, newline="" if args.format == "csv" else None) as (out, _):
        render_rows(args.format, out, data=data, columns=COLUMNS, rows=rows, heading=heading, notes=notes)
    return 0
