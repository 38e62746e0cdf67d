"""OpenAI wire format: request parsing and response bodies for the fake server's ``/v1`` routes.

Bodies follow the API reference and parse with the ``openai`` SDK's own types: ``chat.completion``
and ``chat.completion.chunk`` (SSE ``data:`` frames ending in ``data: [DONE]``), ``response`` and
its typed stream events (``event: <type>`` frames, each with a ``sequence_number``), embedding
lists (float arrays or base64 little-endian float32), and legacy ``text_completion``.

Usage (see :mod:`._model` for how the numbers come about) is the same for the streamed and the
non-streamed form of a request. A stream carries it only when the request sets
``stream_options.include_usage``: every chunk then has ``"usage": null`` and one extra last chunk
with ``"choices": []`` holds the usage. Chat and legacy completions report::

    {"prompt_tokens", "completion_tokens", "total_tokens",
     "prompt_tokens_details": {"cached_tokens", "audio_tokens"},
     "completion_tokens_details": {"reasoning_tokens", "audio_tokens",
                                   "accepted_prediction_tokens", "rejected_prediction_tokens"}}

with reasoning counted inside ``completion_tokens``. The Responses API reports
``{input_tokens, input_tokens_details: {cached_tokens, cache_write_tokens}, output_tokens,
output_tokens_details: {reasoning_tokens}, total_tokens}`` by the same rules.

Flavors (``X-Fake-Flavor`` header) reshape the Chat and legacy Completions usage the way
OpenAI-compatible providers do; Responses and embeddings usage stay OpenAI's:

* ``openai`` (default): as above.
* ``openrouter``: adds ``"cost"`` (float USD, see :data:`PROVIDER_PRICES_PER_MTOK`) and
  ``"is_byok": false``.
* ``xai``: reasoning tokens are *extra*: ``completion_tokens`` counts only the visible answer,
  ``total_tokens = prompt + completion + reasoning``; adds ``"cost_in_usd_ticks"`` (int,
  1 USD = 10^10 ticks, same prices).
* ``deepseek``: adds ``"prompt_cache_hit_tokens"`` (= ``cached_tokens``) and
  ``"prompt_cache_miss_tokens"`` (the rest of the prompt) beside ``prompt_tokens_details``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from . import _model
from ._wire import Handler, JsonReply, StreamReply, WireRequest, sse_data, sse_event

__all__ = [
    "FLAVORS",
    "PROVIDER_PRICES_PER_MTOK",
    "SNAPSHOTS",
    "error_reply",
    "provider_cost_units",
    "routes",
]

FLAVORS = ("openai", "openrouter", "xai", "deepseek")

SNAPSHOTS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-3.5-turbo-instruct": "gpt-3.5-turbo-instruct:20230824-v2",
    "o1": "o1-2024-12-17",
    "o3": "o3-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "gpt-5-nano": "gpt-5-nano-2025-08-07",
}
"""Aliases the API answers with a dated snapshot; other model names come back as sent."""

PROVIDER_PRICES_PER_MTOK = {"input": 1.00, "cached_input": 0.25, "output": 4.00}
"""USD per million tokens behind the costs the ``openrouter`` and ``xai`` flavors report.

Output includes reasoning. Small round numbers so a test can recompute the cost exactly.
"""

MESSAGE_OVERHEAD = 3
"""Tokens each message costs beyond its content (role and separators), as with OpenAI's chat format."""
REPLY_PRIMING = 3
"""Tokens priming the assistant's reply, once per request."""
NON_TEXT_PART_TOKENS = 85
"""An image, audio or file part costs a flat 85 tokens (OpenAI's low-detail image)."""

EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072}
DEFAULT_EMBEDDING_DIMENSIONS = 1536

_SERVICE_TIERS = {"default": "default", "auto": "default", "flex": "flex", "scale": "scale",
                  "priority": "priority", "fast": "priority"}  # fmt: skip
_SYSTEM_FINGERPRINT = "fp_fake000000"

