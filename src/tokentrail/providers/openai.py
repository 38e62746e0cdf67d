"""The OpenAI SDK and every OpenAI-compatible provider reached through it.

Pure reading of SDK objects: which requests are LLM calls, what they ask, what came back, and the
usage in the normal form. The call mechanics are shared (:mod:`._stainless`); nothing here knows
OpenTelemetry.

Provider quirks handled here, each once:

* the provider is the host the client talks to, not the SDK (xAI, OpenRouter, DeepSeek, ... all
  use ``openai``);
* chat and legacy completion streams carry usage only with ``stream_options.include_usage``: we
  ask for it and keep the extra usage chunk from an application that did not ask;
* xAI counts reasoning tokens outside ``completion_tokens``: reconciled against ``total_tokens``;
* DeepSeek reports cache hits as ``prompt_cache_hit_tokens``, Together as ``cached_tokens``;
* OpenRouter (``usage.cost``) and xAI (``usage.cost_in_usd_ticks``) report what the call cost.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from functools import partial
from typing import Any

from .. import _safety
from .. import semconv as sc
from ..config import Settings
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage, usage_given
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._estimate import input_tokens
from ._framework import framework_parses_raw_streams
from ._locate import Located, Locator, locate, provider_for_host, server_of
from ._read import field as _get
from ._read import fields as _fields
from ._stainless import RAW_RESPONSE_HEADER, Instrumentation, installed_sdk

__all__ = ["patches", "provider_for_url"]

# Providers known to accept stream_options.include_usage on chat and legacy completions.
_INCLUDE_USAGE_OK = {
    "openai", "azure.ai.openai", "x_ai", "openrouter", "deepseek", "groq", "together",
    "fireworks", "cerebras", "ollama", "vllm", "lm_studio", "gcp.gemini", "moonshot_ai",
}  # fmt: skip


def provider_for_url(url: str, overrides: Mapping[str, str] | None = None) -> Located:
    """(gen_ai.provider.name, server.address, server.port) for an OpenAI client's base URL.

    An unrecognised host is its own provider (its host name), unpriced unless overridden.
    """
    host, port = server_of(url)
    return locate(url, overrides, _by_host(False, host, port))


def _by_host(azure_client: Any, host: str | None, port: int | None) -> str:
    """The openai SDK reaches every OpenAI-compatible service: the host says which one (an Azure
    client class says Azure whatever its host)."""
    if azure_client:
        return "azure.ai.openai"
    return provider_for_host(host, port) or host or "unknown"


# ---------------------------------------------------------------------------------------------
# Usage in the normal form
# ---------------------------------------------------------------------------------------------


def chat_usage(usage: Any) -> Usage:
    """Usage of a chat completion / legacy completion (``CompletionUsage`` shape), any provider."""
    # Each object looked over once for all its names (_fields), not once per name: every call.
    (
        prompt,
        completion,
        total,
        prompt_details,
        completion_details,
        deepseek_cached,
        together_cached,
        ticks,
        cost,
    ) = _fields(usage, _CHAT_USAGE)
    prompt_cached, cache_write, input_audio, input_image = _fields(prompt_details, _PROMPT_DETAILS)
    reasoning, output_audio = _fields(completion_details, _COMPLETION_DETAILS)
    cached = deepseek_cached  # DeepSeek's prompt_cache_hit_tokens wins
    if cached is None:
        cached = prompt_cached
    if cached is None:
        cached = together_cached  # Together: beside prompt_tokens, a part of it
    output = completion
    # xAI bills reasoning on top of completion_tokens; OpenAI counts it inside. The total says
    # which: prompt + completion + reasoning == total only when reasoning is extra.
    if (
        type(reasoning) is int
        and reasoning > 0
        and type(prompt) is int
        and type(completion) is int
        and total == prompt + completion + reasoning
    ):
        output = completion + reasoning
    return Usage.of(
        input_tokens=prompt,
        output_tokens=output,
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        input_audio_tokens=input_audio,
        input_image_tokens=input_image,
        output_audio_tokens=output_audio,
        provider_cost_usd=_cost_of(ticks, cost),
        reported_total_tokens=total,
    )


_CHAT_USAGE = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "prompt_cache_hit_tokens",
    "cached_tokens",
    "cost_in_usd_ticks",
    "cost",
)
_PROMPT_DETAILS = ("cached_tokens", "cache_write_tokens", "audio_tokens", "image_tokens")
_COMPLETION_DETAILS = ("reasoning_tokens", "audio_tokens")


def responses_usage(usage: Any, web_searches: int = 0) -> Usage:
    """Usage of a Responses API response (``ResponseUsage`` shape); reasoning is a subset."""
    input_details = _get(usage, "input_tokens_details")
    output_details = _get(usage, "output_tokens_details")
    return Usage.of(
        input_tokens=_get(usage, "input_tokens"),
        output_tokens=_get(usage, "output_tokens"),
        cache_read_tokens=_get(input_details, "cached_tokens"),
        cache_write_tokens=_get(input_details, "cache_write_tokens"),
        reasoning_tokens=_get(output_details, "reasoning_tokens"),
        web_searches=web_searches,
        provider_cost_usd=_provider_cost(usage),
        reported_total_tokens=_get(usage, "total_tokens"),
    )


def embeddings_usage(usage: Any) -> Usage:
    prompt = _get(usage, "prompt_tokens")
    return Usage.of(
        input_tokens=prompt,
        provider_cost_usd=_provider_cost(usage),
        reported_total_tokens=_get(usage, "total_tokens"),
    )


def _provider_cost(usage: Any) -> Any:
    return _cost_of(*_fields(usage, ("cost_in_usd_ticks", "cost")))


def _cost_of(ticks: Any, cost: Any) -> Any:
    """The provider's cost in USD: xAI's ticks (1 USD = 10^10 ticks) win over OpenRouter's ``cost``."""
    if ticks is not None:
        if isinstance(ticks, int | float) and not isinstance(ticks, bool):
            try:
                return ticks / 1e10
            except OverflowError:  # an absurd payload: let Usage.of flag it as not finite
                return float("inf")
        return ticks
    return cost


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

