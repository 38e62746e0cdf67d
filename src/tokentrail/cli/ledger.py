"""``tokentrail ledger info | prune``: how big the ledger is, what it keeps, and pruning it now.

The writer prunes by itself (see :mod:`tokentrail.ledger.retention`); ``prune`` is for a ledger
no application writes any more, or to apply a shorter retention at once (``--keep-days``).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any

from ..config import ConfigError
from ..ledger import LedgerError, open_ledger, retention
from ._common import CliError, add_ledger_argument, ledger_path

HELP = "the ledger's size, rows and retention (info), or delete expired rows now (prune)"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("ledger", help=HELP, description=HELP + ".")
    actions = parser.add_subparsers(dest="ledger_command", metavar="ACTION")
    info = actions.add_parser("info", help="size, rows, oldest and newest call, retention")
    add_ledger_argument(info)
    info.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    prune = actions.add_parser("prune", help="delete raw rows and roll-ups older than the retention now")
    add_ledger_argument(prune)
    prune.add_argument(
        "--keep-days",
        metavar="DAYS",
        help=f"keep raw rows this many days (default {retention.ENV_RAW_DAYS}, else "
        f"{retention.DEFAULT_RAW_DAYS:g})",
    )


def run(args: argparse.Namespace) -> int:
    if args.ledger_command not in ("info", "prune"):
        raise CliError("use: tokentrail ledger info | prune [--ledger PATH]")
    environ: dict[str, str] | None = None
    if getattr(args, "keep_days", None) is not None:
        environ = {**os.environ, retention.ENV_RAW_DAYS: args.keep_days}
    try:
        kept = retention.Retention.from_env(environ)
    except ConfigError as exc:
        message = str(exc)
        if environ is not None:
            message = message.replace(retention.ENV_RAW_DAYS, "--keep-days", 1)
        raise CliError(message) from None
    path = ledger_path(args)
    try:
        connection = open_ledger(path, create=False)
    except LedgerError as exc:
        raise CliError(str(exc)) from None
    except sqlite3.Error as exc:
        raise CliError(f"cannot open the ledger at {path}: {exc}") from None
    try:
        if args.ledger_command == "prune":
            deleted = retention.prune(connection, kept)
            print(f"{path}: deleted {deleted:,} raw row(s) older than the retention ({kept.describe()})")
            return 0
        found = retention.info(connection, path, kept)
    except sqlite3.OperationalError as exc:
        raise CliError(f"the ledger at {path} is busy or unreadable ({exc}); try again") from None
    finally:
        connection.close()
    if args.format == "json":
        print(json.dumps(found, indent=2))
        return 0
    print(_render(found, kept))
    return 0


def _render(found: dict[str, Any], kept: retention.Retention) -> str:
    def when(epoch: float | None) -> str:
        if epoch is None:
            return "-"
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")

    lines = [
        f"ledger      {found['path']}",
        f"size        {_size(found['size_bytes'])} ({_size(found['free_bytes'])} free, reused first)",
        f"calls       {found['calls']:,} raw row(s), {found['expired_calls']:,} past retention",
        f"oldest      {when(found['oldest_call'])}",
        f"newest      {when(found['newest_call'])}",
        f"roll-ups    {found['rollup_rows']:,} row(s) from {when(found['oldest_rollup_bucket'])}",
        f"retention   {kept.describe()} ({retention.ENV_RAW_DAYS}, {retention.ENV_ROLLUP_DAYS})",
    ]
    return "\n".join(lines)


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"  # pragma: no cover
