"""Shared fixtures for the benchmarks: in-process OpenAI, Anthropic and Gemini APIs and real
OpenTelemetry SDK providers.

Nothing here touches the network. Each SDK client talks to an ``httpx2.MockTransport`` (``httpx``
for an SDK still built on it) whose handler answers like the API does: wire-format JSON and SSE
bodies, pre-encoded once so the handler itself costs the same for every configuration. The
Anthropic and Gemini bodies come from the test suite's wire-format builders
(``tests/anthropic_wire.py``, ``tests/gemini_wire.py``), so the benchmarks and the tests agree on
what the APIs send. The telemetry goes to real SDK providers whose exporter drops spans and whose
metric reader is never collected while timing.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUEST_MODEL = "gpt-5-mini"
RESPONSE_MODEL = "gpt-5-mini-2025-08-07"
STREAM_CHUNKS = 50  # default stream length (OpenAI: role chunk + 48 content chunks + finish chunk)
TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"

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


def words(count: int) -> list[str]:
    """The streamed text, one word per content chunk."""
    return [f" word{i}" for i in range(count)]


def chat_chunks(include_usage: bool, chunks: int = STREAM_CHUNKS) -> list[dict[str, Any]]:
    """A streamed chat completion as the API sends it: ``usage: null`` on every chunk and a final
    usage chunk (``choices: []``) only when the request asked for ``stream_options.include_usage``.

    ``chunks`` is what the application receives: a role chunk, ``chunks - 2`` content chunks and
    a finish chunk.
    """
    if chunks < 3:
        raise ValueError(f"an OpenAI stream here has at least 3 chunks (role, content, finish), not {chunks}")

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

    events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                      "logprobs": None, "finish_reason": None}])]  # fmt: skip
    for word in words(chunks - 2):
        events.append(
            chunk([{"index": 0, "delta": {"content": word}, "logprobs": None, "finish_reason": None}])
        )
    events.append(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    assert len(events) == chunks
    if include_usage:
        events.append(chunk([], usage_body()))
    return events


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

    stream_chunks: int = STREAM_CHUNKS
    requests: int = 0
    usage_requested: int = 0
    chat_bytes: bytes = field(init=False)
    stream_bytes: bytes = field(init=False)
    stream_usage_bytes: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.chat_bytes = json.dumps(chat_completion_body()).encode()
        self.stream_bytes = sse(chat_chunks(include_usage=False, chunks=self.stream_chunks))
        self.stream_usage_bytes = sse(chat_chunks(include_usage=True, chunks=self.stream_chunks))

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


def wire(name: str) -> Any:
    """One of the test suite's wire-format modules (``tests/<name>.py``; stdlib-only at import)."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.append(str(TESTS_DIR))  # appended: nothing in tests/ may shadow an installed module
    return importlib.import_module(name)


# --- Anthropic: client.messages.create --------------------------------------------------------------

ANTHROPIC_MODEL = "claude-sonnet-4-6"
ANTHROPIC_REQUEST: dict[str, Any] = {
    "model": ANTHROPIC_MODEL,
    "system": CHAT_REQUEST["messages"][0]["content"],
    "messages": [CHAT_REQUEST["messages"][1]],
    "max_tokens": 512,
    "stop_sequences": ["END"],
}


