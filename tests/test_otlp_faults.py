"""The OTLP endpoint is down or hangs: the application never waits on the exporter.

tokentrail runs on real SDK providers exporting over OTLP (HTTP/protobuf and gRPC) through a
``BatchSpanProcessor`` and a ``PeriodicExportingMetricReader``, to a closed loopback port or to a
loopback server that accepts connections and never answers. The real openai SDK makes the calls
over ``httpx2.MockTransport``.

The proof is structural, not timed: each exporter's ``export`` is wrapped to record the thread it
runs on and to hold it *inside* ``export`` until the test releases it. The application's calls are
made while both exporters are provably stuck there (the wrapper cannot have returned), so none of
them can have waited on an export; then the real export runs into the fault and fails, which must
not be counted as a tokentrail error, and shutting the providers down must come back (exporter
timeouts are short, so nothing here can hang for long).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail
from openai_wire import MODEL, SNAPSHOT, FakeOpenAI, chat_chunks, chat_completion, chat_usage
from tokentrail import _safety
from tokentrail import semconv as sc

MESSAGES = [{"role": "user", "content": "Say hello"}]
CALLS = 10  # chat calls, and as many streams, made while the exporters are stuck
EXPORT_TIMEOUT_S = 0.5  # each OTLP export gives up after this: nothing below can hang for long
# Upper bound on any wait for another thread (a guard against hanging the suite, not a speed check).
WAIT_LIMIT_S = 30.0
SHUTDOWN_TIMEOUT_MS = 10_000


# --- the faulty endpoints ---------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port with nobody listening: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HangingServer:
    """Accepts TCP connections on loopback and never sends a byte (holds them until closed)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging-otlp-server", daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._connections)

    def _accept(self) -> None:
        while not self._stop.is_set():  # bounded: close() sets the event; each wait is 50 ms
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT_LIMIT_S)
        self._listener.close()
        with self._lock:
            for connection in self._connections:
                connection.close()


class OTLPReceiver:
    """A healthy OTLP/HTTP receiver (protobuf, loopback): answers 200 and keeps what it decoded."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[Any] = []
        self.metric_requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest.FromString(body)
                    for resource_spans in request.resource_spans:
                        for scope_spans in resource_spans.scope_spans:
                            receiver.spans.extend(scope_spans.spans)
                elif self.path == "/v1/metrics":
                    ExportMetricsServiceRequest.FromString(body)
                    receiver.metric_requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Endpoint:
    fault: str
    port: int
    hanging: HangingServer | None = None
    receiver: OTLPReceiver | None = None


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    fault = request.param
    if fault == "closed_port":
        yield Endpoint(fault, closed_port())
    elif fault == "hanging_server":
        server = HangingServer()
        try:
            yield Endpoint(fault, server.port, hanging=server)
        finally:
            server.close()
    else:
        receiver = OTLPReceiver()
        try:
            yield Endpoint(fault, receiver.port, receiver=receiver)
        finally:
            receiver.close()


# --- exporters whose export() is watched and held ---------------------------------------------------


@dataclass
class Attempt:
    thread: int
    thread_name: str
    result: Any = None  # the real export's result, once it returned


@dataclass
class HeldExports:
    """Wraps an exporter's ``export``: records the thread of every attempt and holds each one
    inside ``export`` until :meth:`release`; then the real export runs (and meets the fault)."""

    attempts: list[Attempt] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    returned: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def wrap(self, exporter: Any) -> Any:
        real: Callable[..., Any] = exporter.export

        def export(*args: Any, **kwargs: Any) -> Any:
            attempt = Attempt(threading.get_ident(), threading.current_thread().name)
            self.attempts.append(attempt)
            self.entered.set()
            self.released.wait(WAIT_LIMIT_S)
            attempt.result = real(*args, **kwargs)
            self.returned.set()
            return attempt.result

        exporter.export = export
        return exporter

    def release(self) -> None:
        self.released.set()

    def results(self) -> list[Any]:
        return [attempt.result for attempt in self.attempts if attempt.result is not None]


def otlp_exporters(protocol: str, port: int) -> tuple[Any, Any]:
    """(span exporter, metric exporter) over ``protocol`` to loopback ``port``, short timeouts."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        target = f"127.0.0.1:{port}"
        return (
            OTLPSpanExporter(endpoint=target, insecure=True, timeout=EXPORT_TIMEOUT_S),
            OTLPMetricExporter(endpoint=target, insecure=True, timeout=EXPORT_TIMEOUT_S),
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = f"http://127.0.0.1:{port}"
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=EXPORT_TIMEOUT_S),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=EXPORT_TIMEOUT_S),
    )


