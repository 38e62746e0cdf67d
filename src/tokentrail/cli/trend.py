"""``tokentrail trend``: spend per day (or hour), with a small bar chart on terminals."""

from __future__ import annotations

import argparse

from ._common import (
    CliError,
    add_filter_arguments,
    add_output_arguments,
    filters_from,
    open_output,
    use_colour,
)
from ._format import render_trend
from ._source import add_source_arguments, reading_source

HELP = "spend per day or hour, with an inline chart"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("trend", help=HELP, description=HELP + ".")
    period = parser.add_mutually_exclusive_group()
    period.add_argument(
        "--daily", metavar="DAYS", type=int, help="the last DAYS days, today included (default 7)"
    )
    period.add_argument("--hourly", metavar="HOURS", type=int, help="the last HOURS hours, this one included")
    add_filter_arguments(parser)
    add_output_arguments(parser)
    add_source_arguments(parser)


def run(args: argparse.Namespace) -> int:
    hourly = args.hourly is not None
    periods = args.hourly if hourly else (args.daily if args.daily is not None else 7)
    if not 1 <= periods <= 10_000:
        raise CliError(f"--{'hourly' if hourly else 'daily'} {periods}: use a number from 1 to 10000")
    filters = filters_from(args)
    if filters.since is not None:
        raise CliError("trend: the period is set by --daily / --hourly; --since does not apply")
    with reading_source(args) as source:
        points = source.trend(periods, hourly=hourly, filters=filters)
        name = source.name

    with open_output(args, newline="" if args.format == "csv" else None) as (out, terminal):
        render_trend(
            points,
            args.format,
            out,
            period="hour" if hourly else "day",
            chart=terminal,
            colour=use_colour(terminal),
            source=name,
        )
    return 0
