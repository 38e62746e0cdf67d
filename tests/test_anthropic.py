"""The real anthropic SDK over a mock transport and over the fake server: Messages sync and async,
streamed and not, the stream helpers, beta, raw responses, Bedrock and Vertex, native spans.

Usage in the wire bodies (anthropic_wire.usage()): input_tokens 2000 (EXCLUDING the cache), cache
writes 500 (5 min) + 1000 (1 h), cache reads 4000, output 300 of which 120 thinking. In the normal
form: input 7500, cache write 1500 (1 h: 1000), cache read 4000, output 300, reasoning 120.
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import anthropic
import genai_prices
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail
from anthropic_wire import (
    MESSAGES,
    MODEL,
    FakeAnthropic,
    create_arguments,
    error_body,
    http_module,
    sse,
    stream_events,
    usage,
)
from tokentrail import registry
from tokentrail import semconv as sc
from tokentrail.providers import anthropic as anthropic_provider
from tokentrail.providers._stainless import Instrumentation
from tokentrail.testing import FakeLLMServer

NORMAL = {"input_tokens": 7500, "cache_write_tokens": 1500, "cache_write_1h_tokens": 1000,
          "cache_read_tokens": 4000, "output_tokens": 300, "output_reasoning_tokens": 120}  # fmt: skip
CALL = {"model": MODEL, "max_tokens": 1024, "messages": MESSAGES}

_ANTHROPIC = registry.entry("anthropic")
ENV_ANTHROPIC_NATIVE_SPANS = _ANTHROPIC.variable(_ANTHROPIC.options[0])


def expected_cost(
    model: str = MODEL, provider: str = "anthropic", context: dict | None = None, **tokens: int
) -> float:
    """What genai-prices computes for these tokens (our figure must equal it)."""
    usage_ = genai_prices.Usage(**(tokens or NORMAL))
    return float(
        genai_prices.calc_price(usage_, model, provider_id=provider, price_context=context).total_price
    )


def assert_message_span(span: Any, *, stream: bool, model: str = MODEL, provider: str = "anthropic") -> None:
    attributes = dict(span.attributes)
    assert span.name == f"chat {model}"
    assert span.kind.name == "CLIENT"
    assert attributes[sc.OPERATION_NAME] == "chat"
    assert attributes[sc.PROVIDER_NAME] == provider
    assert attributes[sc.REQUEST_MODEL] == model
    assert attributes[sc.RESPONSE_MODEL] == MODEL
    assert attributes[sc.RESPONSE_ID] == "msg_01abc"
    assert attributes[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert attributes[sc.REQUEST_MAX_TOKENS] == 1024
    assert attributes[sc.USAGE_INPUT_TOKENS] == 7500
    assert attributes[sc.USAGE_OUTPUT_TOKENS] == 300
    assert attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 4000
    assert attributes[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 1500
    assert attributes[sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS] == 1000
    assert attributes[sc.USAGE_REASONING_OUTPUT_TOKENS] == 120
    assert attributes[sc.ANTHROPIC_RESPONSE_SERVICE_TIER] == "standard"
    assert sc.USAGE_INCONSISTENT not in attributes
    assert (sc.REQUEST_STREAM in attributes) is stream
    if stream:
        assert attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
    assert sc.STREAM_INCOMPLETE not in attributes
    if provider == "anthropic":
        cost = expected_cost()
        assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
        assert attributes[sc.COST_SOURCE] == "local"
        assert attributes[sc.COST_USD_MICROS] == round(cost * 1e6)
        assert math.isclose(attributes[sc.COST_INPUT] + attributes[sc.COST_OUTPUT], cost, rel_tol=1e-9)


def test_messages_create(recorded):
    fake = FakeAnthropic()
    response = fake.client().messages.create(
        **create_arguments(
            **CALL,
            stop_sequences=["END"],
            thinking={"type": "enabled", "budget_tokens": 512},
            extra_body={"temperature": 0.2, "top_k": 40},  # not parameters of create() any more, still sent
        )
    )
    assert response.content[1].text == "Hello there!"
    span = recorded.span()
    assert_message_span(span, stream=False)
    assert span.attributes[sc.REQUEST_TEMPERATURE] == 0.2
    assert span.attributes[sc.REQUEST_TOP_K] == 40
    assert span.attributes[sc.REQUEST_STOP_SEQUENCES] == ("END",)
    assert span.attributes[sc.ANTHROPIC_THINKING_BUDGET_TOKENS] == 512
    assert span.attributes[sc.SERVER_ADDRESS] == "api.anthropic.com"
    assert span.attributes[sc.SERVER_PORT] == 443
    (input_point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input")
    (output_point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="output")
    assert (input_point.sum, input_point.count, output_point.sum) == (7500, 1, 300)
    assert input_point.attributes[sc.PROVIDER_NAME] == "anthropic"
    parts = {t: recorded.points(sc.METRIC_TOKEN_PARTS, gen_ai__token__type=t)[0].value
             for t in ("cache_read", "cache_creation", "reasoning")}  # fmt: skip
    assert parts == {"cache_read": 4000, "cache_creation": 1500, "reasoning": 120}
    (cost_point,) = recorded.points(sc.METRIC_OPERATION_COST)
    assert math.isclose(cost_point.sum, expected_cost(), rel_tol=1e-9)
    (call,) = recorded.calls
    assert call.usage == tokentrail.Usage(
        input_tokens=7500, output_tokens=300, cache_read_tokens=4000, cache_write_tokens=1500,
        cache_write_1h_tokens=1000, reasoning_tokens=120,
    )  # fmt: skip
    assert "sk-ant-SECRET" not in str(span.to_json())


def test_stream_usage_equals_non_streamed_usage(recorded):
    """message_delta is cumulative: the output is 300 (not 1 + 300), the input 7500 (not twice)."""
    client = FakeAnthropic().client()
    client.messages.create(**CALL)
    events = list(client.messages.create(**CALL, stream=True))
    assert [e.type for e in events][:2] == ["message_start", "content_block_start"]  # the SDK drops pings
    with client.messages.stream(**CALL) as stream:
        stream.until_done()
    plain, streamed, helper = recorded.calls
    assert plain.usage == streamed.usage == helper.usage
    assert plain.cost == streamed.cost == helper.cost
    spans = recorded.spans()
    assert_message_span(spans[0], stream=False)
    assert_message_span(spans[1], stream=True)
    assert_message_span(spans[2], stream=True)


def test_stream_helper_text_stream_and_final_message(recorded):
    with FakeAnthropic().client().messages.stream(**CALL) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello there!"
    assert final.usage.output_tokens == 300
    assert_message_span(recorded.span(), stream=True)


async def test_async_create_stream_and_helper(recorded):
    client = FakeAnthropic().client(is_async=True)
    response = await client.messages.create(**CALL)
    assert response.usage.input_tokens == 2000
    stream = await client.messages.create(**CALL, stream=True)
    assert len([event async for event in stream]) == 13
    async with client.messages.stream(**CALL) as helper:
        text = "".join([piece async for piece in helper.text_stream])
        final = await helper.get_final_message()
    assert text == "Hello there!" and final.stop_reason == "end_turn"
    plain, streamed, helped = recorded.spans()
    assert_message_span(plain, stream=False)
    assert_message_span(streamed, stream=True)
    assert_message_span(helped, stream=True)


def test_beta_messages(recorded):
    fake = FakeAnthropic()
    client = fake.client()
    client.beta.messages.create(**CALL, betas=["context-management-2025-06-27"])
    assert fake.sent[-1]["headers"]["anthropic-beta"] == "context-management-2025-06-27"
    with client.beta.messages.stream(**CALL) as stream:
        assert stream.get_final_message().usage.output_tokens == 300
    plain, streamed = recorded.spans()
    assert_message_span(plain, stream=False)
    assert_message_span(streamed, stream=True)


async def test_async_beta_stream(recorded):
    async with FakeAnthropic().client(is_async=True).beta.messages.stream(**CALL) as stream:
        await stream.until_done()
    assert_message_span(recorded.span(), stream=True)


def test_with_raw_response(recorded):
    raw = FakeAnthropic().client().messages.with_raw_response.create(**CALL)
    assert raw.headers["request-id"] == "req_011"
    assert_message_span(recorded.span(), stream=False)  # ended at once: the body was already read
    assert raw.parse().usage.output_tokens == 300
    assert len(recorded.spans()) == 1


def test_with_raw_response_stream_and_streaming_response(recorded):
    client = FakeAnthropic().client()
    raw = client.messages.with_raw_response.create(**CALL, stream=True)
    assert [e.type for e in raw.parse()][-1] == "message_stop"
    with client.messages.with_streaming_response.create(**CALL) as response:
        assert response.parse().usage.input_tokens == 2000
    streamed, plain = recorded.spans()
    assert_message_span(streamed, stream=True)
    assert_message_span(plain, stream=False)


async def test_async_with_raw_response(recorded):
    raw = await FakeAnthropic().client(is_async=True).messages.with_raw_response.create(**CALL)
    parsed = raw.parse()  # a coroutine, except in SDKs whose async raw response was the legacy one
    assert (await parsed if inspect.isawaitable(parsed) else parsed).usage.output_tokens == 300
    assert_message_span(recorded.span(), stream=False)


def test_stream_closed_early_ends_span_once_with_the_input_side(recorded):
    stream = FakeAnthropic().client().messages.create(**CALL, stream=True)
    assert next(iter(stream)).type == "message_start"
    stream.close()
    stream.close()
    span = recorded.span()
    assert span.attributes[sc.STREAM_INCOMPLETE] is True
    # message_start told the input side (billed even when the answer is dropped) and 1 output token.
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 7500
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 1
    assert sc.RESPONSE_FINISH_REASONS not in span.attributes


def test_stream_helper_left_early(recorded):
    with FakeAnthropic().client().messages.stream(**CALL) as stream:
        for _event in stream:
            break
    assert recorded.span().attributes[sc.STREAM_INCOMPLETE] is True


def test_abandoned_stream_ends_span_when_collected(recorded):
    stream = FakeAnthropic().client().messages.create(**CALL, stream=True)
    next(iter(stream))
    assert recorded.spans() == []
    del stream
    gc.collect()
    assert recorded.span().attributes[sc.STREAM_INCOMPLETE] is True


async def test_async_stream_closed_early(recorded):
    stream = await FakeAnthropic().client(is_async=True).messages.create(**CALL, stream=True)
    async for _event in stream:
        break
    await stream.close()
    assert recorded.span().attributes[sc.STREAM_INCOMPLETE] is True


def test_sdk_error_passes_through_and_is_recorded(recorded):
    client = FakeAnthropic(status=429).client()
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**CALL)
    tokentrail.uninstrument()
    with pytest.raises(anthropic.RateLimitError) as plain:
        client.messages.create(**CALL)
    assert str(plain.value) == str(caught.value) and caught.value.status_code == 429
    span = recorded.span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes[sc.ERROR_TYPE] == "RateLimitError"
    assert span.attributes[sc.USAGE_MISSING] is True
    (point,) = recorded.points(sc.METRIC_OPERATION_DURATION)
    assert point.attributes[sc.ERROR_TYPE] == "RateLimitError"
    assert recorded.points(sc.METRIC_TOKEN_USAGE) == []


def test_error_event_mid_stream_passes_through(recorded):
    def overloaded(path: str, body: dict) -> Any:
        events = [*stream_events()[:4], error_body("overloaded_error", "Overloaded")]
        return http_module().Response(200, content=sse(events), headers={"content-type": "text/event-stream"})

    def consume() -> tuple[type[BaseException], str, int]:
        received = []
        try:
            for event in FakeAnthropic(extra=overloaded).client().messages.create(**CALL, stream=True):
                received.append(event)
        except anthropic.APIStatusError as error:
            return type(error), str(error), len(received)
        raise AssertionError("the stream should have failed")

    instrumented = consume()
    span = recorded.span()
    tokentrail.uninstrument()
    assert consume() == instrumented  # same exception, same events as without tokentrail
    assert instrumented[2] == 3  # message_start, ping (skipped by the SDK), two content events
    assert span.attributes[sc.ERROR_TYPE] == instrumented[0].__qualname__
    assert span.attributes[sc.STREAM_INCOMPLETE] is True
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 7500


# --- pricing -----------------------------------------------------------------------------------


def test_one_hour_cache_write_is_priced_at_its_rate(recorded):
    FakeAnthropic().client().messages.create(**CALL)
    cost = recorded.span().attributes[sc.COST_AMOUNT]
    all_five_minutes = expected_cost(**{**NORMAL, "cache_write_1h_tokens": 0})
    assert math.isclose(cost, expected_cost(), rel_tol=1e-9)
    assert cost > all_five_minutes  # the hour costs more than five minutes


def test_web_search_is_priced_per_request(recorded):
    fake = FakeAnthropic(usage=usage(web_searches=3))
    fake.client().messages.create(**CALL, tools=[{"type": "web_search_20250305", "name": "web_search"}])
    attributes = recorded.span().attributes
    assert attributes[sc.USAGE_WEB_SEARCHES] == 3  # web fetches (2) have no per-request price
    with_searches = expected_cost(**NORMAL, web_searches=3)
    assert math.isclose(attributes[sc.COST_AMOUNT], with_searches, rel_tol=1e-9)
    assert math.isclose(with_searches - expected_cost(), 0.03, rel_tol=1e-9)  # $10 per 1000


@pytest.mark.parametrize(
    ("tier", "speed", "model", "context"),
    [
        ("batch", None, MODEL, {"processing": "batch"}),
        ("priority", None, MODEL, {"service_tier": "priority"}),
        ("standard", "fast", "claude-opus-4-8", {"speed": "fast"}),
    ],
)
def test_service_tier_and_speed_select_the_price(recorded, tier, speed, model, context):
    fake = FakeAnthropic(usage=usage(service_tier=tier, speed=speed), model=model)
    fake.client().messages.create(**{**CALL, "model": model})
    attributes = recorded.span().attributes
    assert attributes[sc.ANTHROPIC_RESPONSE_SERVICE_TIER] == tier
    assert attributes.get(sc.ANTHROPIC_RESPONSE_SPEED) == speed
    cost = expected_cost(model, context=context)
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    if tier == "batch":
        assert math.isclose(cost, expected_cost(model) / 2, rel_tol=1e-9)
    if speed == "fast":
        assert cost > expected_cost(model)


def test_compaction_and_advisor_iterations_are_counted_and_priced_on_their_own(recorded):
    """Compaction and advisor entries are outside the top-level usage; message entries inside it."""
    iterations = [
        {"type": "compaction", "input_tokens": 180_000, "output_tokens": 3500,
         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        {"type": "message", "input_tokens": 2000, "output_tokens": 100, "cache_creation_input_tokens": 1500,
         "cache_read_input_tokens": 4000, "model": MODEL},
        {"type": "advisor_message", "model": "claude-opus-4-8", "input_tokens": 9000, "output_tokens": 700,
         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1000},
        {"type": "message", "input_tokens": 0, "output_tokens": 200, "cache_creation_input_tokens": 0,
         "cache_read_input_tokens": 0},
    ]  # fmt: skip
    client = FakeAnthropic(usage=usage(iterations=iterations)).client()
    client.beta.messages.create(**CALL)
    list(client.beta.messages.create(**CALL, stream=True))
    compaction = expected_cost(input_tokens=180_000, output_tokens=3500)
    advisor = expected_cost("claude-opus-4-8", input_tokens=10_000, cache_read_tokens=1000, output_tokens=700)
    # Priced as requests of their own: the 180k compaction alone is below the long-context tier.
    assert compaction == expected_cost(input_tokens=180_000, output_tokens=3500)
    for span in recorded.spans():
        attributes = span.attributes
        assert attributes[sc.USAGE_INPUT_TOKENS] == 7500 + 180_000 + 10_000
        assert attributes[sc.USAGE_OUTPUT_TOKENS] == 300 + 3500 + 700
        assert attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 4000 + 1000
        assert math.isclose(attributes[sc.COST_AMOUNT], expected_cost() + compaction + advisor, rel_tol=1e-9)
        assert attributes[sc.PRICE_MODEL] == "claude-sonnet-4-6"
    plain, streamed = recorded.calls
    assert plain.usage == streamed.usage and plain.cost == streamed.cost


def test_iterations_with_an_unpriced_model_leave_the_call_unpriced(recorded, caplog):
    advisor = {"type": "advisor_message", "model": "claude-unknown-9", "input_tokens": 10, "output_tokens": 5}
    iterations = [{**advisor, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}]
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        FakeAnthropic(usage=usage(iterations=iterations)).client().beta.messages.create(**CALL)
    attributes = recorded.span().attributes
    assert attributes[sc.PRICE_UNPRICED] is True and sc.COST_AMOUNT not in attributes  # never a partial cost
    assert attributes[sc.USAGE_INPUT_TOKENS] == 7510
    assert any("claude-unknown-9" in r.getMessage() for r in caplog.records)


# --- platforms ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["us.anthropic.claude-sonnet-4-6", "global.anthropic.claude-sonnet-4-6"])
def test_bedrock_is_priced_by_its_regional_model_id(recorded, model_id):
    fake = FakeAnthropic()  # Bedrock answers with the base model's id
    response = fake.bedrock().messages.create(**{**CALL, "model": model_id})
    assert response.model == MODEL
    assert fake.sent[-1]["path"] == f"/model/{model_id}/invoke"
    span = recorded.span()
    assert_message_span(span, stream=False, model=model_id, provider="aws.bedrock")
    assert span.attributes[sc.SERVER_ADDRESS] == "bedrock-runtime.us-east-1.amazonaws.com"
    cost = expected_cost(model_id, provider="aws")
    assert math.isclose(span.attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    assert span.attributes[sc.PRICE_MODEL].startswith(model_id.split(".")[0].replace("us", "regional"))


def test_bedrock_global_and_regional_prices_differ():
    assert expected_cost("global.anthropic.claude-sonnet-4-6", "aws") < expected_cost(
        "us.anthropic.claude-sonnet-4-6", "aws"
    )


async def test_async_vertex(recorded):
    fake = FakeAnthropic()
    await fake.vertex(is_async=True).messages.create(**CALL)
    assert fake.sent[-1]["path"].endswith(f"/publishers/anthropic/models/{MODEL}:rawPredict")
    span = recorded.span()
    assert_message_span(span, stream=False, provider="gcp.vertex_ai")
    assert math.isclose(span.attributes[sc.COST_AMOUNT], expected_cost(provider="google"), rel_tol=1e-9)


@pytest.mark.tokentrail(provider_hosts={"llm-gateway.internal": "aws.bedrock"})
def test_provider_hosts_override(recorded):
    FakeAnthropic().client(base_url="https://llm-gateway.internal").messages.create(**CALL)
    assert recorded.span().attributes[sc.PROVIDER_NAME] == "aws.bedrock"


def test_count_tokens_is_not_a_billed_call(recorded):
    result = FakeAnthropic().client().messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert result.input_tokens == 42
    assert recorded.spans() == [] and recorded.calls == []
    assert recorded.metrics() == {}


# --- the SDK's own spans --------------------------------------------------------------------------


@pytest.fixture
def global_tracing(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    """A real SDK tracer provider set globally, as an application does; the SDK's tracing at its default."""
    if not hasattr(anthropic.Anthropic, "_tracer"):
        pytest.skip("this anthropic SDK makes no spans of its own")
    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    reader = InMemoryMetricReader()
    tokentrail.uninstrument()
    yield exporter, reader
    tokentrail.uninstrument()


