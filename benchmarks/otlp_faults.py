"""The application's per-call latency when tokentrail's OTLP endpoint is healthy, down, or hanging.

Run from the repository root::

    PYTHONPATH=src python benchmarks/otlp_faults.py [--rounds 100] [--chat-calls 10] [--stream-calls 2]
        [--export-timeout 10] [--json FILE]

Four configurations of the same OpenAI call (``client.chat.completions.create`` against the
in-process ``httpx2.MockTransport`` of ``_common.FakeOpenAI``), measured in one run:

``uninstrumented``
    the SDK call with nothing installed (the reference);
``healthy``
    tokentrail on SDK providers exporting over OTLP/HTTP to an in-process ``oteltap`` receiver on
    loopback that answers every export;
``closed-port``
    the same exporters pointed at a loopback port with nobody listening (connection refused);
``hanging``
    the same exporters pointed at a loopback server that accepts connections and never answers
    (every export waits for the exporter's timeout, ``--export-timeout``, the SDK's 10 s default).

Each instrumented configuration has its own ``TracerProvider`` (``BatchSpanProcessor``, the SDK's
defaults: 5 s schedule, 2,048-span queue, 512-span batches) and ``MeterProvider``
(``PeriodicExportingMetricReader`` every second, so the metric exporter meets its endpoint many
times in a run), all four living for the whole run: their exporter threads are at work, or stuck,
during every configuration's blocks alike. The local ledger stays on, in a temporary directory.

Method: wall time (``time.perf_counter_ns``) of every single call, chat calls and 50-chunk streams
read to the end. Each round runs one block per configuration, in an order that rotates from round
to round, so drifts of the machine fall on all of them alike; switching configuration
(``tokentrail.instrument(tracer_provider=..., meter_provider=...)`` / ``uninstrument()``) and one
untimed call happen between blocks, never inside one. Reported per configuration and kind: the
median and p99 over all calls, and their difference from uninstrumented. After each block
``tokentrail.flush()`` is timed too (it waits for tokentrail's own recorder queue, never for an
exporter). At the end the providers are shut down (in parallel, each bounded) and what the
exporters did is printed: export attempts, spans handed over and received, failures.

The healthy receiver decodes every span in this process (``oteltap`` runs its event loop on a
thread here), so the healthy configuration pays for a receiver a real deployment runs elsewhere;
the fault configurations receive nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CHAT_REQUEST, STREAM_CHUNKS, FakeOpenAI, isolate_ledger

CONFIGS = ("uninstrumented", "healthy", "closed-port", "hanging")
KINDS = ("chat", "stream")
METRIC_EXPORT_INTERVAL_MS = 1000
SHUTDOWN_LIMIT_S = 120.0


# --- the endpoints ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HangingServer:
    """Accepts TCP connections on loopback and never sends a byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():  # bounded by close(); each wait 100 ms
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        for connection in self.connections:
            connection.close()


class OteltapReceiver:
    """``oteltap``'s OTLP/HTTP receiver on loopback, on its own event-loop thread; counts spans."""

    def __init__(self) -> None:
        import oteltap

        self.port = free_port()
        self.spans = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        settings = oteltap.OtelTapHttpProtobufReceiverSettings(http_port=self.port)

        async def serve() -> None:
            self._stopped = asyncio.Event()
            try:
                async with oteltap.OtelTapHttpProtobufReceiver(settings) as tap:
                    counter = asyncio.ensure_future(self._count(tap))
                    self._ready.set()
                    await self._stopped.wait()
                    counter.cancel()
            except BaseException as exc:
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(serve(),), name="oteltap", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"oteltap receiver did not start: {self._error!r}")

    async def _count(self, tap: Any) -> None:
        async for _span in tap.stream_traces():
            self.spans += 1

    def close(self) -> None:
        if self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)


# --- tokentrail's providers, one set per configuration --------------------------------------------


@dataclass
class ExportLog:
    """What an exporter's ``export`` did (wrapped; runs on the exporter's threads)."""

    attempts: int = 0
    items: int = 0
    failures: int = 0
    seconds: list[float] = field(default_factory=list)

    def wrap(self, exporter: Any, count: Callable[[Any], int]) -> Any:
        real = exporter.export

        def export(batch: Any, *args: Any, **kwargs: Any) -> Any:
            self.attempts += 1
            self.items += count(batch)
            started = time.perf_counter()
            result = real(batch, *args, **kwargs)
            self.seconds.append(time.perf_counter() - started)
            if result.name != "SUCCESS":
                self.failures += 1
            return result

        exporter.export = export
        return exporter


