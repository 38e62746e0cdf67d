"""Cohere's API v2 (``/v2/chat``, ``/v2/embed``, ``/v2/rerank``) and v1 (``/v1/chat``,
``/v1/embed``, ``/v1/rerank``), as the ``cohere`` SDK receives it:
``cohere.ClientV2(api_key="fake", base_url=server.url)`` (or ``cohere.Client``).

Every call reports two usages. ``billed_units`` is what Cohere charges: the prompt as sent, the
answer. ``tokens`` is what the model processed: Cohere's own default system prompt
(:data:`DEFAULT_SYSTEM_TOKENS`) on top of the prompt, and the answer's end token
(:data:`END_TOKENS`). ``cached_tokens`` counts processed prompt tokens served from the cache (the
fake model's rule). v2 bodies carry them as ``usage``, v1 bodies as ``meta`` (v1 sends its
billed counts as floats, ``12.0``: the SDK types every count as a float). A v2 stream is SSE
(``message-start``, ``content-delta`` ..., ``message-end`` with the usage); a v1 stream is one
JSON object per line (``stream-start``, ``text-generation`` ..., ``stream-end`` with the whole
response and its ``meta``). Embeddings report billed input tokens only; a rerank reports billed
search units (one per 100 documents). Errors are ``{"message": ...}``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from . import _model, _openai_wire
from ._wire import Handler, JsonReply, StreamReply, WireRequest, sse_event

__all__ = ["DEFAULT_SYSTEM_TOKENS", "END_TOKENS", "billed_prompt_tokens", "error_reply", "routes"]

DEFAULT_SYSTEM_TOKENS = 224
"""Tokens of Cohere's default system prompt: processed, not billed."""
END_TOKENS = 1
"""The answer's end token: processed, not billed."""
EMBEDDING_SIZE = 8
DOCUMENTS_PER_SEARCH_UNIT = 100


def error_reply(status: int, message: str | None = None, param: str | None = None) -> JsonReply:
    """An error in Cohere's shape: ``{"message": ...}``."""
    openai_shaped = _openai_wire.error_reply(status, message, param)
    return JsonReply(status, {"message": openai_shaped.body["error"]["message"]}, openai_shaped.headers)


class _BadRequest(Exception):
    pass


def _text(value: Any) -> str:
    """The text of a message's content: a string, or a list of ``{"type": "text", "text"}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(part.get("text", "") for part in value if isinstance(part, dict))
    return ""


def billed_prompt_tokens(path: str, body: dict[str, Any]) -> int:
    """The billed prompt of a chat request: every message (v2) or the message, history and
    preamble (v1), each with the fake model's per-message overhead."""
    if path.startswith("/v2/"):
        texts = [_text(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)]
    else:
        history = body.get("chat_history") or []
        texts = [str(body.get("message") or "")] + [
            str(m.get("message", "")) for m in history if isinstance(m, dict)
        ]
        if isinstance(body.get("preamble"), str):
            texts.append(body["preamble"])
    return _openai_wire.REPLY_PRIMING + sum(
        _openai_wire.MESSAGE_OVERHEAD + _model.count_tokens(t) for t in texts
    )


def _usages(billed_input: int, billed_output: int, v1: bool) -> dict[str, Any]:
    processed_input = billed_input + DEFAULT_SYSTEM_TOKENS
    billed: dict[str, Any] = {"input_tokens": billed_input, "output_tokens": billed_output}
    if v1:
        billed = {key: float(value) for key, value in billed.items()}
    usage: dict[str, Any] = {
        "billed_units": billed,
        "tokens": {"input_tokens": processed_input, "output_tokens": billed_output + END_TOKENS},
    }
    cached = _model.cached_tokens(processed_input)
    if cached:
        usage["cached_tokens"] = cached
    return usage