@dataclass
class Pipeline:
    """tokentrail on SDK providers that export over OTLP, plus in-memory copies to check against."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    span_exports: HeldExports
    metric_exports: HeldExports
    memory_spans: InMemorySpanExporter
    memory_metrics: InMemoryMetricReader
    calls: list[tokentrail.CallRecord]

    def points(self, name: str) -> list[Any]:
        data = self.memory_metrics.get_metrics_data()
        found = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def pipeline(request: pytest.FixtureRequest, endpoint: Endpoint) -> Iterator[Pipeline]:
    protocol = request.param
    span_exporter, metric_exporter = otlp_exporters(protocol, endpoint.port)
    span_exports, metric_exports = HeldExports(), HeldExports()
    memory_spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    # A short schedule delay: the first span is handed to the exporter right after the first call.
    tracer_provider.add_span_processor(
        BatchSpanProcessor(span_exports.wrap(span_exporter), schedule_delay_millis=10)
    )
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory_spans))
    memory_metrics = InMemoryMetricReader()
    periodic = PeriodicExportingMetricReader(
        metric_exports.wrap(metric_exporter),
        export_interval_millis=20,
        export_timeout_millis=EXPORT_TIMEOUT_S * 1000,
    )
    meter_provider = MeterProvider(metric_readers=[periodic, memory_metrics])
    calls: list[tokentrail.CallRecord] = []
    _safety.reset_for_tests()
    tokentrail.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        providers=["openai"],
        sinks=[calls.append],
    )
    built = Pipeline(
        tracer_provider, meter_provider, span_exports, metric_exports, memory_spans, memory_metrics, calls
    )
    try:
        yield built
    finally:
        span_exports.release()
        metric_exports.release()
        tokentrail.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown(timeout_millis=SHUTDOWN_TIMEOUT_MS)


# --- what the application must get -----------------------------------------------------------------


def expected_chat() -> dict[str, Any]:
    """The response as the SDK parses the wire body, with nothing instrumented."""
    return ChatCompletion.model_validate(chat_completion(text="Hello there!")).model_dump()


def expected_stream() -> list[dict[str, Any]]:
    """The chunks the application would get uninstrumented (it did not ask for the usage chunk)."""
    words = ["Hel", "lo", " there", "!"]
    wire = chat_chunks(words, chat_usage(), include_usage=False)
    return [ChatCompletionChunk.model_validate(chunk).model_dump() for chunk in wire]


def make_calls(client: Any, count: int) -> None:
    """``count`` chat calls and ``count`` streams, each checked against the uninstrumented answer."""
    chat, stream = expected_chat(), expected_stream()
    for _ in range(count):
        assert client.chat.completions.create(model=MODEL, messages=MESSAGES).model_dump() == chat
        chunks = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        assert [chunk.model_dump() for chunk in chunks] == stream


def in_a_thread(action: Callable[[], Any]) -> bool:
    """Run ``action`` on a helper thread; True if it came back within WAIT_LIMIT_S."""
    done = threading.Thread(target=action, name="shutdown-guard", daemon=True)
    done.start()
    done.join(WAIT_LIMIT_S)
    return not done.is_alive()


def tokentrail_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("tokentrail")]


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["closed_port", "hanging_server"], indirect=True)
@pytest.mark.parametrize("pipeline", ["http/protobuf", "grpc"], indirect=True)
def test_calls_never_wait_on_an_exporter_that_cannot_reach_its_endpoint(
    pipeline: Pipeline, endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    calling_thread = threading.get_ident()
    client = FakeOpenAI().client()
    with caplog.at_level(logging.WARNING):
        make_calls(client, 1)
        # Both exporters are now inside export(), held there until released.
        assert pipeline.span_exports.entered.wait(WAIT_LIMIT_S)
        assert pipeline.metric_exports.entered.wait(WAIT_LIMIT_S)

        make_calls(client, CALLS)
        tokentrail.flush()  # tokentrail's own queue drains with the exporters still stuck

        # Every call above came back while no export had returned: none of them waited on one.
        assert pipeline.span_exports.results() == [] and pipeline.metric_exports.results() == []
        attempts = pipeline.span_exports.attempts + pipeline.metric_exports.attempts
        assert attempts and all(attempt.thread != calling_thread for attempt in attempts)
        assert {a.thread_name for a in pipeline.span_exports.attempts} == {"OtelBatchSpanRecordProcessor"}

        # Everything was recorded, exactly, while the exporters were stuck.
        calls = 2 * (CALLS + 1)
        spans = pipeline.memory_spans.get_finished_spans()
        assert len(spans) == len(pipeline.calls) == calls
        assert sorted(s.attributes[sc.USAGE_INPUT_TOKENS] for s in spans) == [1200] * calls
        assert sorted(s.attributes[sc.USAGE_OUTPUT_TOKENS] for s in spans) == [30] * calls
        assert sum(1 for s in spans if s.attributes.get(sc.REQUEST_STREAM)) == CALLS + 1
        (input_point,) = [
            p for p in pipeline.points(sc.METRIC_TOKEN_USAGE) if p.attributes[sc.TOKEN_TYPE] == "input"
        ]
        assert (input_point.count, input_point.sum) == (calls, calls * 1200)
        (cost_point,) = pipeline.points(sc.METRIC_OPERATION_COST)
        assert cost_point.count == calls
        assert cost_point.sum == pytest.approx(sum(s.attributes[sc.COST_AMOUNT] for s in spans), rel=1e-12)

        # Now let the exports meet the fault: they fail, within the exporter's timeout.
        pipeline.span_exports.release()
        pipeline.metric_exports.release()
        assert pipeline.span_exports.returned.wait(WAIT_LIMIT_S)
        assert pipeline.metric_exports.returned.wait(WAIT_LIMIT_S)
        assert set(pipeline.span_exports.results()) == {SpanExportResult.FAILURE}
        assert set(pipeline.metric_exports.results()) == {MetricExportResult.FAILURE}
        if endpoint.hanging is not None:
            assert endpoint.hanging.accepted >= 1  # the exporter really reached the hanging server

        # A failed export is the exporter's business: not a tokentrail error, not logged by us.
        make_calls(client, 1)
        tokentrail.flush()
        assert _safety.errors_total == 0
        assert pipeline.points(sc.METRIC_INSTRUMENTATION_ERRORS) == []
        assert tokentrail_warnings(caplog) == []

    # Shutting everything down comes back (exports give up after EXPORT_TIMEOUT_S each).
    assert in_a_thread(tokentrail.uninstrument)
    assert in_a_thread(pipeline.tracer_provider.shutdown)
    assert in_a_thread(lambda: pipeline.meter_provider.shutdown(timeout_millis=SHUTDOWN_TIMEOUT_MS))
    assert all(attempt.thread != calling_thread for attempt in pipeline.span_exports.attempts)
    assert SpanExportResult.SUCCESS not in pipeline.span_exports.results()


@pytest.mark.parametrize("endpoint", ["healthy"], indirect=True)
@pytest.mark.parametrize("pipeline", ["http/protobuf"], indirect=True)
def test_the_same_pipeline_exports_to_a_healthy_receiver(pipeline: Pipeline, endpoint: Endpoint) -> None:
    """The control: with a receiver that answers, the same wiring exports every span successfully,
    so the failures above come from the faults, not from the test's set-up."""
    client = FakeOpenAI().client()
    make_calls(client, 1)
    assert pipeline.span_exports.entered.wait(WAIT_LIMIT_S)
    make_calls(client, 2)
    pipeline.span_exports.release()
    pipeline.metric_exports.release()
    tokentrail.uninstrument()
    assert in_a_thread(pipeline.tracer_provider.shutdown)
    assert in_a_thread(lambda: pipeline.meter_provider.shutdown(timeout_millis=SHUTDOWN_TIMEOUT_MS))
    assert set(pipeline.span_exports.results()) == {SpanExportResult.SUCCESS}
    assert set(pipeline.metric_exports.results()) == {MetricExportResult.SUCCESS}
    receiver = endpoint.receiver
    assert receiver is not None and receiver.metric_requests >= 1
    assert len(receiver.spans) == 6
    for span in receiver.spans:
        attributes = {a.key: a.value for a in span.attributes}
        assert attributes[sc.USAGE_INPUT_TOKENS].int_value == 1200
        assert attributes[sc.RESPONSE_MODEL].string_value == SNAPSHOT
        assert attributes[sc.COST_AMOUNT].double_value > 0


