"""``tokentrail budget status``: the configured budgets against the ledger's spend in their window."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime

from ..budgets import budget_statuses
from ..config import ConfigError
from ..ledger.spend import spend
from ._common import CliError, add_ledger_argument, ledger_path

HELP = "configured budgets and their spend (from the ledger)"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("budget", help=HELP, description=HELP + ".")
    actions = parser.add_subparsers(dest="budget_command", metavar="ACTION")
    status = actions.add_parser("status", help="spend, remaining and percent used per configured budget")
    status.add_argument(
        "--budgets", metavar="FILE", help="the budgets TOML file (default: TOKENTRAIL_BUDGETS)"
    )
    add_ledger_argument(status)
    status.add_argument("--format", choices=("table", "json"), default="table", help="output format")


def run(args: argparse.Namespace) -> int:
    if args.budget_command != "status":
        raise CliError("use: tokentrail budget status [--budgets FILE] [--ledger PATH]")
    path = args.budgets or os.environ.get("TOKENTRAIL_BUDGETS")
    if not path:
        raise CliError("no budgets configured: pass --budgets FILE or set TOKENTRAIL_BUDGETS")
    ledger = ledger_path(args)
    if not ledger.exists():
        raise CliError(f"no ledger at {ledger}: run instrumented code first, or pass --ledger PATH")
    try:
        found = budget_statuses(path, ledger, spend)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if args.format == "json":
        print(json.dumps(found, indent=2))
        return 0
    header = (
        f"{'budget':<20} {'window':<18} {'scope':<24} {'limit':>10} {'spent':>12} {'left':>12} {'used':>7}"
    )
    print(header)
    for row in found:
        scope = ",".join(f"{k}={v}" for k, v in row["scope"].items()) or "(all calls)"
        window = row["window"] if not row["timezone"] else f"day {row['timezone']}"
        flag = " OVER" if row["over_budget"] else ""
        print(
            f"{row['name']:<20} {window:<18} {scope:<24} ${row['usd']:>9.2f} ${row['spent_usd']:>11.6f} "
            f"${row['remaining_usd']:>11.6f} {row['percent_used']:>6.1f}%{flag}"
        )
        if row["window_start"] is not None:
            since = datetime.fromtimestamp(row["window_start"], UTC).isoformat(timespec="seconds")
            print(f"{'':<20} since {since}")
    return 0
