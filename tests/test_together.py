"""The together SDK (2.x and 3.x), for real, over HTTP against the fake provider server (Together's
wire format, under ``/together``).

Expected figures are worked out from the server's own rules (the prompt's words, the answer's
chunks) and priced by genai-prices itself; tokentrail's must equal them.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from typing import Any

import genai_prices
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokentrail
from tokentrail import semconv as sc
from tokentrail.instrumentation import TogetherInstrumentor
from tokentrail.providers import together as together_provider
from tokentrail.testing import FakeLLMServer, _model, _openai_wire
from tokentrail.testing.fake_server import DEFAULT_CHUNKS

together = pytest.importorskip("together")

MODEL = "deepseek-ai/DeepSeek-V4.1-Flash"  # a catalogue model of Together's with a cache-read rate
MESSAGES = [{"role": "user", "content": "Say hello to the fake server"}]
MAJOR = int(together.__version__.split(".")[0])


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def client(server: FakeLLMServer, *, is_async: bool = False) -> Any:
    make = together.AsyncTogether if is_async else together.Together
    # 3.x paths start with /v1; 2.x's base URL ends with it.
    base_url = f"{server.url}/together" if MAJOR >= 3 else f"{server.url}/together/v1"
    return make(base_url=base_url, api_key="tg-test-SECRET", max_retries=0)


def together_price(usage: tokentrail.Usage, model: str = MODEL) -> float:
    """What genai-prices charges Together for these tokens."""
    tokens = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
    )
    return float(genai_prices.calc_price(tokens, model, provider_id="together").total_price)


def test_chat_create_one_span_exact_usage_and_cost(recorded, server):
    server.reset()
    response = client(server).chat.completions.create(model=MODEL, messages=MESSAGES)
    (call,) = recorded.calls
    span = recorded.span()
    attributes = dict(span.attributes)
    assert span.name == f"chat {MODEL}" and span.kind.name == "CLIENT"
    assert attributes[sc.PROVIDER_NAME] == "together"
    assert attributes[sc.OPERATION_NAME] == "chat"
    assert attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
    prompt_tokens = _openai_wire.chat_prompt_tokens(server.requests[-1].body)
    assert call.usage.input_tokens == response.usage.prompt_tokens == prompt_tokens
    assert call.usage.output_tokens == response.usage.completion_tokens == DEFAULT_CHUNKS
    assert call.usage.cache_read_tokens == 0 and call.usage.consistent
    assert math.isclose(call.cost.total, together_price(call.usage), rel_tol=1e-9)
    assert call.cost.priced_model == MODEL and call.cost.source == "local"
    assert attributes[sc.COST_AMOUNT] == call.cost.total
    assert attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert "tg-test-SECRET" not in repr(attributes)


def test_cached_tokens_beside_prompt_tokens_are_cache_reads(recorded, server):
    server.reset()
    long_prompt = [{"role": "user", "content": "word " * 1200}]  # past the fake's cache minimum
    response = client(server).chat.completions.create(model=MODEL, messages=long_prompt)
    (call,) = recorded.calls
    prompt_tokens = _openai_wire.chat_prompt_tokens(server.requests[-1].body)
    assert call.usage.cache_read_tokens == _model.cached_tokens(prompt_tokens) > 0
    assert call.usage.cache_read_tokens == response.usage.model_extra["cached_tokens"]  # kept by the SDK
    assert call.usage.input_tokens == prompt_tokens
    assert math.isclose(call.cost.total, together_price(call.usage), rel_tol=1e-9)


def test_stream_usage_from_the_last_chunk_equals_the_plain_call(recorded, server):
    server.reset()
    plain = client(server).chat.completions.create(model=MODEL, messages=MESSAGES)
    chunks = list(client(server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert chunks[-1].usage is not None and all(chunk.usage is None for chunk in chunks[:-1])
    assert "stream_options" not in server.requests[-1].body  # nothing asked on the application's behalf
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == plain.choices[0].message.content
    whole, streamed = recorded.calls
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert streamed.stream and not streamed.incomplete
    assert streamed.finish_reasons == ("stop",)
    assert streamed.time_to_first_chunk_s is not None


async def test_async_create_and_stream(recorded, server):
    server.reset()
    async_client = client(server, is_async=True)
    plain = await async_client.chat.completions.create(model=MODEL, messages=MESSAGES)
    stream = await async_client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == plain.choices[0].message.content
    whole, streamed = recorded.calls
    assert whole.usage == streamed.usage and whole.cost == streamed.cost


async def test_async_stream_closed_early(recorded, server):
    server.reset()
    stream = await client(server, is_async=True).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    await stream.__anext__()
    await stream.close()
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None


def test_legacy_completions_plain_and_streamed(recorded, server):
    server.reset()
    prompt = "Once upon a time"
    plain = client(server).completions.create(model=MODEL, prompt=prompt)
    chunks = list(client(server).completions.create(model=MODEL, prompt=prompt, stream=True))
    assert "".join(chunk.choices[0].text or "" for chunk in chunks) == plain.choices[0].text
    whole, streamed = recorded.calls
    assert whole.operation == streamed.operation == "text_completion"
    assert whole.usage.input_tokens == plain.usage.prompt_tokens == _model.count_tokens(prompt)
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert streamed.finish_reasons == whole.finish_reasons == ("stop",)
    assert math.isclose(whole.cost.total, together_price(whole.usage), rel_tol=1e-9)


def test_stream_closed_early_is_one_incomplete_call(recorded, server):
    server.reset()
    stream = client(server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None and call.cost is None
    assert dict(recorded.span().attributes)[sc.USAGE_MISSING] is True


def test_stream_used_as_a_context_manager_and_left_early(recorded, server):
    server.reset()
    with client(server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            break
    (call,) = recorded.calls
    assert call.incomplete


def test_abandoned_stream_ends_once_when_collected(recorded, server):
    server.reset()
    stream = client(server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    next(iter(stream))
    del stream
    gc.collect()
    (call,) = recorded.calls
    assert call.incomplete


def test_cut_stream_raises_the_sdks_error_and_records_it(recorded, server):
    server.reset()
    server.cut_next_stream(3)
    with pytest.raises(Exception) as raised:  # the SDK's own error, whatever it is
        list(client(server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    (call,) = recorded.calls
    assert call.error_type == type(raised.value).__qualname__ and call.incomplete


def test_api_error_passes_through_unchanged(recorded, server):
    server.reset()
    server.fail_next(429)
    with pytest.raises(together.RateLimitError):
        client(server).chat.completions.create(model=MODEL, messages=MESSAGES)
    span = recorded.span()
    assert span.status.status_code.name == "ERROR"
    assert dict(span.attributes)[sc.ERROR_TYPE] == "RateLimitError"


def test_raw_and_streaming_responses(recorded, server):
    server.reset()
    raw = client(server).chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    parsed = raw.parse()
    with client(server).chat.completions.with_streaming_response.create(
        model=MODEL, messages=MESSAGES, stream=True
    ) as response:
        chunks = list(response.parse())
    whole, streamed = recorded.calls
    assert whole.usage.input_tokens == parsed.usage.prompt_tokens
    assert streamed.usage == whole.usage and len(chunks) > 2


def test_embeddings_report_no_usage_and_are_not_priced_at_zero(recorded, server):
    server.reset()
    response = client(server).embeddings.create(model="BAAI/bge-base-en-v1.5", input="one two three")
    assert len(response.data) == 1
    (call,) = recorded.calls
    assert call.operation == "embeddings" and call.usage is None and call.cost is None
    attributes = dict(recorded.span().attributes)
    assert attributes[sc.USAGE_MISSING] is True and sc.COST_AMOUNT not in attributes


def test_an_unknown_model_is_flagged_unpriced_never_zero(recorded, server):
    server.reset()
    client(server).chat.completions.create(model="acme/not-in-the-catalogue", messages=MESSAGES)
    (call,) = recorded.calls
    assert call.usage.input_tokens > 0 and call.cost is None
    assert dict(recorded.span().attributes)[sc.PRICE_UNPRICED] is True


def test_an_endpoint_tokentrail_does_not_know_is_counted(recorded, server):
    server.reset()
    with pytest.raises(together.NotFoundError):  # the fake server has no rerank: the SDK's 404
        client(server).rerank.create(model="Salesforce/Llama-Rank-V1", query="q", documents=["a", "b"])
    assert recorded.spans() == []
    (point,) = recorded.points(sc.METRIC_UNRECOGNISED_CALLS)
    assert point.attributes[sc.SDK_NAME] == "together" and point.value == 1
    assert point.attributes[sc.SDK_ENDPOINT].endswith("/rerank")


def test_requests_that_are_not_model_calls_are_not_recorded(recorded, server):
    server.reset()
    with pytest.raises(together.APIStatusError):
        client(server).files.list()
    assert recorded.spans() == [] and recorded.points(sc.METRIC_UNRECOGNISED_CALLS) == []


def test_budget_refuses_before_sending(recorded, server):
    server.reset()
    with tokentrail.budget(usd=1e-12, mode="raise"), pytest.raises(tokentrail.BudgetExceeded):
        client(server).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
    assert server.requests == []


@pytest.mark.tokentrail(capture_content="SPAN_ONLY")
def test_content_capture_of_chat_and_legacy_streams(recorded, server):
    server.reset()
    list(client(server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    list(client(server).completions.create(model=MODEL, prompt="Once upon a time", stream=True))
    chat, legacy = (dict(span.attributes) for span in recorded.spans())
    assert '"content": "Say hello to the fake server"' in chat[sc.INPUT_MESSAGES]
    assert '"content": "This is a fake answer' in chat[sc.OUTPUT_MESSAGES]
    assert '"content": "Once upon a time"' in legacy[sc.INPUT_MESSAGES]
    assert '"content": "This is a fake answer' in legacy[sc.OUTPUT_MESSAGES]


def test_registered_instrumentor_and_patch_set():
    assert TogetherInstrumentor().instrumentation_dependencies() == ("together >= 2.0",)
    patch = together_provider.patches()
    patch.install()
    patch.install()
    assert patch.installed
    patch.remove()
    assert not patch.installed


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.integers(min_value=1, max_value=60),
    prompt=st.lists(st.sampled_from(["a", "bb", "ccc"]), max_size=900),
    legacy=st.booleans(),
)
def test_property_stream_equals_plain_and_parts_within_their_whole(recorded, server, words, prompt, legacy):
    server.reset()
    text = " ".join(prompt) or "hi"
    headers = {"X-Fake-Chunks": str(words)}
    before = len(recorded.calls)
    if legacy:
        make = client(server).completions.create
        make(model=MODEL, prompt=text, extra_headers=headers)
        list(make(model=MODEL, prompt=text, stream=True, extra_headers=headers))
    else:
        make = client(server).chat.completions.create
        messages = [{"role": "user", "content": text}]
        make(model=MODEL, messages=messages, extra_headers=headers)
        list(make(model=MODEL, messages=messages, stream=True, extra_headers=headers))
    whole, streamed = recorded.calls[before:]
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    usage = whole.usage
    assert usage.output_tokens == words and usage.consistent
    assert usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
    assert usage.reasoning_tokens <= usage.output_tokens
    assert math.isclose(whole.cost.total, together_price(usage), rel_tol=1e-9)
    assert whole.cost.input + whole.cost.output == pytest.approx(whole.cost.total, rel=1e-9)
