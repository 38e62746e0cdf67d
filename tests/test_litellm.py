"""LiteLLM: the real package against the fake provider server, no network.

Calls LiteLLM makes over its own HTTP clients (Ollama, Bedrock, its Responses handler) are
reported by the LiteLLM layer from LiteLLM's usage; calls it makes through the openai SDK are
counted once, by the openai layer, and carry the names set around them. Every test asserts one
counted span per model call (the span carrying ``gen_ai.usage.*``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

# LiteLLM fetches its model cost map from the internet at import unless told to use its bundled
# copy: tests never touch the network (set before litellm is imported, here and in subprocesses).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import genai_prices
import litellm
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import StatusCode

import tokentrail
from conftest import Recorded
from tokentrail import semconv as sc
from tokentrail.cli import main as cli_main
from tokentrail.context import current_attribution, current_framework_llm_run
from tokentrail.providers import litellm as ll
from tokentrail.providers._framework import AgentRun, framework_parses_raw_streams
from tokentrail.testing import FakeLLMServer

pytestmark = pytest.mark.tokentrail(providers=["openai", "litellm"])

MESSAGES = [{"role": "user", "content": "Say hello to the world in eight words"}]
OLLAMA = "ollama/llama3.1"
OPENAI = "openai/gpt-4o-mini"
BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
# The fake server's OpenAI face listens on loopback: the application maps it, as it would a proxy.
OPENAI_HOSTS = {"127.0.0.1": "openai"}
LITELLM_VERSION = tuple(int(part) for part in version("litellm").split(".")[:2])


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh(server: FakeLLMServer) -> None:
    server.reset()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE",
        "AWS_SECRET_ACCESS_KEY": "fake-secret",
        "AWS_REGION_NAME": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def counted(recorded: Recorded) -> list[Any]:
    """The spans that carry a call's usage: exactly one per model call."""
    return [span for span in recorded.spans() if sc.USAGE_INPUT_TOKENS in span.attributes]


def llm_spans(recorded: Recorded) -> list[Any]:
    return [span for span in recorded.spans() if span.kind.name == "CLIENT"]


def expected_cost(model: str, provider: str, **tokens: int) -> float:
    """What genai-prices computes for these tokens: our figure must equal it."""
    price = genai_prices.calc_price(genai_prices.Usage(**tokens), model, provider_id=provider)
    return float(price.total_price)


def token_points(recorded: Recorded, token_type: str) -> list[Any]:
    return recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type=token_type)


def ollama(server: FakeLLMServer, **kwargs: Any) -> Any:
    return litellm.completion(model=OLLAMA, messages=MESSAGES, api_base=server.url, **kwargs)


def via_openai(server: FakeLLMServer, **kwargs: Any) -> Any:
    return litellm.completion(
        model=OPENAI,
        messages=MESSAGES,
        api_base=server.base_url,
        api_key="sk-test-SECRET",
        max_retries=0,
        **kwargs,
    )


# --- over LiteLLM's own HTTP: the LiteLLM layer reports ------------------------------------------


def test_ollama_over_raw_http_is_reported_once_by_the_litellm_layer(recorded, server):
    response = ollama(server)

    assert response.choices[0].message.content  # the application's answer, unchanged
    span = recorded.span()
    attributes = span.attributes
    assert span.name == "chat llama3.1" and span.kind.name == "CLIENT"
    assert attributes[sc.OPERATION_NAME] == "chat"
    assert attributes[sc.PROVIDER_NAME] == "ollama"
    assert attributes[sc.REQUEST_MODEL] == "llama3.1"  # without LiteLLM's routing prefix
    assert attributes[sc.RESPONSE_MODEL] == "llama3.1"
    assert attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert (attributes[sc.USAGE_INPUT_TOKENS], attributes[sc.USAGE_OUTPUT_TOKENS]) == (
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
    )
    assert attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
    (call,) = recorded.calls
    assert call.provider == "ollama" and call.usage is not None and call.usage.consistent
    (inputs,) = token_points(recorded, "input")
    assert (inputs.count, inputs.sum) == (1, response.usage.prompt_tokens)
    assert server.requests[-1].path == "/api/generate"


