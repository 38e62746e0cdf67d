"""Entry points for ``opentelemetry-instrument``: one instrumentor per SDK.

Registered as ``tokentrail_openai`` (not ``openai``) so tokentrail never shadows, or is shadowed
by, the official OpenTelemetry instrumentation packages. Each instrumentor declares only its own
SDK, so a missing SDK disables that instrumentor alone.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from . import _setup


class _TokentrailInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    provider: str = ""
    requirement: str = ""

    def instrumentation_dependencies(self) -> Collection[str]:
        return (self.requirement,)

    def _instrument(self, **kwargs: Any) -> None:
        _setup.instrument(
            providers=[self.provider],
            tracer_provider=kwargs.get("tracer_provider"),
            meter_provider=kwargs.get("meter_provider"),
            setup_otel=None,
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        _setup.uninstrument()


class OpenAIInstrumentor(_TokentrailInstrumentor):
    """tokentrail for the ``openai`` SDK (and every OpenAI-compatible provider)."""

    provider = "openai"
    requirement = "openai >= 1.40"


class LangChainInstrumentor(_TokentrailInstrumentor):
    """tokentrail for LangChain and LangGraph (``langchain-core``): any chat model, graph and node spans."""

    provider = "langchain"
    requirement = "langchain-core >= 0.3.10"


class GoogleGenAIInstrumentor(_TokentrailInstrumentor):
    """tokentrail for the ``google-genai`` SDK (Gemini API and Vertex AI)."""

    provider = "google_genai"
    requirement = "google-genai >= 1.8"


class AnthropicInstrumentor(_TokentrailInstrumentor):
    """tokentrail for the ``anthropic`` SDK (Anthropic API, Bedrock, Vertex AI clients)."""

    provider = "anthropic"
    requirement = "anthropic >= 0.43"
