"""The real openai SDK over a mock transport: every endpoint, sync and async, streamed and not."""

from __future__ import annotations

import gc
import json
import logging
import math
from pathlib import Path
from typing import Any

import genai_prices
import openai
import pytest

import tokentrail
from openai_wire import MODEL, SNAPSHOT, FakeOpenAI, chat_helpers, chat_usage, has_responses_api, http_module
from tokentrail import semconv as sc
from tokentrail.providers import openai as openai_provider
from tokentrail.providers._stainless import Instrumentation

MESSAGES = [{"role": "user", "content": "Say hello"}]


def expected_cost(model: str, provider: str = "openai", context: dict | None = None, **tokens: int) -> float:
    """The cost genai-prices computes for these token counts (our figure must equal it)."""
    usage = genai_prices.Usage(**tokens)
    return float(
        genai_prices.calc_price(usage, model, provider_id=provider, price_context=context).total_price
    )


def assert_chat_span(span: Any, *, stream: bool) -> None:
    attributes = dict(span.attributes)
    assert span.name == f"chat {MODEL}"
    assert span.kind.name == "CLIENT"
    assert attributes[sc.OPERATION_NAME] == "chat"
    assert attributes[sc.PROVIDER_NAME] == "openai"
    assert attributes[sc.REQUEST_MODEL] == MODEL
    assert attributes[sc.RESPONSE_MODEL] == SNAPSHOT
    assert attributes[sc.RESPONSE_ID] == "chatcmpl-abc123"
    assert attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attributes[sc.SERVER_ADDRESS] == "api.openai.com"
    assert attributes[sc.SERVER_PORT] == 443
    assert attributes[sc.USAGE_INPUT_TOKENS] == 1200
    assert attributes[sc.USAGE_OUTPUT_TOKENS] == 30
    assert attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 1024
    assert attributes[sc.OPENAI_RESPONSE_SERVICE_TIER] == "default"
    cost = expected_cost(SNAPSHOT, input_tokens=1200, cache_read_tokens=1024, output_tokens=30,
                         context={"service_tier": "default"})  # fmt: skip
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    assert attributes[sc.COST_CURRENCY] == "USD"
    assert attributes[sc.COST_SOURCE] == "local"
    assert attributes[sc.COST_USD_MICROS] == round(cost * 1e6)
    assert math.isclose(attributes[sc.COST_INPUT] + attributes[sc.COST_OUTPUT], cost, rel_tol=1e-9)
    assert (sc.REQUEST_STREAM in attributes) is stream
    if stream:
        assert attributes[sc.REQUEST_STREAM] is True
        assert attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
    assert sc.STREAM_INCOMPLETE not in attributes
    assert sc.INPUT_MESSAGES not in attributes and sc.OUTPUT_MESSAGES not in attributes


