"""The cohere SDK (``ClientV2`` and the v1 ``Client``), for real, over HTTP against the fake
provider server (Cohere's v1 and v2 wire formats).

Cohere reports what the model processed (``tokens``) and what it bills (``billed_units``): the
token figures must be the processed ones, the cost genai-prices' price of the billed ones, and
both on the span. Expected figures come from the SDK's own response objects and the server's
rules, priced by genai-prices itself. Runs on cohere 7.x, 6.x and the floor, 5.16.
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
from tokentrail.instrumentation import CohereInstrumentor
from tokentrail.providers import cohere as cohere_provider
from tokentrail.testing import FakeLLMServer, _cohere_wire, _model

cohere = pytest.importorskip("cohere")

MODEL = "command-a-03-2025"
MESSAGES = [{"role": "user", "content": "Say hello to the fake server"}]
LONG_MESSAGES = [{"role": "user", "content": "word " * 900}]  # past the fake prompt cache's minimum
NO_RETRIES = {"max_retries": 0}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def v2(server: FakeLLMServer, *, is_async: bool = False) -> Any:
    make = cohere.AsyncClientV2 if is_async else cohere.ClientV2
    return make(api_key="co-test-SECRET", base_url=server.url)


def v1(server: FakeLLMServer) -> Any:
    return cohere.Client(api_key="co-test-SECRET", base_url=server.url)


def billed_price(billed_units: Any, model: str = MODEL) -> float:
    """What genai-prices charges Cohere for the billed units the SDK reports."""
    tokens = genai_prices.Usage(
        input_tokens=int(billed_units.input_tokens or 0), output_tokens=int(billed_units.output_tokens or 0)
    )
    return float(genai_prices.calc_price(tokens, model, provider_id="cohere").total_price)


def test_v2_chat_processed_tokens_billed_cost(recorded, server):
    server.reset()
    response = v2(server).chat(model=MODEL, messages=LONG_MESSAGES)
    (call,) = recorded.calls
    span = recorded.span()
    attributes = dict(span.attributes)
    assert span.name == f"chat {MODEL}" and span.kind.name == "CLIENT"
    assert attributes[sc.PROVIDER_NAME] == "cohere" and attributes[sc.OPERATION_NAME] == "chat"
    tokens, billed = response.usage.tokens, response.usage.billed_units
    # Processed: the default system prompt is in the tokens, not in what is billed.
    assert (
        call.usage.input_tokens
        == tokens.input_tokens
        == billed.input_tokens + _cohere_wire.DEFAULT_SYSTEM_TOKENS
    )
    assert call.usage.output_tokens == tokens.output_tokens
    assert (
        call.usage.cache_read_tokens
        == response.usage.cached_tokens
        == _model.cached_tokens(call.usage.input_tokens)
    )
    assert billed.input_tokens == _cohere_wire.billed_prompt_tokens("/v2/chat", server.requests[-1].body)
    assert attributes[sc.USAGE_INPUT_TOKENS] == call.usage.input_tokens
    assert attributes[sc.USAGE_BILLED_INPUT_TOKENS] == billed.input_tokens
    assert attributes[sc.USAGE_BILLED_OUTPUT_TOKENS] == billed.output_tokens
    assert math.isclose(call.cost.total, billed_price(billed), rel_tol=1e-9)
    assert attributes[sc.RESPONSE_ID] == response.id
    assert attributes[sc.RESPONSE_FINISH_REASONS] == ("COMPLETE",)
    (point,) = recorded.points("gen_ai.client.token.usage", gen_ai__token__type="input")
    assert point.sum == tokens.input_tokens  # metrics carry the processed tokens too
    assert "co-test-SECRET" not in repr(attributes)


def test_v2_stream_equals_the_plain_call(recorded, server):
    server.reset()
    plain = v2(server).chat(model=MODEL, messages=MESSAGES)
    events = list(v2(server).chat_stream(model=MODEL, messages=MESSAGES))
    assert events[-1].type == "message-end"  # the application's events, all of them
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert text == plain.message.content[0].text
    whole, streamed = recorded.calls
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert streamed.stream and not streamed.incomplete and streamed.finish_reasons == ("COMPLETE",)
    assert streamed.time_to_first_chunk_s is not None
    assert dict(recorded.spans()[-1].attributes)[sc.USAGE_BILLED_INPUT_TOKENS] == (
        plain.usage.billed_units.input_tokens
    )


async def test_async_v2_chat_and_stream(recorded, server):
    server.reset()
    client = v2(server, is_async=True)
    plain = await client.chat(model=MODEL, messages=MESSAGES)
    events = [event async for event in client.chat_stream(model=MODEL, messages=MESSAGES)]
    assert events[-1].type == "message-end"
    whole, streamed = recorded.calls
    assert whole.usage == streamed.usage and whole.cost == streamed.cost
    assert math.isclose(whole.cost.total, billed_price(plain.usage.billed_units), rel_tol=1e-9)


def test_v1_chat_and_stream(recorded, server):
    server.reset()
    client = v1(server)
    plain = client.chat(model="command-r-plus", message="Say hello to the fake server")
    events = list(client.chat_stream(model="command-r-plus", message="Say hello to the fake server"))
    assert events[-1].event_type == "stream-end"
    whole, streamed = recorded.calls
    assert whole.operation == "chat" and whole.usage.input_tokens == plain.meta.tokens.input_tokens
    assert whole.usage.output_tokens == plain.meta.tokens.output_tokens
    assert streamed.usage == whole.usage and streamed.cost == whole.cost and not streamed.incomplete
    assert math.isclose(
        whole.cost.total, billed_price(plain.meta.billed_units, "command-r-plus"), rel_tol=1e-9
    )


def test_stream_left_early_is_one_incomplete_call(recorded, server):
    server.reset()
    stream = v2(server).chat_stream(model=MODEL, messages=MESSAGES)
    next(stream)
    stream.close()
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None and call.cost is None
    assert dict(recorded.span().attributes)[sc.USAGE_MISSING] is True


def test_abandoned_stream_ends_once_when_collected(recorded, server):
    server.reset()
    stream = v2(server).chat_stream(model=MODEL, messages=MESSAGES)
    next(stream)
    del stream
    gc.collect()
    (call,) = recorded.calls
    assert call.incomplete


def test_cut_stream_is_recorded_without_usage(recorded, server):
    server.reset()
    server.cut_next_stream(3)
    try:
        list(v2(server).chat_stream(model=MODEL, messages=MESSAGES, request_options=NO_RETRIES))
    except Exception as error:  # the SDK's (or its HTTP client's) own error, if it raises one
        raised: BaseException | None = error
    else:
        raised = None
    (call,) = recorded.calls
    assert call.usage is None and call.incomplete
    if raised is not None:
        assert call.error_type == type(raised).__qualname__


def test_api_error_passes_through_unchanged(recorded, server):
    server.reset()
    server.fail_next(429)
    with pytest.raises(cohere.TooManyRequestsError):
        v2(server).chat(model=MODEL, messages=MESSAGES, request_options=NO_RETRIES)
    server.fail_next(400)
    with pytest.raises(cohere.BadRequestError):
        v2(server).chat_stream(model=MODEL, messages=MESSAGES, request_options=NO_RETRIES).__next__()
    limited, refused = recorded.spans()
    assert limited.status.status_code.name == "ERROR"
    assert dict(limited.attributes)[sc.ERROR_TYPE] == "429"
    assert dict(refused.attributes)[sc.ERROR_TYPE] == "400"


def test_retries_are_one_call(recorded, server):
    server.reset()
    server.fail_next(429)
    try:
        response = v2(server).chat(model=MODEL, messages=MESSAGES, request_options={"max_retries": 2})
    except cohere.TooManyRequestsError:  # 5.x's ClientV2 sends its requests without retrying
        pytest.skip("this cohere release does not retry the chat request")
    assert len(server.requests) == 2
    (call,) = recorded.calls
    assert call.error_type is None and call.usage.output_tokens == response.usage.tokens.output_tokens


def test_embed(recorded, server):
    server.reset()
    response = v2(server).embed(
        model="embed-v4.0",
        texts=["one two", "three"],
        input_type="search_document",
        embedding_types=["float"],
    )
    old = v1(server).embed(model="embed-english-v3.0", texts=["one two"], input_type="search_document")
    priced, unpriced = recorded.calls
    assert priced.operation == "embeddings"
    assert priced.usage.input_tokens == response.meta.billed_units.input_tokens > 0
    tokens = genai_prices.Usage(input_tokens=priced.usage.input_tokens)
    expected = float(genai_prices.calc_price(tokens, "embed-v4.0", provider_id="cohere").total_price)
    assert math.isclose(priced.cost.total, expected, rel_tol=1e-9)
    assert unpriced.usage.input_tokens == old.meta.billed_units.input_tokens
    assert unpriced.cost is None  # not in the catalogue: flagged unpriced, never $0
    assert dict(recorded.spans()[1].attributes)[sc.PRICE_UNPRICED] is True


def test_rerank_is_billed_in_search_units_and_flagged_unpriced(recorded, server):
    server.reset()
    documents = [f"document {i} about refunds" for i in range(150)]
    response = v2(server).rerank(model="rerank-v3.5", query="refunds", documents=documents, top_n=3)
    assert len(response.results) == 3
    (call,) = recorded.calls
    attributes = dict(recorded.span().attributes)
    assert call.operation == "rerank" and call.cost is None
    assert attributes[sc.USAGE_BILLED_SEARCH_UNITS] == response.meta.billed_units.search_units == 2
    assert attributes[sc.PRICE_UNPRICED] is True


def test_requests_that_are_not_llm_calls_and_unknown_ones(recorded, server):
    server.reset()
    client = v1(server)
    with pytest.raises(cohere.core.ApiError):  # the fake server does not tokenize: 404
        client.tokenize(text="hello world", model=MODEL, request_options=NO_RETRIES)
    with pytest.raises(cohere.core.ApiError):  # nor classify: a billed call not read yet
        client.classify(inputs=["hello"], model="embed-english-v3.0", request_options=NO_RETRIES)
    assert recorded.spans() == []
    points = recorded.points(sc.METRIC_UNRECOGNISED_CALLS)
    assert [(dict(p.attributes), p.value) for p in points] == [
        ({sc.SDK_NAME: "cohere", sc.SDK_ENDPOINT: "POST /v1/classify"}, 1)
    ]


def test_budget_refuses_before_sending(recorded, server):
    server.reset()
    with tokentrail.budget(usd=1e-9, mode="raise"), pytest.raises(tokentrail.BudgetExceeded):
        v2(server).chat(model=MODEL, messages=MESSAGES, max_tokens=100)
    assert server.requests == []


def test_registered_instrumentor_and_patch_set():
    assert CohereInstrumentor().instrumentation_dependencies() == ("cohere >= 5.16",)
    before = cohere.core.http_client.HttpClient.__dict__["request"]
    patch = cohere_provider.patches()
    patch.install()
    patch.install()
    assert patch.installed
    patch.remove()
    assert not patch.installed
    assert cohere.core.http_client.HttpClient.__dict__["request"] is before


def test_usages_reads_float_counts_and_clamps_the_cache():
    processed, billed, attributes = cohere_provider.usages(
        {
            "billed_units": {"input_tokens": 12.0, "output_tokens": 3.0},
            "tokens": {"input_tokens": 20.0, "output_tokens": 4.0},
            "cached_tokens": 64.0,
        }
    )
    assert (processed.input_tokens, processed.output_tokens, processed.cache_read_tokens) == (20, 4, 20)
    assert (billed.input_tokens, billed.output_tokens) == (12, 3) and processed.consistent
    assert attributes == {sc.USAGE_BILLED_INPUT_TOKENS: 12, sc.USAGE_BILLED_OUTPUT_TOKENS: 3}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.integers(min_value=1, max_value=60),
    prompt=st.lists(st.sampled_from(["a", "bb", "ccc"]), max_size=30),
    repeat=st.sampled_from([1, 400]),
)
def test_property_stream_equals_plain_and_parts_within_their_whole(recorded, server, words, prompt, repeat):
    server.reset()
    messages = [{"role": "user", "content": " ".join(prompt * repeat) or "hi"}]
    options = {"additional_headers": {"X-Fake-Chunks": str(words)}}
    before = len(recorded.calls)
    client = v2(server)
    plain = client.chat(model=MODEL, messages=messages, request_options=options)
    list(client.chat_stream(model=MODEL, messages=messages, request_options=options))
    whole, streamed = recorded.calls[before:]
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    usage, billed = whole.usage, plain.usage.billed_units
    assert usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
    assert usage.reasoning_tokens <= usage.output_tokens
    assert billed.input_tokens <= usage.input_tokens and billed.output_tokens <= usage.output_tokens
    assert math.isclose(whole.cost.total, billed_price(billed), rel_tol=1e-9)


@pytest.mark.tokentrail(capture_content="SPAN_ONLY")
def test_content_capture_when_asked(recorded, server):
    server.reset()
    response = v2(server).chat(model=MODEL, messages=MESSAGES)
    list(v2(server).chat_stream(model=MODEL, messages=MESSAGES))
    plain, streamed = recorded.spans()
    assert "Say hello to the fake server" in plain.attributes[sc.INPUT_MESSAGES]
    assert response.message.content[0].text in plain.attributes[sc.OUTPUT_MESSAGES]
    assert sc.INPUT_MESSAGES in streamed.attributes  # its answer is not: the text events are not decoded
