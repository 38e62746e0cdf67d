"""``tokentrail report``: totals and a nested breakdown of what the calls cost, from the ledger, from
the spans a collector stores in ClickHouse (``--source clickhouse --url ...``) or from a Prometheus
that scrapes tokentrail's metrics (``--source prometheus --url ...``)."""

from __future__ import annotations

import argparse

from ..ledger.prometheus import PrometheusError, prometheus_report
from ..ledger.query import BY_KEYS, UnknownKeyError, validate_key
from ._common import (
    CliError,
    add_filter_arguments,
    add_output_arguments,
    filters_from,
    open_output,
    use_colour,
)
from ._format import render_report
from ._source import add_source_arguments, check_source_arguments, reading_source

HELP = "totals and breakdowns of calls, tokens and cost"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]

    parser = commands.add_parser("report", help=HELP, description=HELP + ".")
    parser.add_argument(
        "--by",
        metavar="KEY",
        action="append",
        default=[],
        help=f"break down by KEY: {', '.join(BY_KEYS)} or label:KEY; repeat to nest (--by agent --by model)",
    )
    add_filter_arguments(parser)
    add_output_arguments(parser)
    add_source_arguments(parser, prometheus=True)


def run(args: argparse.Namespace) -> int:

    try:
        by = [validate_key(key) for key in args.by]
    except UnknownKeyError as exc:
        raise CliError(str(exc)) from None
    if len(set(by)) != len(by):
        raise CliError("--by: each key once")
    filters = filters_from(args)
    check_source_arguments(args)
    if args.source == "prometheus":
        try:
            result = prometheus_report(args.url, by, filters)
        except PrometheusError as exc:
            raise CliError(str(exc)) from None
    else:
        with reading_source(args) as source:
            result = source.report(by, filters)

    with open_output(args, newline="" if args.format == "csv" else None) as (out, terminal):
        render_report(result, args.format, out, colour=use_colour(terminal))
    return 0