async def test_acompletion_over_raw_http(recorded, server):
    response = await litellm.acompletion(model=OLLAMA, messages=MESSAGES, api_base=server.url)

    (span,) = counted(recorded)
    assert span.attributes[sc.PROVIDER_NAME] == "ollama"
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == response.usage.completion_tokens
    assert len(llm_spans(recorded)) == 1


@pytest.mark.parametrize("include_usage", [True, False], ids=["include_usage", "no_stream_options"])
def test_stream_over_raw_http_is_reported_at_its_end(recorded, server, include_usage):
    plain = ollama(server)
    assert len(recorded.spans()) == 1  # flushed: the plain call's span is ended
    recorded.exporter.clear()
    recorded.finished.clear()
    options = {"stream_options": {"include_usage": True}} if include_usage else {}

    stream = ollama(server, stream=True, **options)
    # completion() returned: its marks are gone from the caller's context before the stream is read.
    assert current_framework_llm_run() is None
    assert isinstance(stream, litellm.CustomStreamWrapper)  # the proxy keeps the type
    assert recorded.spans() == []  # reported at the stream's end, not before
    chunks = list(stream)

    usage_chunks = [chunk for chunk in chunks if getattr(chunk, "usage", None) is not None]
    assert len(usage_chunks) == (1 if include_usage else 0)  # what the application asked for
    (span,) = counted(recorded)
    assert span.attributes[sc.REQUEST_STREAM] is True
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == plain.usage.prompt_tokens
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == plain.usage.completion_tokens
    assert span.attributes[sc.RESPONSE_MODEL] == "llama3.1"
    assert len(recorded.calls) == 1


async def test_async_stream_over_raw_http(recorded, server):
    stream = await litellm.acompletion(model=OLLAMA, messages=MESSAGES, api_base=server.url, stream=True)
    texts = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]

    assert "".join(t or "" for t in texts)
    (span,) = counted(recorded)
    assert span.attributes[sc.PROVIDER_NAME] == "ollama" and span.attributes[sc.USAGE_OUTPUT_TOKENS] > 0
    assert len(recorded.calls) == 1


def test_a_stream_closed_early_is_reported_once_as_incomplete(recorded, server):
    stream = ollama(server, stream=True)
    next(iter(stream))
    stream.close()
    stream.close()
    del stream
    gc.collect()

    (span,) = llm_spans(recorded)
    assert span.attributes[sc.PROVIDER_NAME] == "ollama"
    assert len(recorded.calls) == 1


def test_embedding_and_text_completion_over_raw_http(recorded, server):
    embedded = litellm.embedding(model="ollama/nomic-embed-text", input=["hello"], api_base=server.url)
    text = litellm.text_completion(model=OLLAMA, prompt="Say hello", api_base=server.url)

    first, second = counted(recorded)
    assert first.attributes[sc.OPERATION_NAME] == "embeddings"
    assert first.attributes[sc.REQUEST_MODEL] == "nomic-embed-text"
    assert first.attributes[sc.USAGE_INPUT_TOKENS] == embedded.usage.prompt_tokens
    assert second.attributes[sc.OPERATION_NAME] == "text_completion"
    assert second.attributes[sc.USAGE_OUTPUT_TOKENS] == text.usage.completion_tokens
    assert len(recorded.calls) == 2


async def test_aembedding_and_atext_completion(recorded, server):
    await litellm.aembedding(model="ollama/nomic-embed-text", input=["hello"], api_base=server.url)
    await litellm.atext_completion(model=OLLAMA, prompt="Say hello", api_base=server.url)

    assert [span.attributes[sc.OPERATION_NAME] for span in counted(recorded)] == [
        "embeddings",
        "text_completion",
    ]
    assert len(llm_spans(recorded)) == 2


@pytest.mark.skipif(
    LITELLM_VERSION < (1, 110),
    reason="LiteLLM 1.100 fails completion(acompletion=True) itself, without tokentrail",
)
async def test_completion_with_the_acompletion_flag_is_counted_when_awaited(recorded, server):
    pending = litellm.completion(model=OLLAMA, messages=MESSAGES, api_base=server.url, acompletion=True)
    assert recorded.spans() == []  # nothing has been sent yet
    response = await pending

    (span,) = counted(recorded)
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == response.usage.completion_tokens
    assert len(llm_spans(recorded)) == 1