def _text_only(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The test builder's stream without its ``ping`` and thinking block, the text block renumbered
    to index 0: message_start, content_block_start, N content_block_delta, content_block_stop,
    message_delta (cumulative usage), message_stop."""
    kept = []
    for event in events:
        if event["type"] == "ping" or event.get("index") == 0:
            continue
        if "index" in event:
            event = {**event, "index": 0}
        kept.append(event)
    return kept


def anthropic_message() -> dict[str, Any]:
    """A non-streamed ``message``: the test builder's default usage (2,000 input tokens, 1,500
    written to and 4,000 read from the cache, 300 output of which 120 thinking), one text block."""
    body = wire("anthropic_wire").message(words=words(8))
    body["content"] = [block for block in body["content"] if block["type"] == "text"]
    return body


def anthropic_stream_events(deltas: int = STREAM_CHUNKS) -> list[dict[str, Any]]:
    """The same message streamed with ``deltas`` text deltas (the application sees deltas + 5 events)."""
    return _text_only(wire("anthropic_wire").stream_events(words=words(deltas)))


@dataclass
class FakeAnthropic:
    """A mock-transport handler answering ``POST /v1/messages`` (streamed or not) like the API."""

    stream_chunks: int = STREAM_CHUNKS
    requests: int = 0
    message_bytes: bytes = field(init=False)
    stream_bytes: bytes = field(init=False)
    http: Any = field(init=False, repr=False)  # the HTTP library the installed SDK is built on

    def __post_init__(self) -> None:
        anthropic_wire = wire("anthropic_wire")
        self.http = anthropic_wire.http_module()
        self.message_bytes = json.dumps(anthropic_message()).encode()
        self.stream_bytes = anthropic_wire.sse(anthropic_stream_events(self.stream_chunks))

    def handler(self, request: Any) -> Any:
        http = self.http
        self.requests += 1
        body = json.loads(request.content)
        if not request.url.path.endswith("/v1/messages"):
            return http.Response(404, json={"type": "error", "error": {"type": "not_found_error"}})
        if body.get("stream") is True:
            return http.Response(
                200,
                content=self.stream_bytes,
                headers={"content-type": "text/event-stream", "request-id": "req_bench"},
            )
        return http.Response(
            200,
            content=self.message_bytes,
            headers={"content-type": "application/json", "request-id": "req_bench"},
        )

    def client(self) -> Any:
        import anthropic

        http = self.http
        return anthropic.Anthropic(
            api_key="sk-ant-bench",
            http_client=http.Client(transport=http.MockTransport(self.handler)),
            max_retries=0,
        )


# --- Gemini: client.models.generate_content / generate_content_stream ------------------------------

GEMINI_MODEL = "gemini-2.5-flash"


def gemini_request() -> dict[str, Any]:
    """``generate_content(**gemini_request())``; the config is a typed object, built once."""
    from google.genai import types

    return {
        "model": GEMINI_MODEL,
        "contents": CHAT_REQUEST["messages"][1]["content"],
        "config": types.GenerateContentConfig(
            system_instruction=CHAT_REQUEST["messages"][0]["content"],
            max_output_tokens=512,
            temperature=1,
            seed=7,
        ),
    }


def gemini_response() -> dict[str, Any]:
    """A ``GenerateContentResponse``: the test builder's default usage (1,500 prompt tokens, 1,024
    of them cached, 40 candidate and 120 thought tokens)."""
    return wire("gemini_wire").response(text="".join(words(8)))


def gemini_stream_chunks(chunks: int = STREAM_CHUNKS) -> list[dict[str, Any]]:
    """The same response streamed in ``chunks`` chunks, each with the running ``usageMetadata``."""
    return wire("gemini_wire").stream_chunks(words=words(chunks))


@dataclass
class FakeGemini:
    """A mock-transport handler answering ``:generateContent`` and ``:streamGenerateContent``
    (``alt=sse``) like the Gemini API."""

    stream_chunks: int = STREAM_CHUNKS
    requests: int = 0
    response_bytes: bytes = field(init=False)
    stream_bytes: bytes = field(init=False)
    http: Any = field(init=False, repr=False)  # the HTTP library the installed SDK is built on

    def __post_init__(self) -> None:
        self.http = wire("gemini_wire").http_module()
        self.response_bytes = json.dumps(gemini_response()).encode()
        self.stream_bytes = wire("gemini_wire").sse(gemini_stream_chunks(self.stream_chunks))

    def handler(self, request: Any) -> Any:
        http = self.http
        self.requests += 1
        json.loads(request.content)  # as the other fakes do: the handler costs the same everywhere
        path = request.url.path
        if path.endswith(":streamGenerateContent"):
            return http.Response(
                200, content=self.stream_bytes, headers={"content-type": "text/event-stream"}
            )
        if path.endswith(":generateContent"):
            return http.Response(
                200, content=self.response_bytes, headers={"content-type": "application/json"}
            )
        return http.Response(
            404, json={"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        )

    def client(self) -> Any:
        from google import genai
        from google.genai import types

        http = self.http
        options = types.HttpOptions(httpx_client=http.Client(transport=http.MockTransport(self.handler)))
        return genai.Client(api_key="AIza-bench", http_options=options)


# --- Mistral: client.chat.complete / client.chat.stream (mistralai) ---------------------------------

MISTRAL_MODEL = "mistral-medium-latest"
MISTRAL_REQUEST: dict[str, Any] = {
    "model": MISTRAL_MODEL,
    "messages": CHAT_REQUEST["messages"],
    "max_tokens": 512,
    "temperature": 1,
    "random_seed": 7,
}


def mistral_usage() -> dict[str, Any]:
    """1,500 prompt tokens (1,024 of them from the prompt cache) and 40 completion tokens."""
    return {
        "prompt_tokens": 1500,
        "completion_tokens": 40,
        "total_tokens": 1540,
        "prompt_tokens_details": {"cached_tokens": 1024},
    }


def mistral_stream_chunks(chunks: int = STREAM_CHUNKS) -> list[dict[str, Any]]:
    """A streamed completion: a role chunk, ``chunks - 2`` content chunks, and the finish chunk,
    which carries the usage (Mistral sends it unasked)."""
    head = {
        "id": "cmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1763700000,
        "model": MISTRAL_MODEL,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word}) for word in words(chunks - 2)]
    events.append(chunk({"content": ""}, "stop", usage=mistral_usage()))
    return events


@dataclass
class FakeMistral:
    """A mock-transport handler answering ``POST /v1/chat/completions`` (streamed or not) like the API."""

    stream_chunks: int = STREAM_CHUNKS
    requests: int = 0
    response_bytes: bytes = field(init=False)
    stream_bytes: bytes = field(init=False)
    http: Any = field(init=False, repr=False)  # the HTTP library the installed SDK is built on

    def __post_init__(self) -> None:
        from mistralai.client import basesdk

        self.http = basesdk.httpx  # httpx2 from mistralai 3.x, httpx before
        message = {"role": "assistant", "content": "".join(words(8)), "tool_calls": None, "prefix": False}
        self.response_bytes = json.dumps({
            "id": "cmpl-bench", "object": "chat.completion", "created": 1763700000, "model": MISTRAL_MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": mistral_usage(),
        }).encode()  # fmt: skip
        self.stream_bytes = sse(mistral_stream_chunks(self.stream_chunks))

    def handler(self, request: Any) -> Any:
        http = self.http
        self.requests += 1
        body = json.loads(request.content)
        if not request.url.path.endswith("/v1/chat/completions"):
            return http.Response(404, json={"object": "error", "message": "not found"})
        if body.get("stream") is True:
            return http.Response(
                200, content=self.stream_bytes, headers={"content-type": "text/event-stream"}
            )
        return http.Response(200, content=self.response_bytes, headers={"content-type": "application/json"})

    def client(self) -> Any:
        from mistralai.client import Mistral

        http = self.http
        return Mistral(
            api_key="mistral-bench", client=http.Client(transport=http.MockTransport(self.handler))
        )


# --- Cohere: client.chat / client.chat_stream (cohere ClientV2) -------------------------------------

COHERE_MODEL = "command-a-03-2025"
COHERE_REQUEST: dict[str, Any] = {
    "model": COHERE_MODEL,
    "messages": CHAT_REQUEST["messages"],
    "max_tokens": 512,
    "temperature": 1,
    "seed": 7,
}


def cohere_usage() -> dict[str, Any]:
    """1,500 billed prompt tokens (1,724 processed: Cohere's default system prompt), 40 output
    tokens (41 processed), 1,024 processed prompt tokens from the cache."""
    return {
        "billed_units": {"input_tokens": 1500, "output_tokens": 40},
        "tokens": {"input_tokens": 1724, "output_tokens": 41},
        "cached_tokens": 1024,
    }


def cohere_stream_events(chunks: int = STREAM_CHUNKS) -> list[dict[str, Any]]:
    """A v2 chat stream: ``message-start``, ``content-start``, ``chunks - 4`` content deltas,
    ``content-end`` and ``message-end`` (with the usage): ``chunks`` events in all."""
    message = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events: list[dict[str, Any]] = [
        {"type": "message-start", "id": "bench", "delta": {"message": message}},
        {
            "type": "content-start",
            "index": 0,
            "delta": {"message": {"content": {"type": "text", "text": ""}}},
        },
    ]
    events += [
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": word}}}}
        for word in words(chunks - 4)
    ]
    events.append({"type": "content-end", "index": 0})
    events.append(
        {
            "type": "message-end",
            "id": "bench",
            "delta": {"finish_reason": "COMPLETE", "usage": cohere_usage()},
        }
    )
    return events


@dataclass
class FakeCohere:
    """A mock-transport handler answering ``POST /v2/chat`` (streamed or not) like the API."""

    stream_chunks: int = STREAM_CHUNKS
    requests: int = 0
    response_bytes: bytes = field(init=False)
    stream_bytes: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.response_bytes = json.dumps({
            "id": "bench", "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "".join(words(8))}]},
            "usage": cohere_usage(),
        }).encode()  # fmt: skip
        frames = (
            f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in cohere_stream_events(self.stream_chunks)
        )
        self.stream_bytes = "".join(frames).encode()

    def handler(self, request: Any) -> Any:
        import httpx

        self.requests += 1
        body = json.loads(request.content)
        if not request.url.path.endswith("/v2/chat"):
            return httpx.Response(404, json={"message": "not found"})
        if body.get("stream") is True:
            events = {"content-type": "text/event-stream"}
            return httpx.Response(200, content=self.stream_bytes, headers=events)
        return httpx.Response(200, content=self.response_bytes, headers={"content-type": "application/json"})

    def client(self) -> Any:
        import cohere
        import httpx

        transport = httpx.MockTransport(self.handler)
        return cohere.ClientV2(api_key="co-bench", httpx_client=httpx.Client(transport=transport))


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


# --- Amazon Bedrock: boto3 bedrock-runtime converse / converse_stream --------------------------------

BEDROCK_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
BEDROCK_REQUEST: dict[str, Any] = {
    "modelId": BEDROCK_MODEL,
    "system": [{"text": CHAT_REQUEST["messages"][0]["content"]}],
    "messages": [{"role": "user", "content": [{"text": CHAT_REQUEST["messages"][1]["content"]}]}],
    "inferenceConfig": {"maxTokens": 512, "temperature": 1},
}
BEDROCK_USAGE = {  # inputTokens excludes the cache: 7,500 input tokens in all
    "inputTokens": 2000,
    "cacheReadInputTokens": 4000,
    "cacheWriteInputTokens": 1500,
    "outputTokens": 300,
    "totalTokens": 7800,
}


class _RawBody:
    """What botocore reads a response from (urllib3's response, in-process): ``stream()``, ``read()``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def stream(self, amt: int = 1024, decode_content: bool | None = None) -> Any:
        yield self.read()

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        end = len(self.data) if amt is None else min(len(self.data), self.offset + amt)
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def close(self) -> None:
        pass


@dataclass
class FakeBedrock:
    """Answers ``Converse`` and ``ConverseStream`` in-process: a ``before-send`` handler on the client
    returns the response (Converse's JSON, or the binary event stream of ``stream_chunks`` text
    deltas framed by the test server's encoder), so botocore parses it as it would off the wire."""

    stream_chunks: int = STREAM_CHUNKS
    requests: int = 0
    converse_bytes: bytes = field(init=False)
    stream_bytes: bytes = field(init=False)

    def __post_init__(self) -> None:
        from tokentrail.testing._bedrock_wire import encode_event

        text = words(8)
        self.converse_bytes = json.dumps(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "".join(text)}]}},
                "stopReason": "end_turn",
                "usage": BEDROCK_USAGE,
                "metrics": {"latencyMs": 42},
            }
        ).encode()
        events = [encode_event("messageStart", {"role": "assistant"})]
        events += [
            encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word}})
            for word in words(self.stream_chunks)
        ]
        events += [
            encode_event("contentBlockStop", {"contentBlockIndex": 0}),
            encode_event("messageStop", {"stopReason": "end_turn"}),
            encode_event("metadata", {"usage": BEDROCK_USAGE, "metrics": {"latencyMs": 42}}),
        ]
        self.stream_bytes = b"".join(events)

    def handler(self, request: Any, **kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        self.requests += 1
        json.loads(request.body)  # as the other fakes do: the handler costs the same everywhere
        if request.url.endswith("/converse-stream"):
            headers = {"content-type": "application/vnd.amazon.eventstream"}
            return AWSResponse(request.url, 200, headers, _RawBody(self.stream_bytes))
        headers = {"content-type": "application/json", "x-amzn-requestid": "req-bench"}
        return AWSResponse(request.url, 200, headers, _RawBody(self.converse_bytes))

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            aws_access_key_id="AKIDBENCH",
            aws_secret_access_key="bench",
            config=Config(retries={"total_max_attempts": 1}),
        )
        client.meta.events.register("before-send.bedrock-runtime.*", self.handler)
        return client


