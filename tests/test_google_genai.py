"""The real google-genai SDK over a mock transport and against the fake server: Gemini API and
Vertex AI, sync and async, streamed and not, chats, automatic continuation and function calling."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
from typing import Any

import genai_prices
import pytest
from google.genai import errors, types

import tokentrail
from gemini_wire import (
    MODEL,
    RESPONSE_ID,
    SDK_KEEPS_RESPONSE_ID,
    VERSION,
    WORDS,
    FakeGemini,
    http_module,
    response,
    stream_chunks,
    usage,
)
from tokentrail import semconv as sc
from tokentrail.providers import google_genai as gemini
from tokentrail.providers._patch import Patches
from tokentrail.testing import FakeLLMServer, _gemini_wire

GEMINI_HOST = "generativelanguage.googleapis.com"
ONLY_GEMINI = {"providers": ["google_genai"]}  # the other SDKs' imports would double this file's time
pytestmark = pytest.mark.tokentrail(**ONLY_GEMINI)


def expected_cost(model: str, **tokens: int) -> float:
    """The cost genai-prices computes for these token counts (our figure must equal it)."""
    return float(
        genai_prices.calc_price(genai_prices.Usage(**tokens), model, provider_id="google").total_price
    )


# The default mock usage: 1500 prompt tokens (1024 of them from the cache), 40 candidate tokens
# and 120 thought tokens beside them.
DEFAULT_TOKENS = {
    "input_tokens": 1500,
    "cache_read_tokens": 1024,
    "output_tokens": 160,
    "output_reasoning_tokens": 120,
}


def assert_generate_span(
    span: Any, *, stream: bool, provider: str = "gcp.gemini", host: str = GEMINI_HOST
) -> None:
    attributes = dict(span.attributes)
    assert span.name == f"generate_content {MODEL}"
    assert span.kind.name == "CLIENT"
    assert attributes[sc.OPERATION_NAME] == "generate_content"
    assert attributes[sc.PROVIDER_NAME] == provider
    assert attributes[sc.REQUEST_MODEL] == MODEL
    assert attributes[sc.RESPONSE_MODEL] == VERSION
    assert attributes.get(sc.RESPONSE_ID) == (RESPONSE_ID if SDK_KEEPS_RESPONSE_ID[provider] else None)
    assert attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attributes[sc.SERVER_ADDRESS] == host
    assert attributes[sc.SERVER_PORT] == 443
    assert attributes[sc.USAGE_INPUT_TOKENS] == 1500
    assert attributes[sc.USAGE_OUTPUT_TOKENS] == 40 + 120  # thoughts are output too
    assert attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 1024
    assert attributes[sc.USAGE_REASONING_OUTPUT_TOKENS] == 120
    assert sc.USAGE_INCONSISTENT not in attributes
    cost = expected_cost(VERSION, **DEFAULT_TOKENS)
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    assert attributes[sc.COST_SOURCE] == "local"
    assert attributes[sc.COST_USD_MICROS] == round(cost * 1e6)
    assert math.isclose(attributes[sc.COST_INPUT] + attributes[sc.COST_OUTPUT], cost, rel_tol=1e-9)
    assert attributes[sc.PRICE_MODEL] == VERSION
    assert (sc.REQUEST_STREAM in attributes) is stream
    if stream:
        assert attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
    assert sc.STREAM_INCOMPLETE not in attributes
    assert sc.INPUT_MESSAGES not in attributes and sc.OUTPUT_MESSAGES not in attributes


# --- generate_content ---------------------------------------------------------------------------


def test_generate_content(recorded):
    fake = FakeGemini()
    config = types.GenerateContentConfig(
        temperature=0.2, top_p=0.9, top_k=40, max_output_tokens=500, stop_sequences=["END"], seed=7,
        candidate_count=2, response_mime_type="application/json",
    )  # fmt: skip
    result = fake.client().models.generate_content(model=MODEL, contents="Say hello", config=config)
    assert result.text == "Hello there!"
    span = recorded.span()
    assert_generate_span(span, stream=False)
    attributes = span.attributes
    assert attributes[sc.REQUEST_TEMPERATURE] == 0.2
    assert attributes[sc.REQUEST_TOP_P] == 0.9
    assert attributes[sc.REQUEST_TOP_K] == 40
    assert attributes[sc.REQUEST_MAX_TOKENS] == 500
    assert attributes[sc.REQUEST_STOP_SEQUENCES] == ("END",)
    assert attributes[sc.REQUEST_SEED] == 7
    assert attributes[sc.REQUEST_CHOICE_COUNT] == 2
    assert attributes[sc.OUTPUT_TYPE] == "json"
    # Metrics: exact token counts, the cost, the parts.
    (input_point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input")
    (output_point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="output")
    assert (input_point.sum, input_point.count, output_point.sum) == (1500, 1, 160)
    assert input_point.attributes[sc.PROVIDER_NAME] == "gcp.gemini"
    assert input_point.attributes[sc.RESPONSE_MODEL] == VERSION
    (cost_point,) = recorded.points(sc.METRIC_OPERATION_COST)
    assert math.isclose(cost_point.sum, attributes[sc.COST_AMOUNT], rel_tol=1e-12)
    (reasoning,) = recorded.points(sc.METRIC_TOKEN_PARTS, gen_ai__token__type="reasoning")
    (cache_read,) = recorded.points(sc.METRIC_TOKEN_PARTS, gen_ai__token__type="cache_read")
    assert (reasoning.value, cache_read.value) == (120, 1024)
    (call,) = recorded.calls
    assert call.usage.total_tokens == call.usage.reported_total_tokens == 1660
    assert call.cost.total == attributes[sc.COST_AMOUNT]
    assert "AIza-fake-SECRET" not in str(span.to_json())


def test_stream_and_stream_usage_equal_non_streamed_usage(recorded):
    fake = FakeGemini()
    client = fake.client()
    client.models.generate_content(model=MODEL, contents="Say hello")
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))
    assert "".join(c.text for c in chunks) == "Hello there!"
    # Every chunk carried the running usage total: adding them up would count the prompt 4 times.
    assert [c.usage_metadata.prompt_token_count for c in chunks] == [1500] * len(WORDS)
    plain, streamed = recorded.spans()
    assert_generate_span(plain, stream=False)
    assert_generate_span(streamed, stream=True)
    assert recorded.calls[0].usage == recorded.calls[1].usage
    assert recorded.calls[0].cost == recorded.calls[1].cost
    assert fake.sent[-1]["url"].endswith(f"models/{MODEL}:streamGenerateContent?alt=sse")


async def test_async_generate_and_stream(recorded):
    client = FakeGemini().client()
    result = await client.aio.models.generate_content(model=MODEL, contents="Say hello")
    assert result.usage_metadata.thoughts_token_count == 120
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents="Say hello")
    chunks = [chunk async for chunk in stream]
    assert len(chunks) == len(WORDS)
    plain, streamed = recorded.spans()
    assert_generate_span(plain, stream=False)
    assert_generate_span(streamed, stream=True)
    assert recorded.calls[0].usage == recorded.calls[1].usage


@pytest.mark.skipif(
    "should_return_http_response" not in types.GenerateContentConfig.model_fields,
    reason="this google-genai cannot return the raw HTTP response (should_return_http_response: 1.21+)",
)
def test_raw_http_response_is_read_too(recorded):
    config = types.GenerateContentConfig(should_return_http_response=True)
    raw = FakeGemini().client().models.generate_content(model=MODEL, contents="Say hello", config=config)
    assert raw.usage_metadata is None and raw.sdk_http_response.body  # the SDK did not parse it
    assert_generate_span(recorded.span(), stream=False)


def test_model_names_are_reduced_to_the_model_id(recorded):
    FakeGemini().client().models.generate_content(model=f"models/{MODEL}", contents="hi")
    assert recorded.span().attributes[sc.REQUEST_MODEL] == MODEL
    assert (
        gemini.model_id("projects/p/locations/l/publishers/google/models/gemini-2.5-pro") == "gemini-2.5-pro"
    )
    assert gemini.model_id("google/gemini-2.5-pro") == "gemini-2.5-pro"
    assert gemini.model_id("tunedModels/my-model-123") == "tunedModels/my-model-123"


async def test_the_span_is_current_while_the_request_is_sent(recorded):
    from opentelemetry import trace

    seen: list[int] = []
    fake = FakeGemini()
    answer = fake.handler

    def remember(request: Any) -> Any:
        seen.append(trace.get_current_span().get_span_context().span_id)  # what traceparent would carry
        return answer(request)

    fake.handler = remember  # type: ignore[method-assign]
    client = fake.client()
    client.models.generate_content(model=MODEL, contents="hi")
    list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    async for _chunk in await client.aio.models.generate_content_stream(model=MODEL, contents="hi"):
        pass
    assert seen == [span.context.span_id for span in recorded.spans()]


# --- chats ---------------------------------------------------------------------------------------


def test_chat_messages_are_counted_once_each(recorded):
    client = FakeGemini().client()
    chat = client.chats.create(model=MODEL)
    assert chat.send_message("Hi").text == "Hello there!"
    assert "".join(c.text for c in chat.send_message_stream("And again?")) == "Hello there!"
    plain, streamed = recorded.spans()
    assert_generate_span(plain, stream=False)
    assert_generate_span(streamed, stream=True)
    (point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input")
    assert (point.count, point.sum) == (2, 3000)


async def test_async_chat_counted_once_each(recorded):
    client = FakeGemini().client()
    chat = client.aio.chats.create(model=MODEL)
    await chat.send_message("Hi")
    async for _chunk in await chat.send_message_stream("Again"):
        pass
    assert [s.attributes[sc.USAGE_INPUT_TOKENS] for s in recorded.spans()] == [1500, 1500]
    assert [sc.REQUEST_STREAM in s.attributes for s in recorded.spans()] == [False, True]


# --- streams that stop early ---------------------------------------------------------------------


def test_stream_closed_early_ends_span_once(recorded):
    stream = FakeGemini().client().models.generate_content_stream(model=MODEL, contents="Say hello")
    first = next(stream)
    assert first.text == "Hel"
    stream.close()
    stream.close()
    span = recorded.span()
    assert span.attributes[sc.STREAM_INCOMPLETE] is True
    # What the first chunk said so far: the prompt side, 10 of the 40 candidate tokens.
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 1500
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 10 + 120
    assert span.attributes[sc.RESPONSE_MODEL] == VERSION


def test_abandoned_stream_ends_span_when_collected(recorded):
    stream = FakeGemini().client().models.generate_content_stream(model=MODEL, contents="Say hello")
    next(stream)
    assert recorded.spans() == []
    del stream
    gc.collect()
    assert recorded.span().attributes[sc.STREAM_INCOMPLETE] is True


async def test_async_stream_closed_early(recorded):
    stream = await FakeGemini().client().aio.models.generate_content_stream(model=MODEL, contents="Say hello")
    async for _chunk in stream:
        break
    await stream.aclose()
    # The SDK drops its per-request generator unclosed; asyncio closes it on the next loop turns.
    for _ in range(3):
        await asyncio.sleep(0)
    span = recorded.span()
    assert span.attributes[sc.STREAM_INCOMPLETE] is True
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 1500


async def test_async_stream_proxy_aclose_ends_the_call(recorded):
    # The SDK only iterates its per-request stream; a caller closing it directly must end the call too.
    from google.genai import models

    client = FakeGemini().client()
    chunks = await models.AsyncModels._generate_content_stream(client.aio.models, model=MODEL, contents="hi")
    await chunks.__anext__()
    await chunks.aclose()
    assert recorded.span().attributes[sc.STREAM_INCOMPLETE] is True


# --- errors --------------------------------------------------------------------------------------


def test_sdk_error_passes_through_and_is_recorded(recorded):
    client = FakeGemini(status=429).client()
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model=MODEL, contents="hi")
    assert caught.value.code == 429
    tokentrail.uninstrument()
    with pytest.raises(errors.ClientError) as plain:
        client.models.generate_content(model=MODEL, contents="hi")
    assert str(plain.value) == str(caught.value)
    span = recorded.span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes[sc.ERROR_TYPE] == "ClientError"
    assert "AIza-fake-SECRET" not in str(span.to_json())
    (point,) = recorded.points(sc.METRIC_OPERATION_DURATION)
    assert point.attributes[sc.ERROR_TYPE] == "ClientError"
    assert recorded.points(sc.METRIC_TOKEN_USAGE) == []


@pytest.mark.parametrize("is_async", [False, True])
async def test_stream_refused_before_its_first_chunk(recorded, is_async):
    client = FakeGemini(status=429).client()
    with pytest.raises(errors.ClientError):
        if is_async:
            async for _chunk in await client.aio.models.generate_content_stream(model=MODEL, contents="hi"):
                pass
        else:
            list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    attributes = recorded.span().attributes
    assert attributes[sc.ERROR_TYPE] == "ClientError"
    assert sc.STREAM_INCOMPLETE not in attributes  # it never started


def test_error_mid_stream_passes_through(recorded):
    httpx = http_module()

    def broken(request: Any) -> Any:
        def body():
            yield f"data: {json.dumps(stream_chunks()[0])}\r\n\r\n".encode()
            raise httpx.ReadError("connection reset")

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    def consume() -> tuple[type[BaseException], int]:
        client = FakeGemini(replies=[broken]).client()
        received = []
        try:
            for chunk in client.models.generate_content_stream(model=MODEL, contents="hi"):
                received.append(chunk)
        except Exception as error:  # whatever this SDK version raises for a dropped connection
            return type(error), len(received)
        raise AssertionError("the stream should have failed")

    instrumented = consume()
    span = recorded.span()
    tokentrail.uninstrument()
    assert consume() == instrumented
    assert instrumented[1] == 1
    assert span.attributes[sc.ERROR_TYPE] == instrumented[0].__qualname__
    assert span.attributes[sc.STREAM_INCOMPLETE] is True
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 1500  # what had arrived


def test_failure_inside_tokentrail_never_reaches_the_application(recorded, monkeypatch, caplog):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in tokentrail")

    monkeypatch.setattr(gemini.GenerateContent, "response", broken)
    monkeypatch.setattr(gemini.GenerateStreamState, "add", broken)
    client = FakeGemini().client()
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        for _ in range(3):
            assert client.models.generate_content(model=MODEL, contents="hi").text == "Hello there!"
        text = "".join(c.text for c in client.models.generate_content_stream(model=MODEL, contents="hi"))
        tokentrail.flush()  # responses are read on the recorder thread
    assert text == "Hello there!"
    logged = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(logged) == 2  # once per place, not per call
    assert len(recorded.spans()) == 4


def test_failure_in_request_reading_runs_the_call_uninstrumented(recorded, monkeypatch):
    monkeypatch.setattr(gemini.GenerateContent, "request", lambda *a, **k: 1 / 0)
    result = FakeGemini().client().models.generate_content(model=MODEL, contents="hi")
    assert result.usage_metadata.prompt_token_count == 1500
    assert recorded.spans() == []


# --- usage in the normal form ------------------------------------------------------------------


def test_thoughts_are_output_and_priced(recorded):
    fake = FakeGemini(usage=usage(prompt=200, candidates=10, thoughts=900, cached=0))
    fake.client().models.generate_content(model=MODEL, contents="Think hard")
    attributes = recorded.span().attributes
    assert attributes[sc.USAGE_OUTPUT_TOKENS] == 910
    assert attributes[sc.USAGE_REASONING_OUTPUT_TOKENS] == 900
    cost = expected_cost(VERSION, input_tokens=200, output_tokens=910, output_reasoning_tokens=900)
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    assert cost > 10 * expected_cost(VERSION, input_tokens=200, output_tokens=10)


def test_tool_use_prompt_tokens_are_input(recorded):
    fake = FakeGemini(usage=usage(prompt=200, candidates=10, thoughts=0, cached=0, tool_use=300))
    config = types.GenerateContentConfig(tools=[types.Tool(code_execution=types.ToolCodeExecution())])
    fake.client().models.generate_content(model=MODEL, contents="Compute", config=config)
    attributes = recorded.span().attributes
    assert attributes[sc.USAGE_INPUT_TOKENS] == 500
    assert sc.USAGE_INCONSISTENT not in attributes  # reconciled with totalTokenCount
    assert math.isclose(
        attributes[sc.COST_AMOUNT], expected_cost(VERSION, input_tokens=500, output_tokens=10), rel_tol=1e-9
    )


def test_modalities_are_priced_at_their_rates(recorded):
    metadata = usage(prompt=1000, candidates=300, thoughts=0, cached=0,
                     prompt_details=[("TEXT", 400), ("AUDIO", 500), ("IMAGE", 100)],
                     candidates_details=[("TEXT", 100), ("AUDIO", 200)])  # fmt: skip
    FakeGemini(usage=metadata).client().models.generate_content(model=MODEL, contents="Listen")
    attributes = recorded.span().attributes
    assert attributes[sc.USAGE_INPUT_AUDIO_TOKENS] == 500
    assert attributes[sc.USAGE_INPUT_IMAGE_TOKENS] == 100
    assert attributes[sc.USAGE_OUTPUT_AUDIO_TOKENS] == 200
    tokens = {"input_tokens": 1000, "output_tokens": 300, "input_audio_tokens": 500,
              "input_image_tokens": 100, "output_audio_tokens": 200}  # fmt: skip
    cost = expected_cost(VERSION, **tokens)
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    assert cost > expected_cost(VERSION, input_tokens=1000, output_tokens=300)  # audio input costs more


def test_long_context_tier_applies_to_the_whole_call(recorded):
    long = response(usage(prompt=250_000, candidates=1000, thoughts=0, cached=0), version="gemini-2.5-pro")
    FakeGemini(replies=[long]).client().models.generate_content(
        model="gemini-2.5-pro", contents="A long text"
    )
    attributes = recorded.span().attributes
    cost = expected_cost("gemini-2.5-pro", input_tokens=250_000, output_tokens=1000)
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    # The cliff: past 200k input tokens every token of the call pays the higher rate (per-token
    # tiering would make the average rate depend on how far past the threshold the call went).
    rate = attributes[sc.COST_INPUT] / 250_000
    assert math.isclose(rate, expected_cost("gemini-2.5-pro", input_tokens=400_000) / 400_000, rel_tol=1e-9)
    assert rate > expected_cost("gemini-2.5-pro", input_tokens=150_000) / 150_000


def test_inconsistent_total_is_flagged_not_dropped(recorded):
    FakeGemini(usage=usage(total=10)).client().models.generate_content(model=MODEL, contents="hi")
    attributes = recorded.span().attributes
    assert attributes[sc.USAGE_INCONSISTENT] is True
    assert attributes[sc.USAGE_INPUT_TOKENS] == 1500
    assert "reported total 10" in attributes[sc.USAGE_PROBLEMS][0]


def test_unknown_model_is_unpriced(recorded):
    FakeGemini().client().models.generate_content(model="tunedModels/my-tune", contents="hi")
    # The response names the base model it ran, which the catalogue knows.
    assert recorded.span().attributes[sc.PRICE_MODEL] == VERSION
    FakeGemini(replies=[response(version="my-private-model")]).client().models.generate_content(
        model="tunedModels/my-tune", contents="hi"
    )
    attributes = recorded.spans()[-1].attributes
    assert attributes[sc.PRICE_UNPRICED] is True
    assert sc.COST_AMOUNT not in attributes


# --- one span per billed request: continuation and automatic function calling ------------------


def _continuation_replies(prompt: int, model: str) -> list[dict]:
    first = response(usage(prompt=prompt, candidates=500, thoughts=0, cached=0), text="Part one. ",
                     finish="CONTINUATION", version=model, continuation=b"token-1")  # fmt: skip
    second = response(
        usage(prompt=prompt, candidates=300, thoughts=0, cached=0), text="Part two.", version=model
    )
    return [first, second]


NO_CONTINUATION = pytest.mark.skipif(
    not hasattr(types.FinishReason, "CONTINUATION"), reason="this google-genai does not continue a response"
)


@NO_CONTINUATION
def test_automatic_continuation_prices_each_request_at_its_own_tier(recorded):
    fake = FakeGemini(replies=_continuation_replies(150_000, "gemini-2.5-pro"))
    merged = fake.client().models.generate_content(model="gemini-2.5-pro", contents="A long report")
    assert len(fake.sent) == 2 and merged.text == "Part one. Part two."
    # The SDK hands back one response with the SUM of both requests' usage ...
    assert merged.usage_metadata.prompt_token_count == 300_000
    # ... but each request is its own span, priced at its own (lower) tier.
    first, second = recorded.spans()
    assert first.attributes[sc.RESPONSE_FINISH_REASONS] == ("continuation",)
    assert second.attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    for span, output in ((first, 500), (second, 300)):
        assert span.attributes[sc.USAGE_INPUT_TOKENS] == 150_000
        cost = expected_cost("gemini-2.5-pro", input_tokens=150_000, output_tokens=output)
        assert math.isclose(span.attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    summed = recorded.calls[0].usage + recorded.calls[1].usage
    assert summed.input_tokens == merged.usage_metadata.prompt_token_count
    assert summed.output_tokens == merged.usage_metadata.candidates_token_count
    merged_cost = expected_cost("gemini-2.5-pro", input_tokens=300_000, output_tokens=800)
    assert recorded.calls[0].cost.total + recorded.calls[1].cost.total < merged_cost


@NO_CONTINUATION
def test_streamed_continuation_is_one_span_per_request(recorded):
    first, second = _continuation_replies(1000, VERSION)
    fake = FakeGemini(replies=[[first], [second]])
    chunks = list(fake.client().models.generate_content_stream(model=MODEL, contents="Go on"))
    assert "".join(c.text for c in chunks) == "Part one. Part two."
    assert [s.attributes[sc.USAGE_OUTPUT_TOKENS] for s in recorded.spans()] == [500, 300]
    assert [s.attributes[sc.USAGE_INPUT_TOKENS] for s in recorded.spans()] == [1000, 1000]


def test_automatic_function_calling_counts_each_request(recorded):
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}"

    get_weather.__annotations__ = {"city": str, "return": str}  # older SDKs cannot read string annotations
    call_part = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    replies = [
        response(usage(prompt=100, candidates=10, thoughts=0, cached=0), parts=call_part),
        response(usage(prompt=130, candidates=8, thoughts=0, cached=0), text="It is sunny in Paris."),
    ]
    fake = FakeGemini(replies=replies)
    config = types.GenerateContentConfig(tools=[get_weather])
    with tokentrail.span("ask weather", task="weather"):  # one roll-up over the requests
        result = fake.client().models.generate_content(
            model=MODEL, contents="Weather in Paris?", config=config
        )
    assert result.text == "It is sunny in Paris."
    assert len(fake.sent) == 2
    assert [(c.usage.input_tokens, c.usage.output_tokens) for c in recorded.calls] == [(100, 10), (130, 8)]
    spans = recorded.spans()
    (unit,) = [s for s in spans if s.name == "ask weather"]
    first, second = [s for s in spans if s.name != "ask weather"]  # LLM spans end in call order
    assert first.parent.span_id == second.parent.span_id == unit.context.span_id
    assert (unit.attributes[sc.ROLLUP_CALLS], unit.attributes[sc.ROLLUP_INPUT_TOKENS]) == (2, 230)


# --- Vertex AI and the Gemini API ----------------------------------------------------------------


def test_vertex_ai_client_is_vertex_and_priced_as_google(recorded):
    fake = FakeGemini()
    fake.client(vertexai=True).models.generate_content(model=MODEL, contents="Say hello")
    assert "/projects/my-project/locations/us-central1/publishers/google/models/" in fake.sent[-1]["url"]
    assert_generate_span(recorded.span(), stream=False, provider="gcp.vertex_ai",
                         host="us-central1-aiplatform.googleapis.com")  # fmt: skip


def test_vertex_ai_express_mode(recorded):
    FakeGemini().client(vertexai=True, api_key="vertex-key").models.generate_content(
        model=MODEL, contents="x"
    )
    attributes = recorded.span().attributes
    assert attributes[sc.PROVIDER_NAME] == "gcp.vertex_ai"
    assert attributes[sc.SERVER_ADDRESS] == "aiplatform.googleapis.com"


def test_vertex_ai_embeddings_from_token_statistics(recorded):
    result = (
        FakeGemini()
        .client(vertexai=True)
        .models.embed_content(model="text-embedding-005", contents=["a", "b"])
    )
    assert len(result.embeddings) == 2
    span = recorded.span()
    assert span.name == "embeddings text-embedding-005"
    assert span.attributes[sc.OPERATION_NAME] == "embeddings"
    assert span.attributes[sc.PROVIDER_NAME] == "gcp.vertex_ai"
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 5 + 6


def test_gemini_api_embeddings(recorded):
    result = (
        FakeGemini().client().models.embed_content(model="gemini-embedding-001", contents=["a", "b", "c"])
    )
    assert len(result.embeddings) == 3
    span = recorded.span()
    assert span.name == "embeddings gemini-embedding-001"
    assert span.attributes[sc.SERVER_ADDRESS] == GEMINI_HOST
    assert recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="output") == []
    if "usage_metadata" not in types.EmbedContentResponse.model_fields:
        # google-genai 2.x drops the usage the API reports for embeddings: nothing to count.
        assert span.attributes[sc.USAGE_MISSING] is True
        return
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 21
    assert math.isclose(
        span.attributes[sc.COST_AMOUNT], expected_cost("gemini-embedding-001", input_tokens=21), rel_tol=1e-9
    )


async def test_async_embeddings(recorded):
    await (
        FakeGemini().client(vertexai=True).aio.models.embed_content(model="text-embedding-005", contents="a")
    )
    assert recorded.span().attributes[sc.USAGE_INPUT_TOKENS] == 5


def test_per_request_base_url_is_the_server(recorded):
    config = types.GenerateContentConfig(
        http_options=types.HttpOptions(base_url="https://gateway.example:8443/")
    )
    FakeGemini().client().models.generate_content(model=MODEL, contents="x", config=config)
    attributes = recorded.span().attributes
    assert (attributes[sc.SERVER_ADDRESS], attributes[sc.SERVER_PORT]) == ("gateway.example", 8443)
    assert attributes[sc.PROVIDER_NAME] == "gcp.gemini"


# --- content capture -----------------------------------------------------------------------------


@pytest.mark.tokentrail(capture_content="SPAN_ONLY", **ONLY_GEMINI)
def test_content_capture_opt_in(recorded):
    contents = [
        types.Content(role="user", parts=[types.Part.from_text(text="What is in this picture?"),
                                          types.Part.from_bytes(data=b"\x89PNG", mime_type="image/png")]),
        types.Content(role="model", parts=[types.Part.from_text(text="A cat.")]),
        "And its name?",
    ]  # fmt: skip
    config = types.GenerateContentConfig(system_instruction="Be brief")
    FakeGemini().client().models.generate_content(model=MODEL, contents=contents, config=config)
    attributes = recorded.span().attributes
    assert json.loads(attributes[sc.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is in this picture?"},
                                   {"type": "blob", "mime_type": "image/png"}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "A cat."}]},
        {"role": "user", "parts": [{"type": "text", "content": "And its name?"}]},
    ]  # fmt: skip
    assert json.loads(attributes[sc.SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief"}]
    assert json.loads(attributes[sc.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello there!"}], "finish_reason": "stop"}
    ]


@pytest.mark.tokentrail(capture_content="EVENT_ONLY", **ONLY_GEMINI)
def test_content_capture_of_a_stream_as_event(recorded):
    list(FakeGemini().client().models.generate_content_stream(model=MODEL, contents="Say hello"))
    span = recorded.span()
    assert sc.INPUT_MESSAGES not in span.attributes
    assert not span.events  # the content event is a log record, in the call's span context
    (event,) = recorded.events(sc.CONTENT_EVENT)
    assert event.trace_id == span.context.trace_id
    assert '"content": "Hello there!"' in event.attributes[sc.OUTPUT_MESSAGES]
    assert '"content": "Say hello"' in event.attributes[sc.INPUT_MESSAGES]


def test_input_messages_shapes():
    assert gemini.input_messages("hi") == [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    tool_result = {
        "role": "user",
        "parts": [{"function_response": {"name": "f", "id": "c1", "response": {"x": 1}}}],
    }
    assert gemini.input_messages([tool_result]) == [
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": {"x": 1}}]}
    ]
    call = types.Part(function_call=types.FunctionCall(name="f", args={"a": 1}, id="c1"))
    assert gemini.input_messages([types.Content(role="model", parts=[call])])[0]["parts"] == [
        {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"a": 1}}
    ]


# --- patching -------------------------------------------------------------------------------------


def test_uninstrument_restores_the_sdk_methods(recorded):
    from google.genai import models

    assert hasattr(models.Models._generate_content, "__wrapped__")
    assert hasattr(models.AsyncModels._generate_content_stream, "__wrapped__")
    tokentrail.uninstrument()
    for owner in (models.Models, models.AsyncModels):
        for name in ("_generate_content", "_generate_content_stream", "_embed_content", "embed_content"):
            assert not hasattr(vars(owner).get(name), "__wrapped__")
    FakeGemini().client().models.generate_content(model=MODEL, contents="hi")
    assert recorded.spans() == []


def test_instrument_twice_counts_once(recorded):
    tokentrail.instrument(providers=["google_genai"], sinks=[recorded.calls.append], setup_otel=False)
    FakeGemini().client().models.generate_content(model=MODEL, contents="hi")
    assert len(recorded.calls) == 1


def test_clients_created_before_instrument_are_covered():
    tokentrail.uninstrument()
    client = FakeGemini().client()
    calls: list[Any] = []
    assert tokentrail.instrument(sinks=[calls.append], setup_otel=False, **ONLY_GEMINI) == ["google_genai"]
    try:
        client.models.generate_content(model=MODEL, contents="hi")
    finally:
        tokentrail.uninstrument()
    assert len(calls) == 1 and calls[0].usage.input_tokens == 1500


def test_patches_are_idempotent():
    from google.genai import models

    patches = gemini.patches()
    assert isinstance(patches, Patches)
    patches.install()
    patches.install()
    assert patches.installed
    assert not hasattr(models.Models._generate_content.__wrapped__, "__wrapped__")  # wrapped once
    patches.remove()
    assert not patches.installed
    assert not hasattr(models.Models._generate_content, "__wrapped__")


async def test_patch_mechanics_cover_async_generator_methods_and_missing_names(recorded, caplog):
    # Older SDK releases stream from async generator functions; a renamed method is reported once.
    from tokentrail.providers._contract import Plan
    from tokentrail.providers._patch import Target
    from tokentrail.records import RequestInfo

    class Reader:
        def request(self, instance, args, kwargs, settings):
            return Plan(
                RequestInfo(
                    operation="generate_content", provider="gcp.gemini", request_model="m", stream=True
                ),
                self,
            )

        def stream_state(self, request, hide_usage_chunk):
            return gemini.GenerateStreamState(capture=False)

    class OldModels:
        async def _generate_content_stream(self, *, model):
            for chunk in stream_chunks():
                yield types.GenerateContentResponse._from_response(response=chunk, kwargs={})

    patches = Patches(
        "old-sdk",
        [Target(OldModels, ("_generate_content_stream",), "stream", Reader()),
         Target(OldModels, ("_gone",), "call", Reader())],
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        patches.install()
    assert "OldModels._gone not found" in caplog.text
    try:
        chunks = [c async for c in OldModels()._generate_content_stream(model="m")]
    finally:
        patches.remove()
    assert len(chunks) == len(WORDS)
    assert recorded.span().attributes[sc.USAGE_INPUT_TOKENS] == 1500
    assert not hasattr(OldModels._generate_content_stream, "__wrapped__")


# --- against the fake server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as running:
        yield running


def _fake_client(server: FakeLLMServer, **kwargs: Any) -> Any:
    from google import genai

    return genai.Client(api_key="fake-key", http_options={"base_url": server.url}, **kwargs)


@pytest.mark.skipif(
    "thinking_budget" not in types.ThinkingConfig.model_fields,
    reason="this google-genai cannot ask for a thinking budget (ThinkingConfig.thinking_budget: 1.10+)",
)
async def test_fake_server_end_to_end(recorded, server):
    THINKING = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=256),
        tools=[types.Tool(code_execution=types.ToolCodeExecution())],
        system_instruction="Be brief",
    )
    client = _fake_client(server)
    text = "Say hello to the fake server"  # 6 words: 8 tokens; "Be brief": 3
    whole = client.models.generate_content(model="gemini-2.5-flash", contents=text, config=THINKING)
    chunks = list(
        client.models.generate_content_stream(model="gemini-2.5-flash", contents=text, config=THINKING)
    )
    await client.aio.models.generate_content(model="gemini-2.5-flash", contents=text, config=THINKING)
    async for _chunk in await client.aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents=text, config=THINKING
    ):
        pass
    assert whole.text == "".join(c.text for c in chunks) == "This is a fake answer from the tokentrail"
    assert len(recorded.calls) == 4
    first = recorded.calls[0]
    assert all(call.usage == first.usage and call.cost == first.cost for call in recorded.calls)
    prompt, tool_use, thoughts = 8 + 3, _gemini_wire.TOOL_USE_PROMPT_TOKENS, 256
    assert (first.usage.input_tokens, first.usage.output_tokens) == (prompt + tool_use, 8 + thoughts)
    assert first.usage.reasoning_tokens == thoughts and first.usage.consistent
    cost = expected_cost("gemini-2.5-flash", input_tokens=prompt + tool_use, output_tokens=8 + thoughts,
                         output_reasoning_tokens=thoughts)  # fmt: skip
    assert math.isclose(first.cost.total, cost, rel_tol=1e-9)
    assert {(c.provider, c.server_address, c.response_model) for c in recorded.calls} == {
        ("gcp.gemini", "127.0.0.1", "gemini-2.5-flash")
    }


def test_fake_server_cached_content_and_vertex(recorded, server):
    vertex = _fake_client(server, vertexai=True)
    config = types.GenerateContentConfig(cached_content="cachedContents/report-5000")
    vertex.models.generate_content(model="gemini-2.5-pro", contents="Summarize", config=config)
    (call,) = recorded.calls
    assert call.provider == "gcp.vertex_ai"
    assert (call.usage.input_tokens, call.usage.cache_read_tokens) == (5000 + 2, 5000)
    cost = expected_cost("gemini-2.5-pro", input_tokens=5002, cache_read_tokens=5000, output_tokens=8)
    assert math.isclose(call.cost.total, cost, rel_tol=1e-9)
    assert "/publishers/google/models/gemini-2.5-pro:generateContent" in server.requests[-1].path


def test_fake_server_errors_and_cut_streams(recorded, server):
    client = _fake_client(server)
    server.fail_next(429)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")
    server.cut_next_stream(after_chunks=3)
    received = []
    with pytest.raises(Exception):  # noqa: B017 - whatever this SDK version raises for a broken body
        for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
            received.append(chunk)
    assert len(received) == 3
    refused, cut = recorded.spans()
    assert refused.attributes[sc.ERROR_TYPE] == "ClientError"
    assert cut.attributes[sc.STREAM_INCOMPLETE] is True
    assert cut.attributes[sc.USAGE_OUTPUT_TOKENS] == 3  # the running total when it broke
