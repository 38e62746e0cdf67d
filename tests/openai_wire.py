"""OpenAI wire-format bodies and a mock transport that answers like the API does.

Bodies follow the API reference (and parse with the SDK's own types): chat completions with
``usage.prompt_tokens_details`` / ``completion_tokens_details``, SSE chunk streams that carry a
usage chunk (``choices: []``) only when ``stream_options.include_usage`` is set, Responses API
objects and their typed stream events, embeddings, legacy completions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conftest import http_module

MODEL = "gpt-4o-mini"
SNAPSHOT = "gpt-4o-mini-2024-07-18"


def chat_usage(prompt: int = 1200, completion: int = 30, cached: int = 1024, reasoning: int = 0) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(
    usage: dict | None = None,
    model: str = SNAPSHOT,
    text: str = "Hello there!",
    service_tier: str = "default",
) -> dict:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1763700000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage if usage is not None else chat_usage(),
        "service_tier": service_tier,
        "system_fingerprint": "fp_1234",
    }


def chat_chunks(
    words: list[str],
    usage: dict | None,
    include_usage: bool,
    model: str = SNAPSHOT,
    service_tier: str = "default",
) -> list[dict]:
    """The chunks of a streamed chat completion, as the API sends them."""

    def chunk(choices: list, usage_value: Any = None) -> dict:
        body = {
            "id": "chatcmpl-abc123",
            "object": "chat.completion.chunk",
            "created": 1763700000,
            "model": model,
            "service_tier": service_tier,
            "system_fingerprint": "fp_1234",
            "choices": choices,
        }
        if include_usage:
            body["usage"] = usage_value
        return body

    chunks = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    for word in words:
        chunks.append(chunk([{"index": 0, "delta": {"content": word}, "finish_reason": None}]))
    chunks.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        chunks.append(chunk([], usage if usage is not None else chat_usage()))
    return chunks


def sse(events: list[dict], *, named: bool = False, done: bool = True) -> bytes:
    out = []
    for event in events:
        if named:
            out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
        else:
            out.append(f"data: {json.dumps(event)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def responses_usage(
    input_tokens: int = 1500, output_tokens: int = 300, cached: int = 1280, reasoning: int = 128
) -> dict:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(
    usage: dict | None = None, model: str = "gpt-5-2025-08-07", status: str = "completed"
) -> dict:
    return {
        "id": "resp_abc123",
        "object": "response",
        "created_at": 1763700000,
        "status": status,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi from responses", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage if usage is not None else responses_usage(),
        "service_tier": "default",
    }


def response_events(usage: dict | None = None) -> list[dict]:
    final = response_object(usage)
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    item = final["output"][0]
    return [
        {"type": "response.created", "sequence_number": 0, "response": started},
        {"type": "response.in_progress", "sequence_number": 1, "response": started},
        {"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
         "item": {**item, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "sequence_number": 3, "output_index": 0, "item_id": "msg_1",
         "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", "sequence_number": 3, "output_index": 0, "item_id": "msg_1",
         "content_index": 0, "delta": "Hi from ", "logprobs": []},
        {"type": "response.output_text.delta", "sequence_number": 4, "output_index": 0, "item_id": "msg_1",
         "content_index": 0, "delta": "responses", "logprobs": []},
        {"type": "response.output_text.done", "sequence_number": 5, "output_index": 0, "item_id": "msg_1",
         "content_index": 0, "text": "Hi from responses", "logprobs": []},
        {"type": "response.content_part.done", "sequence_number": 6, "output_index": 0, "item_id": "msg_1",
         "content_index": 0, "part": {"type": "output_text", "text": "Hi from responses", "annotations": []}},
        {"type": "response.output_item.done", "sequence_number": 6, "output_index": 0, "item": item},
        {"type": "response.completed", "sequence_number": 7, "response": final},
    ]  # fmt: skip


def embeddings(count: int = 1, prompt_tokens: int = 8) -> dict:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(count)],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def completion(usage: dict | None = None) -> dict:
    return {
        "id": "cmpl-abc",
        "object": "text_completion",
        "created": 1763700000,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": " world", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": usage if usage is not None else chat_usage(prompt=5, completion=2, cached=0),
    }


@dataclass
class FakeOpenAI:
    """A mock transport that answers like the OpenAI API and records what it was sent."""

    chat_usage: dict = field(default_factory=chat_usage)
    words: list[str] = field(default_factory=lambda: ["Hel", "lo", " there", "!"])
    status: int = 200
    error_body: dict = field(
        default_factory=lambda: {
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    )
    extra: Callable[[str, dict], Any] | None = None
    sent: list[dict] = field(default_factory=list)

    def handler(self, request: Any) -> Any:
        httpx = http_module()
        body = json.loads(request.content or b"{}")
        self.sent.append({"path": request.url.path, "body": body, "headers": dict(request.headers)})
        if self.status != 200:
            return httpx.Response(self.status, json=self.error_body, headers={"retry-after": "0"})
        path = request.url.path
        if self.extra is not None:
            custom = self.extra(path, body)
            if custom is not None:
                return custom
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if path.endswith("/chat/completions"):
            if stream:
                return _sse_response(httpx, sse(chat_chunks(self.words, self.chat_usage, include_usage)))
            return httpx.Response(200, json=chat_completion(self.chat_usage, text="".join(self.words)))
        if path.endswith("/responses"):
            if stream:
                return _sse_response(httpx, sse(response_events(), named=True, done=False))
            return httpx.Response(200, json=response_object())
        if path.endswith("/embeddings"):
            inputs = body.get("input")
            return httpx.Response(200, json=embeddings(len(inputs) if isinstance(inputs, list) else 1))
        if path.endswith("/completions"):
            if stream:
                chunks = [
                    {
                        **completion(),
                        "choices": [{"text": " wor", "index": 0, "logprobs": None, "finish_reason": None}],
                    },
                    {
                        **completion(),
                        "choices": [{"text": "ld", "index": 0, "logprobs": None, "finish_reason": "length"}],
                    },
                ]
                for chunk in chunks:
                    chunk.pop("usage")
                    if include_usage:
                        chunk["usage"] = None
                if include_usage:
                    chunks.append({**completion(), "choices": []})
                return _sse_response(httpx, sse(chunks))
            return httpx.Response(200, json=completion())
        return httpx.Response(404, json={"error": {"message": "not found", "type": "invalid_request_error"}})

    def client(
        self, base_url: str = "https://api.openai.com/v1", *, is_async: bool = False, **kwargs: Any
    ) -> Any:
        import openai

        httpx = http_module()
        transport = httpx.MockTransport(self.handler)
        if is_async:
            return openai.AsyncOpenAI(
                api_key="sk-test-SECRET",
                base_url=base_url,
                max_retries=0,
                http_client=httpx.AsyncClient(transport=transport),
                **kwargs,
            )
        return openai.OpenAI(
            api_key="sk-test-SECRET", base_url=base_url, max_retries=0,
            http_client=httpx.Client(transport=transport), **kwargs,
        )  # fmt: skip


def _sse_response(httpx: Any, content: bytes) -> Any:
    return httpx.Response(200, content=content, headers={"content-type": "text/event-stream"})


def chat_helpers(client: Any) -> Any:
    """Where this SDK keeps the chat ``stream()`` / ``parse()`` helpers: ``client.chat.completions``,
    or ``client.beta.chat.completions`` before openai 1.9x promoted them."""
    completions = client.chat.completions
    return completions if hasattr(completions, "stream") else client.beta.chat.completions


def has_responses_api() -> bool:
    """The Responses API (``client.responses``) arrived in openai 1.66."""
    import openai

    return hasattr(openai.OpenAI, "responses")