@dataclass
class Pipeline:
    name: str
    tracer_provider: Any
    meter_provider: Any
    spans: ExportLog
    metrics: ExportLog


def make_pipeline(name: str, port: int, export_timeout: float) -> Pipeline:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    base = f"http://127.0.0.1:{port}"
    spans, metrics = ExportLog(), ExportLog()
    span_exporter = spans.wrap(
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=export_timeout), count=len
    )
    metric_exporter = metrics.wrap(
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=export_timeout), count=lambda _: 1
    )
    resource = Resource.create({"service.name": f"otlp-faults-{name}"})
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    reader = PeriodicExportingMetricReader(
        metric_exporter,
        export_interval_millis=METRIC_EXPORT_INTERVAL_MS,
        export_timeout_millis=export_timeout * 1000,
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
    return Pipeline(name, tracer_provider, meter_provider, spans, metrics)


# --- the measurement -------------------------------------------------------------------------------


class Bench:
    def __init__(self, export_timeout: float) -> None:
        import tokentrail

        self.tokentrail = tokentrail
        self.fake = FakeOpenAI()
        self.client = self.fake.client()
        self.receiver = OteltapReceiver()
        self.hanging = HangingServer()
        closed = free_port()
        self.pipelines = {
            "healthy": make_pipeline("healthy", self.receiver.port, export_timeout),
            "closed-port": make_pipeline("closed-port", closed, export_timeout),
            "hanging": make_pipeline("hanging", self.hanging.port, export_timeout),
        }
        create = self.client.chat.completions.create

        def chat() -> None:
            create(**CHAT_REQUEST)

        def stream() -> None:
            for _ in create(**CHAT_REQUEST, stream=True):
                pass

        self.functions = {"chat": chat, "stream": stream}
        self.current: str | None = None
        self.calls_made = dict.fromkeys(CONFIGS, 0)

    def use(self, config: str) -> None:
        """Switch to ``config`` (between blocks, never inside one)."""
        if config == self.current:
            return
        if config == "uninstrumented":
            self.tokentrail.uninstrument()
        else:
            pipeline = self.pipelines[config]
            self.tokentrail.instrument(
                tracer_provider=pipeline.tracer_provider,
                meter_provider=pipeline.meter_provider,
                providers=["openai"],
            )
        self.current = config

    def block(self, config: str, kind: str, calls: int) -> tuple[list[int], int]:
        """(wall ns of each call, wall ns of the tokentrail.flush() after them)."""
        self.use(config)
        function = self.functions[kind]
        function()  # untimed: fills a fresh instrumentation's host and price-card caches
        self.calls_made[config] += calls + 1
        self.tokentrail.flush()
        gc.collect()
        clock = time.perf_counter_ns
        times = []
        for _ in range(calls):
            started = clock()
            function()
            times.append(clock() - started)
        started = clock()
        self.tokentrail.flush()
        return times, clock() - started

    def check(self) -> None:
        """Before timing: each configuration does what it claims."""
        self.use("uninstrumented")
        requests = self.fake.requests
        chunks = sum(1 for _ in self.client.chat.completions.create(**CHAT_REQUEST, stream=True))
        assert chunks == STREAM_CHUNKS and self.fake.requests == requests + 1
        for config in self.pipelines:
            self.use(config)
            chunks = sum(1 for _ in self.client.chat.completions.create(**CHAT_REQUEST, stream=True))
            assert chunks == STREAM_CHUNKS, (config, chunks)  # the usage chunk is asked for and hidden
            self.client.chat.completions.create(**CHAT_REQUEST)
            self.calls_made[config] += 2
        self.tokentrail.flush()

    def shutdown(self) -> dict[str, float]:
        """Shut every pipeline down, in parallel; seconds each took (or the limit if it did not end)."""
        self.use("uninstrumented")
        took: dict[str, float] = {}

        def stop(pipeline: Pipeline) -> None:
            started = time.perf_counter()
            pipeline.tracer_provider.shutdown()
            pipeline.meter_provider.shutdown(timeout_millis=SHUTDOWN_LIMIT_S * 1000)
            took[pipeline.name] = time.perf_counter() - started

        threads = [threading.Thread(target=stop, args=(p,), daemon=True) for p in self.pipelines.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SHUTDOWN_LIMIT_S)
        self.receiver.close()
        self.hanging.close()
        return {name: took.get(name, SHUTDOWN_LIMIT_S) for name in self.pipelines}


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[index])