def test_text_completion_stream(recorded, server):
    plain = litellm.text_completion(model=OLLAMA, prompt="Say hello", api_base=server.url)
    chunks = list(litellm.text_completion(model=OLLAMA, prompt="Say hello", api_base=server.url, stream=True))

    assert chunks
    first, second = counted(recorded)
    assert first.attributes[sc.OPERATION_NAME] == second.attributes[sc.OPERATION_NAME] == "text_completion"
    assert second.attributes[sc.REQUEST_STREAM] is True
    assert second.attributes[sc.USAGE_OUTPUT_TOKENS] == plain.usage.completion_tokens
    assert len(recorded.calls) == 2


def test_responses_over_litellms_http_is_priced_by_tokentrail(recorded, server):
    response = litellm.responses(
        model=OPENAI, input="Say hello", api_base=server.base_url, api_key="sk-test-SECRET"
    )

    (span,) = counted(recorded)
    attributes = span.attributes
    # LiteLLM's own HTTP handler: its resolved provider names the call, not the loopback host.
    assert attributes[sc.PROVIDER_NAME] == "openai"
    assert attributes[sc.REQUEST_MODEL] == "gpt-4o-mini"
    usage = response.usage
    assert (attributes[sc.USAGE_INPUT_TOKENS], attributes[sc.USAGE_OUTPUT_TOKENS]) == (
        usage.input_tokens,
        usage.output_tokens,
    )
    cost = expected_cost(
        attributes[sc.RESPONSE_MODEL],
        "openai",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
    )
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    (call,) = recorded.calls
    assert call.cost is not None and math.isclose(call.cost.total, cost, rel_tol=1e-9)
    # LiteLLM's own figure is never the cost (it is LiteLLM's estimate, not a bill).
    assert call.usage is not None and call.usage.provider_cost_usd is None


async def test_aresponses_and_a_responses_stream(recorded, server):
    await litellm.aresponses(model=OLLAMA, input="Say hello", api_base=server.url)
    stream = litellm.responses(model=OLLAMA, input="Say hello", api_base=server.url, stream=True)
    events = list(stream)

    assert events
    first, second = counted(recorded)
    assert first.attributes[sc.USAGE_INPUT_TOKENS] == second.attributes[sc.USAGE_INPUT_TOKENS]
    assert first.attributes[sc.USAGE_OUTPUT_TOKENS] == second.attributes[sc.USAGE_OUTPUT_TOKENS]
    assert second.attributes[sc.REQUEST_STREAM] is True
    assert len(recorded.calls) == 2


def test_router_calls_are_counted_once(recorded, server):
    router = litellm.Router(
        model_list=[{"model_name": "fast", "litellm_params": {"model": OLLAMA, "api_base": server.url}}]
    )
    router.completion(model="fast", messages=MESSAGES)
    asyncio.run(router.acompletion(model="fast", messages=MESSAGES))

    spans = counted(recorded)
    assert len(spans) == 2 and len(llm_spans(recorded)) == 2
    # The deployment's model is what was sent to the provider: the router's alias is not a model.
    assert {span.attributes[sc.REQUEST_MODEL] for span in spans} == {"llama3.1"}
    assert len(server.requests) == 2