def _token_points(reader: InMemoryMetricReader) -> list[Any]:
    tokentrail.flush()  # metrics are recorded off the calling thread
    data = reader.get_metrics_data()
    return [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == sc.METRIC_TOKEN_USAGE
        for point in metric.data.data_points
    ]


@pytest.mark.parametrize("setting", ["argument", "environment"])
def test_native_spans_off_by_default_one_span_per_call(global_tracing, monkeypatch, setting):
    exporter, reader = global_tracing
    client = FakeAnthropic().client()
    tokentrail.uninstrument()
    client.messages.create(**CALL)  # without tokentrail: the SDK's own span
    tokentrail.flush()
    (native,) = exporter.get_finished_spans()
    assert native.name == "anthropic.messages.create"
    exporter.clear()
    if setting == "environment":
        monkeypatch.setenv(ENV_ANTHROPIC_NATIVE_SPANS, "off")
        tokentrail.instrument(meter_provider=MeterProvider(metric_readers=[reader]), setup_otel=False)
    else:
        tokentrail.instrument(meter_provider=MeterProvider(metric_readers=[reader]), setup_otel=False,
                              anthropic_native_spans="off")  # fmt: skip
    client.messages.create(**CALL)
    list(client.messages.create(**CALL, stream=True))
    tokentrail.flush()
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [f"chat {MODEL}", f"chat {MODEL}"]
    assert all(s.attributes[sc.USAGE_INPUT_TOKENS] == 7500 for s in spans)
    assert sorted(p.count for p in _token_points(reader)) == [2, 2]  # input and output, once per call
    exporter.clear()
    client.messages.count_tokens(model=MODEL, messages=MESSAGES)  # not an LLM call: its SDK span stays
    tokentrail.flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["anthropic.messages.count_tokens"]


