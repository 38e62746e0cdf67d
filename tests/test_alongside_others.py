"""tokentrail beside the other OpenTelemetry GenAI instrumentations: every call still counted once.

The peers - the official ``opentelemetry-instrumentation-openai-v2`` and ``-google-genai``, and
OpenLLMetry's ``opentelemetry-instrumentation-openai`` and ``-anthropic`` - patch the SDKs' public
methods (``Completions.create``, ``Messages.create``, ``Models.generate_content`` ...); tokentrail
patches the request underneath. With both on the same TracerProvider and MeterProvider, in either
order, one SDK call (plain or streamed) must give exactly one tokentrail span with the same usage and
cost as tokentrail alone, one ``gen_ai.client.operation.cost`` data point, one CallRecord, and the
application's response exactly as without any instrumentation; uninstrumenting either one leaves the
other working. The peers' own spans and metrics are theirs: they are counted here only to prove the
peer was really active.

The peers are not installed in the main ``.venv`` (``opentelemetry-instrument`` would load every
installed instrumentor into the demo): ``scripts/test`` runs this module in ``.venv-previous-sdks``
(openai 2.x - the official openai-v2 package cannot import on openai 3.x's httpx2 - and google-genai
2.x, which the official google-genai package requires), with ``TOKENTRAIL_EXPECT_PEERS=1`` so that a
peer missing there fails instead of skipping.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail
from anthropic_wire import FakeAnthropic
from gemini_wire import FakeGemini
from openai_wire import FakeOpenAI
from tokentrail import _safety
from tokentrail import semconv as sc

TOKENTRAIL_SCOPE = "tokentrail"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@dataclass(frozen=True)
class Peer:
    distribution: str
    module: str
    instrumentor: str
    provider: str  # tokentrail's provider name for the SDK the peer instruments

    def __str__(self) -> str:
        return self.distribution


PEERS = [
    Peer("opentelemetry-instrumentation-openai-v2", "opentelemetry.instrumentation.openai_v2",
         "OpenAIInstrumentor", "openai"),
    Peer("opentelemetry-instrumentation-openai", "opentelemetry.instrumentation.openai",
         "OpenAIInstrumentor", "openai"),
    Peer("opentelemetry-instrumentation-anthropic", "opentelemetry.instrumentation.anthropic",
         "AnthropicInstrumentor", "anthropic"),
    Peer("opentelemetry-instrumentation-google-genai", "opentelemetry.instrumentation.google_genai",
         "GoogleGenAiSdkInstrumentor", "google_genai"),
]  # fmt: skip


# --- one plain and one streamed call per SDK, returning what the application received ----------


def _openai_calls() -> tuple[Callable[[], str], Callable[[], list[str]]]:
    client = FakeOpenAI().client()

    def plain() -> str:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump_json()

    def streamed() -> list[str]:
        chunks = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        return [chunk.model_dump_json(exclude_unset=True) for chunk in chunks]

    return plain, streamed


def _anthropic_calls() -> tuple[Callable[[], str], Callable[[], list[str]]]:
    client = FakeAnthropic().client()
    call = {"model": "claude-sonnet-4-6", "max_tokens": 1024, "messages": MESSAGES}

    def plain() -> str:
        return client.messages.create(**call).model_dump_json()

    def streamed() -> list[str]:
        return [event.model_dump_json() for event in client.messages.create(**call, stream=True)]

    return plain, streamed


def _gemini_calls() -> tuple[Callable[[], str], Callable[[], list[str]]]:
    client = FakeGemini().client()

    def plain() -> str:
        return client.models.generate_content(
            model="gemini-2.5-flash", contents="Say hello"
        ).model_dump_json()

    def streamed() -> list[str]:
        chunks = client.models.generate_content_stream(model="gemini-2.5-flash", contents="Say hello")
        return [chunk.model_dump_json() for chunk in chunks]

    return plain, streamed


CALLS = {"openai": _openai_calls, "anthropic": _anthropic_calls, "google_genai": _gemini_calls}


# --- telemetry -----------------------------------------------------------------------------------


@dataclass
class Telemetry:
    """One TracerProvider and one MeterProvider, shared by tokentrail and the peer."""

    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    records: list[tokentrail.CallRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, scope: str) -> list[ReadableSpan]:
        tokentrail.flush()
        return [s for s in self.exporter.get_finished_spans() if s.instrumentation_scope.name == scope]

    def scopes(self) -> set[str]:
        tokentrail.flush()
        return {s.instrumentation_scope.name for s in self.exporter.get_finished_spans()}

    def points(self, metric: str) -> dict[str, list[Any]]:
        """Data points of a metric, by the instrumentation scope that recorded them."""
        tokentrail.flush()
        found: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for each in scope_metrics.metrics:
                    if each.name == metric:
                        found.setdefault(scope_metrics.scope.name, []).extend(each.data.data_points)
        return found

    def calls(self) -> list[tokentrail.CallRecord]:
        tokentrail.flush()
        return list(self.records)


def _instrument_tokentrail(telemetry: Telemetry, provider: str) -> None:
    _safety.reset_for_tests()
    tokentrail.instrument(
        providers=[provider],
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        sinks=[telemetry.records.append],
    )


def _comparable(span: ReadableSpan) -> dict[str, Any]:
    """A tokentrail span's attributes, less the one that is a timing (time to first chunk)."""
    return {k: v for k, v in span.attributes.items() if k != sc.RESPONSE_TIME_TO_FIRST_CHUNK}


