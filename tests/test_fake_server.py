"""The fake LLM server, driven by the real openai SDK (and by raw HTTP where the wire itself matters).

Expected numbers follow the fake model's rules (tokentrail.testing._model): text costs
ceil(words * 4 / 3) tokens, each chat message 3 more, each request 3 more for the reply; the answer
is one token per word, 8 words by default; reasoning models think 192 tokens at medium effort.
So ``[{"role": "user", "content": "Say hello"}]`` is 3 + 3 + 3 = 9 prompt tokens.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

import tokentrail
from tokentrail.testing import FakeLLMServer, _anthropic_wire, _model, _openai_wire
from tokentrail.testing._wire import JsonReply, StreamReply, WireRequest

SAY_HELLO = [{"role": "user", "content": "Say hello"}]
HELLO_PROMPT_TOKENS = 9
ANSWER = "This is a fake answer from the tokentrail"  # the default 8 words
LONG_PROMPT = [{"role": "user", "content": " ".join(["word"] * 1500)}]  # 2000 + 3 + 3 = 2006 tokens
LONG_PROMPT_TOKENS, LONG_CACHED = 2006, 1920  # cached: largest multiple of 128 below 2006
SECRET = "sk-fake-SECRET-123"
STREAM_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(server: FakeLLMServer) -> None:
    server.reset()


@pytest.fixture(scope="module")
def client(server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    # One client for the module: building one (its TLS context) costs more than the calls it makes.
    with openai.OpenAI(base_url=server.base_url, api_key=SECRET, max_retries=0) as sync_client:
        yield sync_client


@pytest.fixture
async def aclient(server: FakeLLMServer) -> Any:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=SECRET, max_retries=0) as async_client:
        yield async_client


def post_raw(
    server: FakeLLMServer, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST without the SDK: (status, decoded JSON or the SSE text)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path, data=data, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
            if response.headers["content-type"].startswith("text/event-stream"):
                return response.status, text
            return response.status, json.loads(text)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def sse_frames(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each frame of an SSE body."""
    assert text.endswith("\n\n")
    frames = []
    for block in text[:-2].split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) <= {"event", "data"}, block
        frames.append((fields.get("event"), fields["data"]))
    return frames


def chat_body(model: str = "gpt-4o-mini", **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": SAY_HELLO, **params}


# --- chat completions ---------------------------------------------------------------------------


def test_chat_non_streamed(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO)
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.service_tier == "default"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 8, 17)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_stream_without_include_usage_has_no_usage(client: openai.OpenAI, server: FakeLLMServer) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO, stream=True))
    assert len(chunks) == 1 + 8 + 1  # role chunk, one per word, finish chunk
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == _model.answer_pieces(8)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices for c in chunks)
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].model == "gpt-4o-mini-2024-07-18"

    status, text = post_raw(server, "/v1/chat/completions", chat_body(stream=True))
    assert status == 200
    assert text.endswith("data: [DONE]\n\n")
    bodies = [json.loads(data) for _, data in sse_frames(text)[:-1]]
    assert all("usage" not in body for body in bodies)  # absent, not null, when not asked for


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"model": "gpt-4o-mini", "messages": SAY_HELLO}, id="plain"),
        pytest.param({"model": "o3", "messages": SAY_HELLO, "reasoning_effort": "low"}, id="reasoning"),
        pytest.param({"model": "gpt-4o", "messages": LONG_PROMPT}, id="cached"),
        pytest.param({"model": "gpt-4o-mini", "messages": SAY_HELLO, "max_tokens": 3}, id="truncated"),
        pytest.param({"model": "gpt-4o-mini", "messages": SAY_HELLO, "service_tier": "flex"}, id="flex"),
    ],
)
def test_chat_stream_usage_chunk_equals_non_streamed_usage(
    client: openai.OpenAI, params: dict[str, Any]
) -> None:
    whole = client.chat.completions.create(**params)
    chunks = list(
        client.chat.completions.create(**params, stream=True, stream_options={"include_usage": True})
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert whole.usage is not None
    assert last.usage.model_dump() == whole.usage.model_dump()
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == whole.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert {c.service_tier for c in chunks} == {whole.service_tier}


def test_chat_stream_wire_format(server: FakeLLMServer) -> None:
    status, text = post_raw(
        server, "/v1/chat/completions", chat_body(stream=True, stream_options={"include_usage": True})
    )
    assert status == 200
    frames = sse_frames(text)
    assert frames[-1] == (None, "[DONE]")
    bodies = [json.loads(data) for event, data in frames[:-1] if event is None]
    assert len(bodies) == len(frames) - 1 == 1 + 8 + 1 + 1
    for body in bodies:
        ChatCompletionChunk.model_validate(body)
    assert all(body["usage"] is None for body in bodies[:-1])  # present and null, as OpenAI sends
    assert bodies[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert bodies[-2]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert bodies[-1]["choices"] == []
    assert bodies[-1]["usage"]["total_tokens"] == 17


def test_chat_non_streamed_wire_format(server: FakeLLMServer) -> None:
    status, body = post_raw(server, "/v1/chat/completions", chat_body())
    assert status == 200
    ChatCompletion.model_validate(body)
    assert body["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 8,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def test_chat_stream_helper_accumulates(client: openai.OpenAI) -> None:
    # The SDK's own stream helper rebuilds a ChatCompletion from the chunks: a strict consumer.
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=SAY_HELLO, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == ANSWER
    assert final.usage is not None and final.usage.total_tokens == 17


def test_long_prompt_hits_the_cache(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=LONG_PROMPT)
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert completion.model == "gpt-4o-2024-08-06"
    assert usage.prompt_tokens == LONG_PROMPT_TOKENS
    assert usage.prompt_tokens_details.cached_tokens == LONG_CACHED


@pytest.mark.parametrize(
    ("prompt", "cached"),
    [(1, 0), (1023, 0), (1024, 0), (1025, 1024), (1152, 1024), (1153, 1152), (5000, 4992)],
)
def test_cached_tokens_rule(prompt: int, cached: int) -> None:
    assert _model.cached_tokens(prompt) == cached


@pytest.mark.parametrize(
    ("model", "effort", "reasoning"),
    [
        ("o3", None, 192),
        ("o4-mini", "low", 64),
        ("gpt-5", "high", 512),
        ("gpt-5-nano", "minimal", 0),
        ("o1", "medium", 192),
        ("gpt-4o", "high", 0),  # not a reasoning model: the effort is ignored
        ("gpt-5-chat-latest", None, 0),
    ],
)
def test_reasoning_tokens_are_part_of_completion_tokens(
    client: openai.OpenAI, model: str, effort: str | None, reasoning: int
) -> None:
    extra = {"reasoning_effort": effort} if effort else {}
    usage = client.chat.completions.create(model=model, messages=SAY_HELLO, **extra).usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == reasoning
    assert usage.completion_tokens == 8 + reasoning
    assert usage.total_tokens == 9 + 8 + reasoning


def test_max_tokens_cuts_the_answer(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO, max_tokens=3)
    assert completion.choices[0].message.content == "This is a"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_reasoning_can_spend_the_whole_limit(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="o3", messages=SAY_HELLO, max_completion_tokens=100)
    assert completion.choices[0].message.content == ""
    assert completion.choices[0].finish_reason == "length"
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert (usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens) == (100, 100)


@pytest.mark.parametrize(
    ("requested", "answered"),
    [(None, "default"), ("auto", "default"), ("flex", "flex"), ("priority", "priority")],
)
def test_service_tier_is_echoed(client: openai.OpenAI, requested: str | None, answered: str) -> None:
    extra = {"service_tier": requested} if requested else {}
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO, **extra)
    assert completion.service_tier == answered


def test_unknown_model_name_comes_back_as_sent(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="my-finetune", messages=SAY_HELLO)
    assert completion.model == "my-finetune"


# --- scripted tool calls (X-Fake-Tool-Call) ------------------------------------------------------


def test_a_scripted_tool_call_in_chat_completions_streamed_or_not(server: FakeLLMServer) -> None:
    headers = {"X-Fake-Tool-Call": "transfer_to_booker", "X-Fake-Tool-Arguments": '{"why": "dinner"}'}
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-fake", default_headers=headers)
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO)
    (call,) = plain.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "transfer_to_booker",
        {"why": "dinner"},
    )
    assert plain.choices[0].finish_reason == "tool_calls" and plain.choices[0].message.content is None
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=SAY_HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [tool for chunk in chunks for choice in chunk.choices for tool in choice.delta.tool_calls or []]
    assert deltas[0].id.startswith("call_fake") and deltas[0].function.name == "transfer_to_booker"
    assert "".join(delta.function.arguments or "" for delta in deltas) == call.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage == plain.usage  # the usage a text answer would have had


