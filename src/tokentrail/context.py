"""Context that travels with the application's own work and shapes how calls are recorded.

* The price context selects price variants the provider cannot tell us, such as batch
  processing (``with tokentrail.price_context(processing="batch"):``).
* The attribution (pipeline, agent, task, ...) is attached to every call made inside it.

Both live in :mod:`contextvars`, so they follow asyncio tasks and threads started with
``contextvars.copy_context()``, and never leak between concurrent units of work.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["current_attribution", "current_price_context", "price_context"]

_EMPTY: Mapping[str, str] = {}
_attribution: ContextVar[Mapping[str, str]] = ContextVar("tokentrail_attribution", default=_EMPTY)
_price_context: ContextVar[Mapping[str, str]] = ContextVar("tokentrail_price_context", default=_EMPTY)

# The price-context keys genai-prices understands, and their values.
PRICE_CONTEXT_KEYS = {
    "processing": ("batch",),
    "service_tier": ("default", "flex", "priority", "fast", "scale"),
}


def current_attribution() -> Mapping[str, str]:
    """The span attributes of the attribution active here (empty when none)."""
    return _attribution.get()


def current_price_context() -> Mapping[str, str]:
    return _price_context.get()


@contextmanager
def price_context(**values: str) -> Iterator[None]:
    """Price the calls made inside this block with a price variant, e.g. ``processing="batch"``.

    Use it where the provider's response cannot say it, such as requests that went through a
    batch API. Unknown keys or values are rejected here, not silently ignored at pricing time.
    """
    for key, value in values.items():
        allowed = PRICE_CONTEXT_KEYS.get(key)
        if allowed is None:
            raise ValueError(
                f"price_context: unknown key {key!r}; use one of {', '.join(sorted(PRICE_CONTEXT_KEYS))}"
            )
        if value not in allowed:
            raise ValueError(f"price_context: {key}={value!r}; use one of {', '.join(allowed)}")
    token = _price_context.set({**_price_context.get(), **values})
    try:
        yield
    finally:
        _price_context.reset(token)