def test_chat_completion(recorded):
    fake = FakeOpenAI()
    response = fake.client().chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0.2, max_tokens=50
    )
    assert response.choices[0].message.content == "Hello there!"
    span = recorded.span()
    assert_chat_span(span, stream=False)
    assert span.attributes[sc.REQUEST_TEMPERATURE] == 0.2
    assert span.attributes[sc.REQUEST_MAX_TOKENS] == 50
    # Metrics: one data point per token type with the exact count, and the cost.
    (input_point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input")
    (output_point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="output")
    assert (input_point.sum, input_point.count, output_point.sum) == (1200, 1, 30)
    assert input_point.attributes[sc.RESPONSE_MODEL] == SNAPSHOT
    assert input_point.attributes[sc.PROVIDER_NAME] == "openai"
    (cost_point,) = recorded.points(sc.METRIC_OPERATION_COST)
    assert math.isclose(cost_point.sum, span.attributes[sc.COST_AMOUNT], rel_tol=1e-12)
    assert list(cost_point.explicit_bounds) == list(sc.COST_BUCKETS)
    (duration_point,) = recorded.points(sc.METRIC_OPERATION_DURATION)
    assert duration_point.count == 1 and duration_point.sum > 0
    assert list(duration_point.explicit_bounds) == list(sc.DURATION_BUCKETS)
    (cache_point,) = recorded.points(sc.METRIC_TOKEN_PARTS, gen_ai__token__type="cache_read")
    assert cache_point.value == 1024
    # Metric attributes stay low-cardinality: no response id, no user data.
    for points in recorded.metrics().values():
        for point in points:
            assert sc.RESPONSE_ID not in point.attributes
    # The sink got the same facts.
    (call,) = recorded.calls
    assert call.usage.input_tokens == 1200 and call.cost.total == span.attributes[sc.COST_AMOUNT]
    assert call.trace_id == format(span.context.trace_id, "032x")


def test_stream_without_include_usage_records_usage_and_hides_the_extra_chunk(recorded):
    fake = FakeOpenAI()
    client = fake.client()
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    # We asked the API for usage ...
    assert fake.sent[-1]["body"]["stream_options"] == {"include_usage": True}
    assert_chat_span(recorded.span(), stream=True)
    # ... and the application received exactly what it gets without tokentrail.
    tokentrail.uninstrument()
    plain = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert "stream_options" not in fake.sent[-1]["body"]
    assert [c.model_dump_json(exclude_unset=True) for c in chunks] == [
        c.model_dump_json(exclude_unset=True) for c in plain
    ]
    assert all(c.usage is None and c.choices for c in chunks)


@pytest.mark.parametrize("asked_for_usage", [False, True])
def test_the_usage_chunk_we_asked_for_is_read_from_its_event_not_parsed_by_the_sdk(
    recorded, monkeypatch, asked_for_usage
):
    client = FakeOpenAI().client()
    parsed: list[Any] = []
    null_usage_seen = []
    process = client._process_response_data

    def counting(*args: Any, **kwargs: Any) -> Any:
        data = kwargs.get("data")
        null_usage_seen.append(isinstance(data, dict) and "usage" in data and data["usage"] is None)
        parsed.append(process(*args, **kwargs))
        return parsed[-1]

    monkeypatch.setattr(client, "_process_response_data", counting)
    extra = {"stream_options": {"include_usage": True}} if asked_for_usage else {}
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **extra)
    assert type(stream) is openai.Stream  # the SDK's own object, not a stand-in
    chunks = list(stream)
    assert parsed == chunks  # the SDK parsed exactly what the application received
    assert (chunks[-1].usage is not None) is asked_for_usage
    # The "usage": null we caused on every chunk was stripped before the SDK read it; an
    # application that asked for usage gets the chunks as sent.
    assert any(null_usage_seen) is asked_for_usage
    assert_chat_span(recorded.span(), stream=True)


async def test_async_usage_chunk_is_read_from_its_event(recorded, monkeypatch):
    client = FakeOpenAI().client(is_async=True)
    parsed: list[Any] = []
    process = client._process_response_data
    monkeypatch.setattr(
        client, "_process_response_data", lambda **kw: parsed.append(process(**kw)) or parsed[-1]
    )
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert type(stream) is openai.AsyncStream
    chunks = [chunk async for chunk in stream]
    assert parsed == chunks and all(c.usage is None and c.choices for c in chunks)
    assert_chat_span(recorded.span(), stream=True)


def test_a_client_with_its_own_sse_decoder_still_gets_exactly_its_chunks(recorded, monkeypatch):
    # A decoder class of the client's own is never touched: the usage chunk is parsed by the SDK
    # and hidden from the application (the fallback), and the usage is recorded all the same.
    from openai._streaming import SSEDecoder

    class OwnDecoder(SSEDecoder):
        pass

    client = FakeOpenAI().client()
    monkeypatch.setattr(client, "_make_sse_decoder", OwnDecoder)
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert type(stream._decoder) is OwnDecoder
    assert chunks and all(c.usage is None and c.choices for c in chunks)
    assert all("usage" not in c.model_fields_set for c in chunks)
    assert_chat_span(recorded.span(), stream=True)


def test_the_stream_keeps_its_own_decoder_object(recorded):
    from openai._streaming import SSEDecoder

    stream = FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    decoder = stream._decoder
    list(stream)
    assert stream._decoder is decoder and isinstance(decoder, SSEDecoder)
    assert_chat_span(recorded.span(), stream=True)


def test_stream_with_include_usage_keeps_the_usage_chunk(recorded):
    fake = FakeOpenAI()
    chunks = list(
        fake.client().chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1200
    assert_chat_span(recorded.span(), stream=True)


def test_caller_stream_options_are_not_mutated(recorded):
    fake = FakeOpenAI()
    options = {"include_obfuscation": False}
    list(
        fake.client().chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options=options
        )
    )
    assert options == {"include_obfuscation": False}
    assert fake.sent[-1]["body"]["stream_options"] == {"include_obfuscation": False, "include_usage": True}