_PARAMS: tuple[tuple[str, str], ...] = (
    ("max_tokens", sc.REQUEST_MAX_TOKENS),
    ("max_completion_tokens", sc.REQUEST_MAX_TOKENS),
    ("max_output_tokens", sc.REQUEST_MAX_TOKENS),
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
    ("frequency_penalty", sc.REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.REQUEST_PRESENCE_PENALTY),
    ("seed", sc.REQUEST_SEED),
    ("service_tier", sc.OPENAI_REQUEST_SERVICE_TIER),
)


def request_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters as semantic-convention attributes (only the ones present)."""
    params: dict[str, Any] = {}
    for key, attribute in _PARAMS:
        value = body.get(key)
        if value is not None and isinstance(value, int | float | str) and not isinstance(value, bool):
            params[attribute] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        params[sc.REQUEST_STOP_SEQUENCES] = (stop,)
    elif isinstance(stop, list | tuple) and all(isinstance(s, str) for s in stop):
        params[sc.REQUEST_STOP_SEQUENCES] = tuple(stop)
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n != 1:
        params[sc.REQUEST_CHOICE_COUNT] = n
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping):
        kind = response_format.get("type")
        if kind in ("json_object", "json_schema"):
            params[sc.OUTPUT_TYPE] = "json"
        elif kind == "text":
            params[sc.OUTPUT_TYPE] = "text"
    encoding = body.get("encoding_format")
    if isinstance(encoding, str):
        params[sc.REQUEST_ENCODING_FORMATS] = (encoding,)
    return params


# ---------------------------------------------------------------------------------------------
# Content (only read when the user opted in to content capture)
# ---------------------------------------------------------------------------------------------


def _text_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, list):
        for part in content:
            kind = _get(part, "type")
            text = _get(part, "text")
            if isinstance(text, str):
                parts.append({"type": "text", "content": text})
            elif kind:
                parts.append({"type": str(kind)})
    return parts


def chat_input_messages(messages: Any) -> list[dict[str, Any]]:
    converted: list[dict[str, Any]] = []
    for message in messages or ():
        role = _get(message, "role") or "user"
        parts = _text_parts(_get(message, "content"))
        for tool_call in _get(message, "tool_calls") or ():
            function = _get(tool_call, "function")
            parts.append(
                {
                    "type": "tool_call",
                    "id": _get(tool_call, "id"),
                    "name": _get(function, "name"),
                    "arguments": _get(function, "arguments"),
                }
            )
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": _get(message, "tool_call_id"), "response": parts}]
        converted.append({"role": role, "parts": parts})
    return converted


def responses_input_messages(body: Mapping[str, Any]) -> tuple[list[Any], list[Any] | None]:
    given = body.get("input")
    if isinstance(given, str):
        messages = [{"role": "user", "parts": [{"type": "text", "content": given}]}]
    else:
        messages = [
            {
                "role": _get(item, "role") or str(_get(item, "type")),
                "parts": _text_parts(_get(item, "content")),
            }
            for item in given or ()
        ]
    instructions = body.get("instructions")
    system = [{"type": "text", "content": instructions}] if isinstance(instructions, str) else None
    return messages, system


# ---------------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------------


class ChatCompletions:
    """``/chat/completions``, and the legacy ``/completions`` which has the same usage shape."""

    def __init__(self, legacy: bool = False) -> None:
        self.legacy = legacy

    def response(self, parsed: Any, request: RequestInfo) -> ResponseInfo:
        usage = _get(parsed, "usage")
        choices = _get(parsed, "choices") or ()
        reasons = tuple(str(r) for c in choices if (r := _get(c, "finish_reason")))
        info = ResponseInfo(
            response_model=_get(parsed, "model"),
            response_id=_get(parsed, "id"),
            finish_reasons=reasons,
            usage=chat_usage(usage) if usage_given(usage) else None,
        )
        _service_tier(info, _get(parsed, "service_tier"))
        if request.input_messages is not None:
            info.output_messages = [
                {
                    "role": "assistant",
                    "parts": _text_parts(
                        _get(c, "text") if self.legacy else _get(_get(c, "message"), "content")
                    ),
                    "finish_reason": _get(c, "finish_reason"),
                }
                for c in choices
            ]
        return info

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> ChatStreamState:
        return ChatStreamState(self.legacy, hide_usage_chunk, request.input_messages is not None)


class ChatStreamState:
    """Accumulates a chat (or legacy completion) stream: identity, finish reasons, usage."""

    __slots__ = ("capture", "decoder", "finish_reasons", "hide_usage_chunk", "id", "legacy", "model",
                 "service_tier", "texts", "usage")  # fmt: skip

    def __init__(self, legacy: bool, hide_usage_chunk: bool, capture: bool) -> None:
        self.legacy = legacy
        self.hide_usage_chunk = hide_usage_chunk
        self.capture = capture
        self.id: str | None = None
        self.model: str | None = None
        self.service_tier: str | None = None
        self.usage: Any = None
        self.finish_reasons: dict[int, str] = {}
        self.texts: dict[int, list[str]] = {}
        self.decoder: Any = None  # (the stream's SSE decoder, its class from the finish reason on)

    def add(self, chunk: Any) -> bool:
        if self.id is None:
            self.id = getattr(chunk, "id", None)
            self.model = getattr(chunk, "model", None)
        choices = chunk.choices
        for choice in choices:
            reason = choice.finish_reason
            if reason:
                self.finish_reasons[choice.index] = reason
                if self.decoder is not None:
                    self._drop_usage_event()
            if self.capture:
                text = choice.text if self.legacy else (choice.delta.content if choice.delta else None)
                if text:
                    self.texts.setdefault(choice.index, []).append(text)
        usage = chunk.usage
        if usage is not None:
            self.usage = usage
            self.service_tier = _get(chunk, "service_tier")  # a field some SDKs' chunks lack (mistralai)
            if self.hide_usage_chunk:
                if not choices:
                    return False  # the chunk we asked for; the application did not
                # A server that puts the usage on the last content chunk: the content is the
                # application's, the usage is not.
                chunk.usage = None
                chunk.__pydantic_fields_set__.discard("usage")
        elif self.hide_usage_chunk:
            if not choices and self.finish_reasons:
                # After the finish reasons, a chunk without choices is the usage chunk we asked
                # for, even when the server says "usage": null in it.
                return False
            # With include_usage every chunk says "usage": null; without it the key is absent.
            # Keep the chunk identical to what the application would have received.
            chunk.__pydantic_fields_set__.discard("usage")
        return True

    def watch(self, stream: Any) -> None:
        """Make the usage we asked for cost the SDK nothing: its decoder (openai's own
        ``SSEDecoder``; a client's own decoder class is left alone) becomes an instance of
        :func:`_decoder_classes`' first subclass, which strips the ``"usage":null`` that every chunk
        then carries before the SDK reads it, and, once a finish reason has arrived (the usage
        chunk comes after them), of the second, which also reads the usage chunk from its
        server-sent event and drops it there: the SDK would parse it (as costly as any other
        chunk) only for us to hide it. What gets past either is hidden by :meth:`add`."""
        if not self.hide_usage_chunk:
            return
        decoder = getattr(stream, "_decoder", None)
        classes = _decoder_classes(type(decoder))
        if classes is not None:
            stripping, dropping = classes
            decoder.__class__ = stripping
            self.decoder = (decoder, dropping)

    def _drop_usage_event(self) -> None:
        (decoder, dropping), self.decoder = self.decoder, None  # once; and no reference cycle
        try:
            decoder._tokentrail_stream_state = self
            decoder.__class__ = dropping
        except Exception as exc:  # the usage chunk is then parsed by the SDK and hidden by add()
            _safety.internal_error("openai.usage_event", exc)

    def take_usage_event(self, data: str) -> bool:
        """True if ``data`` (an event whose choices are empty) is the usage chunk, now read."""
        try:
            payload = json.loads(data)
        except ValueError:
            return False
        if not isinstance(payload, dict) or payload.get("choices") != [] or not payload.get("usage"):
            return False  # e.g. Azure's first chunk: prompt filter results, no choices, no usage
        self.usage = payload["usage"]
        self.service_tier = payload.get("service_tier")
        if self.id is None:
            self.id = payload.get("id")
            self.model = payload.get("model")
        return True

    def result(self) -> ResponseInfo:
        info = ResponseInfo(
            response_model=self.model,
            response_id=self.id,
            finish_reasons=tuple(self.finish_reasons[i] for i in sorted(self.finish_reasons)),
            usage=chat_usage(self.usage) if usage_given(self.usage) else None,
        )
        _service_tier(info, self.service_tier)
        if self.capture:
            info.output_messages = [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "".join(self.texts.get(i, []))}],
                    "finish_reason": self.finish_reasons.get(i),
                }
                for i in sorted(set(self.texts) | set(self.finish_reasons))
            ]
        return info


# Every chunk of a stream that asked for usage says "usage":null (compact JSON from the API; with
# a space from servers that use Python's json.dumps). Never inside a JSON string, where quotes are
# escaped, so removing the member leaves the same object less a null member.
_STRIP_NULL_USAGE = (
    operator.methodcaller("replace", b',"usage":null', b""),
    operator.methodcaller("replace", b', "usage": null', b""),
)


_DECODER_CLASSES: dict[type, tuple[type, type]] = {}


def _decoder_classes(decoder_class: type) -> tuple[type, type] | None:
    """The two subclasses of openai's ``SSEDecoder`` a stream's decoder becomes, ``(stripping,
    dropping)``; None for any other decoder class (a client's own ``_make_sse_decoder``).

    Every openai version we support decodes a stream by ``iter_bytes(response.iter_bytes())``,
    line by line through ``self.decode(line)``, skipping what that returns falsy; so a decoder's
    class can change mid-stream, changing how the lines still to come are read and nothing else,
    and the stream keeps its own decoder object.

    * ``stripping``: ``iter_bytes`` maps the response's bytes (httpx always yields ``bytes``)
      through ``bytes.replace`` (C, no Python frame per chunk): the SDK never constructs the null
      ``usage`` field, and the application's chunks have no ``usage`` among their set fields, as
      without tokentrail (a member split across two network reads is not stripped: ``add`` unsets
      it). Async streams are not stripped (an async iterator has no C map): ``add`` unsets it.
    * ``dropping``: also ``decode`` hands the usage event to the stream state and returns None."""
    classes = _DECODER_CLASSES.get(decoder_class)
    if classes is None:
        from openai._streaming import SSEDecoder

        if decoder_class is not SSEDecoder:
            return None
        classes = _DECODER_CLASSES[decoder_class] = _make_decoder_classes(decoder_class)
    return classes


def _make_decoder_classes(base: type) -> tuple[type, type]:
    first, second = _STRIP_NULL_USAGE

    class NullUsageStrippingSSEDecoder(base):  # type: ignore[misc, valid-type]
        def iter_bytes(self, iterator: Any) -> Any:
            return super().iter_bytes(map(second, map(first, iterator)))

    class UsageDroppingSSEDecoder(NullUsageStrippingSSEDecoder):
        _tokentrail_stream_state: ChatStreamState

        def decode(self, line: str) -> Any:
            event = super().decode(line)
            if event is not None and _is_usage_event(self._tokentrail_stream_state, event):
                return None  # read; the SDK never parses it
            return event

    return NullUsageStrippingSSEDecoder, UsageDroppingSSEDecoder


def _is_usage_event(state: ChatStreamState, event: Any) -> bool:
    try:
        data = event.data
        return ('"choices":[]' in data or '"choices": []' in data) and state.take_usage_event(data)
    except Exception as exc:  # the SDK gets the event, as if we were not there
        _safety.internal_error("openai.usage_event", exc)
        return False


class Responses:
    """``/responses``: the Responses API, plain and streamed (usage on ``response.completed``)."""

    def response(self, parsed: Any, request: RequestInfo) -> ResponseInfo:
        usage = _get(parsed, "usage")
        output = _get(parsed, "output") or ()
        web_searches = sum(1 for item in output if _get(item, "type") == "web_search_call")
        status = _get(parsed, "status")
        info = ResponseInfo(
            response_model=_get(parsed, "model"),
            response_id=_get(parsed, "id"),
            finish_reasons=(str(status),) if status else (),
            usage=responses_usage(usage, web_searches) if usage_given(usage) else None,
        )
        _service_tier(info, _get(parsed, "service_tier"))
        if request.input_messages is not None:
            info.output_messages = [
                {"role": _get(item, "role") or "assistant", "parts": _text_parts(_get(item, "content"))}
                for item in output
                if _get(item, "type") == "message"
            ]
        return info

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> ResponsesStreamState:
        return ResponsesStreamState(self, request)


class ResponsesStreamState:
    __slots__ = ("endpoint", "final", "id", "model", "request")

    def __init__(self, endpoint: Responses, request: RequestInfo) -> None:
        self.endpoint = endpoint
        self.request = request
        self.final: Any = None
        self.id: str | None = None
        self.model: str | None = None

    def add(self, event: Any) -> bool:
        response = getattr(event, "response", None)
        if response is not None:
            if self.id is None:
                self.id = getattr(response, "id", None)
                self.model = getattr(response, "model", None)
            if event.type in ("response.completed", "response.incomplete", "response.failed"):
                self.final = response
        return True

    def result(self) -> ResponseInfo:
        if self.final is not None:
            return self.endpoint.response(self.final, self.request)
        return ResponseInfo(response_model=self.model, response_id=self.id)


class Embeddings:
    def response(self, parsed: Any, request: RequestInfo) -> ResponseInfo:
        usage = _get(parsed, "usage")
        return ResponseInfo(
            response_model=_get(parsed, "model"),
            usage=embeddings_usage(usage) if usage_given(usage) else None,
        )

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> ChatStreamState:
        raise TypeError("embeddings are not streamed")


def _service_tier(info: ResponseInfo, tier: Any) -> None:
    if isinstance(tier, str) and tier:
        info.attributes = {sc.OPENAI_RESPONSE_SERVICE_TIER: tier}
        # "auto" is a request, not a tier that ran; anything else selects a price variant.
        if tier != "auto":
            info.price_context = {"service_tier": tier}


_CHAT = ChatCompletions()
_LEGACY = ChatCompletions(legacy=True)
_RESPONSES = Responses()
_EMBEDDINGS = Embeddings()

# Path suffix -> (operation, endpoint). Suffix, so Azure's /deployments/{name}/... paths match.
_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("/chat/completions", "chat", _CHAT),
    ("/responses", "chat", _RESPONSES),
    ("/embeddings", "embeddings", _EMBEDDINGS),
    ("/completions", "text_completion", _LEGACY),
)


# Requests the openai SDK sends that are not billed model calls (uploads, jobs, moderation).
_NOT_BILLED = ("/files", "/uploads", "/batches", "/moderations", "/models", "/vector_stores")


def _not_billed(url: Any) -> bool:
    path = str(url).partition("?")[0]
    return any(part in path for part in _NOT_BILLED)


def _route(url: str) -> tuple[str, Any] | None:
    for suffix, operation, endpoint in _ROUTES:
        if url.endswith(suffix):
            return operation, endpoint
    return None


class OpenAIAdapter:
    """Decides which OpenAI SDK requests are LLM calls and describes them."""

    def __init__(self) -> None:
        self._locate = Locator(_by_host)

    def plan(self, client: Any, options: Any, stream: bool, settings: Settings) -> Plan | NotRecorded | None:
        if options.method != "post":
            return NOT_RECORDED  # listings, retrievals, deletes: never a billed model call
        route = _route(options.url)
        if route is None:
            return NOT_RECORDED if _not_billed(options.url) else None
        operation, endpoint = route
        body = options.json_data
        if not isinstance(body, Mapping):
            return None
        client_type = type(client)
        azure = _AZURE_CLIENTS.get(client_type)
        if azure is None:
            azure = _AZURE_CLIENTS[client_type] = client_type.__name__.startswith(
                ("AzureOpenAI", "AsyncAzureOpenAI")
            )
        provider, address, port = self._locate(azure, client.base_url, settings.provider_hosts)
        model = body.get("model")
        request = RequestInfo(
            operation=operation,
            provider=provider,
            request_model=model if isinstance(model, str) else None,
            server_address=address,
            server_port=port,
            stream=stream,
            params=partial(request_params, body),  # read at the end, off the calling thread
        )
        if endpoint is _CHAT or endpoint is _RESPONSES:
            request.input_estimate = _input_estimate(body, model if isinstance(model, str) else "")
        if settings.content.enabled:
            if endpoint is _CHAT:
                request.input_messages = chat_input_messages(body.get("messages"))
            elif endpoint is _RESPONSES:
                request.input_messages, request.system_instructions = responses_input_messages(body)
            elif endpoint is _LEGACY:
                prompt = body.get("prompt")
                request.input_messages = [{"role": "user", "parts": _text_parts(prompt)}]
        hide_usage_chunk = False
        if (
            stream
            and (endpoint is _CHAT or endpoint is _LEGACY)
            and settings.inject_stream_usage
            and provider in _INCLUDE_USAGE_OK
            and (not _is_raw(options) or framework_parses_raw_streams())
        ):
            stream_options = body.get("stream_options")
            asked = isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True
            if not asked:
                # Ask for the usage chunk on a copy: the caller's dicts stay as they were.
                merged = {**(stream_options if isinstance(stream_options, Mapping) else {})}
                merged["include_usage"] = True
                options = options.model_copy()
                options.json_data = {**body, "stream_options": merged}
                hide_usage_chunk = True
        return Plan(request=request, endpoint=endpoint, options=options, hide_usage_chunk=hide_usage_chunk)


_AZURE_CLIENTS: dict[type, bool] = {}


def _is_raw(options: Any) -> bool:
    headers = options.headers
    return isinstance(headers, Mapping) and RAW_RESPONSE_HEADER in headers


def patches() -> Instrumentation | None:
    """The patch set for the installed ``openai`` SDK, or None if it is not installed."""
    sdk = installed_sdk("openai")
    return None if sdk is None else Instrumentation(sdk, OpenAIAdapter())


def _input_estimate(body: Mapping[str, Any], model: str) -> Any:
    """Counts the request's input tokens when a budget asks (lazily: tiktoken loads on first use)."""

    def estimate() -> tuple[int | None, float]:
        messages = body.get("messages")
        if messages is not None:
            tokens, _, margin, _ = input_tokens("openai", model, messages, body.get("tools"))
            return tokens, margin
        # The Responses API: instructions + input, counted as chat messages (its framing is not
        # documented: an estimate, with a wider margin).
        items = body.get("input")
        messages = [{"role": "user", "content": items}] if isinstance(items, str) else list(items or [])
        if isinstance(body.get("instructions"), str):
            messages.insert(0, {"role": "system", "content": body["instructions"]})
        tokens, _, margin, _ = input_tokens("openai", model, messages, body.get("tools"))
        return tokens, max(margin, 0.10)

    return estimate
