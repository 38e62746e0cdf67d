"""Reading SDK payloads that may be pydantic objects, plain dicts (raw responses) or missing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``; None when ``obj`` is None or has no such field.

    On the hot path of every call, so pydantic models (every SDK's response types) are read from
    their ``__dict__`` and extra-fields dict directly: asking pydantic for a field it does not
    have (``usage.cost`` on OpenAI, which only OpenRouter sends) raises inside its
    ``__getattr__`` and costs about 2 µs each time.
    """
    if type(obj) is dict:  # raw responses and botocore's events: no attribute lookup, no ABC check
        return obj.get(name)
    if obj is None:
        return None
    values = getattr(obj, "__dict__", None)
    if values is not None:
        if name in values:
            return values[name]
        if hasattr(type(obj), "__pydantic_fields__"):
            extra = obj.__pydantic_extra__
            return extra.get(name) if extra else None
        return getattr(obj, name, None)
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def fields(obj: Any, names: tuple[str, ...]) -> list[Any]:
    """``[field(obj, name) for name in names]``, looking ``obj`` over once rather than per name."""
    if obj is None:
        return [None] * len(names)
    if type(obj) is dict or isinstance(obj, Mapping):
        return list(map(obj.get, names))
    values = getattr(obj, "__dict__", None)
    if values is None or not hasattr(type(obj), "__pydantic_fields__"):
        return [field(obj, name) for name in names]
    extra = obj.__pydantic_extra__
    return list(map({**values, **extra}.get if extra else values.get, names))