def test_a_scripted_tool_call_in_responses_streamed_or_not(server: FakeLLMServer) -> None:
    headers = {"X-Fake-Tool-Call": "research"}
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-fake", default_headers=headers)
    plain = client.responses.create(model="gpt-4o-mini", input="hello")
    (item,) = plain.output
    assert (item.type, item.name, item.arguments) == ("function_call", "research", "{}")
    with client.responses.stream(model="gpt-4o-mini", input="hello") as stream:
        events = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in events
    assert [(i.type, i.name) for i in final.output] == [("function_call", "research")]
    assert final.usage == plain.usage


# --- responses ----------------------------------------------------------------------------------

RESPONSE_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 8,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_responses_non_streamed(client: openai.OpenAI) -> None:
    response = client.responses.create(model="gpt-4o-mini", input="hi there", instructions="Be brief")
    assert response.status == "completed"
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.output_text == ANSWER
    assert [item.type for item in response.output] == ["message"]
    usage = response.usage
    assert usage is not None
    # input: 3 + ceil(8/3) for "hi there", 3 + ceil(8/3) for the instructions, 3 for the reply
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (15, 8, 23)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_streamed_events_and_usage(client: openai.OpenAI) -> None:
    whole = client.responses.create(model="gpt-4o-mini", input="hi there")
    events = list(client.responses.create(model="gpt-4o-mini", input="hi there", stream=True))
    assert [e.type for e in events] == RESPONSE_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == ANSWER
    created, completed = events[0], events[-1]
    assert created.type == "response.created" and created.response.usage is None
    assert completed.type == "response.completed" and completed.response.usage is not None
    assert whole.usage is not None
    assert completed.response.usage.model_dump() == whole.usage.model_dump()
    assert completed.response.output_text == whole.output_text


def test_responses_reasoning_model_with_cached_input(client: openai.OpenAI) -> None:
    params: dict[str, Any] = {"model": "gpt-5", "input": LONG_PROMPT, "reasoning": {"effort": "low"}}
    whole = client.responses.create(**params)
    assert [item.type for item in whole.output] == ["reasoning", "message"]
    assert whole.model == "gpt-5-2025-08-07"
    usage = whole.usage
    assert usage is not None
    assert usage.input_tokens == LONG_PROMPT_TOKENS
    assert usage.input_tokens_details.cached_tokens == LONG_CACHED
    assert (usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (8 + 64, 64)
    assert usage.total_tokens == LONG_PROMPT_TOKENS + 72
    with client.responses.stream(**params) as stream:
        final = stream.get_final_response()  # the SDK's helper checks the event order as it goes
    assert final.usage is not None and final.usage.model_dump() == usage.model_dump()
    assert final.output_text == ANSWER


def test_responses_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    params: dict[str, Any] = {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 16}
    headers = {"X-Fake-Chunks": "20"}
    whole = client.responses.create(**params, extra_headers=headers)
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None and whole.incomplete_details.reason == "max_output_tokens"
    assert whole.usage is not None and whole.usage.output_tokens == 16
    events = list(client.responses.create(**params, stream=True, extra_headers=headers))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.usage is not None
    assert events[-1].response.usage.model_dump() == whole.usage.model_dump()


def test_responses_wire_format(server: FakeLLMServer) -> None:
    status, text = post_raw(server, "/v1/responses", {"model": "o4-mini", "input": "hi", "stream": True})
    assert status == 200
    frames = sse_frames(text)
    assert all(event is not None for event, _ in frames)  # every frame named, no [DONE]
    for event, data in frames:
        parsed = STREAM_EVENT.validate_python(json.loads(data))
        assert parsed.type == event
    status, body = post_raw(server, "/v1/responses", {"model": "o4-mini", "input": "hi"})
    assert status == 200
    assert Response.model_validate(body).usage is not None
    assert body["usage"] == {
        "input_tokens": 8,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 200,
        "output_tokens_details": {"reasoning_tokens": 192},
        "total_tokens": 208,
    }


# --- embeddings and legacy completions -----------------------------------------------------------


def test_embeddings_default_base64(client: openai.OpenAI, server: FakeLLMServer) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "a"])
    assert server.requests[-1].body["encoding_format"] == "base64"  # the SDK's default
    assert [len(item.embedding) for item in result.data] == [1536, 1536]
    assert [item.index for item in result.data] == [0, 1]
    assert result.usage.model_dump() == {"prompt_tokens": 3 + 2, "total_tokens": 5}
    assert sum(v * v for v in result.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    as_floats = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "a"],
                                         encoding_format="float")  # fmt: skip
    assert [item.embedding for item in as_floats.data] == [item.embedding for item in result.data]
    assert result.data[0].embedding != result.data[1].embedding


