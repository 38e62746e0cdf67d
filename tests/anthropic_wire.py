"""Anthropic wire-format bodies and a mock transport that answers like the API does.

Bodies follow the Messages API reference (and parse with the SDK's own types): a ``message`` with
``usage`` (``input_tokens`` EXCLUDING the cache, ``cache_creation`` split by TTL,
``output_tokens_details.thinking_tokens``, ``server_tool_use``, ``service_tier``, ``speed``, beta
``iterations``), and its SSE stream, whose ``message_start`` carries the input side and a first
output count and whose ``message_delta.usage`` carries CUMULATIVE totals. Bedrock (``/model/{id}
/invoke``) and Vertex AI (``...:rawPredict``) answer the same bodies on their own paths.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def http_module() -> Any:
    """The HTTP library the installed anthropic SDK is built on (httpx2, or httpx before it)."""
    base = importlib.import_module("anthropic._base_client")
    return base.httpx2 if hasattr(base, "httpx2") else base.httpx


def usage(
    input_tokens: int = 2000,
    output_tokens: int = 300,
    cache_write_5m: int = 500,
    cache_write_1h: int = 1000,
    cache_read: int = 4000,
    thinking: int = 120,
    web_searches: int = 0,
    service_tier: str = "standard",
    speed: str | None = None,
    iterations: list[dict] | None = None,
) -> dict:
    body: dict[str, Any] = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_write_5m + cache_write_1h,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache_write_5m,
            "ephemeral_1h_input_tokens": cache_write_1h,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"thinking_tokens": thinking},
        "server_tool_use": {"web_search_requests": web_searches, "web_fetch_requests": 2}
        if web_searches
        else None,
        "service_tier": service_tier,
    }
    if speed is not None:
        body["speed"] = speed
    if iterations is not None:
        body["iterations"] = iterations
    return body


def message(usage_body: dict | None = None, model: str = MODEL, words: list[str] | None = None) -> dict:
    text = "".join(words if words is not None else WORDS)
    return {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [
            {"type": "thinking", "thinking": "Greet them.", "signature": "sig"},
            {"type": "text", "text": text, "citations": None},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage_body if usage_body is not None else usage(),
    }


WORDS = ["Hel", "lo", " there", "!"]
# What message_delta leaves out: it has the cumulative counts, not the TTL split, tier or speed.
_START_ONLY = ("cache_creation", "service_tier", "speed", "inference_geo")


def stream_events(
    usage_body: dict | None = None, model: str = MODEL, words: list[str] | None = None
) -> list[dict]:
    """The events of the same message streamed, as the API sends them."""
    final = message(usage_body, model, words)
    full = final["usage"]
    start_usage = {**full, "output_tokens": 1}
    start_usage.pop("iterations", None)
    delta_usage = {k: v for k, v in full.items() if k not in _START_ONLY}
    started = {**final, "content": [], "stop_reason": None, "usage": start_usage}
    events: list[dict] = [{"type": "message_start", "message": started}, {"type": "ping"}]
    thinking = {"type": "thinking", "thinking": "", "signature": ""}
    events += [
        {"type": "content_block_start", "index": 0, "content_block": thinking},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Greet them."},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "text", "text": "", "citations": None},
        },
    ]
    events += [
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": word}}
        for word in (words if words is not None else WORDS)
    ]
    events += [
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": delta_usage,
        },
        {"type": "message_stop"},
    ]
    return events


def sse(events: list[dict]) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def error_body(
    kind: str = "rate_limit_error", text: str = "Number of request tokens has exceeded your limit."
) -> dict:
    return {"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_011"}


@dataclass
class FakeAnthropic:
    """A mock transport that answers like the Anthropic API (and Bedrock, Vertex) and records requests."""

    usage: dict = field(default_factory=usage)
    model: str = MODEL
    """What the response says it ran: Bedrock and Vertex answer with the base model's id."""
    status: int = 200
    error: dict = field(default_factory=error_body)
    extra: Callable[[str, dict], Any] | None = None
    sent: list[dict] = field(default_factory=list)

    def handler(self, request: Any) -> Any:
        httpx = http_module()
        body = json.loads(request.content or b"{}")
        path = request.url.path
        self.sent.append(
            {"path": path, "query": request.url.query, "body": body, "headers": dict(request.headers)}
        )
        if self.status != 200:
            return httpx.Response(self.status, json=self.error, headers={"retry-after": "0"})
        if self.extra is not None:
            custom = self.extra(path, body)
            if custom is not None:
                return custom
        if path.endswith("/count_tokens"):
            return httpx.Response(200, json={"input_tokens": 42})
        stream = body.get("stream") is True or path.endswith(
            ("invoke-with-response-stream", ":streamRawPredict")
        )
        if stream:
            headers = {"content-type": "text/event-stream", "request-id": "req_011"}
            return httpx.Response(200, content=sse(stream_events(self.usage, self.model)), headers=headers)
        return httpx.Response(200, json=message(self.usage, self.model), headers={"request-id": "req_011"})

    def _http(self, is_async: bool) -> Any:
        httpx = http_module()
        transport = httpx.MockTransport(self.handler)
        return httpx.AsyncClient(transport=transport) if is_async else httpx.Client(transport=transport)

    def client(self, *, is_async: bool = False, **kwargs: Any) -> Any:
        import anthropic

        cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
        return cls(api_key="sk-ant-SECRET", max_retries=0, http_client=self._http(is_async), **kwargs)

    def bedrock(self, *, is_async: bool = False, **kwargs: Any) -> Any:
        from anthropic import AnthropicBedrock, AsyncAnthropicBedrock

        cls = AsyncAnthropicBedrock if is_async else AnthropicBedrock
        if "api_key" in inspect.signature(cls.__init__).parameters:
            credentials = {"api_key": "bedrock-SECRET"}
        else:  # SDKs before Bedrock API keys sign each request with AWS keys (boto3)
            credentials = {"aws_access_key": "AKIA-fake", "aws_secret_key": "bedrock-SECRET"}
        return cls(**credentials, aws_region="us-east-1", max_retries=0,
                   http_client=self._http(is_async), **kwargs)  # fmt: skip

    def vertex(self, *, is_async: bool = False, **kwargs: Any) -> Any:
        from anthropic import AnthropicVertex, AsyncAnthropicVertex

        cls = AsyncAnthropicVertex if is_async else AnthropicVertex
        return cls(region="us-east5", project_id="acme", access_token="ya29-SECRET", max_retries=0,
                   http_client=self._http(is_async), **kwargs)  # fmt: skip


def create_arguments(**arguments: Any) -> dict[str, Any]:
    """``messages.create()`` arguments for the installed SDK: a parameter it does not declare yet
    (``thinking`` before 0.47) goes in ``extra_body``, as an application on that SDK sends it."""
    from anthropic.resources.messages import Messages

    declared = inspect.signature(Messages.create).parameters
    extra = dict(arguments.pop("extra_body", None) or {})
    for name in [name for name in arguments if name not in declared]:
        extra[name] = arguments.pop(name)
    return {**arguments, "extra_body": extra} if extra else arguments
