"""Shared fixtures for the benchmarks: an in-process OpenAI API and real OpenTelemetry SDK providers.

Nothing here touches the network. The OpenAI client talks to an ``httpx2.MockTransport`` whose
handler answers like the API does (wire-format JSON and SSE bodies, pre-encoded once so the
handler itself costs the same for every configuration), and the telemetry goes to real SDK
providers whose exporter drops spans and whose metric reader is never collected while timing.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

REQUEST_MODEL = "gpt-5-mini"
RESPONSE_MODEL = "gpt-5-mini-2025-08-07"
STREAM_CHUNKS = 50  # chunks the application receives: role chunk + 48 content chunks + finish chunk

CHAT_REQUEST: dict[str, Any] = {
    "model": REQUEST_MODEL,
    "messages": [
        {"role": "system", "content": "You are a concise assistant for a billing help desk."},
        {"role": "user", "content": "Summarise the refund policy for annual plans in two sentences."},
    ],
    "max_completion_tokens": 512,
    "temperature": 1,
    "seed": 7,
}


def usage_body() -> dict[str, Any]:
    # OpenAI counts reasoning inside completion_tokens; cached tokens inside prompt_tokens.
    return {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 64,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion_body() -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1763700000,
        "model": RESPONSE_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": (
                        "Annual plans can be refunded in full within 30 days of purchase. After that, "
                        "refunds are prorated to the unused months, minus any discounts applied."
                    ),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_body(),
        "service_tier": "default",
        "system_fingerprint": "fp_8c5e6a2b1d",
    }


_WORDS = [f" word{i}" for i in range(STREAM_CHUNKS - 2)]


def chat_chunks(include_usage: bool) -> list[dict[str, Any]]:
    """A streamed chat completion as the API sends it: ``usage: null`` on every chunk and a final
    usage chunk (``choices: []``) only when the request asked for ``stream_options.include_usage``."""

    def chunk(choices: list[Any], usage: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion.chunk",
            "created": 1763700000,
            "model": RESPONSE_MODEL,
            "service_tier": "default",
            "system_fingerprint": "fp_8c5e6a2b1d",
            "choices": choices,
        }
        if include_usage:
            body["usage"] = usage
        return body

    chunks = [chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                      "logprobs": None, "finish_reason": None}])]  # fmt: skip
    for word in _WORDS:
        chunks.append(
            chunk([{"index": 0, "delta": {"content": word}, "logprobs": None, "finish_reason": None}])
        )
    chunks.append(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    assert len(chunks) == STREAM_CHUNKS
    if include_usage:
        chunks.append(chunk([], usage_body()))
    return chunks


def sse(events: Sequence[dict[str, Any]]) -> bytes:
    return ("".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n").encode()


def isolate_ledger() -> str:
    """Keep tokentrail's local ledger (on by default) but out of the user's data directory.

    ``TOKENTRAIL_LEDGER`` points at a file in a temporary directory removed at exit, unless the
    caller set it already (``off`` to measure without the ledger). The ledger's sink stays on the
    measured path, as it is in a default installation. Returns the value in force.
    """
    if "TOKENTRAIL_LEDGER" not in os.environ:
        directory = tempfile.mkdtemp(prefix="tokentrail-bench-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ["TOKENTRAIL_LEDGER"] = os.path.join(directory, "ledger.sqlite")
    return os.environ["TOKENTRAIL_LEDGER"]


@dataclass
class FakeOpenAI:
    """An ``httpx2.MockTransport`` handler answering ``POST /v1/chat/completions`` like the API."""

    chat_bytes: bytes = field(default_factory=lambda: json.dumps(chat_completion_body()).encode())
    stream_bytes: bytes = field(default_factory=lambda: sse(chat_chunks(include_usage=False)))
    stream_usage_bytes: bytes = field(default_factory=lambda: sse(chat_chunks(include_usage=True)))
    requests: int = 0
    usage_requested: int = 0

    def handler(self, request: Any) -> Any:
        import httpx2

        self.requests += 1
        body = json.loads(request.content)
        if not request.url.path.endswith("/chat/completions"):
            return httpx2.Response(404, json={"error": {"message": "not found"}})
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self.usage_requested += include_usage
            content = self.stream_usage_bytes if include_usage else self.stream_bytes
            return httpx2.Response(
                200,
                content=content,
                headers={"content-type": "text/event-stream", "x-request-id": "req_bench"},
            )
        return httpx2.Response(
            200,
            content=self.chat_bytes,
            headers={"content-type": "application/json", "x-request-id": "req_bench"},
        )

    def client(self) -> Any:
        import httpx2
        import openai

        return openai.OpenAI(
            api_key="sk-bench",
            base_url="https://api.openai.com/v1",
            http_client=httpx2.Client(transport=httpx2.MockTransport(self.handler)),
            max_retries=0,
        )


@dataclass
class Providers:
    """Real SDK providers shared by the floor and tokentrail."""

    tracer_provider: Any
    meter_provider: Any
    reader: Any
    exporter: Any

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def make_providers() -> Providers:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DroppingExporter(SpanExporter):
        """Accepts every batch and throws it away (counts spans, to check that they arrive)."""

        def __init__(self) -> None:
            self.exported = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            self.exported += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    exporter = DroppingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    return Providers(tracer_provider, meter_provider, reader, exporter)


def metric_points(reader: Any) -> dict[str, int]:
    """Metric name -> number of data points (collects the reader: never call while timing)."""
    data = reader.get_metrics_data()
    found: dict[str, int] = {}
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found[metric.name] = found.get(metric.name, 0) + len(metric.data.data_points)
    return found