def test_embeddings_dimensions_and_wire(client: openai.OpenAI, server: FakeLLMServer) -> None:
    result = client.embeddings.create(model="text-embedding-3-large", input="hello", dimensions=8)
    assert len(result.data) == 1 and len(result.data[0].embedding) == 8
    assert result.model == "text-embedding-3-large"
    assert len(client.embeddings.create(model="text-embedding-3-large", input="x").data[0].embedding) == 3072
    body = {"model": "text-embedding-3-small", "input": [[1, 2, 3]], "dimensions": 4}
    status, floats = post_raw(server, "/v1/embeddings", {**body, "encoding_format": "float"})
    assert status == 200
    parsed = CreateEmbeddingResponse.model_validate(floats)
    assert parsed.usage.prompt_tokens == 3  # a token array is its own count
    status, encoded = post_raw(server, "/v1/embeddings", {**body, "encoding_format": "base64"})
    assert status == 200
    vector = encoded["data"][0]["embedding"]
    assert isinstance(vector, str)
    assert list(struct.unpack("<4f", base64.b64decode(vector))) == parsed.data[0].embedding


def test_legacy_completions(client: openai.OpenAI, server: FakeLLMServer) -> None:
    params: dict[str, Any] = {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time"}
    whole = client.completions.create(**params)
    assert whole.model == "gpt-3.5-turbo-instruct:20230824-v2"
    assert whole.choices[0].text == ANSWER and whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (6, 8, 14)
    plain = list(client.completions.create(**params, stream=True))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "stop"
    chunks = list(client.completions.create(**params, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert "".join(c.choices[0].text for c in chunks[:-1]) == ANSWER
    status, body = post_raw(server, "/v1/completions", {**params, "max_tokens": 2})
    assert status == 200
    assert Completion.model_validate(body).choices[0].finish_reason == "length"
    assert body["choices"][0]["text"] == "This is"


# --- async --------------------------------------------------------------------------------------


async def test_async_chat_stream_and_responses(aclient: openai.AsyncOpenAI) -> None:
    whole = await aclient.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO)
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=SAY_HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()
    events = [e async for e in await aclient.responses.create(model="gpt-5-mini", input="hi", stream=True)]
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage is not None and events[-1].response.usage.output_tokens == 200


async def test_async_concurrent_calls(aclient: openai.AsyncOpenAI, server: FakeLLMServer) -> None:
    results = await asyncio.gather(
        *(aclient.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO) for _ in range(8))
    )
    assert len({r.id for r in results}) == 8
    assert {r.usage.total_tokens for r in results if r.usage} == {17}
    assert len(server.requests) == 8


async def test_async_fail_next_and_cut(aclient: openai.AsyncOpenAI, server: FakeLLMServer) -> None:
    server.fail_next(status=429)
    with pytest.raises(openai.RateLimitError):
        await aclient.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO)
    server.cut_next_stream(after_chunks=2)
    received = []
    stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO, stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 2


def test_threaded_calls(client: openai.OpenAI, server: FakeLLMServer) -> None:
    def call(_: int) -> str:
        return client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO).id

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(call, range(12)))
    assert len(set(ids)) == 12 and len(server.requests) == 12


# --- scripted failures --------------------------------------------------------------------------


def test_fail_next_429(client: openai.OpenAI, server: FakeLLMServer) -> None:
    server.fail_next(status=429, times=2)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "0"
    assert error.body == {
        "message": "Rate limit reached for requests. Please try again later.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO).usage is not None
    assert len(server.requests) == 3  # failed requests are recorded too


def test_fail_next_500_on_any_endpoint(client: openai.OpenAI, server: FakeLLMServer) -> None:
    server.fail_next(status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.status_code == 500
    assert caught.value.body is not None and caught.value.body["type"] == "server_error"  # type: ignore[index]
    server.fail_next(status=503)
    with pytest.raises(openai.InternalServerError) as unavailable:
        client.responses.create(model="gpt-4o-mini", input="x")
    assert unavailable.value.status_code == 503


def test_fail_next_rejects_success_status(server: FakeLLMServer) -> None:
    with pytest.raises(ValueError, match="400-599"):
        server.fail_next(status=200)


def test_cut_next_stream_breaks_chat_iteration(client: openai.OpenAI, server: FakeLLMServer) -> None:
    server.cut_next_stream(after_chunks=3)
    # A non-streamed call in between does not use up the cut.
    assert client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO).choices
    received = []
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=SAY_HELLO, stream=True, stream_options={"include_usage": True}
    )
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert [c.choices[0].delta.content for c in received] == ["", "This", " is"]
    assert type(caught.value.__cause__).__name__ == "RemoteProtocolError"  # incomplete chunked body
    # The next stream is whole again.
    again = list(client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO, stream=True))
    assert again[-1].choices[0].finish_reason == "stop"


def test_cut_never_delivers_the_usage_chunk(client: openai.OpenAI, server: FakeLLMServer) -> None:
    server.cut_next_stream(after_chunks=1000)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=SAY_HELLO, stream=True, stream_options={"include_usage": True}
        ):
            received.append(chunk)
    assert len(received) == 1 + 8 + 1
    assert all(c.usage is None for c in received)


def test_cut_responses_stream(client: openai.OpenAI, server: FakeLLMServer) -> None:
    server.cut_next_stream(after_chunks=5)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for event in client.responses.create(model="gpt-4o-mini", input="hi", stream=True):
            received.append(event.type)
    assert received == RESPONSE_EVENTS[:5]


# --- per-request headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "error"),
    [("rate_limit", openai.RateLimitError), ("server_error", openai.InternalServerError)],
)
def test_header_scenarios_fail(client: openai.OpenAI, scenario: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=SAY_HELLO, extra_headers={"X-Fake-Scenario": scenario}
        )


def test_header_cut_stream(client: openai.OpenAI) -> None:
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=SAY_HELLO, stream=True,
            extra_headers={"X-Fake-Scenario": "cut_stream", "X-Fake-Cut-After": "2"},
        ):  # fmt: skip
            received.append(chunk)
    assert len(received) == 2
    # cut_stream leaves non-streamed calls alone.
    whole = client.chat.completions.create(
        model="gpt-4o-mini", messages=SAY_HELLO, extra_headers={"X-Fake-Scenario": "cut_stream"}
    )
    assert whole.choices[0].message.content == ANSWER


def test_header_chunks(client: openai.OpenAI) -> None:
    headers = {"X-Fake-Chunks": "3"}
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO, extra_headers=headers)
    assert whole.choices[0].message.content == "This is a"
    assert whole.usage is not None and whole.usage.completion_tokens == 3
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=SAY_HELLO, stream=True, extra_headers=headers
        )
    )
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["This", " is", " a"]
    long = client.chat.completions.create(
        model="gpt-4o-mini", messages=SAY_HELLO, extra_headers={"X-Fake-Chunks": "20"}
    )
    assert long.choices[0].message.content is not None
    assert long.choices[0].message.content.split()[18:] == ["This", "is"]  # the 18 answer words cycle


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Fake-Scenario": "explode"},
        {"X-Fake-Flavor": "acme"},
        {"X-Fake-Chunks": "many"},
        {"X-Fake-Chunks": "-1"},
    ],
)
def test_bad_control_headers_are_400(client: openai.OpenAI, headers: dict[str, str]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO, extra_headers=headers)
    assert "X-Fake" in str(caught.value) or "x-fake" in str(caught.value)


