"""``tokentrail serve``: the ledger's read-only HTTP JSON API (needs ``tokentrail[serve]``)."""

from __future__ import annotations

import argparse
import socket
import sys

from ..ledger import LedgerError, open_ledger
from ._common import CliError, add_ledger_argument, ledger_path
from ._source import add_source_arguments, check_source_arguments, open_call_source

HELP = "serve a read-only HTTP JSON API over the ledger (OpenAPI at /openapi.json)"
DEFAULT_PORT = 8377


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("serve", help=HELP, description=HELP + ".")
    add_ledger_argument(parser)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)"
    )
    parser.add_argument(
        "--budgets", metavar="FILE", help="budgets TOML file for /v1/budgets (default: TOKENTRAIL_BUDGETS)"
    )
    add_source_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..ledger.api import create_app
    except ImportError:
        raise CliError(
            "tokentrail serve needs FastAPI and uvicorn: pip install 'tokentrail[serve]'"
        ) from None

    source = None
    if args.source == "clickhouse":
        source = open_call_source(args)  # fails now, not on the first request
        path = None
        shown = source.name
    else:
        check_source_arguments(args)
        path = ledger_path(args)
        try:  # fail now, not on the first request
            open_ledger(path, create=False).close()
        except LedgerError as exc:
            raise CliError(str(exc)) from None
        shown = f"ledger {path}"
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
    except OSError as exc:
        listener.close()
        if source is not None:
            source.close()
        raise CliError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; choose another --port"
        ) from None
    host, port = listener.getsockname()[:2]
    address = f"[{host}]" if family == socket.AF_INET6 else host
    print(
        f"tokentrail serve: http://{address}:{port} ({shown}; docs at /docs, OpenAPI at /openapi.json)",
        flush=True,
    )
    app = create_app(path, args.budgets, source=source)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener])
    finally:
        if source is not None:
            source.close()
    sys.stdout.flush()
    return 0
