"""Amazon Bedrock's runtime API (``bedrock-runtime``), as boto3 receives it.

Four operations, the model id in the path (percent-encoded by botocore: ``us.x:0`` arrives as
``us.x%3A0``, an ARN's slashes as ``%2F``):

* ``POST /model/{id}/converse``: Converse's JSON; ``usage.inputTokens`` excludes the cache, whose
  reads and writes are ``cacheReadInputTokens`` / ``cacheWriteInputTokens`` beside it.
* ``POST /model/{id}/converse-stream``: the same answer as ``application/vnd.amazon.eventstream``
  events ``messageStart``, ``contentBlockDelta`` (one per word), ``contentBlockStop``,
  ``messageStop`` and ``metadata`` (the usage).
* ``POST /model/{id}/invoke``: the model family's own body (by the id: ``anthropic.`` Messages,
  ``amazon.nova`` Nova, ``amazon.titan-text`` / ``-embed`` Titan, ``meta.llama`` Llama, ``openai.``
  a chat completion; Mistral, Cohere and DeepSeek bodies carry no usage), and for every family
  the ``x-amzn-bedrock-*-token-count`` headers (input excluding the cache).
* ``POST /model/{id}/invoke-with-response-stream``: ``chunk`` events whose ``bytes`` (base64 in
  the event's JSON) are the family's stream chunks; the last one carries
  ``amazon-bedrock-invocationMetrics``.

The event-stream framing is AWS's documented binary format, written here from its description:
a prelude (total length, headers length, both 4-byte big-endian, and the CRC32 of those 8 bytes),
the headers (name length byte, name, type byte 7 = string, 2-byte value length, value), the
payload, and the CRC32 of everything before it.

The fake model's counting is :mod:`._model`'s. The prompt cache is deterministic: a ``cachePoint``
(Converse) or ``cache_control`` (Anthropic) in the messages reads the cacheable prefix of the prompt
from the cache (:func:`._model.cached_tokens`); one in the system prompt writes the system prompt.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any
from urllib.parse import unquote

from . import _model
from ._wire import Handler, JsonReply, StreamReply, WireRequest

__all__ = ["encode_event", "error_reply", "match"]

EVENT_STREAM = "application/vnd.amazon.eventstream"
_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_PROMPT_KEYS = frozenset({"text", "content", "prompt", "inputText", "message", "system"})


# --- the event-stream framing ------------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return (
        struct.pack(">B", len(name_bytes))
        + name_bytes
        + struct.pack(">BH", 7, len(value_bytes))
        + value_bytes
    )


def encode_event(event_type: str, payload: Any) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message: an event with a JSON payload."""
    headers = (
        _header(":event-type", event_type)
        + _header(":content-type", "application/json")
        + _header(":message-type", "event")
    )
    body = json.dumps(payload, separators=(",", ":")).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


# --- the fake model's counting -----------------------------------------------------------------


def _strings(value: Any, key: str | None = None) -> list[str]:
    if isinstance(value, str):
        return [value] if key in _PROMPT_KEYS else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, k if k in _PROMPT_KEYS else key)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item, key)]
    return []


def _marks_cache(value: Any) -> bool:
    return "cachePoint" in json.dumps(value) or "cache_control" in json.dumps(value)


class _Counts:
    """What one request costs: prompt tokens split into uncached, read and written, and the answer."""

    def __init__(self, req: WireRequest, limit: Any) -> None:
        body = req.body
        self.prompt = _model.count_tokens(" ".join(_strings(body)))
        system = body.get("system")
        written = _model.count_tokens(" ".join(_strings(system, "system"))) if _marks_cache(system) else 0
        read = _model.cached_tokens(self.prompt) if _marks_cache(body.get("messages")) else 0
        self.read = min(read, self.prompt)
        self.written = min(written, self.prompt - self.read)
        self.uncached = self.prompt - self.read - self.written
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
        self.generation = _model.generate(req.chunks, 0, limit)
        self.output = self.generation.visible_tokens
        self.stop = "max_tokens" if self.generation.truncated else "end_turn"

    def headers(self) -> dict[str, str]:
        headers = {
            "x-amzn-bedrock-input-token-count": str(self.uncached),
            "x-amzn-bedrock-output-token-count": str(self.output),
            "x-amzn-bedrock-invocation-latency": "42",
        }
        if self.read:
            headers["x-amzn-bedrock-cache-read-input-token-count"] = str(self.read)
        if self.written:
            headers["x-amzn-bedrock-cache-write-input-token-count"] = str(self.written)
        return headers

    def metrics(self) -> dict[str, Any]:
        metrics = {
            "inputTokenCount": self.uncached,
            "outputTokenCount": self.output,
            "invocationLatency": 42,
            "firstByteLatency": 7,
        }
        if self.read:
            metrics["cacheReadInputTokenCount"] = self.read
        if self.written:
            metrics["cacheWriteInputTokenCount"] = self.written
        return metrics

    def converse_usage(self) -> dict[str, Any]:
        usage = {
            "inputTokens": self.uncached,
            "outputTokens": self.output,
            "totalTokens": self.prompt + self.output,
        }
        if self.read:
            usage["cacheReadInputTokens"] = self.read
        if self.written:
            usage["cacheWriteInputTokens"] = self.written
        return usage