# --- flavors ------------------------------------------------------------------------------------


def test_openrouter_flavor_reports_cost(client: openai.OpenAI) -> None:
    headers = {"X-Fake-Flavor": "openrouter"}
    whole = client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=SAY_HELLO, extra_headers=headers
    )
    assert whole.model == "openai/gpt-4o-mini"
    usage = whole.usage
    assert usage is not None
    assert usage.model_extra == {"cost": 4.1e-05, "is_byok": False}  # 9 * $1/M + 8 * $4/M
    prices = _openai_wire.PROVIDER_PRICES_PER_MTOK
    assert usage.model_extra["cost"] == pytest.approx((9 * prices["input"] + 8 * prices["output"]) / 1e6)
    chunks = list(client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=SAY_HELLO, stream=True, stream_options={"include_usage": True},
        extra_headers=headers,
    ))  # fmt: skip
    assert chunks[-1].usage is not None and chunks[-1].usage.model_dump() == usage.model_dump()


def test_xai_flavor_counts_reasoning_outside_completion(client: openai.OpenAI) -> None:
    usage = client.chat.completions.create(
        model="grok-3-mini", messages=SAY_HELLO, extra_headers={"X-Fake-Flavor": "xai"}
    ).usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 192
    assert usage.completion_tokens == 8
    assert usage.total_tokens == 9 + 8 + 192
    # (9 input * $1/M + 200 output * $4/M) = $0.000809 = 8_090_000 ticks
    assert usage.model_extra == {"cost_in_usd_ticks": 8_090_000}


def test_deepseek_flavor_reports_cache_hits_and_misses(client: openai.OpenAI) -> None:
    usage = client.chat.completions.create(
        model="deepseek-chat", messages=LONG_PROMPT, extra_headers={"X-Fake-Flavor": "deepseek"}
    ).usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == LONG_CACHED
    assert usage.model_extra == {
        "prompt_cache_hit_tokens": LONG_CACHED,
        "prompt_cache_miss_tokens": LONG_PROMPT_TOKENS - LONG_CACHED,
    }


def test_openai_flavor_has_no_extras(client: openai.OpenAI) -> None:
    usage = client.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO).usage
    assert usage is not None and usage.model_extra == {}


# --- recording, errors, lifecycle ---------------------------------------------------------------


def test_recorded_requests_leave_out_credentials(client: openai.OpenAI, server: FakeLLMServer) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini", messages=SAY_HELLO, extra_headers={"api-key": SECRET, "X-Trace": "t-1"}
    )
    (recorded,) = server.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.body == {"model": "gpt-4o-mini", "messages": SAY_HELLO}
    assert recorded.headers["x-trace"] == "t-1"
    assert "authorization" not in recorded.headers and "api-key" not in recorded.headers
    assert SECRET not in repr(recorded)


def test_unknown_path_is_404_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.list()
    assert caught.value.body == {
        "message": "Invalid URL (GET /v1/models)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_invalid_requests_are_400(server: FakeLLMServer) -> None:
    status, body = post_raw(server, "/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = post_raw(server, "/v1/chat/completions", {"model": "gpt-4o-mini"})
    assert (status, body["error"]["param"]) == (400, "messages")
    status, body = post_raw(server, "/v1/chat/completions", chat_body(stream_options={"include_usage": True}))
    assert (status, body["error"]["param"]) == (400, "stream_options")  # only allowed with stream
    status, body = post_raw(server, "/v1/chat/completions", chat_body(max_tokens="ten"))
    assert (status, body["error"]["param"]) == (400, "max_tokens")


def test_chunked_request_body_keeps_the_connection_in_step(server: FakeLLMServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    body = json.dumps(chat_body()).encode()
    try:
        pieces = iter([body[:7], body[7:]])
        connection.request("POST", "/v1/chat/completions", body=pieces, encode_chunked=True)
        first = connection.getresponse()
        assert (first.status, json.loads(first.read())["usage"]["prompt_tokens"]) == (200, 9)
        connection.request("POST", "/v1/chat/completions", body=body)  # same connection, kept alive
        second = connection.getresponse()
        assert (second.status, json.loads(second.read())["usage"]["total_tokens"]) == (200, 17)
    finally:
        connection.close()
    assert [r.body for r in server.requests] == [chat_body(), chat_body()]


def test_lifecycle() -> None:
    fake = FakeLLMServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.base_url
    assert fake.start() is fake
    with pytest.raises(RuntimeError, match="already started"):
        fake.start()
    assert fake.base_url == f"{fake.url}/v1" and fake.url.startswith("http://127.0.0.1:")
    with openai.OpenAI(base_url=fake.base_url, api_key=SECRET, max_retries=0) as own:
        assert own.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO).choices
        began = time.monotonic()
        fake.stop()
        assert time.monotonic() - began < 1
        # The pooled keep-alive connection is dropped too, not left answering.
        with pytest.raises(openai.APIConnectionError):
            own.chat.completions.create(model="gpt-4o-mini", messages=SAY_HELLO)
    fake.stop()  # idempotent


def test_main_serves_until_sigterm() -> None:
    src = str(Path(tokentrail.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = "import sys; from tokentrail.testing.fake_server import main; sys.exit(main(['--port', '0']))"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = line.rsplit(" ", 1)[-1].strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1"), line
        with openai.OpenAI(base_url=base_url, api_key=SECRET, max_retries=0) as remote:
            assert (
                remote.chat.completions.create(model="gpt-4o", messages=SAY_HELLO).model
                == "gpt-4o-2024-08-06"
            )
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "stopped" in out
    assert "POST /v1/chat/completions" in err  # the foreground server logs each request


def test_main_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    from tokentrail.testing.fake_server import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["--port", str(busy.getsockname()[1])]) == 1
    assert "cannot listen" in capsys.readouterr().err


# --- properties of the wire bodies, without HTTP ------------------------------------------------

MODELS = ["gpt-4o-mini", "o3", "gpt-5-mini", "grok-4", "deepseek-reasoner", "my-model"]


@settings(max_examples=40, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    words=st.integers(min_value=1, max_value=1500),
    chunks=st.integers(min_value=0, max_value=40),
    limit=st.none() | st.integers(min_value=0, max_value=600),
    effort=st.none() | st.sampled_from(sorted(_model.REASONING_TOKENS)),
    flavor=st.sampled_from(_openai_wire.FLAVORS),
)
def test_chat_usage_properties(
    model: str, words: int, chunks: int, limit: int | None, effort: str | None, flavor: str
) -> None:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "w " * words}]}
    if limit is not None:
        body["max_completion_tokens"] = limit
    if effort is not None:
        body["reasoning_effort"] = effort
    whole = _openai_wire.chat_completions(WireRequest(body, chunks, flavor, 1, 0))
    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    streamed = _openai_wire.chat_completions(WireRequest(stream_body, chunks, flavor, 1, 0))
    assert isinstance(whole, JsonReply) and isinstance(streamed, StreamReply)
    completion = ChatCompletion.model_validate(whole.body)
    chunk_objects = [
        ChatCompletionChunk.model_validate(json.loads(f.removeprefix("data: "))) for f in streamed.events
    ]
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.prompt_tokens_details is not None
    assert chunk_objects[-1].usage == usage
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunk_objects[:-1])
        == completion.choices[0].message.content
    )

    reasoning = usage.completion_tokens_details.reasoning_tokens or 0
    cached = usage.prompt_tokens_details.cached_tokens or 0
    assert usage.prompt_tokens > 0
    assert cached % 128 == 0 and (cached == 0 or 1024 <= cached < usage.prompt_tokens)
    if flavor == "xai":
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens + reasoning
        billed_output = usage.completion_tokens + reasoning
    else:
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert reasoning <= usage.completion_tokens
        billed_output = usage.completion_tokens
    if limit is not None:
        assert billed_output <= limit
    truncated = completion.choices[0].finish_reason == "length"
    assert truncated == (billed_output < chunks + _model.reasoning_tokens(model, effort))
    units = _openai_wire.provider_cost_units(usage.prompt_tokens, cached, billed_output)
    extra = usage.model_extra or {}
    if flavor == "openrouter":
        assert extra["cost"] == units / 1e8
    if flavor == "xai":
        assert extra["cost_in_usd_ticks"] == units * 100
    if flavor == "deepseek":
        assert extra["prompt_cache_hit_tokens"] + extra["prompt_cache_miss_tokens"] == usage.prompt_tokens


