"""Wrapping methods on classes (SDKs, the OpenTelemetry SDK), remembered so that ``uninstrument()``
can put them back.

Patches go on the class, not on client instances, so clients created before ``instrument()``
are covered too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wrapt


class ClassPatches:
    """A set of wrapt wrappers on class methods; :meth:`undo` restores the originals."""

    def __init__(self) -> None:
        self._originals: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        self._originals.append((owner, name, vars(owner)[name]))
        wrapt.wrap_function_wrapper(owner, name, wrapper)

    def patched(self, owner: Any, name: str) -> bool:
        """True if ``owner.name`` is wrapped by this set."""
        return any(patched is owner and attribute == name for patched, attribute, _ in self._originals)

    def owns(self, function: Any) -> bool:
        """True if ``function`` is one of this set's wrappers (a module that imported it by name)."""
        return any(vars(owner).get(name) is function for owner, name, _ in self._originals)

    def undo(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()

    def __bool__(self) -> bool:
        return bool(self._originals)