@pytest.mark.tokentrail(stream_usage="off")
def test_stream_usage_injection_can_be_turned_off(recorded):
    fake = FakeOpenAI()
    list(fake.client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert "stream_options" not in fake.sent[-1]["body"]
    attributes = recorded.span().attributes
    assert attributes[sc.USAGE_MISSING] is True
    assert sc.COST_AMOUNT not in attributes


def test_stream_usage_equals_non_stream_usage(recorded):
    fake = FakeOpenAI()
    client = fake.client()
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    plain, streamed = recorded.calls
    assert plain.usage == streamed.usage
    assert plain.cost == streamed.cost


async def test_async_chat_and_stream(recorded):
    fake = FakeOpenAI()
    client = fake.client(is_async=True)
    response = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert response.usage.prompt_tokens == 1200
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert len(chunks) == 6 and all(c.choices for c in chunks)
    plain, streamed = recorded.spans()
    assert_chat_span(plain, stream=False)
    assert_chat_span(streamed, stream=True)


def test_stream_closed_early_ends_span_once(recorded):
    fake = FakeOpenAI()
    stream = fake.client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    stream.close()  # a second close must not end the span again
    span = recorded.span()
    assert span.attributes[sc.STREAM_INCOMPLETE] is True
    assert span.attributes[sc.USAGE_MISSING] is True
    assert span.attributes[sc.RESPONSE_MODEL] == SNAPSHOT


def test_stream_used_as_context_manager_and_left_early(recorded):
    fake = FakeOpenAI()
    with fake.client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        for _chunk in stream:
            break
    assert recorded.span().attributes[sc.STREAM_INCOMPLETE] is True


def test_abandoned_stream_ends_span_when_collected(recorded):
    fake = FakeOpenAI()
    stream = fake.client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    next(iter(stream))
    assert recorded.spans() == []
    del stream
    gc.collect()
    assert recorded.span().attributes[sc.STREAM_INCOMPLETE] is True


@pytest.mark.parametrize("read", [0, 2])
def test_a_dropped_stream_ends_its_call_at_once_without_the_cycle_collector(recorded, read):
    # The SDK's stream object would be in a reference cycle with its own item generator; the
    # follower's is made over a copy, so dropping the stream frees it (and ends the call) at once.
    client = FakeOpenAI().client()
    gc.collect()
    gc.disable()
    try:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        chunks = [next(stream) for _ in range(read)]
        assert recorded.spans() == []
        del stream
        (span,) = recorded.spans()
    finally:
        gc.enable()
    assert span.attributes[sc.STREAM_INCOMPLETE] is True
    assert len(chunks) == read
    assert (sc.RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes) is (read > 0)


def test_a_stream_never_read_before_exit_is_recorded_and_exit_does_not_wait(tmp_path):
    # The first call to end is a stream the application never read, dropped at interpreter exit:
    # it is finished then, synchronously (no thread can start during shutdown), into the ledger.
    import subprocess
    import sys
    import textwrap

    from ledger_data import raw_rows

    ledger = tmp_path / "exit.sqlite"
    app = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import tokentrail
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        tokentrail.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider(),
                              ledger={str(ledger)!r})
        from openai_wire import FakeOpenAI
        stream = FakeOpenAI().client().chat.completions.create(
            model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}], stream=True)
        print("EXITING", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", app], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "EXITING" in done.stdout, done.stderr
    (row,) = raw_rows(ledger)
    assert row["incomplete"] == 1 and row["stream"] == 1 and row["request_model"] == "gpt-4o-mini"


async def test_async_stream_closed_early(recorded):
    fake = FakeOpenAI()
    stream = await fake.client(is_async=True).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    async for _chunk in stream:
        break
    await stream.close()
    assert recorded.span().attributes[sc.STREAM_INCOMPLETE] is True


def test_stream_helper(recorded):
    fake = FakeOpenAI()
    with chat_helpers(fake.client()).stream(model=MODEL, messages=MESSAGES) as stream:
        text = "".join(event.delta for event in stream if event.type == "content.delta")
        final = stream.get_final_completion()
    assert text == "Hello there!" and final.choices[0].message.content == "Hello there!"
    assert_chat_span(recorded.span(), stream=True)


async def test_async_stream_helper(recorded):
    fake = FakeOpenAI()
    async with chat_helpers(fake.client(is_async=True)).stream(model=MODEL, messages=MESSAGES) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "Hello there!"
    assert_chat_span(recorded.span(), stream=True)


def test_parse_helper(recorded):
    fake = FakeOpenAI(words=['{"answer": "hi"}'])
    from pydantic import BaseModel

    class Answer(BaseModel):
        answer: str

    parsed = chat_helpers(fake.client()).parse(model=MODEL, messages=MESSAGES, response_format=Answer)
    assert parsed.choices[0].message.parsed.answer == "hi"
    span = recorded.span()
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 1200
    assert span.attributes[sc.OUTPUT_TYPE] == "json"


NO_RESPONSES_API = pytest.mark.skipif(
    not has_responses_api(), reason="this openai has no Responses API (1.66+)"
)


@NO_RESPONSES_API
def test_responses_create_and_stream(recorded):
    fake = FakeOpenAI()
    client = fake.client()
    response = client.responses.create(model="gpt-5", input="Say hi", instructions="Be brief")
    assert response.output_text == "Hi from responses"
    events = list(client.responses.create(model="gpt-5", input="Say hi", stream=True))
    assert events[-1].type == "response.completed"
    with client.responses.stream(model="gpt-5", input="Say hi") as stream:
        final = stream.get_final_response()
    assert final.usage.input_tokens == 1500
    cost = expected_cost("gpt-5-2025-08-07", input_tokens=1500, cache_read_tokens=1280, output_tokens=300,
                         output_reasoning_tokens=128, context={"service_tier": "default"})  # fmt: skip
    spans = recorded.spans()
    assert len(spans) == 3
    for span in spans:
        attributes = span.attributes
        assert span.name == "chat gpt-5"
        assert attributes[sc.RESPONSE_MODEL] == "gpt-5-2025-08-07"
        assert attributes[sc.USAGE_INPUT_TOKENS] == 1500
        assert attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 1280
        assert attributes[sc.USAGE_OUTPUT_TOKENS] == 300
        assert attributes[sc.USAGE_REASONING_OUTPUT_TOKENS] == 128
        assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    assert recorded.calls[0].usage == recorded.calls[1].usage == recorded.calls[2].usage


@NO_RESPONSES_API
async def test_async_responses(recorded):
    fake = FakeOpenAI()
    client = fake.client(is_async=True)
    await client.responses.create(model="gpt-5", input="Say hi")
    stream = await client.responses.create(model="gpt-5", input="Say hi", stream=True)
    [event async for event in stream]
    assert [s.attributes[sc.USAGE_OUTPUT_TOKENS] for s in recorded.spans()] == [300, 300]


def test_embeddings(recorded):
    fake = FakeOpenAI()
    result = fake.client().embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
    )
    assert len(result.data) == 2
    span = recorded.span()
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes[sc.OPERATION_NAME] == "embeddings"
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 8
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 0
    assert span.attributes[sc.REQUEST_ENCODING_FORMATS] == ("float",)
    assert math.isclose(
        span.attributes[sc.COST_AMOUNT], expected_cost("text-embedding-3-small", input_tokens=8), rel_tol=1e-9
    )
    assert recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="output") == []


