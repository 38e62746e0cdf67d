"""Budgets from configuration: a TOML file of ``[[budget]]`` tables, or a list."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._safety import shown, shown_path
from ..config import ConfigError
from .budget import budget

__all__ = ["load"]

_FIELDS = {
    "usd", "scope", "mode", "thresholds", "name", "window", "timezone", "unknown",
    "max_output_tokens", "shared", "ledger", "refresh_s",
}  # fmt: skip


def load(source: str | Path | Iterable[Any]) -> tuple[budget, ...]:
    """Budgets from a TOML file (``[[budget]]`` tables) or a list of budgets / mappings."""
    if isinstance(source, str | os.PathLike):
        # Imported here: only a budgets file needs it, and instrument() would otherwise pay for
        # importing it (about 2 ms) at every start.
        import tomllib

        path = Path(source)
        named = shown_path(path)  # cut short (at its start): the message stays one line
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block instrument() for ever
                raise ConfigError(f"budgets file {named}: not a regular file; give a TOML file")
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"budgets file {named}: {exc.strerror or type(exc).__name__}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"budgets file {named}: invalid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"budgets file {named}: invalid TOML: nested too deeply") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"budgets file {named}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        # Only [[budget]] tables: a misspelt [[budgets]] would otherwise load no budget, silently.
        unexpected = sorted(set(data) - {"budget"})
        if unexpected:
            raise ConfigError(
                f"budgets file {named}: unknown top-level key(s) {shown(unexpected)}; "
                "each budget is a [[budget]] table"
            )
        entries = data.get("budget", [])
        where = named
        if not isinstance(entries, list):
            raise ConfigError(
                f"{where}: budget must be [[budget]] tables (an array of tables), not {shown(entries)}"
            )
    elif isinstance(source, Iterable) and not isinstance(source, bytes | Mapping):
        entries, where = list(source), "instrument(budgets=...)"
    else:
        raise ConfigError(
            f"instrument(budgets={shown(source)}): use the path of a TOML file of [[budget]] tables, "
            "or a list of tokentrail.budget(...) objects or mappings"
        )
    found = []
    for index, entry in enumerate(entries):
        if isinstance(entry, budget):
            found.append(entry)
            continue
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: budget #{index + 1} must be a table/mapping")
        unknown = set(entry) - _FIELDS
        if unknown:
            raise ConfigError(
                f"{where}: budget #{index + 1}: unknown field(s) {sorted(map(str, unknown))}; "
                f"use {', '.join(sorted(_FIELDS))}"
            )
        if "usd" not in entry:
            raise ConfigError(f"{where}: budget #{index + 1} needs usd = <limit in US dollars>")
        try:
            found.append(budget(**{"name": f"budget-{index + 1}", **entry}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: budget #{index + 1}: {exc}") from None
    return tuple(found)
