"""``--source ledger | clickhouse [| prometheus]`` and the options that say where: what the reading
commands share besides their filters."""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
from collections.abc import Iterator

from ..ledger.clickhouse import (
    DEFAULT_DATABASE,
    DEFAULT_TABLE,
    ENV_PASSWORD,
    ENV_USER,
    ClickHouseError,
    open_source,
)
from ..ledger.query import UnknownKeyError
from ..ledger.source import CallSource, LedgerSource
from ._common import CliError, ledger_path, open_reading

__all__ = ["add_source_arguments", "check_source_arguments", "open_call_source", "reading_source"]


def add_source_arguments(parser: argparse.ArgumentParser, *, prometheus: bool = False) -> None:
    sources = ("ledger", "clickhouse", "prometheus") if prometheus else ("ledger", "clickhouse")
    parser.add_argument(
        "--source",
        choices=sources,
        default="ledger",
        help="read the local ledger (default), the spans a collector stores in ClickHouse"
        + (", or a Prometheus that scrapes tokentrail's metrics" if prometheus else ""),
    )
    parser.add_argument(
        "--url",
        help="ClickHouse's HTTP address (http://HOST:8123) or chdb:///DIR for --source clickhouse"
        + ("; the Prometheus server (http://HOST:9090) for --source prometheus" if prometheus else ""),
    )
    parser.add_argument(
        "--database", metavar="NAME", help=f"ClickHouse database (default {DEFAULT_DATABASE})"
    )
    parser.add_argument("--table", metavar="NAME", help=f"ClickHouse traces table (default {DEFAULT_TABLE})")
    parser.add_argument(
        "--user",
        metavar="NAME",
        help=f"ClickHouse user (default {ENV_USER}, else default); the password is read from {ENV_PASSWORD}",
    )


def check_source_arguments(args: argparse.Namespace) -> None:
    """One clear line for an option that does not go with the chosen source."""
    if args.source == "ledger":
        if args.url:
            raise CliError("--url is for --source clickhouse or prometheus")
    elif not args.url:
        example = "http://localhost:8123" if args.source == "clickhouse" else "http://localhost:9090"
        raise CliError(f"--source {args.source} needs --url, e.g. --url {example}")
    if args.source != "clickhouse":
        for option in ("database", "table", "user"):
            if getattr(args, option, None):
                raise CliError(f"--{option} is for --source clickhouse")


def open_call_source(args: argparse.Namespace) -> CallSource:
    """The ledger or the ClickHouse table the options name, ready to read."""
    check_source_arguments(args)
    if args.source == "clickhouse":
        try:
            return open_source(args.url, database=args.database, table=args.table, user=args.user)
        except ClickHouseError as exc:
            raise CliError(str(exc)) from None
    connection: sqlite3.Connection = open_reading(args)
    return LedgerSource(connection, ledger_path(args))


@contextlib.contextmanager
def reading_source(args: argparse.Namespace) -> Iterator[CallSource]:
    """:func:`open_call_source`, closed afterwards; a source's refusal is a :class:`CliError`."""
    source = open_call_source(args)
    try:
        yield source
    except (ClickHouseError, UnknownKeyError) as exc:
        raise CliError(str(exc)) from None
    finally:
        source.close()
