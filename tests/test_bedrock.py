"""boto3's ``bedrock-runtime`` client, for real, over HTTP against the fake provider server
(Bedrock's JSON, its token-count headers and its binary event streams).

Expected figures are worked out from the server's own rules (the prompt's words, the answer's
chunks) and priced by genai-prices itself; tokentrail's must equal them.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import genai_prices
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail
from tokentrail import _safety
from tokentrail import semconv as sc
from tokentrail.instrumentation import BedrockInstrumentor
from tokentrail.providers import bedrock as bedrock_provider
from tokentrail.testing import FakeLLMServer

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.response import StreamingBody  # noqa: E402

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # a US inference profile: the regional price
MESSAGES = [{"role": "user", "content": [{"text": "Say hello to the fake server"}]}]
LONG = "word " * 1200  # past the fake cache's 1024-token minimum


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def client(server: FakeLLMServer) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y-SECRET",
        config=Config(retries={"total_max_attempts": 1}),
    )


def aws_price(usage: tokentrail.Usage, model: str) -> float:
    """What genai-prices charges on AWS for these tokens (the model id as sent)."""
    tokens = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
    return float(genai_prices.calc_price(tokens, model, provider_id="aws").total_price)


# --- Converse -------------------------------------------------------------------------------------


def test_converse_one_span_cache_beside_input_and_regional_price(recorded, server):
    server.reset()
    response = client(server).converse(
        modelId=CLAUDE,
        system=[{"text": "You are terse. " * 20}, {"cachePoint": {"type": "default"}}],
        messages=[{"role": "user", "content": [{"text": LONG}, {"cachePoint": {"type": "default"}}]}],
        inferenceConfig={"maxTokens": 100, "temperature": 0.5},
    )
    usage = response["usage"]
    assert usage["cacheReadInputTokens"] > 1000 and usage["cacheWriteInputTokens"] > 0
    (call,) = recorded.calls
    span = recorded.span()
    attributes = dict(span.attributes)
    assert span.name == f"chat {CLAUDE}" and span.kind.name == "CLIENT"
    assert attributes[sc.PROVIDER_NAME] == "aws.bedrock"
    assert attributes[sc.OPERATION_NAME] == "chat"
    assert attributes[sc.REQUEST_MODEL] == CLAUDE  # the inference-profile prefix kept
    assert attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attributes[sc.REQUEST_MAX_TOKENS] == 100 and attributes[sc.REQUEST_TEMPERATURE] == 0.5
    # inputTokens excludes the cache: the total is the sum of the three.
    assert call.usage.input_tokens == (
        usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["cacheWriteInputTokens"]
    )
    assert call.usage.cache_read_tokens == usage["cacheReadInputTokens"]
    assert call.usage.cache_write_tokens == usage["cacheWriteInputTokens"]
    assert call.usage.output_tokens == usage["outputTokens"]
    assert call.usage.consistent and call.finish_reasons == ("end_turn",)
    assert math.isclose(call.cost.total, aws_price(call.usage, CLAUDE), rel_tol=1e-9)
    assert call.cost.priced_model == "regional.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert "y-SECRET" not in repr(attributes)


@pytest.mark.parametrize(
    ("model", "catalogue"),
    [
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0"),
    ],
)
def test_prefix_and_arn_kept_and_priced(recorded, server, model, catalogue):
    server.reset()
    client(server).converse(modelId=model, messages=MESSAGES)
    (call,) = recorded.calls
    assert call.request_model == model
    assert call.cost.priced_model == catalogue
    assert math.isclose(call.cost.total, aws_price(call.usage, model), rel_tol=1e-9)


def test_unknown_model_is_unpriced_never_zero(recorded, server):
    server.reset()
    client(server).converse(modelId="cohere.command-r-plus-v1:0", messages=MESSAGES)
    (call,) = recorded.calls
    assert call.usage.output_tokens > 0 and call.cost is None
    assert dict(recorded.span().attributes)[sc.PRICE_UNPRICED] is True


def test_converse_stream_equals_the_plain_call(recorded, server):
    server.reset()
    messages = [{"role": "user", "content": [{"text": LONG}, {"cachePoint": {"type": "default"}}]}]
    plain = client(server).converse(modelId=CLAUDE, messages=messages)
    response = client(server).converse_stream(modelId=CLAUDE, messages=messages)
    events = list(response["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == plain["output"]["message"]["content"][0]["text"]  # the application got every event
    assert events[-1]["metadata"]["usage"] == plain["usage"]
    whole, streamed = recorded.calls
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert streamed.usage.cache_read_tokens > 0
    assert streamed.stream and not streamed.incomplete and streamed.finish_reasons == ("end_turn",)
    assert streamed.time_to_first_chunk_s is not None
    assert len(recorded.spans()) == 2


def test_converse_stream_closed_early_is_one_incomplete_call(recorded, server):
    server.reset()
    stream = client(server).converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
    next(iter(stream))
    stream.close()
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None and call.cost is None
    assert dict(recorded.span().attributes)[sc.USAGE_MISSING] is True


def test_converse_stream_abandoned_ends_once_when_collected(recorded, server):
    server.reset()
    response = client(server).converse_stream(modelId=CLAUDE, messages=MESSAGES)
    next(iter(response["stream"]))
    del response
    gc.collect()
    (call,) = recorded.calls
    assert call.incomplete


def test_converse_stream_partly_read_then_dropped(recorded, server):
    server.reset()
    stream = client(server).converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
    for _, _event in zip(range(4), stream, strict=False):
        pass
    del stream
    gc.collect()
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None


def test_cut_stream_raises_the_sdks_error_and_records_it(recorded, server):
    server.reset()
    server.cut_next_stream(3)
    with pytest.raises(Exception) as raised:  # botocore's own error, whatever it is
        list(client(server).converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    (call,) = recorded.calls
    assert call.error_type == type(raised.value).__qualname__ and call.incomplete


def test_api_error_passes_through_unchanged(recorded, server):
    server.reset()
    server.fail_next(429)
    bedrock = client(server)
    with pytest.raises(bedrock.exceptions.ThrottlingException):
        bedrock.converse(modelId=CLAUDE, messages=MESSAGES)
    span = recorded.span()
    assert span.status.status_code.name == "ERROR"
    assert dict(span.attributes)[sc.ERROR_TYPE] == "ThrottlingException"


def test_retries_inside_one_call_are_one_span(recorded, server):
    server.reset()
    server.fail_next(500)
    bedrock = boto3.client(
        "bedrock-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"total_max_attempts": 2, "mode": "standard"}),
    )
    bedrock.converse(modelId=CLAUDE, messages=MESSAGES)
    assert len(server.requests) == 2
    (call,) = recorded.calls
    assert call.error_type is None and call.usage.output_tokens > 0


@pytest.mark.tokentrail(capture_content="SPAN_ONLY")
def test_content_capture(recorded, server):
    server.reset()
    response = client(server).converse(modelId=CLAUDE, messages=MESSAGES, system=[{"text": "Be brief"}])
    attributes = dict(recorded.span().attributes)
    assert (
        json.loads(attributes[sc.INPUT_MESSAGES])[0]["parts"][0]["content"] == "Say hello to the fake server"
    )
    output = json.loads(attributes[sc.OUTPUT_MESSAGES])
    assert output[0]["parts"][0]["content"] == response["output"]["message"]["content"][0]["text"]


# --- InvokeModel ----------------------------------------------------------------------------------

FAMILIES = [
    # (model id, request body, operation, where its usage is read)
    (
        CLAUDE,
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "Say hello"}],
        },
        "chat",
    ),
    ("amazon.nova-lite-v1:0", {"messages": [{"role": "user", "content": [{"text": "Say hello"}]}]}, "chat"),
    ("openai.gpt-oss-120b-1:0", {"messages": [{"role": "user", "content": "Say hello"}]}, "chat"),
    ("amazon.titan-text-express-v1", {"inputText": "Say hello"}, "text_completion"),
    ("meta.llama3-8b-instruct-v1:0", {"prompt": "Say hello", "max_gen_len": 50}, "text_completion"),
    ("mistral.mistral-large-2402-v1:0", {"prompt": "<s>[INST] Say hello [/INST]"}, "text_completion"),
    ("deepseek.r1-v1:0", {"prompt": "Say hello"}, "text_completion"),
]


@pytest.mark.parametrize(("model", "body", "operation"), FAMILIES, ids=[f[0].split(".")[1] for f in FAMILIES])
def test_invoke_model_each_family_and_its_stream(recorded, server, model, body, operation):
    server.reset()
    response = client(server).invoke_model(modelId=model, body=json.dumps(body))
    assert isinstance(response["body"], StreamingBody)  # the SDK's own object
    payload = json.loads(response["body"].read())  # the application reads the whole body itself
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    stream = client(server).invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
    chunks = [json.loads(event["chunk"]["bytes"]) for event in stream["body"]]
    assert "amazon-bedrock-invocationMetrics" in chunks[-1]  # the application got every chunk
    whole, streamed = recorded.calls
    assert whole.operation == streamed.operation == operation
    assert whole.request_model == model
    # Whatever the family, the figures agree with Bedrock's own headers (input excludes the cache).
    assert whole.usage.input_tokens == int(headers["x-amzn-bedrock-input-token-count"])
    assert whole.usage.output_tokens == int(headers["x-amzn-bedrock-output-token-count"]) > 0
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert whole.finish_reasons and streamed.finish_reasons
    assert not streamed.incomplete and payload
    assert math.isclose(whole.cost.total, aws_price(whole.usage, model), rel_tol=1e-9)


def test_invoke_model_claude_cache_reads_are_input(recorded, server):
    server.reset()
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}],
            }
        ],
    }
    response = client(server).invoke_model(modelId=CLAUDE, body=json.dumps(body))
    usage = json.loads(response["body"].read())["usage"]
    stream = client(server).invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(body))
    for _event in stream["body"]:
        pass
    whole, streamed = recorded.calls
    assert usage["cache_read_input_tokens"] > 1000  # tens of times the uncached input
    assert whole.usage.input_tokens == usage["input_tokens"] + usage["cache_read_input_tokens"]
    assert whole.usage.cache_read_tokens == usage["cache_read_input_tokens"]
    assert whole.response_model == "claude-sonnet-4-5-20250929-v1:0"
    assert streamed.usage == whole.usage and streamed.cost == whole.cost


def test_invoke_model_headers_only_family_and_unpriced(recorded, server):
    server.reset()
    response = client(server).invoke_model(
        modelId="cohere.command-r-v1:0", body=json.dumps({"message": "hi"})
    )
    response["body"].read()
    (call,) = recorded.calls
    assert call.operation == "chat"
    assert call.usage.input_tokens == int(
        response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"]
    )
    assert call.cost is None  # no cohere.* price in the catalogue: flagged, never $0


@pytest.mark.parametrize("how", ["read_in_pieces", "iter_lines", "iterate", "readlines"])
def test_body_read_any_way_is_read_once_by_the_application(recorded, server, how):
    server.reset()
    body = {"prompt": "Say hello", "max_gen_len": 50}
    response = client(server).invoke_model(modelId="meta.llama3-8b-instruct-v1:0", body=json.dumps(body))
    stream = response["body"]
    if how == "read_in_pieces":
        data = b"".join(iter(lambda: stream.read(7), b""))
    elif how == "iter_lines":
        data = b"".join(stream.iter_lines())
    elif how == "iterate":
        data = b"".join(stream)
    else:
        data = b"".join(stream.readlines())
    assert json.loads(data)["generation_token_count"] > 0
    (call,) = recorded.calls
    assert call.usage.output_tokens == json.loads(data)["generation_token_count"]
    assert call.finish_reasons == ("stop",)


def test_body_never_read_ends_on_drop_with_the_headers(recorded, server):
    server.reset()
    response = client(server).invoke_model(modelId=CLAUDE, body=json.dumps(FAMILIES[0][1]))
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    expected = int(headers["x-amzn-bedrock-input-token-count"])
    del response
    gc.collect()
    (call,) = recorded.calls
    assert call.usage.input_tokens == expected and call.cost is not None


def test_body_closed_unread_ends_once(recorded, server):
    server.reset()
    response = client(server).invoke_model(modelId=CLAUDE, body=json.dumps(FAMILIES[0][1]))
    response["body"].close()
    (call,) = recorded.calls
    assert call.usage.output_tokens > 0
    del response
    gc.collect()
    assert len(recorded.calls) == 1


def test_invoke_stream_closed_early(recorded, server):
    server.reset()
    stream = client(server).invoke_model_with_response_stream(
        modelId=CLAUDE, body=json.dumps(FAMILIES[0][1])
    )["body"]
    next(iter(stream))
    stream.close()
    (call,) = recorded.calls
    # No invocation metrics: Claude's message_start told the input side (and a first output count).
    assert call.incomplete and call.usage.input_tokens > 0 and call.finish_reasons == ()


def test_embeddings_operation(recorded, server):
    server.reset()
    response = client(server).invoke_model(
        modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "a b c"})
    )
    payload = json.loads(response["body"].read())
    (call,) = recorded.calls
    assert call.operation == "embeddings"
    assert call.usage.input_tokens == payload["inputTextTokenCount"]
    assert math.isclose(call.cost.total, aws_price(call.usage, "amazon.titan-embed-text-v2:0"), rel_tol=1e-9)


# --- what is not an LLM call ------------------------------------------------------------------------


def test_an_operation_tokentrail_does_not_know_is_counted(recorded, server):
    server.reset()
    bedrock = client(server)
    with pytest.raises(bedrock.exceptions.ClientError):  # the fake server has no such route
        bedrock.apply_guardrail(
            guardrailIdentifier="g", guardrailVersion="1", source="INPUT", content=[{"text": {"text": "hi"}}]
        )
    assert recorded.spans() == []
    points = recorded.points(sc.METRIC_UNRECOGNISED_CALLS)
    assert [(dict(p.attributes), p.value) for p in points] == [
        ({sc.SDK_NAME: "botocore", sc.SDK_ENDPOINT: "bedrock-runtime ApplyGuardrail"}, 1)
    ]


def test_other_aws_services_pass_through(recorded, server):
    sts = boto3.client(
        "sts",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(Exception):  # noqa: B017 - the fake server is no STS: the SDK's own error
        sts.get_caller_identity()
    assert recorded.spans() == [] and recorded.points(sc.METRIC_UNRECOGNISED_CALLS) == []


def test_budget_refuses_before_sending(recorded, server):
    server.reset()
    with tokentrail.budget(usd=1e-9, mode="raise"), pytest.raises(tokentrail.BudgetExceeded):
        client(server).converse(modelId=CLAUDE, messages=MESSAGES, inferenceConfig={"maxTokens": 100})
    assert server.requests == []


def test_registered_instrumentor_and_patch_set():
    assert BedrockInstrumentor().instrumentation_dependencies() == ("boto3 >= 1.37.24",)
    patch = bedrock_provider.patches()
    patch.install()
    patch.install()
    assert patch.installed
    patch.remove()
    assert not patch.installed


def test_uninstrumented_calls_are_untouched(server):
    response = client(server).converse_stream(modelId=CLAUDE, messages=MESSAGES)
    assert type(response["stream"]).__name__ == "EventStream"


# --- beside the official botocore instrumentation ------------------------------------------------


def _botocore_peer() -> Any:
    module = "opentelemetry.instrumentation.botocore"
    if importlib.util.find_spec(module) is None:
        if os.environ.get("TOKENTRAIL_EXPECT_PEERS") == "1":
            pytest.fail("opentelemetry-instrumentation-botocore should be installed here (scripts/test does)")
        pytest.skip(
            "opentelemetry-instrumentation-botocore is not installed (scripts/test installs it elsewhere)"
        )
    return importlib.import_module(module).BotocoreInstrumentor()


@pytest.mark.parametrize("peer_first", [True, False], ids=["peer-first", "tokentrail-first"])
def test_beside_the_official_botocore_instrumentation_each_call_counts_once(server, peer_first):
    # The official instrumentation wraps the same _make_api_call and makes its own gen_ai spans and
    # metrics for Bedrock (without cost): those are its own. tokentrail's count is unchanged, in
    # either order, and the application gets what it would get without either.
    peer = _botocore_peer()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    calls: list[tokentrail.CallRecord] = []
    _safety.reset_for_tests()

    def ours() -> None:
        tokentrail.instrument(
            tracer_provider=tracer_provider, meter_provider=meter_provider, sinks=[calls.append]
        )

    def theirs() -> None:
        peer.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)

    server.reset()
    body = json.dumps(FAMILIES[0][1])
    for install in (theirs, ours) if peer_first else (ours, theirs):
        install()
    try:
        bedrock = client(server)
        plain = bedrock.converse(modelId=CLAUDE, messages=MESSAGES)
        events = list(bedrock.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
        payload = json.loads(bedrock.invoke_model(modelId=CLAUDE, body=body)["body"].read())
        chunks = list(bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=body)["body"])
        peer_spans = _peer_spans(exporter)
        assert peer_spans == 4  # the peer really was active (its spans are its own)
        peer.uninstrument()
        bedrock.converse(modelId=CLAUDE, messages=MESSAGES)  # tokentrail alone: still recorded
        assert _peer_spans(exporter) == peer_spans
        peer.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        tokentrail.uninstrument()
        bedrock.converse(modelId=CLAUDE, messages=MESSAGES)  # the peer alone: still working
        assert _peer_spans(exporter) == peer_spans + 1
    finally:
        peer.uninstrument()
        tokentrail.uninstrument()
    assert "output" in plain and "metadata" in events[-1] and payload["usage"] and len(chunks) > 3
    assert len(calls) == 5 and not any(call.incomplete for call in calls)
    converse_calls, invoke_calls = [calls[0], calls[1], calls[4]], calls[2:4]
    assert len({(call.usage, call.cost.total) for call in converse_calls}) == 1  # counted alike
    assert len({(call.usage, call.cost.total) for call in invoke_calls}) == 1
    scopes = [span.instrumentation_scope.name for span in exporter.get_finished_spans()]
    assert scopes.count("tokentrail") == 5


def _peer_spans(exporter: InMemorySpanExporter) -> int:
    tokentrail.flush()
    return sum(span.instrumentation_scope.name != "tokentrail" for span in exporter.get_finished_spans())


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.integers(min_value=1, max_value=60),
    prompt=st.lists(st.sampled_from(["a", "bb", "ccc"]), max_size=30),
    cached=st.booleans(),
    invoke=st.booleans(),
)
def test_property_stream_equals_plain_and_parts_within_their_whole(
    recorded, server, words, prompt, cached, invoke
):
    server.reset()
    text = " ".join(prompt * (60 if cached else 1)) or "hi"
    before = len(recorded.calls)
    bedrock = client(server)
    if invoke:
        content: Any = [
            {"type": "text", "text": text, **({"cache_control": {"type": "ephemeral"}} if cached else {})}
        ]
        body = json.dumps(
            {
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": words,
                "messages": [{"role": "user", "content": content}],
            }
        )
        bedrock.invoke_model(modelId=CLAUDE, body=body)["body"].read()
        list(bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=body)["body"])
    else:
        content = [{"text": text}, *([{"cachePoint": {"type": "default"}}] if cached else [])]
        messages = [{"role": "user", "content": content}]
        config = {"maxTokens": words}
        bedrock.converse(modelId=CLAUDE, messages=messages, inferenceConfig=config)
        list(bedrock.converse_stream(modelId=CLAUDE, messages=messages, inferenceConfig=config)["stream"])
    whole, streamed = recorded.calls[before:]
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    usage = whole.usage
    assert usage.consistent
    assert usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
    assert usage.reasoning_tokens <= usage.output_tokens
    assert math.isclose(whole.cost.total, aws_price(usage, CLAUDE), rel_tol=1e-9)
    assert whole.cost.input + whole.cost.output == pytest.approx(whole.cost.total, rel=1e-9)
