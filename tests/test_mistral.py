"""The mistralai SDK, for real, over HTTP against the fake provider server (Mistral's wire format).

Expected figures are worked out from the server's own rules (the prompt's words, the answer's
chunks) and priced by genai-prices itself; tokentrail's must equal them. Runs on mistralai 3.x
(httpx2), 2.x (httpx) and the floor, 2.0.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import genai_prices
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokentrail
from tokentrail import semconv as sc
from tokentrail.instrumentation import MistralInstrumentor
from tokentrail.providers import mistral as mistral_provider
from tokentrail.testing import FakeLLMServer, _mistral_wire, _model

mistralai_client = pytest.importorskip("mistralai.client")
from mistralai.client import Mistral  # noqa: E402
from mistralai.client.utils import eventstreaming  # noqa: E402

MODEL = "mistral-small-latest"  # a catalogue price with a cache-read rate
MESSAGES = [{"role": "user", "content": "Say hello to the fake server"}]
LONG_MESSAGES = [{"role": "user", "content": "word " * 900}]  # past the fake prompt cache's minimum


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def client(server: FakeLLMServer) -> Any:
    return Mistral(api_key="mistral-test-SECRET", server_url=server.url + _mistral_wire.PREFIX)


def mistral_price(usage: tokentrail.Usage, model: str = MODEL) -> float:
    """What genai-prices charges Mistral for these tokens."""
    tokens = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
    )
    return float(genai_prices.calc_price(tokens, model, provider_id="mistral").total_price)


def sent_prompt_tokens(server: FakeLLMServer) -> int:
    """The prompt tokens the server counted for the last request (its own rule, from the body)."""
    return _mistral_wire.prompt_tokens(server.requests[-1].body)


def test_chat_complete_one_span_exact_usage_and_cost(recorded, server):
    server.reset()
    response = client(server).chat.complete(model=MODEL, messages=LONG_MESSAGES)
    (call,) = recorded.calls
    span = recorded.span()
    attributes = dict(span.attributes)
    assert span.name == f"chat {MODEL}" and span.kind.name == "CLIENT"
    assert attributes[sc.PROVIDER_NAME] == "mistral_ai"
    assert attributes[sc.OPERATION_NAME] == "chat"
    assert attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert call.usage.input_tokens == response.usage.prompt_tokens == sent_prompt_tokens(server)
    assert call.usage.output_tokens == response.usage.completion_tokens
    # Not a declared field of the SDK's UsageInfo: kept among its extra fields.
    cached = response.usage.additional_properties["prompt_tokens_details"]["cached_tokens"]
    assert call.usage.cache_read_tokens == cached == _model.cached_tokens(call.usage.input_tokens) > 0
    assert call.usage.consistent
    assert math.isclose(call.cost.total, mistral_price(call.usage), rel_tol=1e-9)
    assert attributes[sc.COST_AMOUNT] == call.cost.total
    assert attributes[sc.RESPONSE_ID] == response.id
    assert "mistral-test-SECRET" not in repr(attributes)


def test_stream_equals_the_plain_call(recorded, server):
    server.reset()
    plain = client(server).chat.complete(model=MODEL, messages=MESSAGES)
    events = list(client(server).chat.stream(model=MODEL, messages=MESSAGES))
    assert events[-1].data.usage.total_tokens == plain.usage.total_tokens  # the application's, untouched
    text = "".join(e.data.choices[0].delta.content or "" for e in events)
    assert text == plain.choices[0].message.content
    whole, streamed = recorded.calls
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert streamed.stream and not streamed.incomplete
    assert streamed.time_to_first_chunk_s is not None
    assert streamed.finish_reasons == whole.finish_reasons == ("stop",)


async def test_async_complete_and_stream(recorded, server):
    server.reset()
    mistral = client(server)
    plain = await mistral.chat.complete_async(model=MODEL, messages=MESSAGES)
    stream = await mistral.chat.stream_async(model=MODEL, messages=MESSAGES)
    text = "".join([e.data.choices[0].delta.content or "" async for e in stream])
    assert text == plain.choices[0].message.content
    whole, streamed = recorded.calls
    assert whole.usage == streamed.usage and whole.cost == streamed.cost
    assert len(recorded.spans()) == 2


async def test_async_stream_left_early(recorded, server):
    server.reset()
    async with await client(server).chat.stream_async(model=MODEL, messages=MESSAGES) as stream:
        await stream.__anext__()
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None


def test_stream_closed_early_is_one_incomplete_call(recorded, server):
    server.reset()
    stream = client(server).chat.stream(model=MODEL, messages=MESSAGES)
    next(stream)
    if hasattr(stream, "close"):
        stream.close()
    else:  # the first 2.x releases close a stream only by leaving its with block
        stream.__exit__(None, None, None)
    assert list(stream) == []  # the SDK's own behaviour once closed
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None and call.cost is None
    assert dict(recorded.span().attributes)[sc.USAGE_MISSING] is True


def test_stream_left_in_a_with_block(recorded, server):
    server.reset()
    with client(server).chat.stream(model=MODEL, messages=MESSAGES) as stream:
        next(stream)
    (call,) = recorded.calls
    assert call.incomplete


def test_abandoned_stream_ends_once_when_collected(recorded, server):
    server.reset()
    stream = client(server).chat.stream(model=MODEL, messages=MESSAGES)
    next(stream)
    del stream
    gc.collect()
    (call,) = recorded.calls
    assert call.incomplete


def test_cut_stream_raises_the_sdks_error_and_records_it(recorded, server):
    server.reset()
    server.cut_next_stream(3)
    with pytest.raises(Exception) as raised:  # the SDK's (or its HTTP client's) own error
        list(client(server).chat.stream(model=MODEL, messages=MESSAGES))
    (call,) = recorded.calls
    assert call.error_type == type(raised.value).__qualname__ and call.incomplete


def test_api_error_passes_through_unchanged(recorded, server):
    server.reset()
    server.fail_next(429)
    with pytest.raises(mistralai_client.errors.SDKError) as raised:
        client(server).chat.complete(model=MODEL, messages=MESSAGES)
    assert raised.value.status_code == 429
    span = recorded.span()
    assert span.status.status_code.name == "ERROR"
    # Every status the SDK does not model is its one SDKError: the status says which error it was.
    assert dict(span.attributes)[sc.ERROR_TYPE] == "429"


def test_stream_refused_with_an_error_status(recorded, server):
    server.reset()
    server.fail_next(500)
    with pytest.raises(mistralai_client.errors.SDKError):
        client(server).chat.stream(model=MODEL, messages=MESSAGES)
    (call,) = recorded.calls
    assert call.error_type == "500" and call.usage is None


def test_fim_complete_and_stream(recorded, server):
    server.reset()
    mistral = client(server)
    plain = mistral.fim.complete(model="codestral-2508", prompt="def add(a, b):", suffix="return total")
    list(mistral.fim.stream(model="codestral-2508", prompt="def add(a, b):", suffix="return total"))
    whole, streamed = recorded.calls
    assert whole.operation == streamed.operation == "text_completion"
    assert whole.usage.input_tokens == plain.usage.prompt_tokens == sent_prompt_tokens(server)
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert math.isclose(whole.cost.total, mistral_price(whole.usage, "codestral-2508"), rel_tol=1e-9)


def test_agents_complete_and_stream_are_priced_at_the_agents_model(recorded, server):
    server.reset()
    mistral = client(server)
    plain = mistral.agents.complete(agent_id="ag-fake-1", messages=MESSAGES)
    list(mistral.agents.stream(agent_id="ag-fake-1", messages=MESSAGES))
    whole, streamed = recorded.calls
    assert whole.request_model is None and whole.response_model == plain.model == _mistral_wire.AGENT_MODEL
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert math.isclose(whole.cost.total, mistral_price(whole.usage, _mistral_wire.AGENT_MODEL), rel_tol=1e-9)
    for span in recorded.spans():
        assert span.name == "chat"
        assert dict(span.attributes)[sc.AGENT_ID] == "ag-fake-1"


def test_embeddings(recorded, server):
    server.reset()
    response = client(server).embeddings.create(model="mistral-embed", inputs=["one two", "three"])
    (call,) = recorded.calls
    assert call.operation == "embeddings"
    assert call.usage.input_tokens == response.usage.prompt_tokens > 0
    assert math.isclose(call.cost.total, mistral_price(call.usage, "mistral-embed"), rel_tol=1e-9)


def test_unknown_model_is_unpriced_not_free(recorded, server):
    server.reset()
    client(server).chat.complete(model="mistral-imaginary-9000", messages=MESSAGES)
    (call,) = recorded.calls
    assert call.cost is None and call.usage.input_tokens > 0
    assert dict(recorded.span().attributes)[sc.PRICE_UNPRICED] is True


def test_requests_that_are_not_llm_calls_and_unknown_ones(recorded, server):
    server.reset()
    mistral = client(server)
    with pytest.raises(mistralai_client.errors.SDKError):  # the fake server lists no models: 404
        mistral.models.list()
    with pytest.raises(mistralai_client.errors.SDKError):  # nor moderates: a billed call not read yet
        mistral.classifiers.moderate(model="mistral-moderation-latest", inputs=["hello"])
    assert recorded.spans() == []
    points = recorded.points(sc.METRIC_UNRECOGNISED_CALLS)
    assert [(dict(p.attributes), p.value) for p in points] == [
        ({sc.SDK_NAME: "mistralai", sc.SDK_ENDPOINT: "POST /mistral/v1/moderations"}, 1)
    ]


def test_budget_refuses_before_sending(recorded, server):
    server.reset()
    with tokentrail.budget(usd=1e-9, mode="raise"), pytest.raises(tokentrail.BudgetExceeded):
        client(server).chat.complete(model=MODEL, messages=MESSAGES, max_tokens=100)
    assert server.requests == []


def _sdk_spans_to(recorded: Any, monkeypatch: pytest.MonkeyPatch, mistral: Any) -> None:
    """Turn the SDK's own tracing on, into the test's tracer provider: ``configure_telemetry``
    where the SDK has it; the early 2.x releases trace into any global provider instead."""
    try:
        from mistralai.extra.observability import configure_telemetry
    except ImportError:
        from mistralai.client._hooks import tracing

        tracer = recorded.tracer_provider.get_tracer("mistralai-sdk")
        monkeypatch.setattr(tracing, "get_or_create_otel_tracer", lambda *args, **kwargs: (True, tracer))
    else:
        configure_telemetry(mistral, provider=recorded.tracer_provider)


def test_the_sdks_own_span_is_not_a_second_counted_span(recorded, server, monkeypatch):
    server.reset()
    mistral = client(server)
    _sdk_spans_to(recorded, monkeypatch, mistral)
    mistral.chat.complete(model=MODEL, messages=MESSAGES)
    list(mistral.chat.stream(model=MODEL, messages=MESSAGES))
    spans = recorded.spans()
    assert len(spans) == 2 and all(sc.COST_AMOUNT in dict(s.attributes) for s in spans)


@pytest.mark.tokentrail(mistral_native_spans="keep")
def test_keep_leaves_the_sdks_span_as_a_child_without_cost(recorded, server, monkeypatch):
    server.reset()
    mistral = client(server)
    _sdk_spans_to(recorded, monkeypatch, mistral)
    mistral.chat.complete(model=MODEL, messages=MESSAGES)
    spans = recorded.spans()
    ours = [s for s in spans if sc.COST_AMOUNT in dict(s.attributes)]
    theirs = [s for s in spans if s not in ours]
    assert len(ours) == 1 and len(theirs) == 1
    assert theirs[0].parent is not None and theirs[0].parent.span_id == ours[0].context.span_id


def test_registered_instrumentor_and_patch_set():
    assert MistralInstrumentor().instrumentation_dependencies() == ("mistralai >= 2.0",)
    before = mistralai_client.basesdk.BaseSDK.__dict__["do_request"]
    patch = mistral_provider.patches()
    patch.install()
    patch.install()
    assert patch.installed
    patch.remove()
    assert not patch.installed
    assert mistralai_client.basesdk.BaseSDK.__dict__["do_request"] is before
    assert "__init__" in eventstreaming.EventStream.__dict__


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.integers(min_value=1, max_value=60),
    prompt=st.lists(st.sampled_from(["a", "bb", "ccc"]), max_size=30),
    repeat=st.sampled_from([1, 400]),
)
def test_property_stream_equals_plain_and_parts_within_their_whole(recorded, server, words, prompt, repeat):
    server.reset()
    messages = [{"role": "user", "content": " ".join(prompt * repeat) or "hi"}]
    headers = {"X-Fake-Chunks": str(words)}
    before = len(recorded.calls)
    mistral = client(server)
    mistral.chat.complete(model=MODEL, messages=messages, http_headers=headers)
    list(mistral.chat.stream(model=MODEL, messages=messages, http_headers=headers))
    whole, streamed = recorded.calls[before:]
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    usage = whole.usage
    assert usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
    assert usage.reasoning_tokens <= usage.output_tokens
    assert math.isclose(whole.cost.total, mistral_price(usage), rel_tol=1e-9)


@pytest.mark.tokentrail(capture_content="SPAN_ONLY")
def test_content_capture_when_asked(recorded, server):
    server.reset()
    response = client(server).chat.complete(model=MODEL, messages=MESSAGES)
    list(client(server).chat.stream(model=MODEL, messages=MESSAGES))
    plain, streamed = recorded.spans()
    assert "Say hello to the fake server" in plain.attributes[sc.INPUT_MESSAGES]
    assert response.choices[0].message.content in plain.attributes[sc.OUTPUT_MESSAGES]
    assert response.choices[0].message.content in streamed.attributes[sc.OUTPUT_MESSAGES]


def test_request_parameters_are_on_the_span_and_the_model_read_from_the_bodys_start(
    recorded, server, monkeypatch
):
    """The calling thread reads only the model from the start of the SDK's serialised body; the
    parameters come from the body parsed off that thread, as before."""
    read = []
    original = mistral_provider.leading_model

    def spy(request: Any) -> Any:
        read.append(original(request))
        return read[-1]

    monkeypatch.setattr(mistral_provider, "leading_model", spy)
    server.reset()
    client(server).chat.complete(
        model=MODEL, messages=MESSAGES, temperature=0.25, max_tokens=64, random_seed=7
    )
    assert read == [MODEL]  # the SDK's body starts with the model
    attributes = dict(recorded.span().attributes)
    assert attributes[sc.REQUEST_MODEL] == MODEL
    assert attributes[sc.REQUEST_TEMPERATURE] == 0.25
    assert attributes[sc.REQUEST_MAX_TOKENS] == 64
    assert attributes[sc.REQUEST_SEED] == 7


_MODEL_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters='"\\', exclude_categories=("Cs",)),
    min_size=1,
    max_size=60,
)


@given(
    model=st.one_of(_MODEL_TEXT, st.text(min_size=1, max_size=20)),
    rest=st.dictionaries(
        st.sampled_from(["messages", "temperature", "stream", "model_x"]), st.integers(), max_size=3
    ),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]),
    ascii_only=st.booleans(),
)
def test_the_leading_model_is_the_models_value_or_nothing(model, rest, separators, ascii_only):
    """Never another value than a full parse's: the model when the body starts with it as a plain
    string, else None (and the body is parsed)."""
    from tokentrail.providers._speakeasy import leading_model

    body = json.dumps({"model": model, **rest}, separators=separators, ensure_ascii=ascii_only).encode()
    found = leading_model(SimpleNamespace(content=body))
    assert found is None or found == json.loads(body)["model"]
    if '"' not in model and "\\" not in model and ascii_only and model.isascii() and model.isprintable():
        assert found == model


@pytest.mark.parametrize(
    "body",
    [b'{"messages":[],"model":"m"}', b'{"model":7}', b'{"model":"a\\"b"}', b"", b'{"model":"\xff"}', None],
    ids=["not-first", "not-a-string", "escaped", "empty", "not-utf8", "no-bytes"],
)
def test_a_body_not_starting_with_a_plain_model_gives_none(body):
    from tokentrail.providers._speakeasy import leading_model

    assert leading_model(SimpleNamespace(content=body)) is None
