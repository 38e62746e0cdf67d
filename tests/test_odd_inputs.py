"""Odd but real inputs from servers: usage of the wrong type or negative, and stream usage chunks
of every shape. The application sees what it would without tokentrail; nothing is a free call."""

from __future__ import annotations

import json
import types
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tokentrail
from openai_wire import MODEL, FakeOpenAI, chat_chunks, chat_completion, chat_usage, http_module
from tokentrail import semconv as sc
from tokentrail.providers._read import field, fields

MESSAGES = [{"role": "user", "content": "hi"}]


def answering(body: dict) -> Any:
    def handler(path: str, _body: dict) -> Any:
        return http_module().Response(200, json=body)

    return handler


WRONG_TYPES = {"list": [1, 2], "true": True, "false": False, "str": "12", "int": 42}


@pytest.mark.parametrize("usage", list(WRONG_TYPES.values()), ids=list(WRONG_TYPES))
def test_usage_of_the_wrong_type_is_missing_never_a_free_call(recorded, usage):
    body = chat_completion(chat_usage())
    body["usage"] = usage
    FakeOpenAI(extra=answering(body)).client().chat.completions.create(model=MODEL, messages=MESSAGES)
    (call,) = recorded.calls
    assert call.usage is None and call.cost is None
    assert recorded.span().attributes[sc.USAGE_MISSING] is True
    assert recorded.points(sc.METRIC_TOKEN_USAGE) == []


def test_negative_usage_is_flagged_and_kept_off_the_histograms(recorded, caplog):
    # Before: the OpenTelemetry SDK printed two lines on stderr per call (histograms refuse
    # negative values) and the call was recorded unflagged in the metrics.
    body = chat_completion(chat_usage(prompt=-5, completion=30, cached=0))
    client = FakeOpenAI(extra=answering(body)).client()
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    tokentrail.flush()
    span = recorded.spans()[0]
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == -5
    assert span.attributes[sc.USAGE_INCONSISTENT] is True
    assert any("negative" in problem for problem in span.attributes[sc.USAGE_PROBLEMS])
    output = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="output")
    assert [(p.count, p.sum) for p in output] == [(3, 90)]
    assert recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input") == []
    (flagged,) = recorded.points(sc.METRIC_INCONSISTENT_USAGE)
    assert flagged.value == 3
    refusals = [r for r in caplog.records if r.name.startswith("opentelemetry")]
    assert refusals == []  # the SDK logs (on stderr, by default) each negative value it refuses


def _stream(events: list[dict]) -> bytes:
    lines = [f"data: {json.dumps(event, separators=(',', ':'))}\n\n" for event in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def _null_usage_last(include_usage: bool) -> list[dict]:
    """A server that answers include_usage with a final chunk of no choices and usage null."""
    events = chat_chunks(["Hel", "lo"], chat_usage(), include_usage)
    if include_usage:
        events[-1]["usage"] = None
    return events


def _usage_on_last_content_chunk(include_usage: bool) -> list[dict]:
    """A server that puts the usage on the finishing content chunk and sends no usage chunk."""
    events = chat_chunks(["Hel", "lo"], chat_usage(), include_usage)
    if include_usage:
        events.pop()
        events[-1]["usage"] = chat_usage()
    return events


def _no_usage_member_last(include_usage: bool) -> list[dict]:
    """A final chunk of no choices and no usage member at all."""
    events = chat_chunks(["Hel", "lo"], chat_usage(), include_usage)
    if include_usage:
        del events[-1]["usage"]
        for event in events:
            event.pop("usage", None)
    return events


@pytest.mark.parametrize("shape", [_null_usage_last, _usage_on_last_content_chunk, _no_usage_member_last])
@pytest.mark.parametrize("streaming_async", [False, True], ids=["sync", "async"])
async def test_the_usage_chunk_is_withheld_whatever_its_shape(recorded, shape, streaming_async):
    def handler(path: str, body: dict) -> Any:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return http_module().Response(
            200, content=_stream(shape(include_usage)), headers={"content-type": "text/event-stream"}
        )

    fake = FakeOpenAI(extra=handler)

    async def read() -> list[str]:
        client = fake.client(is_async=streaming_async)
        if streaming_async:
            stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            chunks = [chunk async for chunk in stream]
        else:
            chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
        for chunk in chunks:
            assert chunk.choices[0] is not None  # an application's choices[0] loop never fails
        return [chunk.model_dump_json(exclude_unset=True) for chunk in chunks]

    instrumented = await read()
    assert fake.sent[-1]["body"]["stream_options"] == {"include_usage": True}
    (call,) = recorded.calls
    if shape is _usage_on_last_content_chunk:
        assert call.usage is not None and call.usage.input_tokens == chat_usage()["prompt_tokens"]
    tokentrail.uninstrument()
    assert instrumented == await read()  # exactly what the application gets without tokentrail


class _Extra(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    input_tokens: int | None = None
    speed: str | None = None


_NAMES = ("input_tokens", "speed", "cache_read", "absent")


@settings(max_examples=80, deadline=None)
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "input_tokens": st.one_of(st.none(), st.integers(0, 9)),
            "speed": st.one_of(st.none(), st.text(max_size=3)),
            "cache_read": st.one_of(st.none(), st.integers(0, 9), st.text(max_size=3)),
        },
    ),
    shape=st.sampled_from(["pydantic", "dict", "namespace", "none"]),
)
def test_reading_many_fields_at_once_reads_what_one_by_one_reads(values, shape):
    # How a stream's usage objects are merged (anthropic): one look at the object for every name.
    obj = {
        "pydantic": lambda: _Extra(**values),  # cache_read: an extra field
        "dict": lambda: dict(values),
        "namespace": lambda: types.SimpleNamespace(**values),
        "none": lambda: None,
    }[shape]()
    expected = [field(obj, name) for name in _NAMES]
    assert fields(obj, _NAMES) == expected
    assert expected == [None if obj is None else values.get(name) for name in _NAMES]
