"""``tokentrail serve``: the cost dashboard at ``/`` and the read-only HTTP JSON API, over the ledger
or (``--source clickhouse``, the JSON API only) a fleet's ClickHouse (needs ``tokentrail[serve]``)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import webbrowser
from typing import Any

from ..ledger import LedgerError, open_ledger
from ._common import CliError, add_ledger_argument, ledger_path
from ._source import add_source_arguments, check_source_arguments, open_call_source

HELP = "serve the cost dashboard and a read-only HTTP JSON API over the ledger (OpenAPI at /openapi.json)"
DEFAULT_PORT = 8377


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("serve", help=HELP, description=HELP + ".")
    add_serve_arguments(parser)
    add_source_arguments(parser)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--trace-url",
        metavar="TEMPLATE",
        help="link from a call to its trace: a URL with {trace_id} (default: TOKENTRAIL_TRACE_URL, "
        "else Jaeger's http://localhost:16686/trace/{trace_id})",
    )
    parser.add_argument(
        "--refresh", type=float, default=5.0, metavar="SECONDS", help="dashboard refresh interval (default 5)"
    )


def run(args: argparse.Namespace) -> int:
    return serve(args, open_browser=False)


def serve(args: argparse.Namespace, *, open_browser: bool) -> int:
    """Bind, print the address (and open it in a browser), then serve until interrupted."""
    try:
        import uvicorn

        from ..dashboard.app import ENV_TRACE_URL, check_trace_url, create_dashboard_app
    except ImportError:
        raise CliError(
            "tokentrail serve needs FastAPI and uvicorn: pip install 'tokentrail[serve]'"
        ) from None

    try:
        trace_url = check_trace_url(args.trace_url or os.environ.get(ENV_TRACE_URL) or None)
    except ValueError as exc:
        option = "--trace-url" if args.trace_url else ENV_TRACE_URL
        raise CliError(f"{option}: {exc}") from None
    if not 0.5 <= args.refresh <= 3600:
        raise CliError(f"--refresh {args.refresh:g}: use a number of seconds from 0.5 to 3600")
    source = None
    if getattr(args, "source", "ledger") == "clickhouse":
        source = open_call_source(args)  # fails now, not on the first request
        path = None
        shown = f"{source.name}; dashboard at /"
    else:
        if hasattr(args, "source"):  # `tokentrail dashboard` reads the ledger alone
            check_source_arguments(args)
        path = ledger_path(args)
        try:  # fail now, not on the first request
            open_ledger(path, create=False).close()
        except LedgerError as exc:
            raise CliError(str(exc)) from None
        shown = f"ledger {path}; dashboard at /"
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
    listener.listen(128)  # connections wait from now on, even one from a browser opened before serving
    host, port = listener.getsockname()[:2]
    address = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{address}:{port}"
    print(f"tokentrail serve: {url} ({shown}; docs at /docs, OpenAPI at /openapi.json)", flush=True)
    app: Any = create_dashboard_app(
        path or "", args.budgets, source=source, trace_url=trace_url, refresh_s=args.refresh
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    if open_browser:
        webbrowser.open(url + "/")
    try:
        server.run(sockets=[listener])
    finally:
        if source is not None:
            source.close()
    sys.stdout.flush()
    return 0
