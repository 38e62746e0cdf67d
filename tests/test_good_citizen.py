"""tokentrail in an application's own OpenTelemetry set-up: it never takes over the SDK, its
instrumentors behave like contrib's, and it emits the current GenAI conventions."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail
from tokentrail import _setup, lifecycle, registry
from tokentrail import semconv as sc
from tokentrail.instrumentation import AnthropicInstrumentor, OpenAIInstrumentor

TESTS = Path(__file__).parent
MESSAGES = [{"role": "user", "content": "hi"}]


def run_app(source: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | (env or {})
    code = f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n" + textwrap.dedent(source)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )


# --- 1. never take over the application's SDK ------------------------------------------------------

INSTRUMENT_THEN_CONFIGURE = """
import warnings, logging
logging.basicConfig(level=logging.WARNING)
import tokentrail
from opentelemetry import metrics, trace
tokentrail.instrument(ledger=False)                    # at import, before the app's own set-up
assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider), "tokentrail set a provider"

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)                     # the application's own, in main()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
assert trace.get_tracer_provider() is provider

from openai_wire import FakeOpenAI
messages = [{"role": "user", "content": "hi"}]
FakeOpenAI().client().chat.completions.create(model="gpt-4o-mini", messages=messages)
tokentrail.flush()
spans = exporter.get_finished_spans()
data = reader.get_metrics_data().resource_metrics
names = {m.name for rm in data for sm in rm.scope_metrics for m in sm.metrics}
print("SPANS", [s.name for s in spans], dict(spans[0].attributes)["gen_ai.usage.input_tokens"])
print("METRICS", sorted(names))
"""


def test_instrument_first_then_the_applications_own_sdk_gets_everything():
    done = run_app(INSTRUMENT_THEN_CONFIGURE)
    assert done.returncode == 0, done.stderr
    assert "Overriding of current TracerProvider" not in done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["SPANS"] == "['chat gpt-4o-mini'] 1200"
    assert {sc.METRIC_TOKEN_USAGE, sc.METRIC_OPERATION_COST, sc.METRIC_OPERATION_DURATION} <= set(
        eval(lines["METRICS"])  # a printed list of names
    )


SET_UP_ON_REQUEST = """
import logging
logging.basicConfig(level=logging.WARNING)
import tokentrail
from opentelemetry import metrics, trace
tokentrail.instrument(setup_otel=True, ledger=False)
provider = metrics.get_meter_provider()
print("TRACER", type(trace.get_tracer_provider()).__module__)
print("READERS", [type(r).__name__ for r in provider._metric_readers])
"""


def test_setup_otel_loads_exporters_from_the_sdks_entry_points_and_names_the_missing():
    done = run_app(
        SET_UP_ON_REQUEST,
        {
            "OTEL_TRACES_EXPORTER": "zipkin,console",
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_PORT": "0",
        },
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["TRACER"] == "opentelemetry.sdk.trace"
    assert "Prometheus" in lines["READERS"]  # OTEL_METRICS_EXPORTER=prometheus is honoured
    assert "OTEL_TRACES_EXPORTER names 'zipkin'" in done.stderr
    assert "opentelemetry_traces_exporter:zipkin" in done.stderr


# --- 2. instrumentors like contrib's --------------------------------------------------------------


@pytest.fixture
def providers():
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    yield exporter, tracer_provider, reader, MeterProvider(metric_readers=[reader])
    tokentrail.uninstrument()


def test_instrumentors_share_one_runtime_and_uninstrument_their_own_sdk(providers):
    import anthropic
    import openai
    from anthropic._base_client import SyncAPIClient as AnthropicClient
    from openai._base_client import SyncAPIClient as OpenAIClient

    _, tracer_provider, _, meter_provider = providers
    kwargs = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    assert openai and anthropic
    OpenAIInstrumentor().instrument(**kwargs)
    first = lifecycle.active()
    AnthropicInstrumentor().instrument(**kwargs)
    assert lifecycle.active() is first  # joined, not rebuilt
    assert hasattr(OpenAIClient.request, "__wrapped__") and hasattr(AnthropicClient.request, "__wrapped__")
    OpenAIInstrumentor().uninstrument()
    assert not hasattr(OpenAIClient.request, "__wrapped__")
    assert hasattr(AnthropicClient.request, "__wrapped__")  # the other SDK keeps recording
    assert AnthropicInstrumentor().is_instrumented_by_opentelemetry
    assert lifecycle.active() is first
    AnthropicInstrumentor().uninstrument()
    assert lifecycle.active() is None


def test_an_sdk_older_than_its_floor_is_left_alone_with_a_warning(providers, monkeypatch, caplog):
    import groq  # noqa: F401  (imported: patched at once, if supported)

    entry = registry.entry("groq")
    monkeypatch.setitem(registry._BY_NAME, "groq", replace(entry, floor="999"))
    _, tracer_provider, _, meter_provider = providers
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        done = tokentrail.instrument(
            providers=["groq"], tracer_provider=tracer_provider, meter_provider=meter_provider, ledger=False
        )
    assert done == []
    assert "groq" in caplog.text and ">= 999" in caplog.text
    from groq._base_client import SyncAPIClient

    assert not hasattr(SyncAPIClient.request, "__wrapped__")


def test_suppress_instrumentation_records_nothing(recorded):
    from openai_wire import FakeOpenAI

    client = FakeOpenAI().client()
    with suppress_instrumentation():
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert recorded.spans() == [] and recorded.calls == [] and recorded.metrics() == {}
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(recorded.calls) == 1  # outside the block, recorded as usual


# --- 4. current conventions -----------------------------------------------------------------------


def test_time_per_output_chunk_is_one_value_per_chunk_after_the_first(recorded):
    from openai_wire import FakeOpenAI

    fake = FakeOpenAI(words=["a", "b", "c", "d", "e", "f"])
    chunks = list(fake.client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    delivered = len(chunks)  # what reached the application (the usage chunk we asked for is not)
    (point,) = recorded.points(sc.METRIC_TIME_PER_OUTPUT_CHUNK)
    assert point.count == delivered - 1
    (first,) = recorded.points(sc.METRIC_TIME_TO_FIRST_CHUNK)
    assert first.count == 1
    (call,) = recorded.calls
    assert point.sum <= call.duration_s
    # The gaps add up to the time from the first chunk to the last, after the time to the first.
    assert point.min >= 0
    assert point.sum + first.sum <= call.duration_s + 1e-9


def test_the_content_event_is_a_log_record_in_the_calls_span_context():
    from openai_wire import FakeOpenAI

    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    tokentrail.instrument(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(),
        logger_provider=logger_provider,
        capture_content="EVENT_ONLY",
        ledger=False,
    )
    try:
        FakeOpenAI().client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        tokentrail.flush()
    finally:
        tokentrail.uninstrument()
    (span,) = spans.get_finished_spans()
    assert not span.events and sc.INPUT_MESSAGES not in span.attributes  # EVENT_ONLY: not on the span
    (log,) = logs.get_finished_logs()
    record = log.log_record
    assert record.event_name == sc.CONTENT_EVENT
    assert '"content": "hi"' in record.attributes[sc.INPUT_MESSAGES]
    assert sc.OUTPUT_MESSAGES in record.attributes
    assert (record.trace_id, record.span_id) == (span.context.trace_id, span.context.span_id)


def test_cache_write_and_modality_names_are_current_and_the_previous_kept_one_release(recorded):
    from anthropic_wire import FakeAnthropic

    FakeAnthropic().client().messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES)
    attributes = dict(recorded.span().attributes)
    (call,) = recorded.calls
    assert call.usage.cache_write_tokens > 0
    assert attributes[sc.USAGE_CACHE_WRITE_INPUT_TOKENS] == call.usage.cache_write_tokens
    assert attributes[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == call.usage.cache_write_tokens


def test_moonshot_is_named_as_the_registry_names_it():
    from tokentrail.pricing import genai_provider_id
    from tokentrail.providers import openai as openai_provider

    assert openai_provider.provider_for_url("https://api.moonshot.ai/v1")[0] == "moonshot_ai"
    assert genai_provider_id("moonshot_ai") == "moonshotai"


def test_latest_experimental_usage_metrics_on_opt_in(monkeypatch):
    from openai_wire import FakeOpenAI

    monkeypatch.setenv(sc.STABILITY_OPT_IN, f"http,{sc.LATEST_EXPERIMENTAL}")
    reader = InMemoryMetricReader()
    tokentrail.instrument(
        tracer_provider=TracerProvider(), meter_provider=MeterProvider(metric_readers=[reader]), ledger=False
    )
    records: list[tokentrail.CallRecord] = []
    tokentrail.add_sink(records.append)
    try:
        FakeOpenAI().client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        tokentrail.flush()
    finally:
        tokentrail.uninstrument()
    (call,) = records
    points = {
        m.name: list(m.data.data_points)
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert sc.METRIC_TOKEN_USAGE not in points and sc.METRIC_TOKEN_PARTS not in points
    (inputs,) = points[sc.METRIC_INFERENCE_INPUT_TOKENS]
    assert inputs.sum == call.usage.input_tokens and sc.TOKEN_MODALITY not in inputs.attributes
    (outputs,) = points[sc.METRIC_INFERENCE_OUTPUT_TOKENS]
    assert outputs.sum == call.usage.output_tokens
    detailed = {p.attributes.get(sc.TOKEN_MODALITY): p.value for p in points[sc.METRIC_DETAILED_INPUT_TOKENS]}
    assert detailed == {"text": call.usage.input_tokens}
    (cached,) = points[sc.METRIC_DETAILED_CACHE_READ_TOKENS]
    assert cached.value == call.usage.cache_read_tokens > 0


def test_names_agree_with_opentelemetry_util_genai():
    util = pytest.importorskip("opentelemetry.util.genai._inference_invocation")
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

    if not hasattr(util, "_GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS"):
        pytest.skip("this opentelemetry-util-genai predates cache_write (scripts/test installs 1.3b0+)")
    assert sc.USAGE_CACHE_WRITE_INPUT_TOKENS == util._GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS
    assert sc.USAGE_AUDIO_INPUT_TOKENS == util._GEN_AI_USAGE_AUDIO_INPUT_TOKENS
    assert sc.USAGE_AUDIO_OUTPUT_TOKENS == util._GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS
    assert sc.USAGE_IMAGE_INPUT_TOKENS == util._GEN_AI_USAGE_IMAGE_INPUT_TOKENS
    assert sc.METRIC_TIME_PER_OUTPUT_CHUNK == gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK
    assert sc.METRIC_TIME_TO_FIRST_CHUNK == gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK
    assert sc.METRIC_TOKEN_USAGE == gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE
    source = Path(util.__file__).read_text()
    assert f'event_name="{sc.CONTENT_EVENT}"' in source  # the log event util-genai emits


def test_instrument_provider_is_what_each_instrumentor_calls():
    # The entry-point instrumentors go through _setup.instrument_provider: one place decides to join.
    assert (
        "instrument_provider"
        in Path(importlib.import_module("tokentrail.instrumentation").__file__).read_text()
    )
    assert callable(_setup.instrument_provider)


@pytest.fixture(scope="module")
def fake_server():
    from tokentrail.testing import FakeLLMServer

    with FakeLLMServer() as running:
        yield running


def _every_family_call(server) -> list:
    """One call through each family's mechanics: Stainless (groq), Speakeasy (mistralai), Fern
    (cohere), botocore (Bedrock), class-level methods (ollama)."""
    import boto3
    import cohere
    import groq
    import ollama
    from mistralai.client import Mistral

    text = [{"role": "user", "content": "Say hello"}]
    return [
        lambda: groq.Groq(base_url=server.url, api_key="x", max_retries=0).chat.completions.create(
            model="openai/gpt-oss-120b", messages=text
        ),
        lambda: Mistral(api_key="x", server_url=server.url + "/mistral").chat.complete(
            model="mistral-small-latest", messages=text
        ),
        lambda: cohere.ClientV2(api_key="x", base_url=server.url).chat(
            model="command-a-03-2025", messages=text
        ),
        lambda: boto3.client(
            "bedrock-runtime",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        ).converse(
            modelId="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            messages=[{"role": "user", "content": [{"text": "Say hello"}]}],
        ),
        lambda: ollama.Client(host=server.url).chat(model="llama3.2", messages=text),
    ]


def test_suppress_instrumentation_is_honoured_by_every_sdk_family(recorded, fake_server):
    calls = _every_family_call(fake_server)
    with suppress_instrumentation():
        for call in calls:
            call()
    assert recorded.spans() == [] and recorded.calls == []
    for call in calls:
        call()
    assert len(recorded.calls) == len(calls)  # outside the block each family records its call
