"""Google Gemini through the ``google-genai`` SDK: the Gemini API and Vertex AI.

Pure reading of SDK objects: what a request asks, what came back, and the usage in the normal
form. The call mechanics are shared (:mod:`._patch` patches the methods, :mod:`._stream` follows
streams); nothing here knows OpenTelemetry.

Where the calls are seen. google-genai has no single request method for every endpoint, and its
public methods can send several billed requests for one call:

* automatic function calling (AFC) runs Python tools and calls the model again with their results;
* automatic continuation (3.x, and late 2.x) follows ``continuation_token`` s while a candidate
  stops with ``finish_reason=CONTINUATION``, and hands back one response whose usage is the SUM
  of the requests'; a stream that loses its connection is re-requested the same way.

So the public ``generate_content`` is not patched. Its private per-request steps are:
``Models._generate_content`` / ``_generate_content_stream`` / ``_embed_content`` and their
``AsyncModels`` twins, each of which sends exactly one HTTP request. Every billed request gets its
own span, usage and cost, priced at its own long-context tier (the cliff rule applies to one
request's input, never to a merged sum), and chats (``client.chats.create(...).send_message``),
which go through ``generate_content``, are counted once per request. No approximation is needed:
google-genai 2.x and 3.x (tested) send every billed generate/embed request from these methods.
The price of this choice: an AFC or continuation call shows as several sibling spans, not one;
wrap it in ``tokentrail.span(...)`` for a roll-up.

Provider quirks handled here, each once:

* the provider is the client's mode, not its host: ``gcp.vertex_ai`` for ``vertexai=True``
  clients, ``gcp.gemini`` otherwise (both priced as genai-prices' ``google``);
* input total = ``prompt_token_count + tool_use_prompt_token_count`` (the cached content is part
  of the prompt); output total = ``candidates_token_count + thoughts_token_count`` (thoughts are
  NOT inside the candidates); ``total_token_count`` is the sum of all four;
* a streamed chunk's ``usage_metadata`` is the running total of its request: the last one wins;
* per-modality counts (``prompt_tokens_details``, ``tool_use_prompt_tokens_details``,
  ``candidates_tokens_details``) give the audio and image parts;
* embeddings report ``usage_metadata`` (3.x reads it; 2.x drops it, so Gemini API embeddings
  are recorded without usage there) or per-embedding ``statistics.token_count`` (Vertex
  ``predict``, whose per-character list prices the catalogue lacks: tokens, no cost);
* finish reasons are the enum names lower-cased (``stop``, ``max_tokens``, ``safety``, ...).

Not priced here: grounding with Google Search (billed per prompt or per query after a daily free
allowance, so not knowable per call) and Vertex provisioned throughput (prepaid).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .. import semconv as sc
from ..config import Settings
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage
from ._contract import Plan
from ._estimate import input_tokens
from ._locate import Locator
from ._patch import Patches, Target
from ._read import field as _get

__all__ = [
    "GEMINI_API",
    "VERTEX_AI",
    "embed_usage",
    "generate_usage",
    "input_messages",
    "model_id",
    "patches",
    "request_params",
]

GEMINI_API = "gcp.gemini"
VERTEX_AI = "gcp.vertex_ai"


def _enum_name(value: Any) -> str | None:
    """``FinishReason.STOP`` / ``"STOP"`` -> ``"STOP"``."""
    if value is None:
        return None
    raw = getattr(value, "value", value)
    return raw if isinstance(raw, str) else str(raw)


# ---------------------------------------------------------------------------------------------
# Usage in the normal form
# ---------------------------------------------------------------------------------------------


def _modality_tokens(details: Any, modality: str) -> int:
    total = 0
    for item in details or ():
        if _enum_name(_get(item, "modality")) == modality:
            count = _get(item, "token_count")
            if type(count) is int:
                total += count
    return total


def _plus(first: Any, second: Any) -> Any:
    """Sum of two reported counts, keeping anything odd for ``Usage.of`` to flag."""
    if second is None:
        return first
    if first is None:
        return second
    if type(first) is int and type(second) is int:
        return first + second
    return first if type(second) is int else second


def generate_usage(metadata: Any) -> Usage:
    """Usage of a ``GenerateContentResponse`` from its ``usage_metadata``."""
    prompt = _get(metadata, "prompt_token_count")
    tool_use = _get(metadata, "tool_use_prompt_token_count")
    candidates = _get(metadata, "candidates_token_count")
    thoughts = _get(metadata, "thoughts_token_count")
    input_details = [
        *(_get(metadata, "prompt_tokens_details") or ()),
        *(_get(metadata, "tool_use_prompt_tokens_details") or ()),
    ]
    return Usage.of(
        input_tokens=_plus(prompt, tool_use),
        output_tokens=_plus(candidates, thoughts),
        cache_read_tokens=_get(metadata, "cached_content_token_count"),
        reasoning_tokens=thoughts,
        input_audio_tokens=_modality_tokens(input_details, "AUDIO"),
        input_image_tokens=_modality_tokens(input_details, "IMAGE"),
        output_audio_tokens=_modality_tokens(_get(metadata, "candidates_tokens_details"), "AUDIO"),
        reported_total_tokens=_get(metadata, "total_token_count"),
    )


def embed_usage(response: Any) -> Usage | None:
    """Usage of an ``EmbedContentResponse``, or None when it reports none."""
    metadata = _get(response, "usage_metadata")
    if metadata is not None and _get(metadata, "prompt_token_count") is not None:
        return Usage.of(
            input_tokens=_get(metadata, "prompt_token_count"),
            input_audio_tokens=_modality_tokens(_get(metadata, "prompt_tokens_details"), "AUDIO"),
            input_image_tokens=_modality_tokens(_get(metadata, "prompt_tokens_details"), "IMAGE"),
            reported_total_tokens=_get(metadata, "total_token_count"),
        )
    # Vertex AI's predict endpoint: a token count per embedded input (a float in the SDK's type).
    counts = [_get(_get(e, "statistics"), "token_count") for e in _get(response, "embeddings") or ()]
    counts = [c for c in counts if c is not None]
    if not counts:
        return None
    odd = [c for c in counts if isinstance(c, bool) or not isinstance(c, int | float)]
    return Usage.of(input_tokens=odd[0] if odd else sum(counts))  # an odd value is flagged, not summed


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def model_id(model: Any) -> str | None:
    """The model id in a model name: ``models/x``, ``publishers/google/models/x``,
    ``projects/.../models/x`` and ``google/x`` all name ``x``; tuned models and endpoints stay
    as they are."""
    if not isinstance(model, str) or not model:
        return None
    if "models/" in model:
        return model.rsplit("models/", 1)[1] or model
    if model.startswith("google/") and model.count("/") == 1:
        return model[len("google/") :]
    return model


_PARAMS: tuple[tuple[str, str], ...] = (
    ("max_output_tokens", sc.REQUEST_MAX_TOKENS),
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
    ("top_k", sc.REQUEST_TOP_K),
    ("frequency_penalty", sc.REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.REQUEST_PRESENCE_PENALTY),
    ("seed", sc.REQUEST_SEED),
)


def request_params(config: Any) -> dict[str, Any]:
    """``GenerateContentConfig`` (object or dict) as semantic-convention attributes."""
    params: dict[str, Any] = {}
    if config is None:
        return params
    for key, attribute in _PARAMS:
        value = _get(config, key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            params[attribute] = value
    stop = _get(config, "stop_sequences")
    if isinstance(stop, list | tuple) and stop and all(isinstance(s, str) for s in stop):
        params[sc.REQUEST_STOP_SEQUENCES] = tuple(stop)
    count = _get(config, "candidate_count")
    if isinstance(count, int) and not isinstance(count, bool) and count != 1:
        params[sc.REQUEST_CHOICE_COUNT] = count
    mime_type = _get(config, "response_mime_type")
    if mime_type == "application/json" or _get(config, "response_schema") is not None:
        params[sc.OUTPUT_TYPE] = "json"
    elif mime_type == "text/plain":
        params[sc.OUTPUT_TYPE] = "text"
    return params


# ---------------------------------------------------------------------------------------------
# Content (only read when the user opted in to content capture)
# ---------------------------------------------------------------------------------------------


def _part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "content": part}
    text = _get(part, "text")
    if isinstance(text, str):
        return {"type": "reasoning" if _get(part, "thought") else "text", "content": text}
    call = _get(part, "function_call")
    if call is not None:
        return {"type": "tool_call", "id": _get(call, "id"), "name": _get(call, "name"),
                "arguments": _get(call, "args")}  # fmt: skip
    result = _get(part, "function_response")
    if result is not None:
        return {"type": "tool_call_response", "id": _get(result, "id"), "response": _get(result, "response")}
    for field, kind in (("inline_data", "blob"), ("file_data", "uri")):
        data = _get(part, field)
        if data is not None:
            # The bytes are never copied: only what they are.
            found = {"type": kind, "mime_type": _get(data, "mime_type")}
            if kind == "uri":
                found["uri"] = _get(data, "file_uri")
            return found
    code = _get(part, "executable_code")
    if code is not None:
        return {"type": "tool_call", "name": "code_execution", "arguments": _get(code, "code")}
    outcome = _get(part, "code_execution_result")
    if outcome is not None:
        return {"type": "tool_call_response", "response": _get(outcome, "output")}
    return {"type": type(part).__name__.lower()}


def _is_content(item: Any) -> bool:
    if isinstance(item, Mapping):
        return "parts" in item or "role" in item
    return hasattr(item, "parts") and hasattr(item, "role")


def _message(role: Any, parts: list[dict[str, Any]]) -> dict[str, Any]:
    if role == "model":
        role = "assistant"
    elif parts and all(p["type"] == "tool_call_response" for p in parts):
        role = "tool"
    return {"role": role if isinstance(role, str) else "user", "parts": parts}


def input_messages(contents: Any) -> list[dict[str, Any]]:
    """``contents`` (a string, parts, ``Content`` s, dicts, or a list of them) as GenAI messages.

    Loose parts and strings between ``Content`` s form one user message, as the SDK sends them.
    """
    items = contents if isinstance(contents, list | tuple) else [contents]
    messages: list[dict[str, Any]] = []
    loose: list[dict[str, Any]] = []
    for item in items:
        if item is None:
            continue
        if _is_content(item):
            if loose:
                messages.append(_message("user", loose))
                loose = []
            messages.append(_message(_get(item, "role"), [_part(p) for p in _get(item, "parts") or ()]))
        else:
            loose.append(_part(item))
    if loose:
        messages.append(_message("user", loose))
    return messages


def system_instructions(config: Any) -> list[dict[str, Any]] | None:
    instruction = _get(config, "system_instruction")
    if instruction is None:
        return None
    parts: list[dict[str, Any]] = []
    for message in input_messages(instruction):
        parts.extend(message["parts"])
    return parts


def _output_messages(candidates: Any) -> list[dict[str, Any]]:
    return [
        {
            "role": "assistant",
            "parts": [_part(p) for p in _get(_get(c, "content"), "parts") or ()],
            "finish_reason": _finish_reason(_get(c, "finish_reason")),
        }
        for c in candidates or ()
    ]


def _finish_reason(value: Any) -> str | None:
    name = _enum_name(value)
    return name.lower() if name else None


# ---------------------------------------------------------------------------------------------
# Readers: one per kind of request
# ---------------------------------------------------------------------------------------------


class _Reader:
    operation = ""

    def __init__(self) -> None:
        self._locate = Locator(_platform)

    def request(
        self, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], settings: Settings
    ) -> Plan | None:
        config = kwargs.get("config")
        api_client = getattr(instance, "_api_client", None)
        base_url = _get(_get(config, "http_options"), "base_url")
        if not isinstance(base_url, str):
            base_url = _get(getattr(api_client, "_http_options", None), "base_url")
        vertex = bool(getattr(api_client, "vertexai", False))
        # The SDK reaches only Google: its mode, not its host, names the provider, and a proxy or
        # test server in front of it keeps that name (provider_hosts is for the openai SDK's hosts).
        provider, address, port = self._locate(
            vertex, base_url if isinstance(base_url, str) else "", _NO_OVERRIDES
        )
        request = RequestInfo(
            operation=self.operation,
            provider=provider,
            request_model=model_id(kwargs.get("model")),
            server_address=address,
            server_port=port,
            params=self.params(config),
        )
        request.input_estimate = _input_estimate(provider, request.request_model or "", kwargs)
        if settings.content.enabled:
            self.capture(request, kwargs)
        return Plan(request, self)

    def params(self, config: Any) -> dict[str, Any]:
        return {}

    def capture(self, request: RequestInfo, kwargs: Mapping[str, Any]) -> None:
        pass


class GenerateContent(_Reader):
    """``generateContent`` and ``streamGenerateContent``: one request each."""

    operation = "generate_content"

    def __init__(self, stream: bool) -> None:
        super().__init__()
        self.stream = stream

    def request(
        self, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], settings: Settings
    ) -> Plan | None:
        plan = super().request(instance, args, kwargs, settings)
        if plan is not None:
            plan.request.stream = self.stream
        return plan

    def params(self, config: Any) -> dict[str, Any]:
        return request_params(config)

    def capture(self, request: RequestInfo, kwargs: Mapping[str, Any]) -> None:
        request.input_messages = input_messages(kwargs.get("contents"))
        request.system_instructions = system_instructions(kwargs.get("config"))

    def response(self, result: Any, request: RequestInfo) -> ResponseInfo:
        if _get(result, "usage_metadata") is None and _get(result, "candidates") is None:
            # config.should_return_http_response: the SDK hands back the raw body unparsed.
            result = _raw_body(result) or result
        metadata = _get(result, "usage_metadata")
        candidates = _get(result, "candidates") or ()
        info = ResponseInfo(
            response_model=_get(result, "model_version"),
            response_id=_get(result, "response_id"),
            finish_reasons=tuple(r for c in candidates if (r := _finish_reason(_get(c, "finish_reason")))),
            usage=generate_usage(metadata) if metadata is not None else None,
        )
        if request.input_messages is not None:
            info.output_messages = _output_messages(candidates)
        return info

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool = False) -> GenerateStreamState:
        return GenerateStreamState(request.input_messages is not None)


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): _snake_keys(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_snake_keys(item) for item in value]
    return value


def _raw_body(result: Any) -> dict[str, Any] | None:
    """The JSON body of a raw HTTP response, with the SDK's (snake_case) field names."""
    body = _get(_get(result, "sdk_http_response"), "body")
    if not isinstance(body, str) or not body:
        return None
    parsed = json.loads(body)
    return _snake_keys(parsed) if isinstance(parsed, dict) else None