def test_legacy_completions(recorded):
    fake = FakeOpenAI()
    client = fake.client()
    result = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hello")
    assert result.choices[0].text == " world"
    chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hello", stream=True))
    assert [c.choices[0].text for c in chunks] == [" wor", "ld"]
    plain, streamed = recorded.spans()
    for span in (plain, streamed):
        assert span.attributes[sc.OPERATION_NAME] == "text_completion"
        assert span.attributes[sc.USAGE_INPUT_TOKENS] == 5
        assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 2
        assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("length",)


def test_with_raw_response(recorded):
    fake = FakeOpenAI()
    raw = fake.client().chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.headers["content-type"].startswith("application/json")
    span = recorded.span()  # ended at once: the body was already read
    assert_chat_span(span, stream=False)
    assert raw.parse().usage.prompt_tokens == 1200
    assert len(recorded.spans()) == 1


def test_with_raw_response_stream(recorded):
    fake = FakeOpenAI()
    raw = fake.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert chunks[-1].usage.prompt_tokens == 1200
    assert_chat_span(recorded.span(), stream=True)


def test_raw_response_dropped_after_parse_leaves_its_stream_to_end_the_call(recorded):
    # LiteLLM parses the raw response and keeps only the stream: dropping the raw response must
    # not end the stream's call before the usage chunk arrives.
    fake = FakeOpenAI()
    raw = fake.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    stream = raw.parse()
    del raw
    gc.collect()
    chunks = list(stream)
    assert chunks[-1].usage.prompt_tokens == 1200
    assert_chat_span(recorded.span(), stream=True)


