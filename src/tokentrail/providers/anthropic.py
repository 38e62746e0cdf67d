"""The Anthropic SDK: the Messages API on Anthropic, Amazon Bedrock and Google Vertex AI.

Pure reading of SDK objects: which requests are LLM calls, what they ask, what came back, and the
usage in the normal form. The call mechanics are shared (:mod:`._stainless`, which patches
``SyncAPIClient.request`` / ``AsyncAPIClient.request``), so ``messages.create`` (plain and
``stream=True``), the ``messages.stream(...)`` helpers, ``beta.messages`` and
``.with_raw_response`` / ``.with_streaming_response`` are all covered; nothing here knows
OpenTelemetry.

Provider quirks handled here, each once:

* Anthropic's ``input_tokens`` excludes the prompt cache: the input total is
  ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens``. The cache write is
  split by TTL in ``cache_creation``; its one-hour part is priced at its own (higher) rate.
  ``output_tokens`` includes thinking (``output_tokens_details.thinking_tokens`` is the reasoning
  part). Web searches are billed per request (``server_tool_use.web_search_requests``); web
  fetches are not.
* In a stream, ``message_start`` carries the input side and a first output count, and every
  ``message_delta.usage`` holds *cumulative* totals: each value present overwrites, never adds.
  The TTL split, tier and speed come from ``message_start`` only. Both paths read usage through
  the same function, so a stream and the same call unstreamed give the same record.
* ``usage.service_tier`` (``standard`` / ``priority`` / ``batch``) and ``usage.speed``
  (``fast``) select price variants (``processing=batch``, ``speed=fast``, as the genai-prices
  catalogue names them; ``priority`` is passed as ``service_tier=priority``) and are recorded as
  ``anthropic.response.*`` attributes.
* Beta ``usage.iterations``: ``message`` (and ``fallback_message``) entries are the sampling
  iterations that make up the top-level usage. ``compaction`` entries (the server-side
  summarisation step) and ``advisor_message`` entries (a sub-inference on the advisor model) are
  NOT in the top-level usage and are billed on their own: they are added to the call's totals and
  priced separately (:class:`~tokentrail.records.UsagePart`), at the model they name, or else at
  the call's model, each as a request of its own (so a long-context tier applies per request).
  Entry types this module does not know are taken to be inside the top-level usage, as
  ``message`` is: never counted twice.
* The provider is the client class's platform: ``AnthropicBedrock`` is ``aws.bedrock`` (priced
  from the catalogue's AWS prices by the request's model id, whose region prefix - ``us.``,
  ``global.``, ... - sets the price; Bedrock's response names only the base model),
  ``AnthropicVertex`` is ``gcp.vertex_ai`` (Google's prices); everything else is ``anthropic``.
  ``provider_hosts`` overrides by host (e.g. a gateway in front of Bedrock).

Decisions:

* ``messages.count_tokens`` is not a billed call: it is not instrumented at all (no span, no
  token metric, no cost). The SDK's own span for it, if any, is left alone.
* The anthropic SDK (1.x and 2.x) makes its own OpenTelemetry span for every API call when a
  tracer provider is set, with usage attributes of its own. For the calls tokentrail instruments
  the default (its option ``anthropic_native_spans="off"``, ``TOKENTRAIL_ANTHROPIC_NATIVE_SPANS``) is to
  send the request without the SDK's span name: the SDK then makes no span for that call (its
  documented rule: a request without a span name has no span), leaving exactly one LLM span,
  tokentrail's, with the cost. It is decided per call on a copy of the request options, so there
  is nothing to restore on ``uninstrument()`` and other API calls (files, models, batches) keep
  their SDK spans. ``keep`` leaves the SDK's span alone; it then nests under tokentrail's span
  (which is current while the SDK runs) and carries no tokentrail cost or metrics. Without the
  SDK span the SDK sends no trace context header of its own for that call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from itertools import compress, repeat
from operator import is_not
from typing import Any

from .. import semconv as sc
from ..config import Settings
from ..records import RequestInfo, ResponseInfo, UsagePart
from ..usage import Usage, count, usage_given
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._estimate import input_tokens
from ._locate import Locator
from ._read import field as _get
from ._read import fields as _fields
from ._stainless import Instrumentation, installed_sdk

__all__ = ["MessageStreamState", "message_usage", "patches", "separately_billed"]

_MESSAGES_PATH = "/v1/messages"
# Requests the anthropic SDK sends that are not billed model calls.
_NOT_BILLED = ("/messages/count_tokens", "/messages/batches", "/files", "/models", "/skills")
# Iteration types whose tokens the top-level usage does not contain (billed as requests of their own).
_SEPARATELY_BILLED = frozenset({"compaction", "advisor_message"})
# What a price variant is called in the catalogue, by the tier the response says ran.
_TIER_CONTEXT = {"batch": ("processing", "batch"), "priority": ("service_tier", "priority")}
# Fields of a usage object, as message_start and message_delta carry them.
_USAGE_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "output_tokens",
    "output_tokens_details",
    "server_tool_use",
    "service_tier",
    "speed",
    "inference_geo",
    "iterations",
)


# ---------------------------------------------------------------------------------------------
# Usage in the normal form
# ---------------------------------------------------------------------------------------------


def message_usage(usage: Any) -> Usage:
    """The top-level usage of a Message (``Usage``, ``BetaUsage``, an iteration entry or the
    fields merged from a stream) in the normal form."""
    return _usage_of(_fields(usage, _USAGE_FIELDS))


def _usage_of(values: list[Any]) -> Usage:
    """:func:`message_usage` of the values of :data:`_USAGE_FIELDS`, read in one look."""
    raw_uncached, raw_written, raw_read, cache_creation, output, output_details, server_tool_use = values[:7]
    problems: list[str] = []
    uncached = count(raw_uncached, "input_tokens", problems)
    written = count(raw_written, "cache_creation_input_tokens", problems)
    read = count(raw_read, "cache_read_input_tokens", problems)
    record = Usage.of(
        input_tokens=uncached + written + read,
        output_tokens=output,
        cache_read_tokens=read,
        cache_write_tokens=written,
        cache_write_1h_tokens=_get(cache_creation, "ephemeral_1h_input_tokens"),
        reasoning_tokens=_get(output_details, "thinking_tokens"),
        web_searches=_get(server_tool_use, "web_search_requests"),
    )
    if problems:
        record = replace(record, problems=(*problems, *record.problems))
    return record


def separately_billed(iterations: Any) -> tuple[UsagePart, ...]:
    """The ``usage.iterations`` entries outside the top-level usage, each priced on its own."""
    if not isinstance(iterations, list | tuple):
        return ()
    parts = []
    for entry in iterations:
        if _get(entry, "type") in _SEPARATELY_BILLED:
            model = _get(entry, "model")
            parts.append(UsagePart(message_usage(entry), model if isinstance(model, str) and model else None))
    return tuple(parts)


def _usage_info(info: ResponseInfo, usage: Any) -> None:
    """Fill the usage, the separately billed parts and the tier of ``info`` from a usage object."""
    values = _fields(usage, _USAGE_FIELDS)
    info.usage = _usage_of(values)
    tier, speed, geo, iterations = values[7:]
    info.extra_usage = separately_billed(iterations)
    attributes: dict[str, Any] = {}
    context: dict[str, str] = {}
    if isinstance(tier, str) and tier:
        attributes[sc.ANTHROPIC_RESPONSE_SERVICE_TIER] = tier
        if tier in _TIER_CONTEXT:
            key, value = _TIER_CONTEXT[tier]
            context[key] = value
    if isinstance(speed, str) and speed:
        attributes[sc.ANTHROPIC_RESPONSE_SPEED] = speed
        if speed != "standard":
            context["speed"] = speed
    if isinstance(geo, str) and geo:
        attributes[sc.ANTHROPIC_RESPONSE_INFERENCE_GEO] = geo
    if attributes:
        info.attributes = attributes
    if context:
        info.price_context = context


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

_PARAMS: tuple[tuple[str, str], ...] = (
    ("max_tokens", sc.REQUEST_MAX_TOKENS),
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
    ("top_k", sc.REQUEST_TOP_K),
    ("service_tier", sc.ANTHROPIC_REQUEST_SERVICE_TIER),
    ("speed", sc.ANTHROPIC_REQUEST_SPEED),
)


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool)


def request_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters as attributes (only the ones present; the SDK's omitted values are not)."""
    params: dict[str, Any] = {}
    for key, attribute in _PARAMS:
        value = body.get(key)
        if _scalar(value):
            params[attribute] = value
    stop = body.get("stop_sequences")
    if isinstance(stop, list | tuple) and stop and all(isinstance(s, str) for s in stop):
        params[sc.REQUEST_STOP_SEQUENCES] = tuple(stop)
    budget = _get(body.get("thinking"), "budget_tokens")
    if _scalar(budget) and isinstance(body.get("thinking"), Mapping):
        params[sc.ANTHROPIC_THINKING_BUDGET_TOKENS] = budget
    output_format = _get(body.get("output_config"), "format") or body.get("output_format")
    if _get(output_format, "type") == "json_schema":
        params[sc.OUTPUT_TYPE] = "json"
    return params