def test_native_spans_keep_nests_the_sdk_span_without_cost(global_tracing):
    exporter, reader = global_tracing
    tokentrail.instrument(meter_provider=MeterProvider(metric_readers=[reader]), setup_otel=False,
                          anthropic_native_spans="keep")  # fmt: skip
    client = FakeAnthropic().client()
    client.messages.create(**CALL)
    with client.messages.stream(**CALL) as stream:
        stream.until_done()
    tokentrail.flush()
    spans = exporter.get_finished_spans()
    ours = [s for s in spans if s.name == f"chat {MODEL}"]
    native = [s for s in spans if s.name == "anthropic.messages.create"]
    assert len(ours) == len(native) == 2 and len(spans) == 4
    for mine, theirs in zip(ours, native, strict=True):
        assert theirs.parent is not None and theirs.parent.span_id == mine.context.span_id
        assert sc.COST_AMOUNT in mine.attributes
        assert not any(key.startswith(("gen_ai.usage.cost", "tokentrail.")) for key in theirs.attributes)
    assert sorted(p.count for p in _token_points(reader)) == [2, 2]


def test_bad_native_span_setting_is_rejected(monkeypatch):
    with pytest.raises(tokentrail.ConfigError, match=r"'off'.*'keep'"):
        tokentrail.instrument(anthropic_native_spans="drop", setup_otel=False)
    monkeypatch.setenv(ENV_ANTHROPIC_NATIVE_SPANS, "on")
    with pytest.raises(tokentrail.ConfigError, match=ENV_ANTHROPIC_NATIVE_SPANS):
        tokentrail.instrument(setup_otel=False)