def _peer_instrumentor(peer: Peer) -> Any:
    if importlib.util.find_spec(peer.module) is None:
        if os.environ.get("TOKENTRAIL_EXPECT_PEERS") == "1":
            pytest.fail(f"{peer.distribution} should be installed in this venv (scripts/test installs it)")
        pytest.skip(
            f"{peer.distribution} is not installed in this venv: scripts/test runs these tests in "
            ".venv-previous-sdks, where it is (the main .venv keeps other instrumentors out, since "
            "opentelemetry-instrument would load every installed one)"
        )
    return getattr(importlib.import_module(peer.module), peer.instrumentor)()


@dataclass
class Reference:
    """What the application receives with no instrumentation, and what tokentrail alone records."""

    plain: str
    streamed: list[str]
    spans: list[dict[str, Any]]
    costs: list[float]


@pytest.fixture(scope="module")
def references() -> dict[str, Reference]:
    found: dict[str, Reference] = {}
    for provider, make_calls in CALLS.items():
        plain, streamed = make_calls()
        uninstrumented = (plain(), streamed())
        alone = Telemetry()
        _instrument_tokentrail(alone, provider)
        try:
            plain(), streamed()
            spans = [_comparable(s) for s in alone.spans(TOKENTRAIL_SCOPE)]
            costs = [record.cost.total for record in alone.calls()]
        finally:
            tokentrail.uninstrument()
        assert len(spans) == len(costs) == 2 and all(cost > 0 for cost in costs)
        found[provider] = Reference(*uninstrumented, spans, costs)
    return found


@pytest.fixture
def peer_and_tokentrail(request: pytest.FixtureRequest) -> Iterator[tuple[Peer, Any, Telemetry]]:
    peer: Peer = request.param
    instrumentor = _peer_instrumentor(peer)
    telemetry = Telemetry()
    try:
        yield peer, instrumentor, telemetry
    finally:
        tokentrail.uninstrument()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        gc.collect()


# --- the tests ------------------------------------------------------------------------------------


def _assert_counted_once_per_call(telemetry: Telemetry, reference: Reference, calls: int) -> None:
    spans = telemetry.spans(TOKENTRAIL_SCOPE)
    expected_spans = (reference.spans * 2)[:calls]
    assert [_comparable(s) for s in spans] == expected_spans  # same usage, same cost, once each
    expected_costs = (reference.costs * 2)[:calls]
    assert [record.cost.total for record in telemetry.calls()] == expected_costs
    cost_points = telemetry.points(sc.METRIC_OPERATION_COST)
    assert set(cost_points) == {TOKENTRAIL_SCOPE}  # no one else records a cost
    assert sum(p.count for p in cost_points[TOKENTRAIL_SCOPE]) == calls
    assert sum(p.sum for p in cost_points[TOKENTRAIL_SCOPE]) == pytest.approx(sum(expected_costs), rel=1e-12)
    ours = telemetry.points(sc.METRIC_TOKEN_USAGE)[TOKENTRAIL_SCOPE]
    assert sum(p.count for p in ours if p.attributes[sc.TOKEN_TYPE] == "input") == calls


@pytest.mark.parametrize("peer_and_tokentrail", PEERS, ids=str, indirect=True)
@pytest.mark.parametrize("tokentrail_first", [True, False], ids=["tokentrail-first", "peer-first"])
@pytest.mark.parametrize("removed", ["tokentrail", "peer"])
def test_one_call_is_counted_once_beside_another_instrumentation(
    peer_and_tokentrail: tuple[Peer, Any, Telemetry],
    references: dict[str, Reference],
    tokentrail_first: bool,
    removed: str,
) -> None:
    peer, instrumentor, telemetry = peer_and_tokentrail
    reference = references[peer.provider]

    def instrument_peer() -> None:
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
        )
        assert instrumentor.is_instrumented_by_opentelemetry, f"{peer} refused to instrument"

    if tokentrail_first:
        _instrument_tokentrail(telemetry, peer.provider)
        instrument_peer()
    else:
        instrument_peer()
        _instrument_tokentrail(telemetry, peer.provider)
    plain, streamed = CALLS[peer.provider]()

    assert plain() == reference.plain
    assert streamed() == reference.streamed
    _assert_counted_once_per_call(telemetry, reference, calls=2)
    peer_scopes = telemetry.scopes() - {TOKENTRAIL_SCOPE}
    assert len(peer_scopes) == 1, peer_scopes  # the peer was really there, with spans of its own
    (peer_scope,) = peer_scopes
    peer_spans = len(telemetry.spans(peer_scope))
    assert peer_spans == 2

    # Either one uninstrumented: the other goes on as before.
    if removed == "tokentrail":
        tokentrail.uninstrument()
    else:
        instrumentor.uninstrument()
    assert plain() == reference.plain
    if removed == "tokentrail":
        _assert_counted_once_per_call(telemetry, reference, calls=2)  # nothing more of ours
        assert len(telemetry.spans(peer_scope)) == peer_spans + 1
    else:
        # Whether the peer really let go is its own affair (OpenLLMetry's openai instrumentor keeps
        # Completions.create wrapped after uninstrument()); tokentrail counts the call once either way.
        _assert_counted_once_per_call(telemetry, reference, calls=3)