# --- Together: client.chat.completions.create (the together SDK) -----------------------------------

TOGETHER_MODEL = "deepseek-ai/DeepSeek-V4.1-Flash"


def together_usage() -> dict[str, Any]:
    """Together's usage: OpenAI's three counts, ``cached_tokens`` (a part of the prompt) beside them."""
    return {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500, "cached_tokens": 1024}


def together_chunks(chunks: int = STREAM_CHUNKS) -> list[dict[str, Any]]:
    """A streamed chat completion as Together sends it: ``"usage": null`` on every chunk but the
    last, which carries the finish reason and the usage (nothing asked for)."""

    def chunk(word: str, finish_reason: str | None = None, usage: Any = None) -> dict[str, Any]:
        delta = {"token_id": 1, "role": "assistant", "content": word, "tool_calls": None}
        choice = {"index": 0, "text": word, "logprobs": None, "finish_reason": finish_reason,
                  "seed": None, "delta": delta}  # fmt: skip
        return {"id": "o9bench", "object": "chat.completion.chunk", "created": 1763700000,
                "model": TOGETHER_MODEL, "choices": [choice], "usage": usage}  # fmt: skip

    events = [chunk(word) for word in words(chunks - 1)]
    events.append(chunk("", "stop", together_usage()))
    return events