# A process configured only through the standard variables (tokentrail's default SDK set-up), its
# OTLP endpoint down or hanging: its calls come back unchanged, no export runs on its thread, and
# it exits normally (the exit hooks flush and shut the providers down within the short timeouts).
DEFAULT_SETUP_APP = textwrap.dedent(
    """
    import json, sys, threading
    sys.path.insert(0, {tests!r})
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    attempts, entered = [], {{"traces": threading.Event(), "metrics": threading.Event()}}

    def watch(cls, signal):
        real = cls.export
        def export(self, *args, **kwargs):
            attempts.append([signal, threading.get_ident()])
            entered[signal].set()
            return real(self, *args, **kwargs)
        cls.export = export

    watch(OTLPSpanExporter, "traces")
    watch(OTLPMetricExporter, "metrics")
    import tokentrail
    from tokentrail import _safety
    from openai_wire import MODEL, FakeOpenAI

    tokentrail.instrument(providers=["openai"], setup_otel=True)  # the SDK set-up tokentrail offers
    client = FakeOpenAI().client()
    ask = {{"model": MODEL, "messages": [{{"role": "user", "content": "hi"}}]}}
    texts = [client.chat.completions.create(**ask).choices[0].message.content]
    reached = entered["traces"].wait(20) and entered["metrics"].wait(20)
    for _ in range(5):
        texts.append(client.chat.completions.create(**ask).choices[0].message.content)
        stream = client.chat.completions.create(**ask, stream=True)
        texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    tokentrail.flush()
    print(json.dumps({{"main": threading.get_ident(), "attempts": list(attempts), "reached": reached,
                      "texts": texts, "errors": _safety.errors_total}}))
    """
)


