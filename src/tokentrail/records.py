"""The plain records that flow down the pipeline: provider module -> call lifecycle -> sinks.

Provider modules fill :class:`RequestInfo` and :class:`ResponseInfo` from SDK objects (and know
nothing of OpenTelemetry); the lifecycle turns them into a span, metrics and one
:class:`CallRecord`, which every sink (the ledger, the run summary, logs) receives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _safety
from .pricing import Cost
from .usage import Usage

__all__ = ["CallRecord", "RequestInfo", "ResponseInfo", "UsagePart"]


@dataclass(slots=True)
class RequestInfo:
    """What is being asked, known before the request is sent."""

    operation: str
    """``gen_ai.operation.name``: chat, embeddings, text_completion, generate_content, ..."""
    provider: str
    """``gen_ai.provider.name``."""
    request_model: str | None
    server_address: str | None = None
    server_port: int | None = None
    stream: bool = False
    params: Mapping[str, Any] | Callable[[], Mapping[str, Any]] = field(default_factory=dict)
    """Request parameters as semantic-convention attributes (max_tokens, temperature, ...), or a
    reader of them (called once, when first needed: at the end of the call, off the calling
    thread, unless a budget needs them first). Read through :meth:`parameters`."""
    input_messages: list[Any] | None = None
    """GenAI-convention input messages; filled only when content capture is on."""
    system_instructions: list[Any] | None = None
    price_model: str | None = None
    """The model id to price the call by, before the response and request models: set when the
    request names the billed deployment more exactly than the response does (a Bedrock
    inference-profile id carries the region prefix that sets the price; the response names only
    the base model)."""
    input_estimate: Callable[[], tuple[int | None, float]] | None = None
    """Estimates the request's input tokens: ``(tokens or None, margin as a fraction)``. Filled by
    provider modules that can read the request; called only when a budget applies to the call."""

    def parameters(self) -> Mapping[str, Any]:
        """The request parameters (reading them now if a reader was given)."""
        params = self.params
        if callable(params):
            try:
                params = params()
            except Exception as exc:  # a request the provider module did not expect
                _safety.internal_error("request.params", exc)
                params = {}
            self.params = params
        return params


@dataclass(frozen=True, slots=True)
class UsagePart:
    """Usage inside one call that its provider bills as a request of its own."""

    usage: Usage
    model: str | None = None
    """The model it ran on, whose prices apply; ``None``: the call's own model."""


@dataclass(slots=True)
class ResponseInfo:
    """What came back: from a parsed response, or accumulated over a stream."""

    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    usage: Usage | None = None
    price_context: Mapping[str, str] | None = None
    """Selects price variants, e.g. ``{"service_tier": "flex"}`` from the response."""
    attributes: Mapping[str, Any] | None = None
    """Provider-specific span attributes (e.g. ``openai.response.service_tier``)."""
    output_messages: list[Any] | None = None
    """GenAI-convention output messages; filled only when content capture is on."""
    extra_usage: tuple[UsagePart, ...] = ()
    """Usage the provider reports beside ``usage`` and bills as separate requests (e.g. a
    server-side summarisation step or a sub-inference on another model within the one call).
    The call's token totals are ``usage`` plus these; each part is priced on its own, at its own
    model, so a long-context tier or a different model's price applies to that part alone."""
    billed_usage: Usage | None = None
    """What the provider bills, when it reports that apart from what the model processed (Cohere's
    ``billed_units`` beside its ``tokens``): the call is priced on this, while ``usage`` (the
    processed tokens) is what its token attributes and metrics say. None: ``usage`` is billed."""


@dataclass(slots=True)
class CallRecord:
    """Everything known about one finished LLM call: what every sink receives."""

    start_time: float
    """Epoch seconds when the request started."""
    duration_s: float
    operation: str
    provider: str
    request_model: str | None
    response_model: str | None
    server_address: str | None
    stream: bool
    usage: Usage | None
    cost: Cost | None
    time_to_first_chunk_s: float | None = None
    error_type: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    incomplete: bool = False
    """A stream that ended before its usage arrived (closed early, cut, abandoned)."""
    attribution: Mapping[str, str] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float | None:
        return None if self.cost is None else self.cost.total
