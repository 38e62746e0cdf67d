"""What the ledger commands share: the ledger's location, time ranges, filters, output."""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..config import ENV_LEDGER, ConfigError, ledger_location
from ..ledger import LedgerError, open_ledger
from ..ledger.query import Filters, UnknownKeyError, validate_key
from ..pricing import Pricer, canonical_provider
from ..timespec import parse_when

__all__ = [
    "CliError",
    "add_filter_arguments",
    "add_output_arguments",
    "filters_from",
    "ledger_path",
    "open_output",
    "open_reading",
    "parse_time",
    "resolve_provider",
]

FORMATS = ("table", "csv", "json", "markdown")


class CliError(Exception):
    """A problem the user can fix: printed as one ``error:`` line, exit status 1."""


def parse_time(text: str, option: str, now: float | None = None) -> float:
    """Epoch seconds from ``7d`` / ``24h`` / ``30m`` (that long ago), ``today``, ``yesterday``,
    ``now``, a date (local midnight) or an ISO 8601 date and time (local unless it has an offset)."""
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise CliError(f"{option} {exc}") from None


def shown(text: str, limit: int = 60) -> str:
    """An argument for a one-line error: quoted, undecodable bytes escaped, cut short."""
    quoted = f"'{text.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')}'"
    return quoted if len(quoted) <= limit else f"{quoted[: limit - 4]}...'"


def text_argument(value: str | None, option: str) -> str | None:
    """``value`` if it is text SQLite can compare (a terminal in another encoding than UTF-8 passes
    bytes that are not); else a :class:`CliError` naming the option."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CliError(f"{option} {shown(value)} is not valid UTF-8 text") from None
    return value


def add_ledger_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger",
        metavar="PATH",
        help="the ledger file (default: TOKENTRAIL_LEDGER, else ~/.local/share/tokentrail/ledger.sqlite)",
    )


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    add_ledger_argument(parser)
    parser.add_argument(
        "--since", metavar="WHEN", help="from this time: 2026-11-01, 2026-11-01T14:30, 7d, 24h"
    )
    parser.add_argument("--until", metavar="WHEN", help="up to this time (exclusive); same forms as --since")
    parser.add_argument("--pipeline", metavar="ID", help="only calls of this pipeline")
    parser.add_argument("--model", help="only calls of this model (response or request model)")
    parser.add_argument(
        "--provider", help="only calls of this provider (gen_ai.provider.name, or an alias such as gemini)"
    )
    parser.add_argument(
        "--where",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="only calls whose KEY (agent, task, phase, role, user, label:KEY, ...) is VALUE; repeatable",
    )


def add_output_arguments(parser: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS) -> None:
    parser.add_argument(
        "--format", choices=formats, default=formats[0], help=f"output format (default {formats[0]})"
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")


def filters_from(args: argparse.Namespace) -> Any:

    where: dict[str, str] = {}
    for item in args.where:
        key, sep, value = text_argument(item, "--where").partition("=")  # type: ignore[union-attr]
        if not sep or not key.strip():
            raise CliError(
                f"--where {item!r}: use KEY=VALUE, e.g. --where agent=QA or --where label:team=search"
            )
        try:
            where[validate_key(key.strip(), for_filter=True)] = value
        except UnknownKeyError as exc:
            raise CliError(str(exc)) from None
    since = parse_time(args.since, "--since") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since {args.since} is not before --until {args.until}")
    provider = text_argument(args.provider, "--provider")
    provider = canonical_provider(provider) if provider else None  # aliases, as everywhere
    return Filters(
        since,
        until,
        text_argument(args.pipeline, "--pipeline"),
        text_argument(args.model, "--model"),
        provider,
        where,
    )


def ledger_path(args: argparse.Namespace) -> Path:

    if getattr(args, "ledger", None):
        return Path(args.ledger).expanduser()
    try:
        path = ledger_location(os.environ.get(ENV_LEDGER))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if path is None:
        raise CliError(f"the ledger is off ({ENV_LEDGER}={os.environ.get(ENV_LEDGER)}): pass --ledger PATH")
    return path


def open_reading(args: argparse.Namespace) -> sqlite3.Connection:
    """The ledger, for reading; a missing or unusable ledger is a :class:`CliError`."""

    path = ledger_path(args)
    try:
        return open_ledger(path, create=False)
    except LedgerError as exc:
        raise CliError(str(exc)) from None
    except sqlite3.Error as exc:
        raise CliError(f"cannot read the ledger at {path}: {exc}") from None


@contextlib.contextmanager
def open_output(args: argparse.Namespace, *, newline: str | None = None) -> Iterator[tuple[IO[str], bool]]:
    """(stream, is a terminal): ``--output FILE`` or standard output."""
    if args.output:
        try:
            stream = open(args.output, "w", encoding="utf-8", newline=newline)  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        with stream:
            yield stream, False
        return
    yield sys.stdout, sys.stdout.isatty()


def use_colour(terminal: bool) -> bool:
    return terminal and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def resolve_provider(given: str | None, model: str, pricer: Pricer) -> str:
    """``--provider`` as a ``gen_ai.provider.name`` (aliases such as ``gemini`` accepted); when it
    was omitted, the one provider whose prices list ``model``, else a :class:`CliError`."""
    if given:
        return canonical_provider(given)
    found = pricer.providers_for(model)
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError(
            f"cannot tell the provider of {model!r}: the price catalogue does not list it; "
            "pass --provider (openai, anthropic, gemini, ...)"
        )
    raise CliError(f"{model!r} is priced by several providers ({', '.join(found)}): pass --provider")
