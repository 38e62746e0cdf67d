"""The ``tokentrail`` command line.

Subcommands are small modules of their own; this one only dispatches. Errors the user can fix
end with one line saying what to do and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokentrail", description="Know what every LLM call costs.")
    parser.add_argument("--version", action="version", version=f"tokentrail {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    fake = commands.add_parser("fake-server", help="run the fake LLM provider server (for tests and demos)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8765)

    prices = commands.add_parser("prices", help="show the price card tokentrail uses for a model")
    prices.add_argument("model", nargs="?", help="model id, e.g. gpt-4o-mini")
    prices.add_argument("--provider", default="openai", help="gen_ai.provider.name (default: openai)")
    prices.add_argument("--prices", metavar="FILE", help="price override file to apply (TOML or YAML)")
    prices.add_argument("--check", metavar="FILE", help="validate a price override file and exit")

    # The ledger's commands: each module adds its parser and runs it.
    from . import budget, estimate, export, ledger, report, serve, trend

    ledger_commands = {
        module.__name__.rsplit(".", 1)[1]: module
        for module in (report, trend, export, serve, budget, estimate, ledger)
    }
    for module in ledger_commands.values():
        module.add_parser(commands)

    args = parser.parse_args(argv)
    if args.command == "fake-server":
        from ..testing.fake_server import main as fake_main

        return fake_main(["--host", args.host, "--port", str(args.port)])
    if args.command == "prices":
        from .prices import run

        return run(args)
    if args.command in ledger_commands:
        from ._common import CliError

        try:
            return ledger_commands[args.command].run(args)
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # a case no check foresaw: still one line, never a traceback
            detail = " ".join(str(exc).split())
            detail = detail if len(detail) <= 200 else f"{detail[:197]}..."
            print(
                f"error: tokentrail {args.command} failed: {type(exc).__name__}: {detail} "
                "(please report this)",
                file=sys.stderr,
            )
            return 1
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