@settings(max_examples=20, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    chunks=st.integers(min_value=0, max_value=30),
    limit=st.none() | st.integers(min_value=0, max_value=400),
)
def test_responses_stream_matches_response(model: str, chunks: int, limit: int | None) -> None:
    body: dict[str, Any] = {"model": model, "input": "hello there", "max_output_tokens": limit}
    whole = _openai_wire.responses(WireRequest(body, chunks, "openai", 1, 0))
    streamed = _openai_wire.responses(WireRequest({**body, "stream": True}, chunks, "openai", 1, 0))
    assert isinstance(whole, JsonReply) and isinstance(streamed, StreamReply)
    response = Response.model_validate(whole.body)
    events = [STREAM_EVENT.validate_python(json.loads(f.split("\ndata: ", 1)[1])) for f in streamed.events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == f"response.{response.status}"
    assert events[-1].response.model_dump() == response.model_dump()
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == response.output_text
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


# --- Gemini wire format (google-genai SDK, Gemini API and Vertex AI paths) ----------------------
# Rules in tokentrail.testing._gemini_wire: a text part costs ceil(words * 4 / 3) tokens with no
# per-message overhead, so "Say hello" is 3 prompt tokens; thoughts sit beside the candidates.

from tokentrail.testing import _gemini_wire  # noqa: E402

GEMINI_HELLO = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}
GEMINI_PATH = "/v1beta/models/gemini-2.5-flash"


def gemini_client(server: FakeLLMServer, **kwargs: Any) -> Any:
    from google import genai

    return genai.Client(api_key="fake-gemini-key", http_options={"base_url": server.url}, **kwargs)


def gemini_body(**generation_config: Any) -> dict[str, Any]:
    return {**GEMINI_HELLO, "generationConfig": generation_config} if generation_config else GEMINI_HELLO


def test_gemini_generate_content_wire_format(server: FakeLLMServer) -> None:
    from google.genai import types

    status, body = post_raw(server, f"{GEMINI_PATH}:generateContent", GEMINI_HELLO)
    assert status == 200
    assert body == {
        "candidates": [
            {"content": {"parts": [{"text": ANSWER}], "role": "model"}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": 3,
            "candidatesTokenCount": 8,
            "totalTokenCount": 11,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}],
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 8}],
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": body["responseId"],
    }
    parsed = types.GenerateContentResponse.model_validate(body)
    assert parsed.usage_metadata is not None and parsed.usage_metadata.total_token_count == 11


def test_gemini_stream_running_usage_ends_at_the_whole_usage(server: FakeLLMServer) -> None:
    _, whole = post_raw(server, f"{GEMINI_PATH}:generateContent", gemini_body(maxOutputTokens=5))
    stream_path = f"{GEMINI_PATH}:streamGenerateContent?alt=sse"
    status, text = post_raw(server, stream_path, gemini_body(maxOutputTokens=5))
    assert status == 200
    frames = sse_frames(text)
    assert all(event is None for event, _ in frames)  # unnamed data frames, no [DONE]
    chunks = [json.loads(data) for _, data in frames]
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == _model.answer_pieces(5)
    assert [c["usageMetadata"]["candidatesTokenCount"] for c in chunks] == [1, 2, 3, 4, 5]  # running totals
    assert all(c["usageMetadata"]["promptTokenCount"] == 3 for c in chunks)
    assert chunks[-1]["usageMetadata"] == whole["usageMetadata"]
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert whole["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    # Without alt=sse the API answers one JSON array of the same chunks.
    status, array = post_raw(server, f"{GEMINI_PATH}:streamGenerateContent", gemini_body(maxOutputTokens=5))
    assert status == 200 and [c["usageMetadata"] for c in array] == [c["usageMetadata"] for c in chunks]


@pytest.mark.parametrize(
    ("model", "config", "thoughts"),
    [
        ("gemini-2.5-flash", {"thinkingConfig": {"thinkingBudget": 300}}, 300),
        ("gemini-2.5-pro", {"thinking_config": {"thinking_budget": -1}}, 192),  # the SDK's spelling
        ("gemini-3-pro-preview", {"thinkingConfig": {"thinkingLevel": "low"}}, 64),
        ("gemini-2.5-flash", {"thinkingConfig": {"thinkingBudget": 0}}, 0),
        ("gemini-2.0-flash", {"thinkingConfig": {"thinkingBudget": 300}}, 0),  # does not think
        ("gemini-2.5-flash", {}, 0),  # only when asked
    ],
)
def test_gemini_thoughts_sit_beside_the_candidates(
    server: FakeLLMServer, model: str, config: dict[str, Any], thoughts: int
) -> None:
    status, body = post_raw(server, f"/v1/models/{model}:generateContent", gemini_body(**config))
    assert status == 200
    usage = body["usageMetadata"]
    assert usage.get("thoughtsTokenCount", 0) == thoughts
    assert usage["candidatesTokenCount"] == 8
    assert usage["totalTokenCount"] == 3 + 8 + thoughts


def test_gemini_max_output_tokens_bounds_thoughts_and_answer(server: FakeLLMServer) -> None:
    body = gemini_body(maxOutputTokens=100, thinkingConfig={"thinkingBudget": 100})
    _, whole = post_raw(server, f"{GEMINI_PATH}:generateContent", body)
    assert whole["candidates"][0] == {"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}
    assert "candidatesTokenCount" not in whole["usageMetadata"]  # zero counts are left out
    assert whole["usageMetadata"]["thoughtsTokenCount"] == 100
    _, text = post_raw(server, f"{GEMINI_PATH}:streamGenerateContent?alt=sse", body)
    (only,) = [json.loads(data) for _, data in sse_frames(text)]
    assert only["usageMetadata"] == whole["usageMetadata"]


def test_gemini_cached_content_tool_use_and_modalities(server: FakeLLMServer) -> None:
    image = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    audio = {"inline_data": {"mime_type": "audio/wav", "data": "UklGRg=="}}
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Say hello"}, image, audio]}],
        "systemInstruction": {"parts": [{"text": "Be brief"}]},
        "cachedContent": "cachedContents/briefing-2000",
        "tools": [{"codeExecution": {}}, {"googleSearch": {}}],
    }
    _, whole = post_raw(server, f"{GEMINI_PATH}:generateContent", body)
    usage = whole["usageMetadata"]
    text_tokens = 3 + 3 + 2000  # prompt, system instruction, the cache
    prompt = text_tokens + _gemini_wire.IMAGE_TOKENS + _gemini_wire.AUDIO_TOKENS
    assert usage["promptTokenCount"] == prompt  # the cache is part of the prompt ...
    assert usage["cachedContentTokenCount"] == 2000  # ... and reported as served from it
    assert usage["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": 2000}]
    assert {d["modality"]: d["tokenCount"] for d in usage["promptTokensDetails"]} == {
        "TEXT": text_tokens, "IMAGE": _gemini_wire.IMAGE_TOKENS, "AUDIO": _gemini_wire.AUDIO_TOKENS,
    }  # fmt: skip
    assert usage["toolUsePromptTokenCount"] == 2 * _gemini_wire.TOOL_USE_PROMPT_TOKENS  # outside the prompt
    assert usage["totalTokenCount"] == prompt + 2 * _gemini_wire.TOOL_USE_PROMPT_TOKENS + 8
    unnamed = {**GEMINI_HELLO, "cachedContent": "cachedContents/abc"}
    _, plain = post_raw(server, f"{GEMINI_PATH}:generateContent", unnamed)
    assert plain["usageMetadata"]["cachedContentTokenCount"] == _gemini_wire.CACHED_CONTENT_TOKENS


