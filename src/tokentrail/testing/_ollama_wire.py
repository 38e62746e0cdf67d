"""Ollama's native API (``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/embeddings``), as
the ``ollama`` SDK receives it: ``ollama.Client(host=server.url)``.

Chat and generate answer one JSON object, or, with ``"stream": true`` (Ollama's default; the SDK
sends ``false`` unless asked), newline-delimited JSON (``application/x-ndjson``): one object per
answer word with ``"done": false``, then a last one with ``"done": true``, the ``done_reason``
(``stop``, or ``length`` when ``options.num_predict`` cut the answer) and the counts, which only
that last object carries: ``prompt_eval_count`` (every prompt token, cached ones included),
``prompt_eval_cached_count`` (the cached part; the SDK's types drop it), ``eval_count`` (the
answer), and the durations in nanoseconds. ``/api/embed`` reports ``prompt_eval_count``;
the older ``/api/embeddings`` reports nothing. Errors are ``{"error": "..."}``.

Numbers follow :mod:`._model`, as for OpenAI's format (chat prompts counted as OpenAI's chat
prompts; a generate prompt as a system and a user message).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from . import _model, _openai_wire
from ._wire import Handler, JsonReply, StreamReply, WireRequest

__all__ = ["chat", "embed", "embeddings", "error_reply", "generate", "prompt_tokens", "routes"]

NDJSON = "application/x-ndjson"
_NANOSECONDS_PER_TOKEN = 20_000_000  # a small local model: 50 tokens a second


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def error_reply(status: int, message: str | None = None) -> JsonReply:
    """Ollama's error body: ``{"error": message}``."""
    return JsonReply(status, {"error": message or HTTPStatus(status).phrase.lower()})


def _model_name(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("model is required")
    return model


def prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a chat or generate request (the fake's rule, for tests to recompute)."""
    if "messages" in body:
        return _openai_wire.chat_prompt_tokens({"messages": body["messages"], "tools": body.get("tools")})
    messages = [{"role": "user", "content": body.get("prompt") or ""}]
    if isinstance(body.get("system"), str):
        messages.insert(0, {"role": "system", "content": body["system"]})
    return _openai_wire.chat_prompt_tokens({"messages": messages})


def _limit(body: dict[str, Any]) -> int | None:
    options = body.get("options")
    limit = options.get("num_predict") if isinstance(options, dict) else None
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else None


def _counts(prompt: int, generation: _model.Generation) -> dict[str, Any]:
    cached = _model.cached_tokens(prompt)
    output = generation.visible_tokens
    return {
        "total_duration": (prompt - cached + output) * _NANOSECONDS_PER_TOKEN + 1_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": prompt,
        "prompt_eval_cached_count": cached,
        "prompt_eval_duration": (prompt - cached) * _NANOSECONDS_PER_TOKEN // 10,
        "eval_count": output,
        "eval_duration": output * _NANOSECONDS_PER_TOKEN,
    }


def _answer(req: WireRequest, is_chat: bool) -> JsonReply | StreamReply:
    body = req.body
    model = _model_name(body)
    if is_chat and not isinstance(body.get("messages"), list):
        raise _BadRequest("messages must be a list")
    prompt = prompt_tokens(body)
    generation = _model.generate(req.chunks, 0, _limit(body))
    created = f"2026-01-01T00:00:{req.serial % 60:02d}.000000Z"

    def part(text: str) -> dict[str, Any]:
        if is_chat:
            return {"message": {"role": "assistant", "content": text}}
        return {"response": text}

    last = {
        "model": model,
        "created_at": created,
        **part("" if body.get("stream") is not False else generation.text),
        "done": True,
        "done_reason": "length" if generation.truncated else "stop",
        **_counts(prompt, generation),
    }
    if not is_chat:
        last["context"] = [1, 2, 3]
    if body.get("stream") is False:
        return JsonReply(200, last)
    head = {"model": model, "created_at": created}
    lines = [{**head, **part(piece), "done": False} for piece in generation.pieces]
    return StreamReply([json.dumps(line) + "\n" for line in [*lines, last]], content_type=NDJSON)


def chat(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /api/chat``."""
    return _answer(req, is_chat=True)


def generate(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /api/generate``."""
    return _answer(req, is_chat=False)


def _inputs(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value or [])


def embed(req: WireRequest) -> JsonReply:
    """``POST /api/embed``: one vector per input, and the input's token count."""
    body = req.body
    model = _model_name(body)
    inputs = _inputs(body.get("input"))
    size = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 768
    vectors = [_openai_wire.embedding_vector(model, item, size) for item in inputs]
    tokens = sum(_openai_wire._input_tokens(item) for item in inputs)
    return JsonReply(200, {
        "model": model,
        "embeddings": vectors,
        "total_duration": tokens * _NANOSECONDS_PER_TOKEN // 10 + 1_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": tokens,
    })  # fmt: skip


def embeddings(req: WireRequest) -> JsonReply:
    """``POST /api/embeddings`` (deprecated): one vector, no counts."""
    body = req.body
    model = _model_name(body)
    return JsonReply(200, {"embedding": _openai_wire.embedding_vector(model, body.get("prompt") or "", 768)})


def _guarded(handler: Handler) -> Handler:
    def route(req: WireRequest) -> JsonReply | StreamReply:
        try:
            return handler(req)
        except _BadRequest as bad:
            return error_reply(400, bad.message)

    route.__doc__ = handler.__doc__
    return route


def routes() -> dict[str, Handler]:
    """Path -> handler for the Ollama endpoints the fake server answers (all ``POST``)."""
    return {
        "/api/chat": _guarded(chat),
        "/api/generate": _guarded(generate),
        "/api/embed": _guarded(embed),
        "/api/embeddings": _guarded(embeddings),
    }
