"""``tokentrail report``: totals and a nested breakdown of what the calls cost, from the ledger or
from a Prometheus that scrapes tokentrail's metrics (``--source prometheus --url ...``)."""

from __future__ import annotations

import argparse

from ..ledger.prometheus import PrometheusError, prometheus_report
from ..ledger.query import BY_KEYS, UnknownKeyError, report, validate_key
from ._common import (
    CliError,
    add_filter_arguments,
    add_output_arguments,
    filters_from,
    ledger_path,
    open_output,
    open_reading,
    use_colour,
)
from ._format import render_report

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
    parser.add_argument(
        "--source",
        choices=("ledger", "prometheus"),
        default="ledger",
        help="read the local ledger (default) or a Prometheus that scrapes tokentrail's metrics",
    )
    parser.add_argument(
        "--url", help="the Prometheus server for --source prometheus, e.g. http://localhost:9090"
    )


def run(args: argparse.Namespace) -> int:

    try:
        by = [validate_key(key) for key in args.by]
    except UnknownKeyError as exc:
        raise CliError(str(exc)) from None
    if len(set(by)) != len(by):
        raise CliError("--by: each key once")
    filters = filters_from(args)
    if args.source == "prometheus":
        if not args.url:
            raise CliError("--source prometheus needs --url, e.g. --url http://localhost:9090")

        try:
            result = prometheus_report(args.url, by, filters)
        except PrometheusError as exc:
            raise CliError(str(exc)) from None
    else:
        if args.url:
            raise CliError("--url is for --source prometheus")
        connection = open_reading(args)
        try:
            result = report(connection, by, filters, source=f"ledger {ledger_path(args)}")
        finally:
            connection.close()

    with open_output(args, newline="" if args.format == "csv" else None) as (out, terminal):
        render_report(result, args.format, out, colour=use_colour(terminal))
    return 0
