"""Groq's OpenAI-compatible API (``/openai/v1/...``), as the ``groq`` SDK receives it.

Chat completions are OpenAI's shape with Groq's additions: ``usage`` also carries timings
(``queue_time``, ``prompt_time``, ``completion_time``, ``total_time``, in seconds); every response
and the first chunk of a stream carry ``x_groq`` with the request id; a stream's last chunk (the
one with the finish reason) carries the whole usage under ``x_groq.usage``. A stream has a
``usage`` of its own only when ``stream_options.include_usage`` was sent (the SDK's ``create()``
does not declare it; clients send it through ``extra_body``): then the usage chunk follows, as on
OpenAI, and both carry the same figures. ``service_tier`` is Groq's (``on_demand``, ``flex``).
Embeddings are OpenAI's.
"""

from __future__ import annotations

from typing import Any

from . import _openai_wire
from ._wire import Handler, JsonReply, StreamReply, WireRequest, sse_data

__all__ = ["chat_completions", "routes"]

_SERVICE_TIERS = ("on_demand", "flex", "performance")


def _timed(usage: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    # Groq's documented timing fields; the figures are a fast model's, fixed per token.
    prompt_time, completion_time = prompt_tokens * 1e-5, completion_tokens * 1e-3
    return {
        "queue_time": 0.01,
        **usage,
        "prompt_time": prompt_time,
        "completion_time": completion_time,
        "total_time": prompt_time + completion_time,
    }


def _usage(call: Any) -> dict[str, Any]:
    usage = _openai_wire.completion_usage(call)
    usage.pop("completion_tokens_details")  # Groq reports reasoning only for reasoning models
    if call.generation.reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": call.generation.reasoning_tokens}
    usage["prompt_tokens_details"] = {"cached_tokens": call.cached_tokens}
    return _timed(usage, usage["prompt_tokens"], usage["completion_tokens"])


def chat_completions(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /openai/v1/chat/completions``."""
    body = req.body
    _openai_wire._require(body, "model", "messages")
    tier = body.get("service_tier") if body.get("service_tier") in _SERVICE_TIERS else "on_demand"
    stream, include_usage = _openai_wire._stream_flags(body)
    limit = _openai_wire._optional_int(body, "max_completion_tokens", "max_tokens")
    call = _openai_wire._call(req, _openai_wire.chat_prompt_tokens(body), body.get("reasoning_effort"), limit)
    request_id = f"req_fake{req.serial:020d}"
    head = {
        "id": f"chatcmpl-fake{req.serial:012d}",
        "created": req.created,
        "model": call.model,
        "system_fingerprint": "fp_fakegroq00",
    }
    usage = _usage(call)
    if not stream:
        message = {"role": "assistant", "content": call.generation.text}
        return JsonReply(200, {
            **head,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": call.finish_reason}
            ],
            "usage": usage,
            "usage_breakdown": None,
            "service_tier": tier,
            "x_groq": {"id": request_id},
        })  # fmt: skip

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {**head, "object": "chat.completion.chunk", "choices": choices, **extra}

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    chunks = [chunk([choice({"role": "assistant", "content": ""})], x_groq={"id": request_id})]
    chunks += [chunk([choice({"content": piece})]) for piece in call.generation.pieces]
    chunks.append(chunk([choice({}, call.finish_reason)], x_groq={"id": request_id, "usage": usage}))
    if include_usage:
        chunks.append(chunk([], usage=usage))
    return StreamReply([sse_data(c) for c in chunks], trailer=["data: [DONE]\n\n"])


def routes() -> dict[str, Handler]:
    """Path -> handler for the Groq endpoints the fake server answers (all ``POST``)."""
    return {
        "/openai/v1/chat/completions": _openai_wire._guarded(chat_completions),
        "/openai/v1/embeddings": _openai_wire._guarded(_openai_wire.embeddings),
    }