@pytest.mark.parametrize("endpoint", ["closed_port", "hanging_server"], indirect=True)
def test_default_setup_with_an_unreachable_endpoint_exits_normally(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(DEFAULT_SETUP_APP.format(tests=str(Path(__file__).parent)))
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{endpoint.port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT_S),
        "OTEL_BSP_SCHEDULE_DELAY": "10",
        "OTEL_METRIC_EXPORT_INTERVAL": "50",
        "OTEL_METRIC_EXPORT_TIMEOUT": str(int(EXPORT_TIMEOUT_S * 1000)),
        "TOKENTRAIL_LEDGER": "off",
    }
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        env.pop(name, None)
    app = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert app.returncode == 0, app.stderr[-3000:]
    report = json.loads(app.stdout.strip().splitlines()[-1])
    assert report["texts"] == ["Hello there!"] * 11
    assert report["reached"] is True  # both exporters were at work while the calls ran
    assert {signal for signal, _ in report["attempts"]} == {"traces", "metrics"}
    assert all(thread != report["main"] for _, thread in report["attempts"])
    assert report["errors"] == 0
    assert "tokentrail: internal error" not in app.stderr
    assert "Failed to export" in app.stderr  # the SDK's own log says what happened
    if endpoint.hanging is not None:
        assert endpoint.hanging.accepted >= 1
