"""A small soak (the structural half of ``benchmarks/soak.py``): thousands of attributed calls with the
ledger on, a third of them streams the application drops half-way. Every span must end exactly once
and every call must reach the ledger; memory and speed are the benchmark's business, not asserted here.
"""

from __future__ import annotations

import gc
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import tokentrail
from openai_wire import MODEL, FakeOpenAI

CALLS = 2000
WORDS = [f" w{i}" for i in range(8)]  # the application receives 10 chunks: role, 8 words, finish
ABANDON_AFTER = 5
AGENTS = ("planner", "coder", "reviewer", "qa")
TASKS = ("summarise", "refund", "triage", "translate", "classify")
MESSAGES = [{"role": "user", "content": "Say hello"}]


class OpenSpans(SpanProcessor):
    """Holds the ids of the spans open right now; counts starts, ends and ends without an open span."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # spans start on the test's thread and end on tokentrail's recorder
        self.open: set[tuple[int, int]] = set()
        self.started = self.ended = self.unmatched_ends = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        context = span.get_span_context()
        with self._lock:
            self.started += 1
            self.open.add((context.trace_id, context.span_id))

    def on_end(self, span: Any) -> None:
        context = span.get_span_context()
        with self._lock:
            self.ended += 1
            if (context.trace_id, context.span_id) in self.open:
                self.open.remove((context.trace_id, context.span_id))
            else:
                self.unmatched_ends += 1


class CountingExporter(SpanExporter):
    """Counts what the BatchSpanProcessor hands over, and drops it (as the benchmark's exporter does)."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def test_every_span_ends_once_and_every_call_reaches_the_ledger(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="opentelemetry.sdk.trace")
    spans, exporter = OpenSpans(), CountingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(spans)
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    ledger = tmp_path / "ledger.sqlite"
    create = FakeOpenAI(words=WORDS).client().chat.completions.create
    made: Counter[str] = Counter()
    attributed: Counter[tuple[str, str]] = Counter()
    tokentrail.instrument(
        providers=["openai"], tracer_provider=tracer_provider, meter_provider=meter_provider, ledger=ledger
    )
    try:
        for number in range(CALLS):
            agent, task = AGENTS[number % 4], TASKS[number % 5]
            kind = ("chat", "stream", "abandoned")[number % 3]
            with tokentrail.attribute(agent=agent, task=task):
                if kind == "chat":
                    create(model=MODEL, messages=MESSAGES)
                elif kind == "stream":
                    assert sum(1 for _ in create(model=MODEL, messages=MESSAGES, stream=True)) == 10
                else:  # read half, then drop the stream without closing it
                    stream = create(model=MODEL, messages=MESSAGES, stream=True)
                    chunks = iter(stream)
                    for _ in range(ABANDON_AFTER):
                        next(chunks)
                    del chunks, stream
            made[kind] += 1
            attributed[(agent, task)] += 1
        gc.collect()  # dropped streams caught in reference cycles end here, still instrumented
        tokentrail.flush()
    finally:
        tokentrail.uninstrument()  # flushes and closes the ledger writer
        tracer_provider.shutdown()

    assert made == {"chat": 667, "stream": 667, "abandoned": 666}
    assert (spans.started, spans.ended, spans.open, spans.unmatched_ends) == (CALLS, CALLS, set(), 0)
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]  # no second end() either
    assert exporter.exported == CALLS

    connection = sqlite3.connect(ledger)
    try:
        by_kind = connection.execute(
            "SELECT stream, incomplete, count(*), count(input_tokens), sum(input_tokens),"
            " sum(output_tokens), count(cost_usd) FROM calls GROUP BY stream, incomplete ORDER BY 1, 2"
        ).fetchall()
        by_attribution = dict(
            ((agent, task), count)
            for agent, task, count in connection.execute(
                "SELECT agent, task, count(*) FROM calls GROUP BY agent, task"
            )
        )
    finally:
        connection.close()
    # (stream, incomplete, rows, rows with usage, input tokens, output tokens, rows with a cost)
    assert by_kind == [
        (0, 0, 667, 667, 667 * 1200, 667 * 30, 667),
        (1, 0, 667, 667, 667 * 1200, 667 * 30, 667),
        (1, 1, 666, 0, None, None, 0),  # abandoned before the usage chunk: no usage, no cost
    ]
    assert by_attribution == dict(attributed)
    assert len(by_attribution) == 20