@pytest.mark.tokentrail(providers=["anthropic", "openai", "litellm"])
def test_anthropic_over_litellms_http_with_cache_writes_is_priced_by_tokentrail(recorded, server):
    system = "You are a careful assistant. " * 250
    response = litellm.completion(
        model="anthropic/claude-sonnet-4-5",
        api_base=server.url,
        api_key="sk-ant-test-SECRET",
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "user", "content": "hello there"},
        ],
    )

    assert server.requests[-1].path == "/v1/messages"  # LiteLLM's own client, not the anthropic SDK
    (span,) = counted(recorded)
    attributes = span.attributes
    assert attributes[sc.PROVIDER_NAME] == "anthropic"
    usage = response.usage
    written = usage.prompt_tokens_details.cache_creation_tokens
    assert written > 0
    # LiteLLM's prompt_tokens already includes the cache write: the input total, not added twice.
    assert attributes[sc.USAGE_INPUT_TOKENS] == usage.prompt_tokens
    assert attributes[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == written
    cost = expected_cost(
        attributes[sc.RESPONSE_MODEL], "anthropic",
        input_tokens=usage.prompt_tokens, cache_write_tokens=written, output_tokens=usage.completion_tokens,
    )  # fmt: skip
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    (call,) = recorded.calls
    assert call.usage is not None and call.usage.provider_cost_usd is None  # LiteLLM's figure: unused
    assert "sk-ant-test-SECRET" not in json.dumps({k: str(v) for k, v in attributes.items()})


def test_a_stream_dropped_unfinished_is_reported_once(recorded, server):
    stream = ollama(server, stream=True)
    next(iter(stream))
    del stream
    gc.collect()

    (span,) = llm_spans(recorded)
    assert span.attributes[sc.PROVIDER_NAME] == "ollama"
    assert len(recorded.calls) == 1


def test_bedrock_route_agrees_with_tokentrails_bedrock_module(recorded, server, aws):
    """The same wire answer through boto3 (tokentrail's bedrock module) and LiteLLM's Bedrock route."""
    import boto3

    tokentrail.instrument(
        tracer_provider=recorded.tracer_provider,
        meter_provider=recorded.meter_provider,
        providers=["bedrock", "litellm"],
        sinks=[recorded.finished.append],
        setup_otel=False,
    )
    system = "You are a careful assistant. " * 250
    prompt = "Summarise the guide. " * 300
    client = boto3.client("bedrock-runtime", endpoint_url=server.url, region_name="us-east-1")
    client.converse(
        modelId=BEDROCK_MODEL,
        system=[{"text": system}, {"cachePoint": {"type": "default"}}],
        messages=[{"role": "user", "content": [{"text": prompt}, {"cachePoint": {"type": "default"}}]}],
    )
    litellm.completion(
        model=f"bedrock/{BEDROCK_MODEL}",
        aws_bedrock_runtime_endpoint=server.url,
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            },
            {
                "role": "user",
                "content": [{"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}],
            },
        ],
    )

    assert [request.path.rsplit("/", 1)[-1] for request in server.requests] == ["converse", "converse"]
    by_boto3, by_litellm = recorded.calls
    assert by_litellm.provider == by_boto3.provider == "aws.bedrock"
    assert by_litellm.request_model == by_boto3.request_model == BEDROCK_MODEL
    # The same tokens; LiteLLM adds its own total (Converse's, which the bedrock module leaves out).
    assert replace(by_litellm.usage, reported_total_tokens=None) == by_boto3.usage
    assert by_litellm.usage.cache_read_tokens > 0 and by_litellm.usage.cache_write_tokens > 0
    assert by_litellm.usage.consistent
    assert by_litellm.cost is not None and by_boto3.cost is not None
    assert by_litellm.cost.total == by_boto3.cost.total > 0
    assert len(counted(recorded)) == 2


# --- through the openai SDK: the SDK layer counts, named by the layers around it ----------------


@pytest.mark.tokentrail(providers=["openai", "litellm"], provider_hosts=OPENAI_HOSTS)
def test_openai_sdk_route_is_counted_once_by_the_sdk_layer_and_named(recorded, server):
    with tokentrail.attribute(pipeline="triage"), AgentRun("planner"):
        response = via_openai(server, temperature=0.3)

    (span,) = counted(recorded)
    attributes = span.attributes
    assert attributes[sc.AGENT_NAME] == "planner"
    assert attributes[sc.PROVIDER_NAME] == "openai"
    assert attributes[sc.REQUEST_MODEL] == "gpt-4o-mini"
    assert attributes[sc.RESPONSE_MODEL] == response.model
    assert attributes[sc.REQUEST_TEMPERATURE] == 0.3
    assert "openai.response.service_tier" in attributes  # the openai layer's span, not a report
    cost = expected_cost(
        response.model, "openai",
        input_tokens=response.usage.prompt_tokens, output_tokens=response.usage.completion_tokens,
    )  # fmt: skip
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    (call,) = recorded.calls
    assert call.attribution["agent"] == "planner" and call.attribution["pipeline"] == "triage"
    (inputs,) = token_points(recorded, "input")
    assert inputs.count == 1
    agent_span = next(s for s in recorded.spans() if s.name == "invoke_agent planner")
    assert sc.USAGE_INPUT_TOKENS not in agent_span.attributes  # a roll-up, never counted


@pytest.mark.tokentrail(providers=["openai", "litellm"], provider_hosts=OPENAI_HOSTS)
async def test_openai_sdk_route_async_embedding_and_text_completion(recorded, server):
    await litellm.acompletion(
        model=OPENAI, messages=MESSAGES, api_base=server.base_url, api_key="sk-test-SECRET", max_retries=0
    )
    litellm.embedding(
        model="openai/text-embedding-3-small",
        input=["hello"],
        api_base=server.base_url,
        api_key="sk-test-SECRET",
    )
    litellm.text_completion(
        model="text-completion-openai/gpt-3.5-turbo-instruct",
        prompt="Say hello",
        api_base=server.base_url,
        api_key="sk-test-SECRET",
    )

    spans = counted(recorded)
    assert [span.attributes[sc.OPERATION_NAME] for span in spans] == ["chat", "embeddings", "text_completion"]
    assert all(
        "openai.response.service_tier" in span.attributes or sc.OPERATION_NAME in span.attributes
        for span in spans
    )
    assert len(llm_spans(recorded)) == 3 and len(recorded.calls) == 3
    assert all(request.path.startswith("/v1/") for request in server.requests)


@pytest.mark.tokentrail(providers=["openai", "litellm"], provider_hosts=OPENAI_HOSTS)
def test_openai_sdk_route_stream_is_counted_once_with_its_usage(recorded, server):
    """LiteLLM parses the openai SDK's raw response and drops it: the SDK's stream still ends right."""
    stream = via_openai(server, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)

    usage = next(chunk.usage for chunk in chunks if getattr(chunk, "usage", None) is not None)
    (span,) = counted(recorded)
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == usage.prompt_tokens
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == usage.completion_tokens
    assert sc.STREAM_INCOMPLETE not in span.attributes
    assert len(llm_spans(recorded)) == 1


@pytest.mark.tokentrail(providers=["openai", "litellm"], provider_hosts=OPENAI_HOSTS)
async def test_openai_sdk_route_stream_without_include_usage_still_has_its_usage(recorded, server):
    """LiteLLM only reads the openai SDK's parsed stream: the openai layer may ask for the usage
    chunk on LiteLLM's raw request and keep it from LiteLLM, which sees the stream it asked for."""
    plain = via_openai(server)
    stream = via_openai(server, stream=True)
    chunks = list(stream)
    astream = await litellm.acompletion(
        model=OPENAI, messages=MESSAGES, api_base=server.base_url, api_key="sk-test-SECRET", stream=True
    )
    achunks = [chunk async for chunk in astream]

    assert not any(getattr(chunk, "usage", None) for chunk in chunks + achunks)  # as asked: none
    assert [chunk.choices[0].finish_reason for chunk in chunks][-1] == "stop"
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}  # asked on the wire
    _, streamed, astreamed = counted(recorded)
    for span in (streamed, astreamed):
        assert span.attributes[sc.USAGE_INPUT_TOKENS] == plain.usage.prompt_tokens
        assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == plain.usage.completion_tokens
    assert len(llm_spans(recorded)) == 3
    assert not framework_parses_raw_streams()  # the mark is gone once LiteLLM returned