# --- content, robustness, lifecycle ---------------------------------------------------------------


@pytest.mark.tokentrail(capture_content="SPAN_ONLY")
def test_content_capture_opt_in(recorded):
    client = FakeAnthropic().client()
    client.messages.create(**CALL, system="Be brief")
    with client.messages.stream(**CALL) as stream:
        stream.until_done()
    for span in recorded.spans():
        attributes = span.attributes
        assert json.loads(attributes[sc.INPUT_MESSAGES]) == [
            {"role": "user", "parts": [{"type": "text", "content": "Say hello"}]}
        ]
        output = json.loads(attributes[sc.OUTPUT_MESSAGES])
        parts = [{"type": "reasoning", "content": "Greet them."}, {"type": "text", "content": "Hello there!"}]
        assert output == [{"role": "assistant", "finish_reason": "end_turn", "parts": parts}]
    assert json.loads(recorded.spans()[0].attributes[sc.SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Be brief"}
    ]


@pytest.mark.tokentrail(capture_content="SPAN_ONLY")
def test_content_capture_leaves_an_iterable_of_messages_to_the_sdk(recorded, monkeypatch):
    handed: list[Any] = []  # what the SDK handed to tokentrail as the body's messages
    read_messages = anthropic_provider.input_messages
    monkeypatch.setattr(
        anthropic_provider,
        "input_messages",
        lambda body: (handed.append(body["messages"]), read_messages(body))[1],
    )
    fake = FakeAnthropic()
    fake.client().messages.create(model=MODEL, max_tokens=1024, messages=(m for m in MESSAGES))
    assert fake.sent[-1]["body"]["messages"] == MESSAGES  # the generator was not drained by us
    # A generator passed on by the SDK is left alone (nothing recorded); older SDKs (0.x) made it a
    # list first, which is read like any other.
    expected = (
        []
        if not isinstance(handed[0], list)
        else [{"role": "user", "parts": [{"type": "text", "content": "Say hello"}]}]
    )
    assert json.loads(recorded.span().attributes[sc.INPUT_MESSAGES]) == expected


def test_failure_inside_tokentrail_never_reaches_the_application(recorded, monkeypatch, caplog):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in tokentrail")

    monkeypatch.setattr(anthropic_provider.Messages, "response", broken)
    monkeypatch.setattr(anthropic_provider.MessageStreamState, "add", broken)
    client = FakeAnthropic().client()
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        for _ in range(2):
            assert client.messages.create(**CALL).content[1].text == "Hello there!"
        with client.messages.stream(**CALL) as stream:
            assert "".join(stream.text_stream) == "Hello there!"
        tokentrail.flush()  # responses are read on the recorder thread
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 2
    assert len(recorded.spans()) == 3


def test_failure_in_planning_runs_the_call_uninstrumented(recorded, monkeypatch):
    monkeypatch.setattr(anthropic_provider.AnthropicAdapter, "plan", lambda *a, **k: 1 / 0)
    assert FakeAnthropic().client().messages.create(**CALL).usage.output_tokens == 300
    assert recorded.spans() == []


def test_uninstrument_restores_the_sdk_methods(recorded):
    from anthropic import _base_client

    assert hasattr(_base_client.SyncAPIClient.request, "__wrapped__")
    tokentrail.uninstrument()
    assert not hasattr(_base_client.SyncAPIClient.request, "__wrapped__")
    assert not hasattr(_base_client.AsyncAPIClient.request, "__wrapped__")
    FakeAnthropic().client().messages.create(**CALL)
    assert recorded.spans() == []


def test_instrumentation_object_is_idempotent_and_registered():
    patch = anthropic_provider.patches()
    assert isinstance(patch, Instrumentation)
    patch.install()
    patch.install()
    assert patch.installed
    patch.remove()
    assert not patch.installed
    from tokentrail.instrumentation import AnthropicInstrumentor

    assert registry.entry("anthropic").implementation == anthropic_provider.__name__
    assert AnthropicInstrumentor().instrumentation_dependencies() == ("anthropic >= 0.43",)


def test_message_usage_normal_form_and_bad_payloads():
    record = anthropic_provider.message_usage(usage())
    assert (record.input_tokens, record.cache_write_tokens, record.cache_write_1h_tokens) == (
        7500,
        1500,
        1000,
    )
    assert record.consistent
    bad = anthropic_provider.message_usage({"input_tokens": "12", "output_tokens": 3,
                                            "cache_read_input_tokens": -1})  # fmt: skip
    assert bad.input_tokens == 11 and not bad.consistent
    assert any("input_tokens is a string" in p for p in bad.problems)
    assert any("cache_read_input_tokens is negative" in p for p in bad.problems)
    split = anthropic_provider.message_usage(
        usage(cache_write_5m=0, cache_write_1h=10) | {"cache_creation_input_tokens": 5}
    )
    assert not split.consistent  # the hour is part of the write: 10 of 5 cannot be


# --- over the fake server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def test_fake_server_end_to_end(recorded, server):
    server.reset()
    client = anthropic.Anthropic(base_url=server.url, api_key="fake", max_retries=0)
    system = [
        {
            "type": "text",
            "text": " ".join(["rule"] * 1500),
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    body = {**CALL, "model": "claude-haiku-4-5", "system": system,
            "thinking": {"type": "enabled", "budget_tokens": 1024}}  # fmt: skip
    client.messages.create(**create_arguments(**body))  # writes the system prompt to the 1-hour cache
    with client.messages.stream(**create_arguments(**body)) as stream:  # reads it
        assert "".join(stream.text_stream) == "This is a fake answer from the tokentrail"
    client.messages.count_tokens(model="claude-haiku-4-5", messages=MESSAGES)
    write, read = recorded.calls
    prompt = 3 + 2000 + 3 + 3 + 3  # system overhead + 1500 words + message + "Say hello" + priming
    assert write.usage.input_tokens == read.usage.input_tokens == prompt
    assert write.usage.cache_write_1h_tokens == write.usage.cache_write_tokens == 2003
    assert read.usage.cache_read_tokens == 2003 and read.usage.cache_write_tokens == 0
    assert write.usage.output_tokens == read.usage.output_tokens == 192 + 8
    assert write.usage.reasoning_tokens == 192
    assert write.response_model == "claude-haiku-4-5-20251001"
    snapshot = "claude-haiku-4-5-20251001"
    output = {"output_tokens": 200, "output_reasoning_tokens": 192}
    written = expected_cost(
        snapshot, input_tokens=prompt, cache_write_tokens=2003, cache_write_1h_tokens=2003, **output
    )
    assert math.isclose(write.cost.total, written, rel_tol=1e-9)
    cached = expected_cost(snapshot, input_tokens=prompt, cache_read_tokens=2003, **output)
    assert math.isclose(read.cost.total, cached, rel_tol=1e-9)


async def test_fake_server_async_and_cut_stream(recorded, server):
    server.reset()
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="fake", max_retries=0)
    plain = await client.messages.create(**{**CALL, "model": "claude-haiku-4-5"})
    stream = await client.messages.create(**{**CALL, "model": "claude-haiku-4-5"}, stream=True)
    [event async for event in stream]
    server.cut_next_stream(4)
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        async for _event in await client.messages.create(
            **{**CALL, "model": "claude-haiku-4-5"}, stream=True
        ):
            pass
    whole, streamed, cut = recorded.calls
    assert whole.usage == streamed.usage and whole.usage.output_tokens == plain.usage.output_tokens == 8
    assert cut.error_type == "APIStatusError" and cut.incomplete
    assert cut.usage.input_tokens == whole.usage.input_tokens and cut.usage.output_tokens == 1