# --- Converse ----------------------------------------------------------------------------------


def _converse_counts(req: WireRequest) -> _Counts:
    if not isinstance(req.body.get("messages"), list):
        raise _Invalid("1 validation error detected: Value at 'messages' failed to satisfy constraint")
    return _Counts(req, (req.body.get("inferenceConfig") or {}).get("maxTokens"))


def converse(req: WireRequest) -> JsonReply:
    counts = _converse_counts(req)
    return JsonReply(
        200,
        {
            "output": {"message": {"role": "assistant", "content": [{"text": counts.generation.text}]}},
            "stopReason": counts.stop,
            "usage": counts.converse_usage(),
            "metrics": {"latencyMs": 42},
        },
    )


def converse_stream(req: WireRequest) -> StreamReply:
    counts = _converse_counts(req)
    events = [encode_event("messageStart", {"role": "assistant"})]
    events += [
        encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
        for piece in counts.generation.pieces
    ]
    events.append(encode_event("contentBlockStop", {"contentBlockIndex": 0}))
    events.append(encode_event("messageStop", {"stopReason": counts.stop}))
    events.append(encode_event("metadata", {"usage": counts.converse_usage(), "metrics": {"latencyMs": 42}}))
    return StreamReply(events, content_type=EVENT_STREAM)  # type: ignore[arg-type]


# --- InvokeModel: each family's body -----------------------------------------------------------

_LIMIT_KEYS = ("max_tokens", "max_gen_len")


def _invoke_limit(body: dict[str, Any]) -> Any:
    for key in _LIMIT_KEYS:
        if key in body:
            return body[key]
    for holder, key in (("textGenerationConfig", "maxTokenCount"), ("inferenceConfig", "max_new_tokens")):
        if isinstance(body.get(holder), dict) and key in body[holder]:
            return body[holder][key]
    return None


def _family(model: str) -> str:
    name = model.rsplit("/", 1)[-1].lower()
    for family in (
        "anthropic.",
        "amazon.nova",
        "amazon.titan-embed",
        "amazon.titan-text",
        "meta.llama",
        "openai.",
        "mistral.",
        "cohere.",
        "deepseek.",
    ):
        if family in name:
            return family.rstrip(".")
    return "other"


def _base_model(model: str) -> str:
    """What Anthropic's body names: the model without its ARN, region prefix or vendor."""
    name = model.rsplit("/", 1)[-1]
    for prefix in ("us.", "eu.", "apac.", "global."):
        name = name.removeprefix(prefix)
    return name.removeprefix("anthropic.")


def _invoke_body(family: str, model: str, counts: _Counts, serial: int) -> dict[str, Any]:
    text, stop = counts.generation.text, counts.stop
    if family == "anthropic":
        return {
            "id": f"msg_bdrk_fake{serial:012d}",
            "type": "message",
            "role": "assistant",
            "model": _base_model(model),
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": counts.uncached,
                "cache_creation_input_tokens": counts.written,
                "cache_read_input_tokens": counts.read,
                "output_tokens": counts.output,
            },
        }
    if family == "amazon.nova":
        usage = {
            "inputTokens": counts.uncached,
            "outputTokens": counts.output,
            "totalTokens": counts.prompt + counts.output,
        }
        if counts.read:
            usage["cacheReadInputTokenCount"] = counts.read
        if counts.written:
            usage["cacheWriteInputTokenCount"] = counts.written
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": stop,
            "usage": usage,
        }
    if family == "amazon.titan-text":
        return {
            "inputTextTokenCount": counts.prompt,
            "results": [
                {
                    "tokenCount": counts.output,
                    "outputText": text,
                    "completionReason": "LENGTH" if counts.generation.truncated else "FINISH",
                }
            ],
        }
    if family == "amazon.titan-embed":
        return {"embedding": [0.1, 0.2, 0.3], "inputTextTokenCount": counts.prompt}
    if family == "meta.llama":
        return {
            "generation": text,
            "prompt_token_count": counts.prompt,
            "generation_token_count": counts.output,
            "stop_reason": "length" if counts.generation.truncated else "stop",
        }
    if family == "openai":
        return {
            "id": f"chatcmpl-fake{serial:012d}",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if counts.generation.truncated else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": counts.prompt,
                "completion_tokens": counts.output,
                "total_tokens": counts.prompt + counts.output,
            },
        }
    if family == "cohere":
        return {"response_id": f"fake{serial}", "text": text, "finish_reason": "COMPLETE"}
    if family == "deepseek":
        return {"choices": [{"text": text, "stop_reason": "stop"}]}
    return {"outputs": [{"text": text, "stop_reason": "stop"}]}  # Mistral, and anything else