# type, code, message of each error status, as the API words them.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported."),
    404: ("invalid_request_error", None, "The requested resource does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}  # fmt: skip


def error_reply(status: int, message: str | None = None, param: str | None = None) -> JsonReply:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

    A 429 carries ``retry-after: 0`` so SDK retries (when enabled) do not wait.
    """
    kind, code, default = _ERRORS.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None, _phrase(status)),
    )
    error = {"message": message or default, "type": kind, "param": param, "code": code}
    headers = {"retry-after": "0"} if status == 429 else {}
    return JsonReply(status, {"error": error}, headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class _BadRequest(Exception):
    """A request the real API would refuse with a 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# --- reading requests -------------------------------------------------------------------------


def _require(body: dict[str, Any], *names: str) -> None:
    for name in names:
        if body.get(name) in (None, "", []):
            raise _BadRequest(f"Missing required parameter: '{name}'.", name)
    if not isinstance(body["model"], str):
        raise _BadRequest("Invalid type for 'model': expected a string.", "model")


def _optional_int(body: dict[str, Any], *names: str) -> int | None:
    """The first of ``names`` that is set; each must be an integer if present."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise _BadRequest(f"Invalid type for '{name}': expected an integer.", name)
        return value
    return None


def _service_tier(body: dict[str, Any]) -> str:
    requested = body.get("service_tier")
    if requested is None:
        return "default"
    if requested not in _SERVICE_TIERS:
        raise _BadRequest(f"Invalid value for 'service_tier': {requested!r}.", "service_tier")
    return _SERVICE_TIERS[requested]


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage); stream_options without stream is refused, as the API does."""
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise _BadRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                          "stream_options")  # fmt: skip
    return stream, bool(isinstance(options, dict) and options.get("include_usage"))


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return _model.count_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            text = part if isinstance(part, str) else part.get("text") if isinstance(part, dict) else None
            total += _model.count_tokens(text) if isinstance(text, str) else NON_TEXT_PART_TOKENS
        return total
    return _model.count_tokens(json.dumps(content))


def _tools_tokens(body: dict[str, Any]) -> int:
    # Tool definitions are part of the prompt the model sees.
    tools = body.get("tools")
    return _model.count_tokens(json.dumps(tools)) if tools else 0


def chat_prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a chat request: each message's content plus overheads, plus tool definitions."""
    total = REPLY_PRIMING + _tools_tokens(body)
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
        if message.get("tool_calls"):
            total += _model.count_tokens(json.dumps(message["tool_calls"]))
    return total


def responses_prompt_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a Responses request: instructions and input items, as chat messages."""
    total = REPLY_PRIMING + _tools_tokens(body)
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        total += MESSAGE_OVERHEAD + _model.count_tokens(instructions)
    items = body.get("input")
    for item in [items] if isinstance(items, str) else items or []:
        if isinstance(item, str):
            total += MESSAGE_OVERHEAD + _model.count_tokens(item)
        elif isinstance(item, dict) and "content" in item:
            total += MESSAGE_OVERHEAD + _content_tokens(item["content"])
        elif isinstance(item, dict):  # tool calls and their outputs
            total += _model.count_tokens(json.dumps(item))
    return total


def _text_inputs(value: Any) -> list[Any]:
    """A string, a token array, or a list of either, as a list of single inputs."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    return list(value) if isinstance(value, list) else [value]


def _input_tokens(item: Any) -> int:
    # A token array is already tokens; any non-empty input costs at least one.
    if isinstance(item, list):
        return len(item)
    return max(1, _model.count_tokens(item if isinstance(item, str) else json.dumps(item)))


# --- what one call produced ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    model: str
    prompt_tokens: int
    cached_tokens: int
    generation: _model.Generation
    service_tier: str
    flavor: str

    @property
    def finish_reason(self) -> str:
        return "length" if self.generation.truncated else "stop"


def _call(req: WireRequest, prompt_tokens: int, effort: Any, limit: int | None) -> _Call:
    model = req.body["model"]
    generation = _model.generate(req.chunks, _model.reasoning_tokens(model, effort), limit)
    return _Call(
        model=SNAPSHOTS.get(model, model),
        prompt_tokens=prompt_tokens,
        cached_tokens=_model.cached_tokens(prompt_tokens),
        generation=generation,
        service_tier=_service_tier(req.body),
        flavor=req.flavor,
    )