def test_gemini_candidate_count(server: FakeLLMServer) -> None:
    _, body = post_raw(server, f"{GEMINI_PATH}:generateContent", gemini_body(candidateCount=3))
    assert [c["index"] for c in body["candidates"]] == [0, 1, 2]
    assert body["usageMetadata"]["candidatesTokenCount"] == 3 * 8


def test_gemini_through_the_sdk_sync_async_and_vertex(server: FakeLLMServer) -> None:
    from google.genai import types

    client = gemini_client(server)
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=50))
    whole = client.models.generate_content(model="gemini-2.5-flash", contents="Say hello", config=config)
    params = {"model": "gemini-2.5-flash", "contents": "Say hello", "config": config}
    chunks = list(client.models.generate_content_stream(**params))
    assert whole.text == "".join(c.text for c in chunks) == ANSWER
    assert whole.usage_metadata == chunks[-1].usage_metadata
    assert whole.usage_metadata is not None and whole.usage_metadata.thoughts_token_count == 50

    async def run_async() -> Any:
        return await client.aio.models.generate_content(model="gemini-2.5-flash", contents="Say hello")

    assert asyncio.run(run_async()).usage_metadata.prompt_token_count == 3
    vertex_client = gemini_client(server, vertexai=True)
    vertex = vertex_client.models.generate_content(model="gemini-2.5-pro", contents="hi")
    assert vertex.usage_metadata is not None and vertex.usage_metadata.traffic_type == "ON_DEMAND"
    assert vertex.create_time is not None
    paths = [r.path for r in server.requests]
    assert paths[0].endswith("/models/gemini-2.5-flash:generateContent")
    assert paths[1].endswith("/models/gemini-2.5-flash:streamGenerateContent")  # query not recorded
    assert "/publishers/google/models/gemini-2.5-pro:generateContent" in paths[-1]
    assert all("x-goog-api-key" not in r.headers for r in server.requests)


def test_gemini_embeddings(server: FakeLLMServer) -> None:
    client = gemini_client(server)  # kept: a dropped genai.Client closes its HTTP client
    result = client.models.embed_content(
        model="gemini-embedding-001", contents=["Say hello", "hi"], config={"output_dimensionality": 16}
    )
    assert result.embeddings is not None and [len(e.values or []) for e in result.embeddings] == [16, 16]
    single = {"content": {"parts": [{"text": "Say hello"}]}}
    status, body = post_raw(server, "/v1beta/models/text-embedding-004:embedContent", single)
    assert status == 200 and len(body["embedding"]["values"]) == 768
    assert body["usageMetadata"] == {"promptTokenCount": 3, "totalTokenCount": 3}
    _, batch = post_raw(server, "/v1beta/models/gemini-embedding-001:batchEmbedContents", {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "Say hello"}]}},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "Say hello"}]}},
    ]})  # fmt: skip
    assert len(batch["embeddings"][0]["values"]) == 3072
    assert batch["embeddings"][0] == batch["embeddings"][1]  # deterministic
    assert batch["usageMetadata"]["promptTokenCount"] == 6


def test_gemini_errors_have_googles_shape(server: FakeLLMServer) -> None:
    from google.genai import errors

    client = gemini_client(server)
    server.fail_next(status=429)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert caught.value.details["error"]["details"][0]["retryDelay"] == "0s"
    with pytest.raises(errors.ServerError) as server_error:
        client.models.generate_content(
            model="gemini-2.5-flash", contents="hi",
            config={"http_options": {"headers": {"X-Fake-Scenario": "server_error"}}},
        )  # fmt: skip
    assert (server_error.value.code, server_error.value.status) == (500, "INTERNAL")
    status, body = post_raw(server, f"{GEMINI_PATH}:generateContent", {"contents": []})
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert "contents is not specified" in body["error"]["message"]
    status, body = post_raw(server, f"{GEMINI_PATH}:countTokens", GEMINI_HELLO)
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"
    status, body = post_raw(server, f"{GEMINI_PATH}:generateContent", b"{oops")
    assert status == 400 and body["error"]["code"] == 400
    anthropic_on_vertex = "/v1/projects/p/locations/l/publishers/anthropic/models/claude-x:rawPredict"
    assert _gemini_wire.match(anthropic_on_vertex) is None  # not ours to answer