# ---------------------------------------------------------------------------------------------
# Content (only read when the user opted in to content capture)
# ---------------------------------------------------------------------------------------------


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if not isinstance(content, list | tuple):
        return parts
    for block in content:
        kind = _get(block, "type")
        if kind == "text":
            parts.append({"type": "text", "content": _get(block, "text")})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": _get(block, "thinking")})
        elif kind in ("tool_use", "server_tool_use"):
            parts.append({"type": "tool_call", "id": _get(block, "id"), "name": _get(block, "name"),
                          "arguments": _get(block, "input")})  # fmt: skip
        elif kind == "tool_result":
            parts.append({"type": "tool_call_response", "id": _get(block, "tool_use_id"),
                          "response": _parts(_get(block, "content"))})  # fmt: skip
        elif kind:
            parts.append({"type": str(kind)})
    return parts


def input_messages(body: Mapping[str, Any]) -> tuple[list[Any], list[Any] | None]:
    """(GenAI input messages, system instructions) of a Messages request."""
    given = body.get("messages")
    # Only a list or tuple: reading another iterable (a generator) would take it from the SDK.
    messages = [
        {"role": _get(message, "role") or "user", "parts": _parts(_get(message, "content"))}
        for message in (given if isinstance(given, list | tuple) else ())
    ]
    system = body.get("system")
    return messages, (_parts(system) or None) if system is not None else None


