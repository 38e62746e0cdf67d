"""Anthropic wire format: the fake server's ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Point the real SDK at the server's root: ``Anthropic(base_url=server.url, api_key="fake")``
(``beta.messages`` sends ``/v1/messages?beta=true``, the same route). Bodies follow the API
reference and parse with the ``anthropic`` SDK's own types: a ``message`` object, or a stream of
named SSE events (``message_start``, ``ping``, ``content_block_start`` / ``content_block_delta``
(``thinking_delta``, ``signature_delta``, ``input_json_delta``, ``text_delta``) /
``content_block_stop``, ``message_delta``, ``message_stop``). Errors have Anthropic's shape,
``{"type": "error", "error": {"type": "rate_limit_error", "message": ...}, "request_id": ...}``;
a cut stream (``cut_next_stream``, ``X-Fake-Scenario: cut_stream``) ends with an ``error`` event
(``overloaded_error``) in place of its last events, as the API ends a stream that fails.

Usage follows :mod:`._model` with these rules, so every number can be recomputed by hand:

* prompt: each message costs :data:`MESSAGE_OVERHEAD` plus its content (text blocks
  ``count_tokens(text)``; images, documents and other blocks :data:`NON_TEXT_BLOCK_TOKENS`; tool
  use and tool results the text of their JSON); a system prompt costs its text plus
  :data:`MESSAGE_OVERHEAD`; tool definitions their JSON's text; every request
  :data:`REPLY_PRIMING` more. ``count_tokens`` answers this same number.
* prompt cache (the one rule with memory: each server keeps its own cache, emptied by
  ``reset()``): a block with ``cache_control`` (in the order tools, system, messages), or a
  top-level ``cache_control`` (the end of the last message), is a breakpoint; breakpoints whose
  prefix is shorter than :data:`._model.CACHE_MINIMUM` tokens cache nothing. The longest
  breakpoint prefix already cached (same model, same content) is read; every token from there
  to the last breakpoint is written, each segment with the TTL of the breakpoint that ends it
  (``ttl: "1h"`` -> ``ephemeral_1h_input_tokens``, else ``ephemeral_5m_input_tokens``), and every
  breakpoint is then cached. ``input_tokens`` is the rest: it EXCLUDES cache reads and writes,
  as Anthropic's does.
* thinking: ``thinking: {"type": "enabled", "budget_tokens": B}`` thinks
  ``min(B, REASONING_TOKENS[effort])`` tokens, ``{"type": "adaptive"}`` the effort's budget
  (``output_config.effort``, default ``medium``: 192), before the answer and within
  ``max_tokens`` (required); ``output_tokens`` includes them, ``output_tokens_details.
  thinking_tokens`` says how many.
* a ``web_search_*`` server tool searches once: ``server_tool_use.web_search_requests`` is 1 and
  the results add :data:`WEB_SEARCH_RESULT_TOKENS` to ``input_tokens``.
* ``service_tier``: absent or ``standard_only`` runs ``standard``; ``auto`` runs ``priority`` (the
  fake organisation has Priority Tier capacity). ``speed: "fast"`` and ``inference_geo`` are
  echoed in the usage.

A stream's ``message_start`` carries the input side and ``output_tokens: 1``; its
``message_delta`` carries the CUMULATIVE usage, equal to the non-streamed message's. So a
client that adds start and delta over-counts by one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from . import _model
from ._wire import Handler, JsonReply, StreamReply, WireRequest, sse_event

__all__ = [
    "MESSAGE_OVERHEAD",
    "NON_TEXT_BLOCK_TOKENS",
    "REPLY_PRIMING",
    "SNAPSHOTS",
    "WEB_SEARCH_RESULT_TOKENS",
    "AnthropicWire",
    "error_reply",
]

SNAPSHOTS = {
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-opus-4-0": "claude-opus-4-20250514",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}
"""Aliases the API answers with a dated snapshot; other model names come back as sent."""

MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3
NON_TEXT_BLOCK_TOKENS = 85
WEB_SEARCH_RESULT_TOKENS = 512
_FIRST_OUTPUT_TOKENS = 1  # what message_start reports before the answer
_THINKING_WORDS = ("Let", "me", "think", "this", "through.")
_SERVICE_TIERS = {None: "standard", "standard_only": "standard", "auto": "priority"}

# type and message of each error status, as the API words them.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}


def error_reply(status: int, message: str | None = None) -> JsonReply:
    """An error in Anthropic's shape; a 429 carries ``retry-after: 0``."""
    kind, default = _ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", _phrase(status))
    )
    body = {"type": "error", "error": {"type": kind, "message": message or default}, "request_id": "req_fake"}
    headers = {"request-id": "req_fake"}
    if status == 429:
        headers["retry-after"] = "0"
    return JsonReply(status, body, headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- reading requests -------------------------------------------------------------------------


def _block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return _model.count_tokens(block)
    if not isinstance(block, dict):
        return NON_TEXT_BLOCK_TOKENS
    kind = block.get("type")
    if kind == "text":
        return _model.count_tokens(str(block.get("text", "")))
    if kind in ("tool_use", "tool_result", "server_tool_use", "web_search_tool_result"):
        payload = {k: v for k, v in block.items() if k != "cache_control"}
        return _model.count_tokens(json.dumps(payload))
    return NON_TEXT_BLOCK_TOKENS


@dataclass(frozen=True)
class _Breakpoint:
    tokens: int
    """Prompt tokens up to and including the marked block."""
    ttl: str
    key: str
    """Identifies the prefix: the model and everything up to the block."""


@dataclass(frozen=True)
class _Prompt:
    tokens: int
    breakpoints: tuple[_Breakpoint, ...]


def _ttl(cache_control: Any) -> str | None:
    if not isinstance(cache_control, dict):
        return None
    return "1h" if cache_control.get("ttl") == "1h" else "5m"


def read_prompt(body: dict[str, Any]) -> _Prompt:
    """Prompt tokens of a Messages request and its cache breakpoints."""
    digest = hashlib.sha256(str(body.get("model")).encode())
    total = 0
    breakpoints: list[_Breakpoint] = []

    def add(tokens: int, identity: Any, cache_control: Any) -> None:
        nonlocal total
        total += tokens
        digest.update(json.dumps(identity, sort_keys=True, default=str).encode())
        ttl = _ttl(cache_control)
        if ttl is not None and total >= _model.CACHE_MINIMUM:
            breakpoints.append(_Breakpoint(total, ttl, digest.copy().hexdigest()))

    for tool in body.get("tools") or []:
        add(
            _model.count_tokens(json.dumps(tool)),
            tool,
            tool.get("cache_control") if isinstance(tool, dict) else None,
        )
    system = body.get("system")
    if isinstance(system, str):
        add(MESSAGE_OVERHEAD + _model.count_tokens(system), system, None)
    elif isinstance(system, list):
        add(MESSAGE_OVERHEAD, "system", None)
        for block in system:
            add(_block_tokens(block), block, block.get("cache_control") if isinstance(block, dict) else None)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("messages: Field required")
    last = len(messages) - 1
    for number, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _BadRequest(f"messages.{number}: each message needs a role of 'user' or 'assistant'")
        content = message.get("content")
        blocks = [content] if isinstance(content, str) else content if isinstance(content, list) else []
        add(MESSAGE_OVERHEAD, message.get("role"), None)
        for index, block in enumerate(blocks):
            marker = block.get("cache_control") if isinstance(block, dict) else None
            if marker is None and number == last and index == len(blocks) - 1:
                marker = body.get("cache_control")  # automatic caching: up to the end of the messages
            add(_block_tokens(block), block, marker)
    return _Prompt(total + REPLY_PRIMING, tuple(breakpoints))


def _thinking_tokens(body: dict[str, Any]) -> int:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return 0
    effort = (
        (body.get("output_config") or {}).get("effort")
        if isinstance(body.get("output_config"), dict)
        else None
    )
    budget = _model.REASONING_TOKENS.get(
        effort if isinstance(effort, str) else "medium", _model.REASONING_TOKENS["medium"]
    )
    if thinking.get("type") == "enabled":
        limit = thinking.get("budget_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise _BadRequest("thinking.enabled.budget_tokens: Field required")
        return min(limit, budget)
    if thinking.get("type") == "adaptive":
        return budget
    return 0


# --- what one call produced ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    model: str
    uncached: int
    cache_read: int
    write_5m: int
    write_1h: int
    generation: _model.Generation
    searches: int
    service_tier: str
    speed: str | None
    inference_geo: str | None

    @property
    def stop_reason(self) -> str:
        return "max_tokens" if self.generation.truncated else "end_turn"

    @property
    def output_tokens(self) -> int:
        return self.generation.reasoning_tokens + self.generation.visible_tokens

    def usage(self, output_tokens: int | None = None) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input_tokens": self.uncached,
            "cache_creation_input_tokens": self.write_5m + self.write_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.write_5m,
                "ephemeral_1h_input_tokens": self.write_1h,
            },
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "output_tokens_details": {"thinking_tokens": self.generation.reasoning_tokens},
            "service_tier": self.service_tier,
        }
        if self.searches:
            usage["server_tool_use"] = {"web_search_requests": self.searches, "web_fetch_requests": 0}
        if self.speed is not None:
            usage["speed"] = self.speed
        if self.inference_geo is not None:
            usage["inference_geo"] = self.inference_geo
        return usage

    def delta_usage(self) -> dict[str, Any]:
        """``message_delta.usage``: the cumulative totals (no TTL split, tier or speed)."""
        usage = self.usage()
        for name in ("cache_creation", "service_tier", "speed", "inference_geo"):
            usage.pop(name, None)
        return usage