def test_with_streaming_response(recorded):
    fake = FakeOpenAI()
    with fake.client().chat.completions.with_streaming_response.create(model=MODEL, messages=MESSAGES) as raw:
        parsed = raw.parse()
    assert parsed.usage.completion_tokens == 30
    assert_chat_span(recorded.span(), stream=False)


def test_with_streaming_response_not_parsed_still_ends(recorded):
    def streamed_body(path: str, body: dict) -> Any:
        import json

        from conftest import http_module
        from openai_wire import chat_completion

        payload = json.dumps(chat_completion()).encode()
        # A body that arrives over the wire (not already in memory), as in real traffic.
        return http_module().Response(
            200, content=iter([payload]), headers={"content-type": "application/json"}
        )

    fake = FakeOpenAI(extra=streamed_body)
    with fake.client().chat.completions.with_streaming_response.create(model=MODEL, messages=MESSAGES) as raw:
        body = b"".join(raw.iter_bytes())
    assert b"chatcmpl-abc123" in body
    span = recorded.span()
    assert span.attributes[sc.USAGE_MISSING] is True


def test_sdk_error_passes_through_and_is_recorded(recorded):
    fake = FakeOpenAI(status=429)
    client = fake.client()
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == 429
    # Exactly what the SDK raises without tokentrail.
    tokentrail.uninstrument()
    with pytest.raises(openai.RateLimitError) as plain:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert str(plain.value) == str(caught.value)
    span = recorded.span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes[sc.ERROR_TYPE] == "RateLimitError"
    assert "sk-test-SECRET" not in str(span.to_json())
    (point,) = recorded.points(sc.METRIC_OPERATION_DURATION)
    assert point.attributes[sc.ERROR_TYPE] == "RateLimitError"
    assert recorded.points(sc.METRIC_TOKEN_USAGE) == []


def test_error_mid_stream_passes_through(recorded):
    def cut(path: str, body: dict) -> Any:
        from conftest import http_module

        httpx = http_module()

        def broken():
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}  # fmt: skip
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            raise httpx.ReadError("connection reset")

        return httpx.Response(200, content=broken(), headers={"content-type": "text/event-stream"})

    def consume() -> tuple[type[BaseException], int]:
        client = FakeOpenAI(extra=cut).client()
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        received = []
        try:
            for chunk in stream:
                received.append(chunk)
        except Exception as error:  # whatever this SDK version raises for a dropped connection
            return type(error), len(received)
        raise AssertionError("the stream should have failed")

    instrumented = consume()
    span = recorded.span()
    tokentrail.uninstrument()
    assert consume() == instrumented  # same exception, same chunks as without tokentrail
    assert instrumented[1] == 1
    assert span.attributes[sc.ERROR_TYPE] == instrumented[0].__qualname__
    assert span.attributes[sc.STREAM_INCOMPLETE] is True


def test_failure_inside_tokentrail_never_reaches_the_application(recorded, monkeypatch, caplog):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in tokentrail")

    monkeypatch.setattr(openai_provider.ChatCompletions, "response", broken)
    monkeypatch.setattr(openai_provider.ChatStreamState, "add", broken)
    fake = FakeOpenAI()
    client = fake.client()
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        for _ in range(3):
            response = client.chat.completions.create(model=MODEL, messages=MESSAGES)
            assert response.choices[0].message.content == "Hello there!"
        chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
        tokentrail.flush()  # responses are read on the recorder thread
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there!"
    # Logged once per place, not once per call.
    logged = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(logged) == 2
    assert len(recorded.spans()) == 4  # every span still ended