# ---------------------------------------------------------------------------------------------
# Responses and streams
# ---------------------------------------------------------------------------------------------


def _message_info(
    model: Any, message_id: Any, stop_reason: Any, usage: Any, content: list[dict[str, Any]] | None
) -> ResponseInfo:
    info = ResponseInfo(
        response_model=model if isinstance(model, str) else None,
        response_id=message_id if isinstance(message_id, str) else None,
        finish_reasons=(stop_reason,) if isinstance(stop_reason, str) and stop_reason else (),
    )
    if usage_given(usage):
        _usage_info(info, usage)
    if content is not None:
        info.output_messages = [
            {"role": "assistant", "parts": content, "finish_reason": info.finish_reasons[0]}
            if info.finish_reasons
            else {"role": "assistant", "parts": content}
        ]
    return info


class Messages:
    """``POST /v1/messages`` (and ``?beta=true``): a Message, or its stream of events."""

    def response(self, parsed: Any, request: RequestInfo) -> ResponseInfo:
        content = _parts(_get(parsed, "content")) if request.input_messages is not None else None
        return _message_info(
            _get(parsed, "model"),
            _get(parsed, "id"),
            _get(parsed, "stop_reason"),
            _get(parsed, "usage"),
            content,
        )

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> MessageStreamState:
        return MessageStreamState(capture=request.input_messages is not None)


class MessageStreamState:
    """Accumulates a Messages stream: identity and input side from ``message_start``, cumulative
    usage and the stop reason from ``message_delta`` (overwritten, never added).

    The usage objects are only kept as they arrive and merged by :meth:`result`, off the calling
    thread: a ``message_delta``'s usage lacks most fields, and asking a pydantic model for one it
    lacks raises inside it (~18 µs a stream, on the application's thread)."""

    __slots__ = ("blocks", "capture", "id", "model", "stop_reason", "usages")

    def __init__(self, capture: bool = False) -> None:
        self.capture = capture
        self.id: Any = None
        self.model: Any = None
        self.stop_reason: Any = None
        self.usages: list[Any] = []  # message_start's, then each message_delta's, in order
        self.blocks: dict[int, dict[str, Any]] = {}

    def add(self, event: Any) -> bool:
        kind = event.type
        if kind == "content_block_delta":  # the most frequent event: nothing to do unless capturing
            if self.capture:
                self._delta(event)
        elif kind == "message_start":
            message = event.message
            self.id = message.id
            self.model = message.model
            self.stop_reason = message.stop_reason
            self.usages = [message.usage]
        elif kind == "message_delta":
            reason = event.delta.stop_reason
            if reason:
                self.stop_reason = reason
            usage = event.usage
            if usage is not None:
                self.usages.append(usage)
        elif kind == "content_block_start" and self.capture:
            self._start_block(event)
        return True

    def _start_block(self, event: Any) -> None:
        block = event.content_block
        kind = block.type
        if kind == "text":
            self.blocks[event.index] = {"type": "text", "content": block.text or ""}
        elif kind == "thinking":
            self.blocks[event.index] = {"type": "reasoning", "content": block.thinking or ""}
        elif kind in ("tool_use", "server_tool_use"):
            self.blocks[event.index] = {"type": "tool_call", "id": block.id, "name": block.name}
        else:
            self.blocks[event.index] = {"type": str(kind)}

    def _delta(self, event: Any) -> None:
        block = self.blocks.get(event.index)
        delta = event.delta
        if block is None:
            return
        if delta.type == "text_delta":
            block["content"] += delta.text
        elif delta.type == "thinking_delta":
            block["content"] += delta.thinking

    def result(self) -> ResponseInfo:
        content = [self.blocks[i] for i in sorted(self.blocks)] if self.capture else None
        usage = _merged_usage(self.usages) if self.usages else None
        return _message_info(self.model, self.id, self.stop_reason, usage, content)