def test_gemini_cut_stream(server: FakeLLMServer) -> None:
    from google.genai import types

    server.cut_next_stream(after_chunks=3)
    received = []
    config = types.GenerateContentConfig(max_output_tokens=20)
    client = gemini_client(server)
    with pytest.raises(Exception) as caught:  # the SDK's own transport error
        for chunk in client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="Say hello", config=config
        ):
            received.append(chunk)
    assert "RemoteProtocolError" in type(caught.value).__name__ or "incomplete" in str(caught.value).lower()
    assert [c.text for c in received] == ["This", " is", " a"]
    assert received[-1].usage_metadata is not None
    assert received[-1].usage_metadata.candidates_token_count == 3  # the running total when it broke


GEMINI_MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-flash-preview", "gemini-2.0-flash"]


@settings(max_examples=30, deadline=None)
@given(
    model=st.sampled_from(GEMINI_MODELS),
    words=st.integers(min_value=1, max_value=800),
    chunks=st.integers(min_value=0, max_value=30),
    limit=st.none() | st.integers(min_value=0, max_value=400),
    budget=st.none() | st.integers(min_value=-1, max_value=600),
    candidates=st.integers(min_value=1, max_value=3),
    server_tools=st.integers(min_value=0, max_value=2),
)
def test_gemini_usage_properties(
    model: str, words: int, chunks: int, limit: int | None, budget: int | None, candidates: int,
    server_tools: int,
) -> None:  # fmt: skip
    from google.genai import types

    config: dict[str, Any] = {"candidateCount": candidates}
    if limit is not None:
        config["maxOutputTokens"] = limit
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget}
    body = {"contents": [{"parts": [{"text": "w " * words}]}], "generationConfig": config,
            "tools": [{"codeExecution": {}}] * server_tools}  # fmt: skip
    whole_handler = _gemini_wire.match(f"/v1/models/{model}:generateContent")
    stream_handler = _gemini_wire.match(f"/v1/models/{model}:streamGenerateContent", "alt=sse")
    assert whole_handler is not None and stream_handler is not None
    whole = whole_handler(WireRequest(body, chunks, "openai", 1, 0))
    streamed = stream_handler(WireRequest(body, chunks, "openai", 1, 0))
    assert isinstance(whole, JsonReply) and isinstance(streamed, StreamReply)
    response = types.GenerateContentResponse.model_validate(whole.body)
    parse = types.GenerateContentResponse.model_validate
    stream = [parse(json.loads(frame.removeprefix("data: "))) for frame in streamed.events]
    usage = response.usage_metadata
    assert usage is not None and usage == stream[-1].usage_metadata
    running = [c.usage_metadata.candidates_token_count or 0 for c in stream if c.usage_metadata]
    assert running == sorted(running)  # cumulative, never a delta
    prompt, answer = usage.prompt_token_count or 0, usage.candidates_token_count or 0
    thoughts, tool_use = usage.thoughts_token_count or 0, usage.tool_use_prompt_token_count or 0
    assert usage.total_token_count == prompt + answer + thoughts + tool_use
    assert prompt == _model.count_tokens("w " * words)
    assert tool_use == server_tools * _gemini_wire.TOOL_USE_PROMPT_TOKENS
    assert answer % candidates == 0
    if limit is not None:
        assert thoughts + answer // candidates <= limit
    if not model.startswith(("gemini-2.5", "gemini-3")) or not budget:
        assert thoughts == 0
    assert "".join(c.text or "" for c in stream) == (response.text or "")


# --- Anthropic Messages ---------------------------------------------------------------------------
# Prompt tokens (tokentrail.testing._anthropic_wire): each message 3 + its text, a system prompt 3 +
# its text, the request 3 more; so SAY_HELLO is 9 again. input_tokens EXCLUDES cache reads/writes.

CLAUDE = "claude-haiku-4-5"
CLAUDE_SNAPSHOT = "claude-haiku-4-5-20251001"


@pytest.fixture(scope="module")
def claude(server: FakeLLMServer) -> Iterator[Any]:
    import anthropic

    with anthropic.Anthropic(base_url=server.url, api_key=SECRET, max_retries=0) as sync_client:
        yield sync_client


def claude_body(**params: Any) -> dict[str, Any]:
    return {"model": CLAUDE, "max_tokens": 256, "messages": SAY_HELLO, **params}


def test_anthropic_message(claude: Any, server: FakeLLMServer) -> None:
    message = claude.messages.create(**claude_body())
    assert message.model == CLAUDE_SNAPSHOT and message.stop_reason == "end_turn"
    assert message.content[0].text == ANSWER
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (9, 8, 0)
    assert usage.cache_creation_input_tokens == 0 and usage.service_tier == "standard"
    assert server.requests[-1].path == "/v1/messages" and "x-api-key" not in server.requests[-1].headers


