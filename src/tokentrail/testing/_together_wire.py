"""Together AI's API, as the ``together`` SDK (2.x and 3.x) receives it, under ``/together/v1/...``.

Point the SDK at the server with the prefix: ``Together(base_url=f"{server.url}/together")`` for
3.x (its paths start with ``/v1``), ``Together(base_url=f"{server.url}/together/v1")`` for 2.x.

Bodies follow the SDK's generated types. Usage is ``{prompt_tokens, completion_tokens,
total_tokens, cached_tokens}`` (``cached_tokens`` a part of ``prompt_tokens``; reasoning, for the
models that think, inside ``completion_tokens`` and not broken out). A chat stream sends
``"usage": null`` on every chunk and the whole usage on the last one, beside its finish reason,
with no ``stream_options`` asked; a legacy completion stream's chunks carry ``token``, and the last
carries ``finish_reason`` and ``usage`` on the chunk itself. Embeddings report no usage at all.
Numbers follow :mod:`._model`, as for OpenAI's format.
"""

from __future__ import annotations

from typing import Any

from . import _openai_wire
from ._wire import Handler, JsonReply, StreamReply, WireRequest, sse_data

__all__ = ["PREFIX", "chat_completions", "completions", "embeddings", "routes"]

PREFIX = "/together/v1"


def _usage(call: Any) -> dict[str, Any]:
    completion = call.generation.visible_tokens + call.generation.reasoning_tokens
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": call.prompt_tokens + completion,
        "cached_tokens": call.cached_tokens,
    }


def chat_completions(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /together/v1/chat/completions``."""
    body = req.body
    _openai_wire._require(body, "model", "messages")
    stream = body.get("stream") is True
    limit = _openai_wire._optional_int(body, "max_tokens")
    call = _openai_wire._call(req, _openai_wire.chat_prompt_tokens(body), body.get("reasoning_effort"), limit)
    head = {"id": f"fake-{req.serial:012d}", "created": req.created, "model": call.model}
    if not stream:
        message = {"role": "assistant", "content": call.generation.text, "tool_calls": []}
        answer = {"index": 0, "seed": 7, "logprobs": None, "finish_reason": call.finish_reason}
        return JsonReply(200, {
            **head,
            "object": "chat.completion",
            "prompt": [],
            "choices": [{**answer, "message": message}],
            "usage": _usage(call),
        })  # fmt: skip

    def chunk(choice: dict[str, Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**head, "object": "chat.completion.chunk", "choices": [choice], "usage": usage}

    def choice(text: str, token_id: int, finish_reason: str | None = None) -> dict[str, Any]:
        delta = {"token_id": token_id, "role": "assistant", "content": text, "tool_calls": None}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason, "seed": None,
                "delta": delta}  # fmt: skip

    pieces = call.generation.pieces
    chunks = [chunk(choice(piece, 1000 + i)) for i, piece in enumerate(pieces)]
    chunks.append(chunk(choice("", 2, call.finish_reason), _usage(call)))
    return StreamReply([sse_data(c) for c in chunks], trailer=["data: [DONE]\n\n"])


def completions(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /together/v1/completions`` (legacy text completion)."""
    body = req.body
    _openai_wire._require(body, "model", "prompt")
    stream = body.get("stream") is True
    prompt = body["prompt"]
    prompt_tokens = sum(_openai_wire._input_tokens(item) for item in _openai_wire._text_inputs(prompt))
    call = _openai_wire._call(req, prompt_tokens, None, _openai_wire._optional_int(body, "max_tokens"))
    head = {"id": f"fake-{req.serial:012d}", "created": req.created, "model": call.model}
    if not stream:
        choice = {"text": call.generation.text, "finish_reason": call.finish_reason, "seed": 7}
        return JsonReply(200, {
            **head, "object": "text.completion", "prompt": [], "choices": [choice], "usage": _usage(call),
        })  # fmt: skip

    def chunk(text: str, token_id: int, **last: Any) -> dict[str, Any]:
        token = {"id": token_id, "text": text, "logprob": -0.5, "special": bool(last)}
        return {**head, "object": "completion.chunk", "token": token,
                "choices": [{"index": 0, "text": text}], "finish_reason": None, "usage": None,
                **last}  # fmt: skip

    chunks = [chunk(piece, 1000 + i) for i, piece in enumerate(call.generation.pieces)]
    chunks.append(chunk("", 2, finish_reason=call.finish_reason, usage=_usage(call)))
    return StreamReply([sse_data(c) for c in chunks], trailer=["data: [DONE]\n\n"])


def embeddings(req: WireRequest) -> JsonReply:
    """``POST /together/v1/embeddings``: OpenAI's vectors, without usage (Together reports none)."""
    reply = _openai_wire.embeddings(req)
    body = dict(reply.body)
    body.pop("usage")
    return JsonReply(reply.status, body, reply.headers)


def routes() -> dict[str, Handler]:
    """Path -> handler for the Together endpoints the fake server answers (all ``POST``)."""
    return {
        f"{PREFIX}/chat/completions": _openai_wire._guarded(chat_completions),
        f"{PREFIX}/completions": _openai_wire._guarded(completions),
        f"{PREFIX}/embeddings": _openai_wire._guarded(embeddings),
    }
