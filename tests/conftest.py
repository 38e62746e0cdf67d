"""Shared fixtures: real OpenTelemetry SDK providers with in-memory readers, and tokentrail on them."""

from __future__ import annotations

import gc
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail
from tokentrail import _safety, budgets

# Tests never write to the real user's ledger: the whole session (and every subprocess it starts)
# runs with the ledger off; ledger tests pass their own tmp paths.
os.environ["TOKENTRAIL_LEDGER"] = "off"


@dataclass
class Recorded:
    """What tokentrail emitted during a test."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    log_exporter: InMemoryLogRecordExporter = field(default_factory=InMemoryLogRecordExporter)
    finished: list[tokentrail.CallRecord] = field(default_factory=list)

    @property
    def calls(self) -> list[tokentrail.CallRecord]:
        """The CallRecords the sinks received (sinks run off the calling thread: flushed first)."""
        tokentrail.flush()
        return self.finished

    def spans(self) -> list[ReadableSpan]:
        tokentrail.flush()  # spans are ended off the calling thread
        return list(self.exporter.get_finished_spans())

    def events(self, name: str) -> list[Any]:
        """The log records (events, e.g. the content event) with this event name."""
        tokentrail.flush()
        return [
            log.log_record
            for log in self.log_exporter.get_finished_logs()
            if log.log_record.event_name == name
        ]

    def span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points (cumulative since the test started)."""
        tokentrail.flush()  # metrics are recorded off the calling thread
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def points(self, name: str, **attributes: Any) -> list[Any]:
        """Data points of a metric whose attributes include ``attributes`` (dots as __)."""
        wanted = {key.replace("__", "."): value for key, value in attributes.items()}
        return [
            point
            for point in self.metrics().get(name, [])
            if all(point.attributes.get(k) == v for k, v in wanted.items())
        ]


@pytest.fixture
def recorded(request: pytest.FixtureRequest) -> Iterator[Recorded]:
    """tokentrail instrumented onto fresh in-memory SDK providers; uninstrumented afterwards.

    Options come from ``@pytest.mark.tokentrail(**instrument_kwargs)``.
    """
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    marker = request.node.get_closest_marker("tokentrail")
    options = dict(marker.kwargs) if marker else {}
    recorded = Recorded(exporter, reader, tracer_provider, meter_provider)
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(recorded.log_exporter))
    _safety.reset_for_tests()
    budgets._by_name.clear()  # named budgets are gauges for the process's life: none from earlier tests
    tokentrail.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        sinks=[recorded.finished.append],
        **options,
    )
    try:
        yield recorded
    finally:
        tokentrail.uninstrument()
        gc.collect()


def pytest_collection_finish(session: pytest.Session) -> None:
    # Every test module (and the SDKs they import) is loaded now; load the price catalogue too.
    # Freezing those objects keeps the per-test gc.collect() in `recorded` from walking the SDKs'
    # large type graphs (and 2,300 catalogue models) each time: about 0.3 s a test otherwise.
    from genai_prices import data_snapshot

    data_snapshot.get_snapshot()
    gc.collect()
    gc.freeze()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tokentrail(**kwargs): options for tokentrail.instrument()")


def http_module() -> Any:
    """The HTTP library the installed openai SDK is built on: httpx2 (3.x) or httpx (2.x)."""
    base = importlib.import_module("openai._base_client")
    return base.httpx2 if hasattr(base, "httpx2") else base.httpx