def provider_cost_units(prompt_tokens: int, cached_tokens: int, output_tokens: int) -> int:
    """What a call costs at :data:`PROVIDER_PRICES_PER_MTOK`, in units of 10^-8 USD (exact integers).

    ``output_tokens`` includes reasoning. OpenRouter's ``cost`` is ``units / 1e8``; xAI's
    ``cost_in_usd_ticks`` is ``units * 100``.
    """
    prices = {name: round(price * 100) for name, price in PROVIDER_PRICES_PER_MTOK.items()}
    return (
        (prompt_tokens - cached_tokens) * prices["input"]
        + cached_tokens * prices["cached_input"]
        + output_tokens * prices["output"]
    )


def completion_usage(call: _Call) -> dict[str, Any]:
    """``CompletionUsage`` for chat and legacy completions, shaped by the call's flavor."""
    visible = call.generation.visible_tokens
    reasoning = call.generation.reasoning_tokens
    # xAI bills reasoning on top of completion_tokens; everyone else counts it inside.
    completion = visible if call.flavor == "xai" else visible + reasoning
    usage: dict[str, Any] = {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": call.prompt_tokens + visible + reasoning,
        "prompt_tokens_details": {"cached_tokens": call.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    units = provider_cost_units(call.prompt_tokens, call.cached_tokens, visible + reasoning)
    if call.flavor == "openrouter":
        usage["cost"] = units / 1e8
        usage["is_byok"] = False
    elif call.flavor == "xai":
        usage["cost_in_usd_ticks"] = units * 100
    elif call.flavor == "deepseek":
        usage["prompt_cache_hit_tokens"] = call.cached_tokens
        usage["prompt_cache_miss_tokens"] = call.prompt_tokens - call.cached_tokens
    return usage


def responses_usage(call: _Call) -> dict[str, Any]:
    """``ResponseUsage``: reasoning is part of ``output_tokens`` (flavors do not apply)."""
    output = call.generation.visible_tokens + call.generation.reasoning_tokens
    return {
        "input_tokens": call.prompt_tokens,
        "input_tokens_details": {"cached_tokens": call.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": call.generation.reasoning_tokens},
        "total_tokens": call.prompt_tokens + output,
    }


# --- chat completions ---------------------------------------------------------------------------


def chat_completions(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /v1/chat/completions``."""
    body = req.body
    _require(body, "model", "messages")
    stream, include_usage = _stream_flags(body)
    limit = _optional_int(body, "max_completion_tokens", "max_tokens")
    call = _call(req, chat_prompt_tokens(body), body.get("reasoning_effort"), limit)
    head = {
        "id": f"chatcmpl-fake{req.serial:012d}",
        "created": req.created,
        "model": call.model,
        "service_tier": call.service_tier,
        "system_fingerprint": _SYSTEM_FINGERPRINT,
    }
    finish_reason = "tool_calls" if req.tool_call else call.finish_reason
    call_id = f"call_fake{req.serial:012d}"
    if not stream:
        message = {"role": "assistant", "content": call.generation.text, "refusal": None, "annotations": []}
        if req.tool_call:
            message["content"] = None
            message["tool_calls"] = [_chat_tool_call(call_id, req.tool_call, req.tool_arguments)]
        return JsonReply(200, {
            "id": head["id"],
            "object": "chat.completion",
            "created": req.created,
            "model": call.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": completion_usage(call),
            "service_tier": call.service_tier,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
        })  # fmt: skip

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        body = {**head, "object": "chat.completion.chunk", "choices": choices}
        if include_usage:
            body["usage"] = None
        return body

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    chunks = [chunk([choice({"role": "assistant", "content": "", "refusal": None})])]
    if req.tool_call:
        opening = {**_chat_tool_call(call_id, req.tool_call, ""), "index": 0}
        chunks.append(chunk([choice({"tool_calls": [opening]})]))
        arguments = {"index": 0, "function": {"arguments": req.tool_arguments}}
        chunks.append(chunk([choice({"tool_calls": [arguments]})]))
    else:
        chunks += [chunk([choice({"content": piece})]) for piece in call.generation.pieces]
    chunks.append(chunk([choice({}, finish_reason)]))
    if include_usage:
        chunks.append({**chunk([]), "usage": completion_usage(call)})
    return StreamReply([sse_data(c) for c in chunks], trailer=["data: [DONE]\n\n"])


def _chat_tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- legacy completions -------------------------------------------------------------------------


def completions(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /v1/completions`` (legacy text completion)."""
    body = req.body
    _require(body, "model", "prompt")
    stream, include_usage = _stream_flags(body)
    prompt_tokens = sum(_input_tokens(item) for item in _text_inputs(body["prompt"]))
    call = _call(req, prompt_tokens, None, _optional_int(body, "max_tokens"))
    head = {
        "id": f"cmpl-fake{req.serial:012d}",
        "object": "text_completion",
        "created": req.created,
        "model": call.model,
        "system_fingerprint": _SYSTEM_FINGERPRINT,
    }

    def choice(text: str, finish_reason: str | None) -> dict[str, Any]:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}

    if not stream:
        choices = [choice(call.generation.text, call.finish_reason)]
        return JsonReply(200, {**head, "choices": choices, "usage": completion_usage(call)})

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {**head, "choices": choices, **({"usage": None} if include_usage else {})}

    chunks = [chunk([choice(piece, None)]) for piece in call.generation.pieces]
    chunks.append(chunk([choice("", call.finish_reason)]))
    if include_usage:
        chunks.append({**chunk([]), "usage": completion_usage(call)})
    return StreamReply([sse_data(c) for c in chunks], trailer=["data: [DONE]\n\n"])


# --- responses ----------------------------------------------------------------------------------


def responses(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /v1/responses``."""
    body = req.body
    _require(body, "model")
    stream = body.get("stream") is True
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    limit = _optional_int(body, "max_output_tokens")
    call = _call(req, responses_prompt_tokens(body), reasoning.get("effort"), limit)
    serial = f"{req.serial:012d}"
    message_id, reasoning_id = f"msg_fake{serial}", f"rs_fake{serial}"
    done_status = "incomplete" if call.generation.truncated else "completed"
    text = call.generation.text

    def text_part(value: str) -> dict[str, Any]:
        return {"type": "output_text", "text": value, "annotations": [], "logprobs": []}

    def message(status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": message_id, "type": "message", "status": status, "role": "assistant",
                "content": content}  # fmt: skip

    reasoning_item = {"id": reasoning_id, "type": "reasoning", "summary": []}
    # Reasoning models put a reasoning item before the message; a limit spent entirely on
    # reasoning leaves no message at all.
    has_reasoning = call.generation.reasoning_tokens > 0
    has_message = bool(text) or not call.generation.truncated
    output = [reasoning_item] if has_reasoning else []
    function_call = None
    if req.tool_call:  # a function call instead of the message
        has_message = False
        function_call = {"id": f"fc_fake{serial}", "type": "function_call", "status": "completed",
                         "call_id": f"call_fake{serial}", "name": req.tool_call,
                         "arguments": req.tool_arguments}  # fmt: skip
        output.append(function_call)
    if has_message:
        output.append(message(done_status, [text_part(text)]))

    final = _response_object(req, call, status=done_status, output=output, usage=responses_usage(call))
    if not stream:
        return JsonReply(200, final)

    started = {**final, "status": "in_progress", "output": [], "usage": None, "completed_at": None,
               "incomplete_details": None}  # fmt: skip
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    if has_reasoning:
        events.append({"type": "response.output_item.added", "output_index": 0, "item": reasoning_item})
        events.append({"type": "response.output_item.done", "output_index": 0, "item": reasoning_item})
    if function_call is not None:
        index = len(output) - 1
        events.append({"type": "response.output_item.added", "output_index": index,
                       "item": {**function_call, "status": "in_progress", "arguments": ""}})  # fmt: skip
        events.append({"type": "response.function_call_arguments.delta", "item_id": function_call["id"],
                       "output_index": index, "delta": req.tool_arguments})  # fmt: skip
        events.append({"type": "response.function_call_arguments.done", "item_id": function_call["id"],
                       "output_index": index, "arguments": req.tool_arguments,
                       "name": req.tool_call})  # fmt: skip
        events.append({"type": "response.output_item.done", "output_index": index, "item": function_call})
    if has_message:
        index = len(output) - 1
        where = {"item_id": message_id, "output_index": index, "content_index": 0}
        events.append({"type": "response.output_item.added", "output_index": index,
                       "item": message("in_progress", [])})  # fmt: skip
        events.append({"type": "response.content_part.added", **where, "part": text_part("")})
        events += [{"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
                   for piece in call.generation.pieces]  # fmt: skip
        events.append({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
        events.append({"type": "response.content_part.done", **where, "part": text_part(text)})
        events.append({"type": "response.output_item.done", "output_index": index, "item": output[-1]})
    events.append({"type": f"response.{done_status}", "response": final})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return StreamReply([sse_event(e) for e in events])


def _response_object(
    req: WireRequest, call: _Call, *, status: str, output: list[dict[str, Any]], usage: dict[str, Any]
) -> dict[str, Any]:
    body = req.body
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    reasoning_model = _model.is_reasoning_model(body["model"])
    return {
        "id": f"resp_fake{req.serial:012d}",
        "object": "response",
        "created_at": req.created,
        "status": status,
        "background": False,
        "completed_at": req.created if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": call.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {
            "effort": reasoning.get("effort", "medium") if reasoning_model else None,
            "summary": reasoning.get("summary"),
        },
        "service_tier": call.service_tier,
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


# --- embeddings ---------------------------------------------------------------------------------


def embeddings(req: WireRequest) -> JsonReply:
    """``POST /v1/embeddings``: deterministic unit vectors, one per input."""
    body = req.body
    _require(body, "model", "input")
    model = body["model"]
    dimensions = _optional_int(body, "dimensions")
    if dimensions is not None and dimensions < 1:
        raise _BadRequest("Invalid value for 'dimensions': must be at least 1.", "dimensions")
    size = dimensions or EMBEDDING_DIMENSIONS.get(model, DEFAULT_EMBEDDING_DIMENSIONS)
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _BadRequest(f"Invalid value for 'encoding_format': {encoding!r}.", "encoding_format")
    items = _text_inputs(body["input"])
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(model, item, size)
        encoded: Any = vector
        if encoding == "base64":
            # The SDK asks for base64 by default and decodes it as little-endian float32.
            encoded = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(_input_tokens(item) for item in items)
    return JsonReply(200, {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })  # fmt: skip


def embedding_vector(model: str, item: Any, size: int) -> list[float]:
    """A deterministic unit-length vector for one input, exactly representable as float32.

    float32-exact so the float and the base64 encodings decode to the very same numbers.
    """
    seed = f"{model}\0{item if isinstance(item, str) else json.dumps(item)}".encode()
    raw: list[float] = []
    block = 0
    while len(raw) < size:
        digest = hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        raw += [value / 2**31 - 1.0 for value in struct.unpack("<8I", digest)]
        block += 1
    raw = raw[:size]
    norm = sum(value * value for value in raw) ** 0.5 or 1.0
    return list(struct.unpack(f"<{size}f", struct.pack(f"<{size}f", *(value / norm for value in raw))))


# --- routing ------------------------------------------------------------------------------------


def _guarded(handler: Handler) -> Handler:
    def route(req: WireRequest) -> JsonReply | StreamReply:
        try:
            return handler(req)
        except _BadRequest as bad:
            return error_reply(400, bad.message, bad.param)

    route.__doc__ = handler.__doc__
    return route


def routes() -> dict[str, Handler]:
    """Path -> handler for every OpenAI endpoint the fake server answers (all ``POST``)."""
    return {
        "/v1/chat/completions": _guarded(chat_completions),
        "/v1/responses": _guarded(responses),
        "/v1/embeddings": _guarded(embeddings),
        "/v1/completions": _guarded(completions),
    }
