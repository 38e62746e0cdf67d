"""``tokentrail dashboard``: ``tokentrail serve``, then the dashboard opened in a browser."""

from __future__ import annotations

import argparse

from .serve import add_serve_arguments, serve

HELP = "open the local cost dashboard in a browser (serves it like `tokentrail serve`)"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("dashboard", help=HELP, description=HELP + ".")
    add_serve_arguments(parser)
    parser.add_argument("--no-browser", action="store_true", help="serve without opening a browser")


def run(args: argparse.Namespace) -> int:
    return serve(args, open_browser=not args.no_browser)
