"""Reading SDK payloads that may be pydantic objects, plain dicts (raw responses) or missing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``; None when ``obj`` is None or has no such field."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)