def run(args: argparse.Namespace) -> dict[str, Any]:
    isolate_ledger()
    os.environ.setdefault("TOKENTRAIL_WARM_PRICES", "0")  # one catalogue load, not one per switch
    # A hanging endpoint makes the SDK warn for every dropped span; the warnings are not the subject.
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    bench = Bench(args.export_timeout)
    bench.check()
    times: dict[tuple[str, str], list[int]] = {(c, k): [] for c in CONFIGS for k in KINDS}
    flushes: dict[str, list[int]] = {c: [] for c in CONFIGS}
    sizes = {"chat": args.chat_calls, "stream": args.stream_calls}
    started = time.perf_counter()
    for round_index in range(args.rounds):
        shift = round_index % len(CONFIGS)
        for config in CONFIGS[shift:] + CONFIGS[:shift]:
            for kind in KINDS:
                block, flush_ns = bench.block(config, kind, sizes[kind])
                times[(config, kind)].extend(block)
                flushes[config].append(flush_ns)
        if not args.quiet:
            print(f"\rround {round_index + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    if not args.quiet:
        print(f"\r{args.rounds} rounds in {elapsed:.0f} s; shutting down", file=sys.stderr)
    shutdown = bench.shutdown()
    summary: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "export_timeout_s": args.export_timeout,
        "timed_seconds": elapsed,
        "latency_us": {},
        "flush_us": {c: statistics.median(v) / 1000 for c, v in flushes.items()},
        "exporters": {},
    }
    for (config, kind), values in times.items():
        summary["latency_us"][f"{config}/{kind}"] = {
            "calls": len(values),
            "median": statistics.median(values) / 1000,
            "p99": percentile(values, 0.99) / 1000,
        }
    for name, pipeline in bench.pipelines.items():
        summary["exporters"][name] = {
            "calls": bench.calls_made[name],
            "span_exports": pipeline.spans.attempts,
            "spans_handed_over": pipeline.spans.items,
            "span_export_failures": pipeline.spans.failures,
            "longest_span_export_s": max(pipeline.spans.seconds, default=0.0),
            "metric_exports": pipeline.metrics.attempts,
            "metric_export_failures": pipeline.metrics.failures,
            "shutdown_s": shutdown[name],
        }
    summary["exporters"]["healthy"]["spans_received"] = bench.receiver.spans
    return summary


def table(summary: dict[str, Any]) -> str:
    latency = summary["latency_us"]
    lines = [
        f"per-call wall latency, µs ({summary['rounds']} interleaved rounds; "
        f"exporter timeout {summary['export_timeout_s']:g} s)",
        "",
        "| endpoint | call | calls | median µs | p99 µs | median vs uninstrumented | p99 vs uninstrumented "
        "| flush() median µs |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for config in CONFIGS:
        for kind in KINDS:
            row = latency[f"{config}/{kind}"]
            base = latency[f"uninstrumented/{kind}"]
            if config == "uninstrumented":
                median_delta = p99_delta = "-"
            else:
                median_delta = f"{row['median'] - base['median']:+,.0f}"
                p99_delta = f"{row['p99'] - base['p99']:+,.0f}"
            flush = f"{summary['flush_us'][config]:,.0f}" if kind == "chat" else ""
            lines.append(
                f"| {config} | {kind} | {row['calls']:,} | {row['median']:,.0f} | {row['p99']:,.0f} "
                f"| {median_delta} | {p99_delta} | {flush} |"
            )
    lines += [
        "",
        "| endpoint | calls (spans made) | span exports | spans handed over | received | failed exports "
        "| longest export s | metric exports (failed) | shutdown s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, facts in summary["exporters"].items():
        received = facts.get("spans_received", "-")
        lines.append(
            f"| {name} | {facts['calls']:,} | {facts['span_exports']} "
            f"| {facts['spans_handed_over']:,} | {received} "
            f"| {facts['span_export_failures']} | {facts['longest_span_export_s']:.2f} "
            f"| {facts['metric_exports']} ({facts['metric_export_failures']}) | {facts['shutdown_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="interleaved rounds (default 100)")
    parser.add_argument("--chat-calls", type=int, default=10, help="chat calls per timed block (default 10)")
    parser.add_argument("--stream-calls", type=int, default=2, help="streams per timed block (default 2)")
    parser.add_argument(
        "--export-timeout",
        type=float,
        default=10.0,
        help="OTLP exporter timeout in seconds (default 10, the SDK's default)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.chat_calls < 1 or args.stream_calls < 1 or args.export_timeout <= 0:
        parser.error("--rounds, --chat-calls, --stream-calls and --export-timeout must be positive")
    summary = run(args)
    print(table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