def _chat(req: WireRequest, path: str) -> JsonReply | StreamReply:
    body = req.body
    v1 = path.startswith("/v1/")
    if not isinstance(body.get("model"), str) and not v1:
        raise _BadRequest("model is required")
    if v1 and not isinstance(body.get("message"), str):
        raise _BadRequest("message is required")
    if not v1 and not body.get("messages"):
        raise _BadRequest("messages is required")
    limit = body.get("max_tokens")
    generation = _model.generate(req.chunks, 0, limit if isinstance(limit, int) else None)
    finish = "MAX_TOKENS" if generation.truncated else "COMPLETE"
    usage = _usages(billed_prompt_tokens(path, body), generation.visible_tokens, v1)
    response_id = f"fake-{req.serial:012d}"
    stream = body.get("stream") is True
    if v1:
        response = {
            "response_id": response_id,
            "text": generation.text,
            "generation_id": f"gen-{req.serial:012d}",
            "chat_history": [],
            "finish_reason": finish,
            "meta": {"api_version": {"version": "1"}, **usage},
        }
        if not stream:
            return JsonReply(200, response)
        lines = [
            {"is_finished": False, "event_type": "stream-start", "generation_id": response["generation_id"]}
        ]
        lines += [
            {"is_finished": False, "event_type": "text-generation", "text": p} for p in generation.pieces
        ]
        lines.append(
            {"is_finished": True, "event_type": "stream-end", "response": response, "finish_reason": finish}
        )
        return StreamReply([json.dumps(line, separators=(",", ":")) + "\n" for line in lines])
    if not stream:
        return JsonReply(200, {
            "id": response_id,
            "finish_reason": finish,
            "message": {"role": "assistant", "content": [{"type": "text", "text": generation.text}]},
            "usage": usage,
        })  # fmt: skip
    message = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events: list[dict[str, Any]] = [
        {"type": "message-start", "id": response_id, "delta": {"message": message}},
        {
            "type": "content-start",
            "index": 0,
            "delta": {"message": {"content": {"type": "text", "text": ""}}},
        },
    ]
    events += [
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}}
        for piece in generation.pieces
    ]
    events.append({"type": "content-end", "index": 0})
    events.append(
        {"type": "message-end", "id": response_id, "delta": {"finish_reason": finish, "usage": usage}}
    )
    return StreamReply([sse_event(event) for event in events])


def _embed(req: WireRequest, path: str) -> JsonReply:
    body = req.body
    texts = body.get("texts")
    if not isinstance(body.get("model"), str) or not isinstance(texts, list) or not texts:
        raise _BadRequest("model and texts are required")
    model = body["model"]
    vectors = [_openai_wire.embedding_vector(model, text, EMBEDDING_SIZE) for text in texts]
    tokens = sum(max(1, _model.count_tokens(str(text))) for text in texts)
    meta = {"api_version": {"version": "2" if path.startswith("/v2/") else "1"},
            "billed_units": {"input_tokens": tokens}}  # fmt: skip
    head = {"id": f"fake-{req.serial:012d}", "texts": texts, "meta": meta}
    if path.startswith("/v1/") and not body.get("embedding_types"):
        return JsonReply(200, {**head, "embeddings": vectors, "response_type": "embeddings_floats"})
    return JsonReply(200, {**head, "embeddings": {"float": vectors}, "response_type": "embeddings_by_type"})


def _rerank(req: WireRequest, path: str) -> JsonReply:
    body = req.body
    documents = body.get("documents")
    if not isinstance(body.get("query"), str) or not isinstance(documents, list) or not documents:
        raise _BadRequest("query and documents are required")
    query = set(body["query"].lower().split())
    scores = [
        len(query & set(str(d.get("text", "") if isinstance(d, dict) else d).lower().split()))
        / (len(query) or 1)
        for d in documents
    ]
    ranked = sorted(range(len(documents)), key=lambda i: (-scores[i], i))[
        : body.get("top_n") or len(documents)
    ]
    units = math.ceil(len(documents) / DOCUMENTS_PER_SEARCH_UNIT)
    return JsonReply(200, {
        "id": f"fake-{req.serial:012d}",
        "results": [{"index": i, "relevance_score": scores[i]} for i in ranked],
        "meta": {"api_version": {"version": "2" if path.startswith("/v2/") else "1"},
                 "billed_units": {"search_units": units}},
    })  # fmt: skip


def _route(handler: Any, path: str) -> Handler:
    def route(req: WireRequest) -> JsonReply | StreamReply:
        try:
            return handler(req, path)
        except _BadRequest as bad:
            return error_reply(400, str(bad))

    route.__doc__ = f"``POST {path}``."
    return route


def routes() -> dict[str, Handler]:
    """Path -> handler for the Cohere endpoints the fake server answers (all ``POST``)."""
    return {
        path: _route(handler, path)
        for version in ("v1", "v2")
        for path, handler in (
            (f"/{version}/chat", _chat),
            (f"/{version}/embed", _embed),
            (f"/{version}/rerank", _rerank),
        )
    }