# --- failures -------------------------------------------------------------------------------------


def test_a_provider_error_over_raw_http_passes_through_and_is_recorded(recorded, server):
    server.fail_next(429)
    with pytest.raises(litellm.RateLimitError):
        ollama(server)

    (span,) = llm_spans(recorded)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "RateLimitError"
    assert span.attributes[sc.PROVIDER_NAME] == "ollama"
    assert len(recorded.calls) == 1


@pytest.mark.tokentrail(providers=["openai", "litellm"], provider_hosts=OPENAI_HOSTS)
def test_a_provider_error_through_the_openai_sdk_is_one_failed_call(recorded, server):
    server.fail_next(500)
    with pytest.raises(litellm.InternalServerError):
        via_openai(server)

    (span,) = llm_spans(recorded)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE]
    assert len(recorded.calls) == 1


def test_a_bug_in_the_layer_never_reaches_the_application(recorded, server, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(ll, "response_info", broken)
    response = ollama(server)

    assert response.usage.prompt_tokens > 0  # the application got its answer
    assert tokentrail.flush() is None


def test_a_mocked_litellm_call_reaches_no_provider_and_is_not_recorded(recorded):
    response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi there")

    assert response.choices[0].message.content == "hi there"
    assert recorded.spans() == [] and recorded.calls == []


# --- names, ledger, report ------------------------------------------------------------------------


def test_litellm_metadata_and_user_name_the_call_under_the_applications_names(recorded, server):
    ollama(server, metadata={"agent_name": "researcher", "session_id": "s-1"}, user="u-7")
    with tokentrail.attribute(agent="editor"):
        ollama(server, metadata={"agent_name": "researcher"})

    first, second = recorded.calls
    assert first.attribution["agent"] == "researcher"
    assert first.attribution["session"] == "s-1" and first.attribution["user"] == "u-7"
    assert second.attribution["agent"] == "editor"  # the application's own name wins
    assert current_attribution().values == {}


def test_ledger_summary_and_report_by_agent(server, tmp_path, capsys):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    ledger = tmp_path / "ledger.sqlite"
    tokentrail.reset_summary()
    tokentrail.instrument(
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(),
        providers=["openai", "litellm"],
        provider_hosts=OPENAI_HOSTS,
        ledger=ledger,
    )
    try:
        with AgentRun("researcher"):
            ollama(server)
            litellm.responses(model=OPENAI, input="hello", api_base=server.base_url, api_key="sk-test-SECRET")
        with AgentRun("writer"):
            via_openai(server)
        summary = tokentrail.summary(format="dict")
    finally:
        tokentrail.uninstrument()  # flushes the ledger
    tokentrail.reset_summary()

    assert summary["agents"]["researcher"]["calls"] == 2
    assert summary["agents"]["writer"]["calls"] == 1
    assert cli_main(["report", "--ledger", str(ledger), "--by", "agent", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_agent = {group["value"]: group for group in report["breakdown"]}
    assert {name: group["calls"] for name, group in by_agent.items()} == {"researcher": 2, "writer": 1}
    assert report["totals"]["calls"] == 3
    assert by_agent["writer"]["cost_usd"] > 0


# --- the matrix: the openai SDK layer x the LiteLLM layer -----------------------------------------


def _matrix(sdk: bool, framework: bool) -> Any:
    providers = [name for name, on in (("openai", sdk), ("litellm", framework)) if on] or ["ollama"]
    return pytest.mark.tokentrail(providers=providers, provider_hosts=OPENAI_HOSTS)


@pytest.mark.parametrize(
    ("sdk", "framework"),
    [
        pytest.param(sdk, framework, marks=_matrix(sdk, framework), id=f"openai_{sdk}-litellm_{framework}")
        for sdk in (True, False)
        for framework in (True, False)
    ],
)
@pytest.mark.parametrize("route", ["openai_sdk", "raw_http"])
def test_matrix_one_counted_call_whenever_a_layer_is_on(recorded, server, sdk, framework, route):
    if route == "openai_sdk":
        via_openai(server)
        # With include_usage: every combination has the usage on the wire (without it, only the
        # two layers together can ask for it: test_openai_sdk_route_stream_without_include_usage...).
        for _ in via_openai(server, stream=True, stream_options={"include_usage": True}):
            pass
    else:
        ollama(server)
        for _ in ollama(server, stream=True):
            pass
    gc.collect()

    # The openai SDK layer alone cannot see LiteLLM's own HTTP: zero there, as with both layers off.
    per_call = 1 if framework or (sdk and route == "openai_sdk") else 0
    spans = counted(recorded)
    assert len(spans) == 2 * per_call
    assert len(recorded.calls) == len(llm_spans(recorded)) == len(spans)
    assert sum(point.count for point in token_points(recorded, "input")) == 2 * per_call


# --- invariants -----------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.integers(min_value=1, max_value=40), include_usage=st.booleans())
def test_property_a_stream_totals_what_the_plain_call_does(recorded, server, words, include_usage):
    headers = {"X-Fake-Chunks": str(words)}
    recorded.finished.clear()
    plain = ollama(server, headers=headers)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    for _ in ollama(server, stream=True, headers=headers, **options):
        pass

    tokentrail.flush()
    plain_call, streamed_call = recorded.calls[-2:]
    assert plain_call.usage == streamed_call.usage
    assert streamed_call.usage.output_tokens == plain.usage.completion_tokens == words


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # Anthropic / Bedrock through LiteLLM: prompt_tokens is already the total.
        (
            {"prompt_tokens": 1010, "completion_tokens": 20, "total_tokens": 1030,
             "prompt_tokens_details": {"cached_tokens": 800, "cache_creation_tokens": 200},
             "cache_read_input_tokens": 800, "cache_creation_input_tokens": 200},
            {"input_tokens": 1010, "cache_read_tokens": 800, "cache_write_tokens": 200, "output_tokens": 20},
        ),
        # A route whose total left its cache out: parts never exceed their whole.
        (
            {"prompt_tokens": 10, "completion_tokens": 5, "cache_read_input_tokens": 800},
            {"input_tokens": 810, "cache_read_tokens": 800, "output_tokens": 5},
        ),
        # Reasoning is part of the completion.
        (
            {"prompt_tokens": 50, "completion_tokens": 300,
             "completion_tokens_details": {"reasoning_tokens": 200}},
            {"input_tokens": 50, "output_tokens": 300, "reasoning_tokens": 200},
        ),
        # The one-hour share of Anthropic's cache writes.
        (
            {"prompt_tokens": 400, "completion_tokens": 1,
             "prompt_tokens_details": {"cache_creation_tokens": 300,
                                       "cache_creation_token_details": {"ephemeral_1h_input_tokens": 100}}},
            {"input_tokens": 400, "cache_write_tokens": 300, "cache_write_1h_tokens": 100,
             "output_tokens": 1},
        ),
        # The Responses API's shape.
        (
            {"input_tokens": 30, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 10}},
            {"input_tokens": 30, "cache_read_tokens": 10, "output_tokens": 7},
        ),
        ({}, None),
    ],
)  # fmt: skip
def test_usage_of_litellms_normalised_usage(usage, expected):
    result = ll.usage_of(litellm.Usage(**usage) if "prompt_tokens" in usage else usage or None)
    if expected is None:
        assert result is None
        return
    assert result is not None and result.consistent, result
    for name, value in expected.items():
        assert getattr(result, name) == value, name
    assert result.provider_cost_usd is None