def _merged_usage(usages: list[Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for usage in usages:
        values = _fields(usage, _USAGE_FIELDS)
        # Cumulative values: the latest given (not None) replaces the earlier one (picked in C).
        merged.update(compress(zip(_USAGE_FIELDS, values, strict=True), map(is_not, values, repeat(None))))
    return merged


_MESSAGES = Messages()


# ---------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------


def _platform(client_type: Any, host: str | None = None, port: int | None = None) -> str:
    """gen_ai.provider.name of a client class: what the SDK declares, else its platform base."""
    declared = getattr(client_type, "_gen_ai_provider_name", None)
    if isinstance(declared, str) and declared:
        return declared
    names = {base.__name__ for base in client_type.__mro__}
    if "BaseBedrockClient" in names:
        return "aws.bedrock"
    if "BaseVertexClient" in names:
        return "gcp.vertex_ai"
    return "anthropic"


class AnthropicAdapter:
    """Decides which anthropic SDK requests are LLM calls and describes them."""

    def __init__(self) -> None:
        self._locate = Locator(_platform)

    def plan(self, client: Any, options: Any, stream: bool, settings: Settings) -> Plan | NotRecorded | None:
        if options.method != "post":
            return NOT_RECORDED  # reads and deletes: never a billed call
        url = options.url
        path = url.partition("?")[0] if isinstance(url, str) else ""
        if not path.endswith(_MESSAGES_PATH):
            # count_tokens, batches, files, models: not billed calls. Anything else is unknown.
            return NOT_RECORDED if any(part in path for part in _NOT_BILLED) else None
        body = options.json_data
        if not isinstance(body, Mapping):
            return None  # a messages request without a JSON body: not one we know how to read
        extra = getattr(options, "extra_json", None)
        if isinstance(extra, Mapping) and extra:
            body = {**body, **extra}  # sent too: ``extra_body`` (e.g. temperature, which 1.x/2.x dropped)
        provider, address, port = self._locate(type(client), client.base_url, settings.provider_hosts)
        model = body.get("model")
        model = model if isinstance(model, str) else None
        request = RequestInfo(
            operation="chat",
            provider=provider,
            request_model=model,
            server_address=address,
            server_port=port,
            stream=stream,
            params=partial(request_params, body),  # read at the end, off the calling thread
        )
        request.input_estimate = _input_estimate(provider, model or "", body)
        if provider == "aws.bedrock":
            request.price_model = model
        if settings.content.enabled:
            request.input_messages, request.system_instructions = input_messages(body)
        if settings.option("anthropic", "native_spans") == "off" and getattr(options, "span_name", None):
            # The SDK makes no span for a request without a span name; a copy keeps the caller's.
            options = options.model_copy()
            options.span_name = None
        return Plan(request=request, endpoint=_MESSAGES, options=options)


def patches() -> Instrumentation | None:
    """The patch set for the installed ``anthropic`` SDK, or None if it is not installed."""
    sdk = installed_sdk("anthropic")
    return None if sdk is None else Instrumentation(sdk, AnthropicAdapter())


def _input_estimate(provider: str, model: str, body: Mapping[str, Any]) -> Any:
    """An approximate input count when a budget asks (Anthropic has no offline tokenizer)."""

    def estimate() -> tuple[int | None, float]:
        tokens, _, margin, _ = input_tokens(
            provider, model, body.get("messages"), body.get("tools"), body.get("system")
        )
        return tokens, margin

    return estimate