def test_failure_in_planning_runs_the_call_uninstrumented(recorded, monkeypatch):
    monkeypatch.setattr(openai_provider.OpenAIAdapter, "plan", lambda *a, **k: 1 / 0)
    fake = FakeOpenAI()
    response = fake.client().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert response.usage.prompt_tokens == 1200
    assert recorded.spans() == []


def test_uninstrument_restores_the_sdk_methods(recorded):
    from openai import _base_client

    assert hasattr(_base_client.SyncAPIClient.request, "__wrapped__")
    tokentrail.uninstrument()
    assert not hasattr(_base_client.SyncAPIClient.request, "__wrapped__")
    assert not hasattr(_base_client.AsyncAPIClient.request, "__wrapped__")
    FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert recorded.spans() == []
    assert tokentrail.instrumented() == []


def test_instrument_twice_counts_once(recorded):
    tracer_provider = recorded.exporter  # reuse: instrument again with the same sink
    assert tracer_provider is not None
    tokentrail.instrument(providers=["openai"], sinks=[recorded.calls.append])
    FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert len(recorded.calls) == 1


def test_clients_created_before_instrument_are_covered():
    tokentrail.uninstrument()
    fake = FakeOpenAI()
    client = fake.client()
    calls: list[Any] = []
    tokentrail.instrument(sinks=[calls.append], setup_otel=False)
    try:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    finally:
        tokentrail.uninstrument()
    assert len(calls) == 1 and calls[0].usage.input_tokens == 1200


@pytest.mark.tokentrail(capture_content="SPAN_ONLY")
def test_content_capture_opt_in(recorded):
    FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    attributes = recorded.span().attributes
    assert '"content": "Say hello"' in attributes[sc.INPUT_MESSAGES]
    assert '"content": "Hello there!"' in attributes[sc.OUTPUT_MESSAGES]