def _optional_choice(body: dict[str, Any], name: str, allowed: tuple[Any, ...]) -> Any:
    value = body.get(name)
    if value not in allowed:
        raise _BadRequest(f"{name}: Input should be {' or '.join(repr(a) for a in allowed if a is not None)}")
    return value


class AnthropicWire:
    """The Anthropic routes of one fake server, with that server's prompt cache."""

    def __init__(self) -> None:
        self._cached: set[str] = set()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Empty the prompt cache."""
        with self._lock:
            self._cached.clear()

    def routes(self) -> dict[str, Handler]:
        return {
            "/v1/messages": _guarded(self.messages),
            "/v1/messages/count_tokens": _guarded(self.count_tokens),
        }

    def _cache(self, prompt: _Prompt) -> tuple[int, int, int]:
        """(cache read, 5-minute write, 1-hour write) tokens; caches every breakpoint."""
        with self._lock:
            read = next((bp.tokens for bp in reversed(prompt.breakpoints) if bp.key in self._cached), 0)
            self._cached.update(bp.key for bp in prompt.breakpoints)
        written = {"5m": 0, "1h": 0}
        done = read
        for breakpoint_ in prompt.breakpoints:
            if breakpoint_.tokens > done:
                written[breakpoint_.ttl] += breakpoint_.tokens - done
                done = breakpoint_.tokens
        return read, written["5m"], written["1h"]

    def count_tokens(self, req: WireRequest) -> JsonReply:
        """``POST /v1/messages/count_tokens``: the prompt's tokens, cache or not."""
        body = req.body
        _require_model(body)
        return JsonReply(200, {"input_tokens": read_prompt(body).tokens})

    def messages(self, req: WireRequest) -> JsonReply | StreamReply:
        """``POST /v1/messages``."""
        body = req.body
        _require_model(body)
        limit = body.get("max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise _BadRequest("max_tokens: Field required")
        tier = _SERVICE_TIERS[_optional_choice(body, "service_tier", (None, "auto", "standard_only"))]
        speed = _optional_choice(body, "speed", (None, "standard", "fast"))
        geo = body.get("inference_geo")
        prompt = read_prompt(body)
        thinking = _thinking_tokens(body)
        searches = sum(
            1
            for tool in body.get("tools") or []
            if isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search_")
        )
        read, write_5m, write_1h = self._cache(prompt)
        model = body["model"]
        call = _Call(
            model=SNAPSHOTS.get(model, model),
            uncached=prompt.tokens - read - write_5m - write_1h + searches * WEB_SEARCH_RESULT_TOKENS,
            cache_read=read,
            write_5m=write_5m,
            write_1h=write_1h,
            generation=_model.generate(req.chunks, thinking, limit),
            searches=searches,
            service_tier=tier,
            speed=speed,
            inference_geo=geo if isinstance(geo, str) else None,
        )
        message_id = f"msg_fake{req.serial:012d}"
        blocks = _content(call, message_id)
        if body.get("stream") is not True:
            content = [block for block, _ in blocks]
            headers = {"request-id": f"req_fake{req.serial:012d}"}
            return JsonReply(200, _message(call, message_id, content, call.usage(), True), headers)
        started = _message(call, message_id, [], call.usage(_FIRST_OUTPUT_TOKENS), False)
        events = [sse_event({"type": "message_start", "message": started}), sse_event({"type": "ping"})]
        for index, (block, deltas) in enumerate(blocks):
            events.append(
                sse_event({"type": "content_block_start", "index": index, "content_block": _opening(block)})
            )
            events += [sse_event({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
            events.append(sse_event({"type": "content_block_stop", "index": index}))
        # The usage and the end in one frame: a cut stream never delivers either.
        delta = {"stop_reason": call.stop_reason, "stop_sequence": None}
        events.append(
            sse_event({"type": "message_delta", "delta": delta, "usage": call.delta_usage()})
            + sse_event({"type": "message_stop"})
        )
        overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return StreamReply(events, cut_frame=sse_event(overloaded))


def _message(
    call: _Call, message_id: str, content: list[Any], usage: dict[str, Any], done: bool
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": content,
        "stop_reason": call.stop_reason if done else None,
        "stop_sequence": None,
        "usage": usage,
    }


def _content(call: _Call, message_id: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(the finished block, the deltas that stream it) of each content block, in order."""
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if call.generation.reasoning_tokens:
        words = [w if i == 0 else f" {w}" for i, w in enumerate(_THINKING_WORDS)]
        signature = f"fake-signature-{message_id}"
        deltas = [{"type": "thinking_delta", "thinking": w} for w in words]
        deltas.append({"type": "signature_delta", "signature": signature})
        blocks.append(({"type": "thinking", "thinking": "".join(words), "signature": signature}, deltas))
    for number in range(call.searches):
        tool_id = f"srvtoolu_fake{number:02d}{message_id[-8:]}"
        query = {"query": "tokentrail fake search"}
        blocks.append(({"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": query},
                       [{"type": "input_json_delta", "partial_json": json.dumps(query)}]))  # fmt: skip
        result = {"type": "web_search_result", "url": "https://example.com/fake", "title": "A fake result",
                  "encrypted_content": "ZmFrZQ==", "page_age": None}  # fmt: skip
        blocks.append(({"type": "web_search_tool_result", "tool_use_id": tool_id, "content": [result]}, []))
    if call.generation.pieces or not call.generation.truncated:
        deltas = [{"type": "text_delta", "text": piece} for piece in call.generation.pieces]
        blocks.append(({"type": "text", "text": call.generation.text, "citations": None}, deltas))
    return blocks


def _opening(block: dict[str, Any]) -> dict[str, Any]:
    """A block as ``content_block_start`` shows it, before its deltas."""
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": "", "citations": None}
    if kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if kind == "server_tool_use":
        return {**block, "input": {}}
    return block


def _require_model(body: dict[str, Any]) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _BadRequest("model: Field required")


def _guarded(handler: Handler) -> Handler:
    def route(req: WireRequest) -> JsonReply | StreamReply:
        try:
            return handler(req)
        except _BadRequest as bad:
            return error_reply(400, bad.message)

    route.__doc__ = handler.__doc__
    return route