class GenerateStreamState:
    """Accumulates one streamed request: identity, finish reasons, the latest (cumulative) usage."""

    __slots__ = ("capture", "finish_reasons", "id", "metadata", "model", "parts", "received")

    def __init__(self, capture: bool) -> None:
        self.capture = capture
        self.received = False
        self.id: str | None = None
        self.model: str | None = None
        self.metadata: Any = None
        self.finish_reasons: dict[int, str] = {}
        self.parts: dict[int, list[dict[str, Any]]] = {}

    def add(self, chunk: Any) -> bool:
        # Once per chunk of every stream: only what can change is read on each chunk.
        self.received = True
        if self.id is None or self.model is None:  # every chunk repeats them
            self.model = chunk.model_version or self.model
            self.id = chunk.response_id or self.id
        metadata = chunk.usage_metadata
        if metadata is not None:
            # Each chunk's usage is the running total of the request: overwrite, never add.
            self.metadata = metadata
        candidates = chunk.candidates
        if candidates:
            capture = self.capture
            for position, candidate in enumerate(candidates):
                finish_reason = candidate.finish_reason
                if finish_reason is None and not capture:
                    continue  # most chunks: nothing to keep
                index = candidate.index if isinstance(candidate.index, int) else position
                if finish_reason is not None:
                    reason = _finish_reason(finish_reason)
                    if reason:
                        self.finish_reasons[index] = reason
                if capture and candidate.content is not None:
                    self._collect(index, candidate.content.parts or ())
        return True

    def _collect(self, index: int, parts: Any) -> None:
        collected = self.parts.setdefault(index, [])
        for part in parts:
            converted = _part(part)
            last = collected[-1] if collected else None
            if (
                last is not None
                and converted["type"] in ("text", "reasoning")
                and last["type"] == converted["type"]
            ):
                last["content"] += converted["content"]
            else:
                collected.append(converted)

    def result(self) -> ResponseInfo | None:
        if not self.received:
            return None  # the request failed before its first chunk
        info = ResponseInfo(
            response_model=self.model,
            response_id=self.id,
            finish_reasons=tuple(self.finish_reasons[i] for i in sorted(self.finish_reasons)),
            usage=generate_usage(self.metadata) if self.metadata is not None else None,
        )
        if self.capture:
            indexes = sorted(set(self.parts) | set(self.finish_reasons))
            info.output_messages = [
                {
                    "role": "assistant",
                    "parts": self.parts.get(i, []),
                    "finish_reason": self.finish_reasons.get(i),
                }
                for i in indexes
            ]
        return info