@dataclass
class _FakeChatCompletions:
    """An ``httpx.MockTransport`` handler answering ``POST .../chat/completions`` with a fixed body
    (``chat_bytes``) or a fixed server-sent stream (``stream_bytes``), set by the subclass: the
    OpenAI-compatible SDKs on httpx (Together, Groq)."""

    stream_chunks: int = STREAM_CHUNKS
    requests: int = 0
    chat_bytes: bytes = field(init=False)
    stream_bytes: bytes = field(init=False)

    def handler(self, request: Any) -> Any:
        import httpx

        self.requests += 1
        body = json.loads(request.content)
        if not request.url.path.endswith("/chat/completions"):
            return httpx.Response(404, json={"error": {"message": "not found"}})
        stream = body.get("stream") is True
        return httpx.Response(
            200,
            content=self.stream_bytes if stream else self.chat_bytes,
            headers={"content-type": "text/event-stream" if stream else "application/json"},
        )

    def http_client(self) -> Any:
        import httpx

        return httpx.Client(transport=httpx.MockTransport(self.handler))


@dataclass
class FakeTogether(_FakeChatCompletions):
    """Answers ``POST /v1/chat/completions`` like Together."""

    def __post_init__(self) -> None:
        body = chat_completion_body()
        self.chat_bytes = json.dumps(
            {**body, "model": TOGETHER_MODEL, "prompt": [], "usage": together_usage()}
        ).encode()
        self.stream_bytes = sse(together_chunks(self.stream_chunks))

    def client(self) -> Any:
        import together

        return together.Together(api_key="tg-bench", http_client=self.http_client(), max_retries=0)