@pytest.mark.tokentrail(capture_content="EVENT_ONLY")
def test_content_capture_as_event(recorded):
    list(FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    span = recorded.span()
    assert sc.INPUT_MESSAGES not in span.attributes
    assert not span.events  # the content event is a log record, in the call's span context
    (event,) = recorded.events(sc.CONTENT_EVENT)
    assert event.span_id == span.context.span_id
    assert '"Hello there!"' in event.attributes[sc.OUTPUT_MESSAGES]


def test_bad_capture_setting_is_rejected_with_a_clear_message():
    with pytest.raises(tokentrail.ConfigError, match="SPAN_ONLY"):
        tokentrail.instrument(capture_content="everything", setup_otel=False)


# --- OpenAI-compatible providers --------------------------------------------------------------


def _wire_usage_payload(extra: dict) -> dict:
    return {**chat_usage(prompt=100, completion=20, cached=0, reasoning=0), **extra}


def test_xai_reasoning_is_extra_and_reported_cost_wins(recorded):
    usage = chat_usage(prompt=100, completion=20, cached=0, reasoning=50)
    usage["total_tokens"] = 170  # xAI: reasoning outside completion_tokens
    usage["cost_in_usd_ticks"] = 12_345_000
    fake = FakeOpenAI(chat_usage=usage)
    fake.client("https://api.x.ai/v1").chat.completions.create(model="grok-4", messages=MESSAGES)
    attributes = recorded.span().attributes
    assert attributes[sc.PROVIDER_NAME] == "x_ai"
    assert attributes[sc.USAGE_OUTPUT_TOKENS] == 70
    assert attributes[sc.USAGE_REASONING_OUTPUT_TOKENS] == 50
    assert sc.USAGE_INCONSISTENT not in attributes
    assert attributes[sc.COST_SOURCE] == "provider"
    assert math.isclose(attributes[sc.COST_AMOUNT], 12_345_000 / 1e10)
    local = expected_cost("grok-4", provider="x-ai", input_tokens=100, output_tokens=70,
                          output_reasoning_tokens=50, context={"service_tier": "default"})  # fmt: skip
    assert math.isclose(attributes[sc.COST_LOCAL_ESTIMATE], local, rel_tol=1e-9)


def test_openrouter_reported_cost(recorded):
    fake = FakeOpenAI(chat_usage=_wire_usage_payload({"cost": 0.00042, "is_byok": False}))
    fake.client("https://openrouter.ai/api/v1").chat.completions.create(
        model="openai/gpt-4o", messages=MESSAGES
    )
    attributes = recorded.span().attributes
    assert attributes[sc.PROVIDER_NAME] == "openrouter"
    assert attributes[sc.COST_SOURCE] == "provider"
    assert attributes[sc.COST_AMOUNT] == 0.00042


def test_deepseek_cache_hits(recorded):
    payload = _wire_usage_payload({"prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36})
    fake = FakeOpenAI(chat_usage=payload)
    fake.client("https://api.deepseek.com").chat.completions.create(model="deepseek-chat", messages=MESSAGES)
    attributes = recorded.span().attributes
    assert attributes[sc.PROVIDER_NAME] == "deepseek"
    assert attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 64
    assert attributes[sc.COST_SOURCE] == "local"


def test_azure_client_is_azure_and_priced_by_response_model(recorded):
    fake = FakeOpenAI()
    httpx = __import__("conftest").http_module()
    client = openai.AzureOpenAI(
        api_key="k", api_version="2024-10-21", azure_endpoint="https://acme.openai.azure.com",
        http_client=httpx.Client(transport=httpx.MockTransport(fake.handler)), max_retries=0,
    )  # fmt: skip
    client.chat.completions.create(model="my-deployment", messages=MESSAGES)
    attributes = recorded.span().attributes
    assert attributes[sc.PROVIDER_NAME] == "azure.ai.openai"
    assert attributes[sc.REQUEST_MODEL] == "my-deployment"
    assert attributes[sc.PRICE_MODEL].startswith("gpt-4o-mini")


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://acme.openai.azure.com/openai", "azure.ai.openai"),
        ("https://api.x.ai/v1", "x_ai"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://api.deepseek.com", "deepseek"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://api.together.xyz/v1", "together"),
        ("https://api.fireworks.ai/inference/v1", "fireworks"),
        ("https://api.mistral.ai/v1", "mistral_ai"),
        ("http://localhost:11434/v1", "ollama"),
        ("http://127.0.0.1:1234/v1", "lm_studio"),
        ("http://localhost:8000/v1", "vllm"),
        ("https://llm.internal.example/v1", "llm.internal.example"),
    ],
)
def test_provider_from_base_url(url, provider):
    assert openai_provider.provider_for_url(url)[0] == provider


def test_provider_hosts_override():
    assert openai_provider.provider_for_url("http://127.0.0.1:9999/v1", {"127.0.0.1:9999": "openai"}) == (
        "openai",
        "127.0.0.1",
        9999,
    )


def test_unknown_host_is_unpriced_warned_once_and_counted(recorded, caplog):
    fake = FakeOpenAI()
    client = fake.client("https://llm.internal.example/v1")
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        for _ in range(3):
            client.chat.completions.create(model="my-model", messages=MESSAGES)
        tokentrail.flush()  # calls are priced on the recorder thread
    warnings = [r for r in caplog.records if "no price known" in r.getMessage()]
    assert len(warnings) == 1
    for span in recorded.spans():
        assert span.attributes[sc.PROVIDER_NAME] == "llm.internal.example"
        assert span.attributes[sc.PRICE_UNPRICED] is True
        assert sc.PRICE_ERROR not in span.attributes  # unknown, not a failure of pricing
        assert span.attributes[sc.USAGE_INPUT_TOKENS] == 1200  # tokens still recorded
        assert sc.COST_AMOUNT not in span.attributes  # absent, never 0
    (point,) = recorded.points(sc.METRIC_UNPRICED_CALLS)
    assert point.value == 3
    assert recorded.points(sc.METRIC_OPERATION_COST) == []


def test_service_tier_selects_the_price_variant(recorded):
    fake = FakeOpenAI(extra=lambda path, body: None)
    fake_flex = FakeOpenAI()
    httpx = __import__("conftest").http_module()

    def flex(request: Any) -> Any:
        response = fake_flex.handler(request)
        import json

        body = json.loads(response.content)
        body["service_tier"] = "flex"
        body["model"] = "gpt-5-2025-08-07"
        return httpx.Response(200, json=body)

    client = openai.OpenAI(
        api_key="k", http_client=httpx.Client(transport=httpx.MockTransport(flex)), max_retries=0
    )
    client.chat.completions.create(model="gpt-5", messages=MESSAGES, service_tier="flex")
    del fake
    attributes = recorded.span().attributes
    assert attributes[sc.OPENAI_REQUEST_SERVICE_TIER] == "flex"
    assert attributes[sc.OPENAI_RESPONSE_SERVICE_TIER] == "flex"
    flex_cost = expected_cost("gpt-5-2025-08-07", input_tokens=1200, cache_read_tokens=1024, output_tokens=30,
                              context={"service_tier": "flex"})  # fmt: skip
    standard = expected_cost("gpt-5-2025-08-07", input_tokens=1200, cache_read_tokens=1024, output_tokens=30)
    assert flex_cost < standard
    assert math.isclose(attributes[sc.COST_AMOUNT], flex_cost, rel_tol=1e-9)


def test_batch_price_context(recorded):
    with tokentrail.price_context(processing="batch"):
        FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    batch = expected_cost(SNAPSHOT, input_tokens=1200, cache_read_tokens=1024, output_tokens=30,
                          context={"service_tier": "default", "processing": "batch"})  # fmt: skip
    assert math.isclose(recorded.span().attributes[sc.COST_AMOUNT], batch, rel_tol=1e-9)
    with pytest.raises(ValueError, match="processing"), tokentrail.price_context(processing="cheap"):
        pass


def test_instrumentation_object_is_idempotent():
    patch = openai_provider.patches()
    assert isinstance(patch, Instrumentation)
    patch.install()
    patch.install()
    assert patch.installed
    patch.remove()
    assert not patch.installed
    from openai import _base_client

    assert not hasattr(_base_client.SyncAPIClient.request, "__wrapped__")


def test_samplers_see_the_sampling_attributes_and_the_span_gets_the_request_parameters():
    # The five attributes the conventions set at start (and the application's attribution) reach
    # the sampler; the request's parameters are set with the response, on the recorder thread.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler

    seen: list[dict[str, Any]] = []

    class Watching(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, *args, **kw):
            seen.append(dict(attributes or {}))
            return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, *args, **kw)

        def get_description(self) -> str:
            return "watching"

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=Watching())
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tokentrail.instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider(), ledger=False)
    try:
        client = FakeOpenAI().client()
        with tokentrail.attribute(agent="writer"):
            list(client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0.2, stream=True))
        tokentrail.flush()
    finally:
        tokentrail.uninstrument()
    assert seen == [
        {
            sc.OPERATION_NAME: "chat",
            sc.PROVIDER_NAME: "openai",
            sc.REQUEST_MODEL: MODEL,
            sc.SERVER_ADDRESS: "api.openai.com",
            sc.SERVER_PORT: 443,
            "gen_ai.agent.name": "writer",
        }
    ]
    (span,) = exporter.get_finished_spans()
    assert span.attributes["gen_ai.request.temperature"] == 0.2
    assert span.attributes[sc.REQUEST_STREAM] is True
    assert span.attributes[sc.USAGE_INPUT_TOKENS] > 0


