"""``tokentrail stack init DIR``: write out the collector stack shipped in the package.

The repository's ``collector-config/`` is package data (``tokentrail/_stack`` in the wheel): the
OpenTelemetry Collector configuration, the compose file, Prometheus's configuration, alert rules and
their unit tests, and Grafana's provisioning and dashboards. ``init`` copies all of it, keeping the
layout the compose file mounts, so ``docker compose up -d`` in DIR starts the stack.
"""

from __future__ import annotations

import argparse
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ._common import CliError

HELP = "write out the collector, Prometheus and Grafana stack (tokentrail stack init DIR)"
# Where the stack files are: inside the installed package; in a source checkout (an editable
# install), the repository's collector-config/ itself.
PACKAGED = "_stack"
CHECKOUT = Path(__file__).resolve().parents[3] / "collector-config"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("stack", help=HELP, description=HELP + ".")
    actions = parser.add_subparsers(dest="stack_command", metavar="ACTION")
    init = actions.add_parser(
        "init",
        help="write the collector config, compose file, Prometheus config and rules, and Grafana "
        "provisioning and dashboards into DIR",
    )
    init.add_argument("dir", metavar="DIR", help="where to write the files (created if missing)")
    init.add_argument("--force", action="store_true", help="overwrite files that already exist in DIR")


def stack_files() -> Traversable:
    """The directory holding the stack files."""
    packaged = resources.files("tokentrail") / PACKAGED
    if packaged.is_dir():
        return packaged
    if CHECKOUT.is_dir():
        return CHECKOUT
    raise CliError("this tokentrail installation has no stack files: reinstall it (pip install tokentrail)")


def _walk(folder: Traversable, prefix: Path = Path()) -> list[tuple[Path, Traversable]]:
    found: list[tuple[Path, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            found.extend(_walk(entry, prefix / entry.name))
        else:
            found.append((prefix / entry.name, entry))
    return found


def run(args: argparse.Namespace) -> int:
    if args.stack_command != "init":
        raise CliError("use: tokentrail stack init DIR [--force]")
    target = Path(args.dir).expanduser()
    if target.exists() and not target.is_dir():
        raise CliError(f"{target} exists and is not a directory")
    files = _walk(stack_files())
    if not args.force:
        existing = [relative for relative, _ in files if (target / relative).exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise CliError(f"{target / existing[0]} already exists{more}: pass --force to overwrite")
    try:
        for relative, source in files:
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(source.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename or target}: {exc.strerror or exc}") from None
    print(f"wrote {len(files)} files to {target}:")
    for relative, _ in files:
        print(f"  {relative}")
    print(f"start the stack: cd {target} && docker compose up -d  (Grafana http://localhost:3000)")
    return 0