# --- Groq: client.chat.completions.create (the groq SDK, Stainless over httpx) ---------------------

GROQ_MODEL = "openai/gpt-oss-120b"


def groq_usage() -> dict[str, Any]:
    """Groq's usage: OpenAI's counts with the cached part, and its timings (seconds)."""
    return {"queue_time": 0.01, "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "prompt_time": 0.012, "completion_time": 0.3, "total_time": 0.312}  # fmt: skip


def groq_chunks(chunks: int = STREAM_CHUNKS) -> list[dict[str, Any]]:
    """A streamed chat completion as Groq sends it: ``x_groq`` with the request id on the first
    chunk, and on the last (the one with the finish reason) with the whole usage under
    ``x_groq.usage`` (nothing asked for)."""
    head = {"id": "chatcmpl-groqbench", "object": "chat.completion.chunk", "created": 1763700000,
            "model": GROQ_MODEL, "system_fingerprint": "fp_groqbench"}  # fmt: skip

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**head, "choices": [choice], **extra}

    texts = words(chunks - 2)
    events = [chunk({"role": "assistant", "content": ""}, x_groq={"id": "req_groqbench"})]
    events += [chunk({"content": text}) for text in texts]
    events.append(chunk({}, "stop", x_groq={"id": "req_groqbench", "usage": groq_usage()}))
    return events