def _stream_chunks(family: str, model: str, counts: _Counts, serial: int) -> list[dict[str, Any]]:
    pieces, stop = counts.generation.pieces, counts.stop
    if family == "anthropic":
        whole = _invoke_body(family, model, counts, serial)
        start = {**whole, "content": [], "stop_reason": None, "usage": {**whole["usage"], "output_tokens": 1}}
        chunks = [
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ]
        chunks += [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in pieces
        ]
        chunks += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": counts.output},
            },
            {"type": "message_stop"},
        ]
    elif family == "amazon.nova":
        chunks = [{"messageStart": {"role": "assistant"}}]
        chunks += [{"contentBlockDelta": {"delta": {"text": p}, "contentBlockIndex": 0}} for p in pieces]
        chunks += [
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": stop}},
            {"metadata": {"usage": {"inputTokens": counts.uncached, "outputTokens": counts.output}}},
        ]
    elif family == "amazon.titan-text":
        chunks = [
            {
                "outputText": p,
                "index": 0,
                "totalOutputTextTokenCount": None,
                "completionReason": None,
                "inputTextTokenCount": counts.prompt if i == 0 else None,
            }
            for i, p in enumerate(pieces)
        ]
        chunks.append(
            {
                "outputText": "",
                "index": 0,
                "totalOutputTextTokenCount": counts.output,
                "completionReason": "FINISH",
                "inputTextTokenCount": None,
            }
        )
    elif family == "meta.llama":
        chunks = [
            {
                "generation": p,
                "prompt_token_count": counts.prompt if i == 0 else None,
                "generation_token_count": i + 1,
                "stop_reason": None,
            }
            for i, p in enumerate(pieces)
        ]
        chunks.append(
            {
                "generation": "",
                "prompt_token_count": None,
                "generation_token_count": counts.output,
                "stop_reason": "stop",
            }
        )
    else:  # families without usage in their chunks: the text, then the stop
        chunks = [{"outputs": [{"text": p, "stop_reason": None}]} for p in pieces]
        chunks.append({"outputs": [{"text": "", "stop_reason": "stop"}]})
    chunks[-1] = {**chunks[-1], "amazon-bedrock-invocationMetrics": counts.metrics()}
    return chunks


def _invoke_counts(req: WireRequest) -> _Counts:
    return _Counts(req, _invoke_limit(req.body))


def invoke(model: str) -> Handler:
    def handle(req: WireRequest) -> JsonReply:
        counts = _invoke_counts(req)
        family = _family(model)
        body = _invoke_body(family, model, counts, req.serial)
        return JsonReply(200, body, counts.headers())

    return handle


def invoke_stream(model: str) -> Handler:
    def handle(req: WireRequest) -> StreamReply:
        counts = _invoke_counts(req)
        chunks = _stream_chunks(_family(model), model, counts, req.serial)
        events = [
            encode_event("chunk", {"bytes": base64.b64encode(json.dumps(c).encode()).decode()})
            for c in chunks
        ]
        return StreamReply(events, content_type=EVENT_STREAM)  # type: ignore[arg-type]

    return handle


# --- routing and errors ------------------------------------------------------------------------


class _Invalid(ValueError):
    pass


def _guarded(handler: Handler) -> Handler:
    def handle(req: WireRequest) -> JsonReply | StreamReply:
        try:
            return handler(req)
        except _Invalid as bad:
            return error_reply(400, str(bad))

    return handle


def match(path: str) -> Handler | None:
    """The handler for a ``/model/{id}/<operation>`` path, or None."""
    if not path.startswith("/model/"):
        return None
    encoded, _, operation = path[len("/model/") :].rpartition("/")
    model = unquote(encoded)
    handler: Handler | None = {
        "converse": converse,
        "converse-stream": converse_stream,
        "invoke": invoke(model),
        "invoke-with-response-stream": invoke_stream(model),
    }.get(operation)
    return _guarded(handler) if handler is not None and model else None


def error_reply(status: int, message: str | None) -> JsonReply:
    """Bedrock's error shape: the type in ``x-amzn-errortype``, the message in the body."""
    kind = _ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "ValidationException")
    headers = {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    if status == 429:
        headers["retry-after"] = "0"
    return JsonReply(status, {"message": message or f"{kind}: fake failure"}, headers)
