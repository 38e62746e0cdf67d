"""Mistral's API (``/v1/chat/completions``, ``/v1/fim/completions``, ``/v1/agents/completions``,
``/v1/embeddings``), as the ``mistralai`` SDK receives it, served under ``/mistral``:
``Mistral(api_key="fake", server_url=server.url + "/mistral")``. (Its paths are OpenAI's, whose
wire format answers them at the root.)

Completions are OpenAI's chat completion shape with Mistral's differences: ``usage`` is always
there, on a stream's last chunk too (Mistral has no ``stream_options``: every stream reports its
usage, on the chunk with the finish reason); ``prompt_tokens_details.cached_tokens`` is there
when the prompt cache served part of the prompt; FIM prompts are ``prompt`` (plus ``suffix``);
agent completions name an ``agent_id`` instead of a model and answer with the agent's model
(:data:`AGENT_MODEL`). Embeddings take ``input`` and report ``prompt_tokens`` with
``completion_tokens`` 0. Errors are ``{"object": "error", "message", "type", "param", "code"}``.
"""

from __future__ import annotations

from typing import Any

from . import _model, _openai_wire
from ._wire import Handler, JsonReply, StreamReply, WireRequest, sse_data

__all__ = ["AGENT_MODEL", "PREFIX", "error_reply", "prompt_tokens", "routes"]

PREFIX = "/mistral"
AGENT_MODEL = "mistral-medium-latest"
"""The model every agent of the fake server runs on."""


def error_reply(status: int, message: str | None = None, param: str | None = None) -> JsonReply:
    """An error in Mistral's shape."""
    openai_shaped = _openai_wire.error_reply(status, message, param)
    error = openai_shaped.body["error"]
    body = {"object": "error", "message": error["message"], "type": error["type"], "param": param,
            "code": str(status)}  # fmt: skip
    return JsonReply(status, body, openai_shaped.headers)


def prompt_tokens(body: dict[str, Any]) -> int:
    """What the fake model counts as the prompt: a chat's or an agent's messages, or FIM's prompt
    and suffix."""
    if "messages" in body:
        return _openai_wire.chat_prompt_tokens(body)
    suffix = body.get("suffix")
    return (
        _openai_wire.REPLY_PRIMING
        + _model.count_tokens(str(body.get("prompt") or ""))
        + (_model.count_tokens(suffix) if isinstance(suffix, str) else 0)
    )


def _usage(prompt: int, cached: int, completion: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def _completion(req: WireRequest, model: str) -> JsonReply | StreamReply:
    body = req.body
    limit = _openai_wire._optional_int(body, "max_tokens")
    generation = _model.generate(req.chunks, 0, limit)
    prompt = prompt_tokens(body)
    usage = _usage(prompt, _model.cached_tokens(prompt), generation.visible_tokens)
    finish = "length" if generation.truncated else "stop"
    head = {"id": f"cmpl-fake{req.serial:012d}", "created": req.created, "model": model}
    if body.get("stream") is not True:
        message = {"role": "assistant", "content": generation.text, "tool_calls": None, "prefix": False}
        return JsonReply(200, {
            **head,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        })  # fmt: skip

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return sse_data({**head, "object": "chat.completion.chunk", "choices": [choice], **extra})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in generation.pieces]
    events.append(chunk({"content": ""}, finish, usage=usage))
    return StreamReply(events, trailer=["data: [DONE]\n\n"])


def chat_completions(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /v1/chat/completions``."""
    _openai_wire._require(req.body, "model", "messages")
    return _completion(req, req.body["model"])


def fim_completions(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /v1/fim/completions``."""
    _openai_wire._require(req.body, "model", "prompt")
    return _completion(req, req.body["model"])


def agents_completions(req: WireRequest) -> JsonReply | StreamReply:
    """``POST /v1/agents/completions``: the agent's model answers."""
    if not isinstance(req.body.get("agent_id"), str) or not req.body.get("messages"):
        return error_reply(422, "agent_id and messages are required")
    return _completion(req, AGENT_MODEL)


def embeddings(req: WireRequest) -> JsonReply:
    """``POST /v1/embeddings``: OpenAI's vectors, Mistral's usage and id."""
    reply = _openai_wire.embeddings(req)
    body = dict(reply.body)
    body["id"] = f"embd-fake{req.serial:012d}"
    body["usage"] = {**body["usage"], "completion_tokens": 0}
    return JsonReply(reply.status, body, reply.headers)


def _guarded(handler: Handler) -> Handler:
    def route(req: WireRequest) -> JsonReply | StreamReply:
        reply = _openai_wire._guarded(handler)(req)
        if isinstance(reply, JsonReply) and reply.status >= 400 and "error" in reply.body:
            return error_reply(reply.status, reply.body["error"]["message"], reply.body["error"]["param"])
        return reply

    route.__doc__ = handler.__doc__
    return route


def routes() -> dict[str, Handler]:
    """Path -> handler for the Mistral endpoints the fake server answers (all ``POST``)."""
    return {
        f"{PREFIX}/v1/chat/completions": _guarded(chat_completions),
        f"{PREFIX}/v1/fim/completions": _guarded(fim_completions),
        f"{PREFIX}/v1/agents/completions": _guarded(agents_completions),
        f"{PREFIX}/v1/embeddings": _guarded(embeddings),
    }