@dataclass
class FakeGroq(_FakeChatCompletions):
    """Answers ``POST /openai/v1/chat/completions`` like Groq."""

    def __post_init__(self) -> None:
        body = chat_completion_body()
        self.chat_bytes = json.dumps(
            {
                **body,
                "model": GROQ_MODEL,
                "usage": groq_usage(),
                "service_tier": "on_demand",
                "x_groq": {"id": "req_groqbench"},
            }
        ).encode()
        self.stream_bytes = sse(groq_chunks(self.stream_chunks))

    def client(self) -> Any:
        import groq

        return groq.Groq(api_key="gsk-bench", http_client=self.http_client(), max_retries=0)


# --- Ollama: client.chat (the ollama SDK, NDJSON streams) ------------------------------------------

OLLAMA_MODEL = "llama3.2"
OLLAMA_PRICES = [{"provider": "ollama", "model": OLLAMA_MODEL, "input_mtok": 0.1, "output_mtok": 0.4}]
"""A local model has no list price: the benchmark prices it through an override, as a user would."""


def ollama_lines(chunks: int = STREAM_CHUNKS) -> list[dict[str, Any]]:
    """A streamed chat as Ollama sends it: one line per word, then the ``done`` line with the counts
    (the last line is also the non-streamed response, with the whole text)."""
    head = {"model": OLLAMA_MODEL, "created_at": "2026-01-01T00:00:00.000000Z"}
    lines: list[dict[str, Any]] = [
        {**head, "message": {"role": "assistant", "content": word}, "done": False}
        for word in words(chunks - 1)
    ]
    lines.append({
        **head,
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "total_duration": 6_000_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": 1200,
        "prompt_eval_duration": 24_000_000,
        "eval_count": 300,
        "eval_duration": 5_900_000_000,
    })  # fmt: skip
    return lines


@dataclass
class FakeOllama:
    """An ``httpx.MockTransport`` handler answering ``POST /api/chat`` like an Ollama server."""

    stream_chunks: int = STREAM_CHUNKS
    requests: int = 0
    chat_bytes: bytes = field(init=False)
    stream_bytes: bytes = field(init=False)

    def __post_init__(self) -> None:
        lines = ollama_lines(self.stream_chunks)
        text = "".join(line["message"]["content"] for line in lines)
        self.chat_bytes = json.dumps(
            {**lines[-1], "message": {"role": "assistant", "content": text}}
        ).encode()
        self.stream_bytes = "".join(json.dumps(line) + "\n" for line in lines).encode()

    def handler(self, request: Any) -> Any:
        import httpx

        self.requests += 1
        body = json.loads(request.content)
        if request.url.path != "/api/chat":
            return httpx.Response(404, json={"error": "not found"})
        stream = body.get("stream") is True
        return httpx.Response(
            200,
            content=self.stream_bytes if stream else self.chat_bytes,
            headers={"content-type": "application/x-ndjson" if stream else "application/json"},
        )

    def client(self) -> Any:
        import httpx
        import ollama

        return ollama.Client(host="http://127.0.0.1:11434", transport=httpx.MockTransport(self.handler))
