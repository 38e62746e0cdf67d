"""``tokentrail forecast``: where spend will end this day, week and month (and each configured
budget's window), with an 80% interval, from the history in the ledger (or, ``--source
clickhouse``, in the spans a collector stores)."""

from __future__ import annotations

import argparse
import os
import time

from ..budgets import budget_statuses
from ..config import ConfigError
from ..insights.forecast import METHOD, fit, project, projections
from ..ledger.query import Filters
from ..ledger.source import CallSource, spend_reader
from ._common import CliError, add_filter_arguments, add_output_arguments, filters_from, open_output
from ._source import add_source_arguments, reading_source
from ._tables import render_rows

HELP = "projected spend to the end of the day, week, month and budget windows"
COLUMNS = ("period", "spent_usd", "projected_usd", "low_usd", "high_usd", "limit_usd", "exhausted_at", "end")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("forecast", help=HELP, description=HELP + f". Method: {METHOD}.")
    add_filter_arguments(parser)
    add_source_arguments(parser)
    add_output_arguments(parser)
    parser.add_argument(
        "--budget", metavar="NAME", action="append", default=[], help="also this configured budget's window"
    )
    parser.add_argument(
        "--budgets", metavar="FILE", help="budgets TOML file for --budget (default: TOKENTRAIL_BUDGETS)"
    )


def run(args: argparse.Namespace) -> int:
    filters = filters_from(args)
    if filters.until is not None:
        raise CliError(
            "--until: a forecast looks forward from now; use --since to limit the history it reads"
        )
    now = time.time()
    history = Filters(None, None, filters.pipeline, filters.model, filters.provider, filters.where)
    with reading_source(args) as source:
        model, found = projections(source, history, now=now)
        for status in _budgets(args, source, now):
            scoped = Filters(where=dict(status["scope"]))
            fitted = fit(source, scoped, now=now)
            found.append(
                project(
                    fitted,
                    f"budget:{status['name']}",
                    status["window_start"],
                    status["window_end"],
                    status["spent_usd"],
                    status["usd"],
                )
            )
        name = source.name
    data = {**model.describe(), "filters": filters.describe(), "projections": [p.as_dict() for p in found]}
    rows = [[p.as_dict()[column] for column in COLUMNS] for p in found]
    notes = sorted({note for p in found for note in p.notes})
    heading = [
        f"tokentrail forecast · {name}",
        f"confidence {model.confidence}, {model.history_days:.1f} days of history, "
        f"daily rate ${model.level_usd_per_day:,.6f}",
        f"method: {METHOD}",
    ]
    with open_output(args, newline="" if args.format == "csv" else None) as (out, _):
        render_rows(args.format, out, data=data, columns=COLUMNS, rows=rows, heading=heading, notes=notes)
    return 0


def _budgets(args: argparse.Namespace, source: CallSource, now: float) -> list[dict]:
    if not args.budget:
        return []
    path = args.budgets or os.environ.get("TOKENTRAIL_BUDGETS")
    if not path:
        raise CliError("--budget needs the budgets file: pass --budgets FILE or set TOKENTRAIL_BUDGETS")

    try:
        statuses = {
            status["name"]: status for status in budget_statuses(path, source.name, spend_reader(source), now)
        }
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    chosen = []
    for name in args.budget:
        status = statuses.get(name)
        if status is None:
            known = ", ".join(statuses) or "none"
            raise CliError(f"--budget {name!r}: no such budget in {path} (configured: {known})")
        if status["window_start"] is None:
            raise CliError(f"--budget {name!r}: a per_run budget has no window to forecast")
        chosen.append(status)
    return chosen