def _compact_stream(include_usage: bool) -> bytes:
    # As the API sends it: compact JSON, "usage":null on every chunk when usage was asked for.
    from openai_wire import chat_chunks

    events = chat_chunks(["Hel", "lo", "!"], chat_usage(), include_usage)
    lines = [f"data: {json.dumps(event, separators=(',', ':'))}\n\n" for event in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


@pytest.mark.parametrize("read_size", [7, 13, 64, 100_000])  # network reads that split events anywhere
@pytest.mark.parametrize("asked_for_usage", [False, True])
def test_stream_chunks_are_exactly_the_sdks_however_the_bytes_arrive(recorded, read_size, asked_for_usage):
    def split(content: bytes) -> Any:
        pieces = [content[i : i + read_size] for i in range(0, len(content), read_size)]
        return http_module().Response(
            200, content=iter(pieces), headers={"content-type": "text/event-stream"}
        )

    def handler(path: str, body: dict) -> Any:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return split(_compact_stream(include_usage))

    fake = FakeOpenAI(extra=handler)
    extra = {"stream_options": {"include_usage": True}} if asked_for_usage else {}

    def read() -> list[str]:
        stream = fake.client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **extra)
        return [chunk.model_dump_json(exclude_unset=True) for chunk in stream]

    instrumented = read()
    span = recorded.span()
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 1200
    tokentrail.uninstrument()
    assert instrumented == read()  # what the application gets without tokentrail, set fields included
    assert len(instrumented) == 5 + asked_for_usage