def test_anthropic_stream_wire_format(server: FakeLLMServer) -> None:
    status, whole = post_raw(server, "/v1/messages", claude_body())
    status_streamed, text = post_raw(server, "/v1/messages", claude_body(stream=True))
    assert status == status_streamed == 200
    frames = sse_frames(text)
    names = [name for name, _ in frames]
    assert names[:2] == ["message_start", "ping"]
    assert names[2:5] == ["content_block_start", "content_block_delta", "content_block_delta"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    data = [json.loads(payload) for _, payload in frames]
    assert all(d["type"] == name for d, (name, _) in zip(data, frames, strict=True))
    start = data[0]["message"]["usage"]
    assert start["output_tokens"] == 1 and start["input_tokens"] == whole["usage"]["input_tokens"]
    delta = data[-2]["usage"]
    # Cumulative: message_delta's counts ARE the message's, not increments over message_start.
    assert {k: v for k, v in whole["usage"].items() if k in delta} == delta
    assert delta["output_tokens"] == whole["usage"]["output_tokens"] == 8
    assert data[-2]["delta"]["stop_reason"] == whole["stop_reason"]


def test_anthropic_stream_helper_equals_message(claude: Any) -> None:
    body = claude_body(thinking={"type": "adaptive"}, output_config={"effort": "low"})
    message = claude.messages.create(**body)
    with claude.messages.stream(**body) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER and final.content[1].text == ANSWER
    assert final.usage == message.usage
    assert message.usage.output_tokens == 64 + 8 and message.usage.output_tokens_details.thinking_tokens == 64
    assert [block.type for block in message.content] == ["thinking", "text"]


def test_anthropic_prompt_cache_ttl_split_write_then_read(claude: Any) -> None:
    system = [
        {"type": "text", "text": "w " * 1500, "cache_control": {"type": "ephemeral", "ttl": "1h"}},  # 2000
        {"type": "text", "text": "x " * 300, "cache_control": {"type": "ephemeral"}},  # 400
    ]
    first = claude.messages.create(**claude_body(system=system)).usage
    assert (
        first.cache_creation.ephemeral_1h_input_tokens,
        first.cache_creation.ephemeral_5m_input_tokens,
    ) == (
        2003,
        400,
    )
    assert first.cache_creation_input_tokens == 2403 and first.cache_read_input_tokens == 0
    assert first.input_tokens == 9  # the rest: the message (6) and the reply priming (3)
    second = claude.messages.create(**claude_body(system=system)).usage
    assert (second.cache_read_input_tokens, second.cache_creation_input_tokens, second.input_tokens) == (
        2403,
        0,
        9,
    )
    changed = [system[0], {**system[1], "text": "y " * 300}]
    third = claude.messages.create(**claude_body(system=changed)).usage
    assert (third.cache_read_input_tokens, third.cache_creation.ephemeral_5m_input_tokens) == (2003, 400)
    other_model = claude.messages.create(**{**claude_body(system=system), "model": "claude-sonnet-4-6"}).usage
    assert other_model.cache_read_input_tokens == 0  # caches are per model


def test_anthropic_short_prefix_and_automatic_caching(claude: Any, server: FakeLLMServer) -> None:
    short = claude_body(system=[{"type": "text", "text": "Be brief", "cache_control": {"type": "ephemeral"}}])
    assert claude.messages.create(**short).usage.cache_creation_input_tokens == 0  # below 1024 tokens
    long_messages = [{"role": "user", "content": "z " * 900}]  # 1200 tokens
    automatic = {**claude_body(), "messages": long_messages, "cache_control": {"type": "ephemeral"}}
    assert claude.messages.create(**automatic).usage.cache_creation_input_tokens == 3 + 1200
    assert claude.messages.create(**automatic).usage.cache_read_input_tokens == 3 + 1200
    server.reset()  # empties the prompt cache too
    assert claude.messages.create(**automatic).usage.cache_read_input_tokens == 0


def test_anthropic_thinking_limits_web_search_and_tiers(claude: Any) -> None:
    thinking = claude.messages.create(
        **claude_body(max_tokens=100, thinking={"type": "enabled", "budget_tokens": 1024})
    )
    assert thinking.stop_reason == "max_tokens" and thinking.usage.output_tokens == 100  # all spent thinking
    assert [block.type for block in thinking.content] == ["thinking"]
    searched = claude.messages.create(
        **claude_body(
            tools=[{"type": "web_search_20250305", "name": "web_search"}], service_tier="auto", speed="fast"
        )
    )
    usage = searched.usage
    assert usage.server_tool_use.web_search_requests == 1
    tool_tokens = _model.count_tokens(json.dumps({"type": "web_search_20250305", "name": "web_search"}))
    assert usage.input_tokens == 9 + tool_tokens + _anthropic_wire.WEB_SEARCH_RESULT_TOKENS
    assert (usage.service_tier, usage.speed) == ("priority", "fast")
    assert [block.type for block in searched.content] == ["server_tool_use", "web_search_tool_result", "text"]


def test_anthropic_count_tokens_matches_the_prompt(claude: Any) -> None:
    system = "w " * 30  # 40 tokens + 3
    counted = claude.messages.count_tokens(model=CLAUDE, messages=SAY_HELLO, system=system)
    assert (
        counted.input_tokens
        == 9 + 43
        == claude.messages.create(**claude_body(system=system)).usage.input_tokens
    )


def test_anthropic_errors_have_anthropics_shape(claude: Any, server: FakeLLMServer) -> None:
    import anthropic

    server.fail_next(429)
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(**claude_body())
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert limited.value.response.headers["retry-after"] == "0"
    server.fail_next(529)
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(**claude_body())
    with pytest.raises(anthropic.InternalServerError) as failed:
        claude.messages.create(**claude_body(), extra_headers={"X-Fake-Scenario": "server_error"})
    error = {"type": "api_error", "message": "Internal server error."}
    assert failed.value.body == {"type": "error", "error": error, "request_id": "req_fake"}
    status, body = post_raw(server, "/v1/messages", {"model": CLAUDE, "messages": SAY_HELLO})
    assert status == 400 and body["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }


def test_anthropic_cut_stream_ends_with_an_error_event(claude: Any, server: FakeLLMServer) -> None:
    import anthropic

    status, text = post_raw(server, "/v1/messages?beta=true", claude_body(stream=True),
                            headers={"X-Fake-Scenario": "cut_stream", "X-Fake-Cut-After": "3"})  # fmt: skip
    names = [name for name, _ in sse_frames(text)]
    assert status == 200 and names == ["message_start", "ping", "content_block_start", "error"]
    server.cut_next_stream(1000)  # however late the cut, the usage and the end never arrive
    received = []
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        for event in claude.messages.create(**claude_body(stream=True)):
            received.append(event.type)
    assert "message_delta" not in received and received[-1] == "content_block_stop"


@settings(max_examples=25, deadline=None)
@given(
    chunks=st.integers(0, 30),
    limit=st.integers(1, 400),
    thinking=st.sampled_from([None, {"type": "adaptive"}, {"type": "enabled", "budget_tokens": 50}]),
)
def test_anthropic_stream_matches_message(chunks: int, limit: int, thinking: dict[str, Any] | None) -> None:
    body = claude_body(max_tokens=limit, **({"thinking": thinking} if thinking else {}))
    wire = _anthropic_wire.AnthropicWire()
    whole = wire.messages(WireRequest(body, chunks, "openai", 1, 0))
    streamed = wire.messages(WireRequest({**body, "stream": True}, chunks, "openai", 1, 0))
    assert isinstance(whole, JsonReply) and isinstance(streamed, StreamReply)
    events = [
        json.loads(frame.split("data: ", 1)[1]) for frame in "".join(streamed.events).split("\n\n") if frame
    ]
    delta = next(e for e in events if e["type"] == "message_delta")["usage"]
    usage = whole.body["usage"]
    assert {k: v for k, v in usage.items() if k in delta} == delta
    assert usage["output_tokens"] <= limit
    assert usage["output_tokens"] == usage["output_tokens_details"]["thinking_tokens"] + (
        len("".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta").split())
    )


def test_gemini_control_headers(server: FakeLLMServer) -> None:
    client = gemini_client(server)

    def config(**headers: str) -> dict[str, Any]:
        return {"http_options": {"headers": headers}}

    short = client.models.generate_content(
        model="gemini-2.5-flash", contents="hi", config=config(**{"X-Fake-Chunks": "3"})
    )
    assert short.text == "This is a"
    assert short.usage_metadata is not None and short.usage_metadata.candidates_token_count == 3
    received = []
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own transport error
        cut = config(**{"X-Fake-Scenario": "cut_stream", "X-Fake-Cut-After": "2"})
        for chunk in client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="hi", config=cut
        ):
            received.append(chunk.text)
    assert received == ["This", " is"]
    from google.genai import errors

    with pytest.raises(errors.ClientError) as limited:
        client.models.generate_content(
            model="gemini-2.5-flash", contents="hi", config=config(**{"X-Fake-Scenario": "rate_limit"})
        )
    assert limited.value.status == "RESOURCE_EXHAUSTED"
