"""Provider-neutral pieces shared by the wire-format modules and the HTTP server.

A wire module (``_openai_wire`` today; Anthropic and Gemini later) turns a :class:`WireRequest`
into a :class:`JsonReply` or a :class:`StreamReply`. The server owns everything about HTTP:
status lines, chunked transfer, cutting streams, injected failures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ErrorBuilder", "Handler", "JsonReply", "StreamReply", "WireRequest", "sse_data", "sse_event"]


@dataclass(frozen=True)
class WireRequest:
    """One parsed request, with the per-request controls already read from its headers."""

    body: dict[str, Any]
    chunks: int
    """How many content chunks (= answer words) the fake model generates."""
    flavor: str
    """Which provider's usage shape to answer with (``openai``, ``openrouter``, ``xai``, ``deepseek``)."""
    serial: int
    """A number unique to this request on its server: response ids are built from it."""
    created: int
    """Unix time of the request, for ``created`` / ``created_at`` fields."""
    tool_call: str | None = None
    """A function to call instead of answering in text (``X-Fake-Tool-Call``; OpenAI routes)."""
    tool_arguments: str = "{}"
    """The arguments of that call, a JSON object as text (``X-Fake-Tool-Arguments``)."""


@dataclass(frozen=True)
class JsonReply:
    """A complete JSON response."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamReply:
    """A server-sent-events response.

    ``events`` are complete SSE frames; the last one carries the usage (or the finish reason), so a
    cut stream never delivers it. ``trailer`` frames (``data: [DONE]``) follow only uncut streams.
    """

    events: list[str]
    """SSE frames; or binary frames (``bytes``) with a ``content_type`` of their own (Bedrock's)."""
    trailer: list[str] = field(default_factory=list)
    content_type: str = "text/event-stream; charset=utf-8"
    """Ollama's newline-delimited JSON streams are ``application/x-ndjson``."""
    cut_frame: str | None = None
    """How a cut stream ends: ``None`` drops the connection mid-body; a frame (Anthropic's ``error``
    event) is sent after the events that made it, and the body then ends cleanly, as the API
    ends a stream that failed after it started."""
    content_type: str = "text/event-stream; charset=utf-8"


Handler = Callable[[WireRequest], JsonReply | StreamReply]
ErrorBuilder = Callable[[int, str | None], JsonReply]


def _dumps(payload: Any) -> str:
    # Compact separators, as the real APIs send.
    return json.dumps(payload, separators=(",", ":"))


def sse_data(payload: Any) -> str:
    """An unnamed SSE frame: ``data: {...}``."""
    return f"data: {_dumps(payload)}\n\n"


def sse_event(payload: dict[str, Any]) -> str:
    """A named SSE frame whose event name is the payload's ``type``."""
    return f"event: {payload['type']}\ndata: {_dumps(payload)}\n\n"