class EmbedContent(_Reader):
    """``embedContent`` / ``batchEmbedContents`` / Vertex ``predict``: one request each."""

    operation = "embeddings"

    def capture(self, request: RequestInfo, kwargs: Mapping[str, Any]) -> None:
        given = kwargs.get("contents")
        if given is None:
            given = kwargs.get("batch_contents")
        if given is None:
            given = kwargs.get("content")
        request.input_messages = input_messages(given)

    def response(self, result: Any, request: RequestInfo) -> ResponseInfo:
        return ResponseInfo(usage=embed_usage(result))

    def stream_state(  # pragma: no cover - never streamed
        self, request: RequestInfo, hide_usage_chunk: bool = False
    ) -> GenerateStreamState:
        raise TypeError("embeddings are not streamed")


_NO_OVERRIDES: Mapping[str, str] = {}


def _platform(vertex: Any, host: str | None = None, port: int | None = None) -> str:
    """The Gemini API, or Vertex AI when the client was made with ``vertexai=True``."""
    return VERTEX_AI if vertex else GEMINI_API


def patches() -> Patches | None:
    """The patch set for the installed ``google-genai`` SDK, or None if it is not installed."""
    try:
        from google.genai import models
    except ImportError:
        return None
    generate, stream, embed = GenerateContent(stream=False), GenerateContent(stream=True), EmbedContent()
    targets = []
    for owner in (models.Models, models.AsyncModels):
        targets += [
            Target(owner, ("_generate_content",), "call", generate),
            Target(owner, ("_generate_content_stream",), "stream", stream),
            # 1.x sent embeddings from the public method itself.
            Target(owner, ("_embed_content", "embed_content"), "call", embed),
        ]
    return Patches("google-genai", targets)


def _input_estimate(provider: str, model: str, kwargs: Mapping[str, Any]) -> Any:
    """An approximate input count when a budget asks (Gemini has no offline tokenizer)."""

    def estimate() -> tuple[int | None, float]:
        config = kwargs.get("config")
        system = _get(config, "system_instruction") if config is not None else None
        tokens, _, margin, _ = input_tokens(provider, model, kwargs.get("contents"), None, system)
        return tokens, margin

    return estimate
