"""Entry points for ``opentelemetry-instrument``: one instrumentor per provider of the registry.

Registered as ``tokentrail_openai`` (not ``openai``) so tokentrail never shadows, or is shadowed
by, the official OpenTelemetry instrumentation packages. Each instrumentor declares only its own
SDK, so a missing SDK disables that instrumentor alone; they share one runtime, and each one's
``uninstrument()`` removes its own SDK's patches only. The classes are made from
:mod:`tokentrail.registry` (``OpenAIInstrumentor``, ``AnthropicInstrumentor``, ...): a new
provider gets its instrumentor by its registry entry, and its entry point in ``pyproject.toml``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from . import _setup, registry

__all__ = [entry.instrumentor for entry in registry.PROVIDERS]


class _TokentrailInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    provider: str = ""
    requirement: str = ""

    def instrumentation_dependencies(self) -> Collection[str]:
        return (self.requirement,)

    def _instrument(self, **kwargs: Any) -> None:
        # One shared runtime: the first instrumentor sets it up, the others join it.
        _setup.instrument_provider(
            self.provider,
            tracer_provider=kwargs.get("tracer_provider"),
            meter_provider=kwargs.get("meter_provider"),
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        _setup.uninstrument(providers=[self.provider])  # this SDK alone; the others stay


def _instrumentor(entry: registry.ProviderEntry) -> type[_TokentrailInstrumentor]:
    return type(
        entry.instrumentor,
        (_TokentrailInstrumentor,),
        {
            "__module__": __name__,
            "__qualname__": entry.instrumentor,
            "__doc__": f"tokentrail for {entry.title}.",
            "provider": entry.name,
            "requirement": entry.requirement,
        },
    )


for _entry in registry.PROVIDERS:
    globals()[_entry.instrumentor] = _instrumentor(_entry)
del _entry