@pytest.mark.parametrize(
    ("litellm_provider", "expected"),
    [
        ("openai", "openai"), ("azure", "azure.ai.openai"), ("bedrock", "aws.bedrock"),
        ("vertex_ai", "gcp.vertex_ai"), ("gemini", "gcp.gemini"), ("mistral", "mistral_ai"),
        ("xai", "x_ai"), ("ollama_chat", "ollama"), ("together_ai", "together"), ("novita", "novita"),
        (None, "litellm"),
    ],
)  # fmt: skip
def test_provider_names(litellm_provider, expected):
    assert ll.provider_name(litellm_provider) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (OLLAMA, ("llama3.1", "ollama")),
        ("gpt-4o-mini", ("gpt-4o-mini", "openai")),
        (f"bedrock/converse/{BEDROCK_MODEL}", (BEDROCK_MODEL, "bedrock")),
        ("anthropic/claude-sonnet-4-5", ("claude-sonnet-4-5", "anthropic")),
    ],
)
def test_the_request_model_is_what_the_provider_is_asked_for(model, expected):
    assert ll.resolve(model, {}, litellm) == expected
    assert ll.resolve(model, {})[1] in (expected[1], None)


# --- installation ---------------------------------------------------------------------------------


def test_uninstrument_puts_litellm_back(recorded, server):
    assert isinstance(litellm.completion, ll.wrapt.FunctionWrapper)
    tokentrail.uninstrument(["litellm"])
    assert not isinstance(litellm.completion, ll.wrapt.FunctionWrapper)
    ollama(server)
    assert counted(recorded) == []


def test_importing_tokentrail_imports_no_litellm(tmp_path: Path):
    import subprocess
    import sys

    code = (
        "import sys, tokentrail; "
        "tokentrail.instrument(providers=['litellm'], ledger=False, setup_otel=False); "
        "assert 'litellm' not in sys.modules; import litellm; "
        "from tokentrail.providers.litellm import wrapt; "
        "assert isinstance(litellm.completion, wrapt.FunctionWrapper); print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
