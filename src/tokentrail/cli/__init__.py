"""The ``tokentrail`` command line.

Subcommands are small modules of their own; this one only dispatches. Errors the user can fix
end with one line saying what to do and a non-zero exit, never a traceback. A reader that stops
reading early (``tokentrail export | head``) ends any command quietly, as other Unix tools do.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..testing.fake_server import main as fake_main
from . import (
    advise,
    budget,
    dashboard,
    estimate,
    export,
    forecast,
    ledger,
    report,
    serve,
    stack,
    trend,
    whatif,
)
from ._common import CliError
from .prices import run as run_prices

# The exit status of a command whose reader went away: a shell's status for a process killed by
# SIGPIPE (128 + 13), what `yes | head -1` reports under `set -o pipefail`.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(argv)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's flush at exit does not fail again
    on the closed pipe (and print "Exception ignored ... BrokenPipeError")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a non-file object (tests, IDEs)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="tokentrail", description="Know what every LLM call costs.")
    parser.add_argument("--version", action="version", version=f"tokentrail {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    prices = commands.add_parser("prices", help="show the price card tokentrail uses for a model")
    prices.add_argument("model", nargs="?", help="model id, e.g. gpt-4o-mini")
    prices.add_argument(
        "--provider",
        help="gen_ai.provider.name or an alias (gemini, google, ...); default: the provider whose "
        "price catalogue lists the model, when only one does",
    )
    prices.add_argument("--prices", metavar="FILE", help="price override file to apply (TOML or YAML)")
    prices.add_argument("--check", metavar="FILE", help="validate a price override file and exit")

    # The ledger's commands: each module adds its parser and runs it.

    ledger_commands = {
        module.__name__.rsplit(".", 1)[1]: module
        for module in (
            report,
            trend,
            export,
            serve,
            dashboard,
            budget,
            estimate,
            forecast,
            whatif,
            advise,
            stack,
            ledger,
        )
    }
    for module in ledger_commands.values():
        module.add_parser(commands)

    # For developers: last in the help, after every command a user needs.
    fake = commands.add_parser(
        "fake-server", help="(dev) run the fake LLM provider server, for tests and demos"
    )
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8765)

    args = parser.parse_args(argv)
    if args.command == "fake-server":
        return fake_main(["--host", args.host, "--port", str(args.port)])
    if args.command == "prices":
        return run_prices(args)
    if args.command in ledger_commands:
        try:
            return ledger_commands[args.command].run(args)
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            raise  # the reader left: main() ends quietly, with the status a pipeline expects
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
