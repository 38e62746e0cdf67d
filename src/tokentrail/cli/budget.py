"""``tokentrail budget status``: the configured budgets against the ledger's spend in their window."""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

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


def statuses(path: str, ledger: Any, now: float | None = None) -> list[dict[str, Any]]:
    """Each configured budget's spend in its current window, read from the ledger."""
    from ..budgets import ledger_spend, load

    now = time.time() if now is None else now
    found = []
    for each in load(path):
        start = each._window.start(now)
        per_run = each.window == "per_run"
        # A per_run budget lives in one process; the ledger can show only all-time spend in scope.
        spent = ledger_spend(ledger, each.scope, start, now + 1)
        found.append(
            {
                "name": each.name,
                "usd": each.usd,
                "spent_usd": spent,
                "remaining_usd": max(0.0, each.usd - spent),
                "percent_used": spent / each.usd * 100,
                "over_budget": spent > each.usd,
                "mode": each.mode,
                "window": each.window,
                "timezone": each.timezone,
                "window_start": start,
                "window_end": each._window.end(start),
                "scope": dict(each.scope),
                "note": "per_run: in-process only; the ledger shows all-time spend in scope"
                if per_run
                else "",
            }
        )
    return found


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError

    if args.budget_command != "status":
        raise CliError("use: tokentrail budget status [--budgets FILE] [--ledger PATH]")
    path = args.budgets or os.environ.get("TOKENTRAIL_BUDGETS")
    if not path:
        raise CliError("no budgets configured: pass --budgets FILE or set TOKENTRAIL_BUDGETS")
    ledger = ledger_path(args)
    if not ledger.exists():
        raise CliError(f"no ledger at {ledger}: run instrumented code first, or pass --ledger PATH")
    try:
        found = statuses(path, ledger)
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
