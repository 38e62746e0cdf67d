"""The groq SDK, for real, over HTTP against the fake provider server (Groq's wire format).

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
from tokentrail.instrumentation import GroqInstrumentor
from tokentrail.providers import groq as groq_provider
from tokentrail.testing import FakeLLMServer

groq = pytest.importorskip("groq")

MODEL = "openai/gpt-oss-120b"  # a Groq model whose catalogue price has a cache-read rate
MESSAGES = [{"role": "user", "content": "Say hello to the fake server"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def client(server: FakeLLMServer, *, is_async: bool = False) -> Any:
    make = groq.AsyncGroq if is_async else groq.Groq
    return make(base_url=server.url, api_key="gsk-test-SECRET", max_retries=0)


def groq_price(usage: tokentrail.Usage, model: str = MODEL) -> float:
    """What genai-prices charges Groq for these tokens."""
    tokens = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
    )
    return float(genai_prices.calc_price(tokens, model, provider_id="groq").total_price)


def sent_prompt_tokens(server: FakeLLMServer) -> int:
    """The prompt tokens the server counted for the last request (its own rule, from the body)."""
    from tokentrail.testing import _openai_wire

    return _openai_wire.chat_prompt_tokens(server.requests[-1].body)


def test_chat_create_one_span_exact_usage_and_cost(recorded, server):
    server.reset()
    response = client(server).chat.completions.create(model=MODEL, messages=MESSAGES)
    x_groq = response.x_groq  # the application's object, untouched (a plain dict before groq 0.31)
    assert (x_groq["id"] if isinstance(x_groq, dict) else x_groq.id).startswith("req_fake")
    (call,) = recorded.calls
    span = recorded.span()
    attributes = dict(span.attributes)
    assert span.name == f"chat {MODEL}" and span.kind.name == "CLIENT"
    assert attributes[sc.PROVIDER_NAME] == "groq"
    assert attributes[sc.OPERATION_NAME] == "chat"
    assert attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert call.usage.input_tokens == response.usage.prompt_tokens == sent_prompt_tokens(server)
    assert call.usage.output_tokens == response.usage.completion_tokens
    details = response.usage.prompt_tokens_details  # a plain dict before groq 0.31
    assert call.usage.cache_read_tokens == (
        details["cached_tokens"] if isinstance(details, dict) else details.cached_tokens
    )
    assert call.usage.consistent
    assert math.isclose(call.cost.total, groq_price(call.usage), rel_tol=1e-9)
    assert attributes[sc.COST_AMOUNT] == call.cost.total
    assert sc.OPENAI_RESPONSE_SERVICE_TIER not in attributes  # Groq's tier is not OpenAI's
    assert "gsk-test-SECRET" not in repr(attributes)


def test_stream_usage_comes_from_x_groq_and_equals_the_plain_call(recorded, server):
    server.reset()
    plain = client(server).chat.completions.create(model=MODEL, messages=MESSAGES)
    chunks = list(client(server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert chunks[-1].x_groq.usage.total_tokens == plain.usage.total_tokens
    assert all(chunk.usage is None for chunk in chunks)  # nothing was asked for on its behalf
    assert "stream_options" not in server.requests[-1].body
    whole, streamed = recorded.calls
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert streamed.stream and not streamed.incomplete
    assert streamed.time_to_first_chunk_s is not None


def test_include_usage_sent_by_the_application_is_one_source_not_two(recorded, server):
    server.reset()
    chunks = list(
        client(server).chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            extra_body={"stream_options": {"include_usage": True}},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].choices == []  # the application asked: it gets it
    (call,) = recorded.calls
    assert call.usage.total_tokens == chunks[-1].usage.total_tokens  # not doubled


async def test_async_create_and_stream(recorded, server):
    server.reset()
    async_client = client(server, is_async=True)
    plain = await async_client.chat.completions.create(model=MODEL, messages=MESSAGES)
    stream = await async_client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == plain.choices[0].message.content
    whole, streamed = recorded.calls
    assert whole.usage == streamed.usage and whole.cost == streamed.cost


def test_stream_closed_early_is_one_incomplete_call(recorded, server):
    server.reset()
    stream = client(server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None and call.cost is None
    assert dict(recorded.span().attributes)[sc.USAGE_MISSING] is True


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
    with pytest.raises(groq.RateLimitError):
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


def test_embeddings(recorded, server):
    server.reset()
    response = client(server).embeddings.create(model="nomic-embed-text-v1_5", input=["one two", "three"])
    (call,) = recorded.calls
    assert call.operation == "embeddings"
    assert call.usage.input_tokens == response.usage.prompt_tokens > 0
    assert call.cost is None  # the catalogue has no price for it: unpriced, never $0
    assert dict(recorded.span().attributes)[sc.PRICE_UNPRICED] is True


def test_an_endpoint_tokentrail_does_not_know_is_counted(recorded, server):
    server.reset()
    with pytest.raises(groq.NotFoundError):  # the fake server has no such endpoint: the SDK's 404
        client(server).post("/openai/v1/speculative/thing", body={"model": MODEL}, cast_to=object)
    assert recorded.spans() == []
    points = recorded.points(sc.METRIC_UNRECOGNISED_CALLS)
    assert [(dict(p.attributes), p.value) for p in points] == [
        ({sc.SDK_NAME: "groq", sc.SDK_ENDPOINT: "POST /openai/v1/speculative/thing"}, 1)
    ]


def test_budget_refuses_before_sending(recorded, server):
    server.reset()
    with tokentrail.budget(usd=1e-9, mode="raise"), pytest.raises(tokentrail.BudgetExceeded):
        client(server).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
    assert server.requests == []


def test_registered_instrumentor_and_patch_set():
    assert GroqInstrumentor().instrumentation_dependencies() == ("groq >= 0.30",)
    patch = groq_provider.patches()
    patch.install()
    patch.install()
    assert patch.installed
    patch.remove()
    assert not patch.installed


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.integers(min_value=1, max_value=60),
    prompt=st.lists(st.sampled_from(["a", "bb", "ccc"]), max_size=30),
)
def test_property_stream_equals_plain_and_parts_within_their_whole(recorded, server, words, prompt):
    server.reset()
    messages = [{"role": "user", "content": " ".join(prompt) or "hi"}]
    headers = {"X-Fake-Chunks": str(words)}
    before = len(recorded.calls)
    client(server).chat.completions.create(model=MODEL, messages=messages, extra_headers=headers)
    list(
        client(server).chat.completions.create(
            model=MODEL, messages=messages, stream=True, extra_headers=headers
        )
    )
    whole, streamed = recorded.calls[before:]
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    usage = whole.usage
    assert usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
    assert usage.reasoning_tokens <= usage.output_tokens
    assert whole.cost.input + whole.cost.output == pytest.approx(whole.cost.total, rel=1e-9)
