"""Per-call CPU overhead of tokentrail on the OpenAI, Anthropic, Gemini, Bedrock, Mistral, Cohere,
Together, Ollama and Groq SDKs, against a hand-written OTel floor.

Run from the repository root::

    PYTHONPATH=src python benchmarks/overhead.py
        [--provider openai|anthropic|gemini|bedrock|mistral|cohere|together|ollama|all]
        [--stream-chunks 50] [--rounds 300] [--chat-calls 20] [--stream-calls 4]
        [--peers] [--json FILE]

Three configurations of the same SDK call (against an in-process ``httpx2.MockTransport`` that
answers with wire-format bodies), measured in one run:

``bare``
    the SDK call with nothing installed;
``floor``
    a hand-written wrapper around the same call: one SDK span (CLIENT kind, ten attributes) and
    four histogram records with a small attribute dict - the least any span-and-metrics
    instrumentation can do; it reads the provider's usage the plain way;
``tokentrail``
    ``tokentrail.instrument(tracer_provider=tp, meter_provider=mp)`` on the same providers.

The calls (``--provider``, default ``openai``; ``all`` runs them one after the other and
prints one table each): ``openai``: ``client.chat.completions.create``; ``anthropic``:
``client.messages.create``; ``gemini``: ``client.models.generate_content`` and
``generate_content_stream`` (google-genai); ``bedrock``: boto3's ``converse`` and
``converse_stream`` (botocore answered in-process by a ``before-send`` handler); ``together``:
``client.chat.completions.create`` (streams carry their usage on the last chunk); ``ollama``:
``client.chat`` (NDJSON streams; the local model priced through an override). Each is measured
for a non-streamed call and for a stream of ``--stream-chunks`` chunks (default 50) read to the
end. The providers are real: a ``TracerProvider`` with a ``BatchSpanProcessor`` over an exporter
that drops spans, and a ``MeterProvider`` with an ``InMemoryMetricReader`` that is not collected while timing.

``--peers`` (openai only) adds the other instrumentations of the same call that import in this
venv (``benchmarks/requirements-peers.txt``: the official genai-openai, OpenInference, OpenLLMetry,
Logfire), each a configuration of its own on the same providers. ``--without-ledger`` adds
tokentrail with every default but the local ledger (``ledger=False``), so that what the ledger costs
a call is read from the same run.

Method: two clocks over the same short blocks of calls (20 chat calls, 4 streams: a few tens of ms
each), reported side by side: the **calling thread**'s CPU time (``time.thread_time_ns``, read when
the block's last call returns: what the application waits for) and the **whole process**'s
(``time.process_time_ns``, read after the block has finished what it left to other threads -
tokentrail's recorder and ledger writer, the span processors' export - inside its timing: what the
application pays for, on the same cores). Every round runs one block of each configuration back to back,
chat then stream, in an order that rotates from round to round, so drifts of the machine fall on all
of them alike; ``instrument()`` / ``uninstrument()`` and one untimed call that fills the new
instrumentation's caches (host lookup, price card) happen between blocks, never inside one.

Two estimates of the overhead, both printed:

* low quantile (the headline): p10 of a configuration's block times minus p10 of bare's. On a
  shared VM (like the 2-core machine these figures come from) interference comes in bursts that
  only ever slow a block down, by up to 2x for a few hundred ms; the low quantile is the code's own
  speed and is stable from run to run, where medians move with the machine's load. 90% interval by
  bootstrap over rounds.
* paired median: median over rounds of (configuration - bare) in the same round, as a cross-check.

OpenAI streams carry usage only when the request asks for ``stream_options.include_usage``: the
floor's stream asks for it (and keeps the usage chunk from the application, as tokentrail does),
so its four records carry the stream's real token counts, as tokentrail's do.
``--floor-without-usage`` gives the floor of the first measurements: it asks for nothing and
records zero tokens for a stream (and so pays nothing for the usage chunk). Anthropic and Gemini
streams always carry their usage.

Defaults (300 rounds) take about 3 minutes; ``--rounds 30 --chat-calls 200 --stream-calls 40`` gives
the 30 x 200 layout, which on a quiet machine is as good and on a noisy one worse.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ANTHROPIC_MODEL,
    ANTHROPIC_REQUEST,
    BEDROCK_MODEL,
    BEDROCK_REQUEST,
    CHAT_REQUEST,
    COHERE_MODEL,
    COHERE_REQUEST,
    GEMINI_MODEL,
    GROQ_MODEL,
    MISTRAL_MODEL,
    MISTRAL_REQUEST,
    OLLAMA_MODEL,
    OLLAMA_PRICES,
    REQUEST_MODEL,
    STREAM_CHUNKS,
    TOGETHER_MODEL,
    FakeAnthropic,
    FakeBedrock,
    FakeCohere,
    FakeGemini,
    FakeGroq,
    FakeMistral,
    FakeOllama,
    FakeOpenAI,
    FakeTogether,
    gemini_request,
    isolate_ledger,
    make_providers,
    metric_points,
)

CONFIGS = ("bare", "floor", "tokentrail")
# --without-ledger: tokentrail's defaults but the local ledger, in the same run (what the ledger costs).
NO_LEDGER = "tokentrail-no-ledger"
KINDS = ("chat", "stream")
PROVIDERS = ("openai", "anthropic", "gemini", "bedrock", "mistral", "cohere", "together", "ollama", "groq")
OPENAI_CHUNK_NOTE = (
    "both read the usage chunk they ask for (tokentrail from its event, before the SDK parses it)."
)
CLOCKS: dict[str, Callable[[], int]] = {"thread": time.thread_time_ns, "process": time.process_time_ns}


# --- the floor: a minimal hand-written instrumentation of the same call -----------------------------


class Floor:
    """One span with ten attributes and four histogram values per call; nothing else.

    Subclasses wrap one provider's call and read its usage the plain way; this holds what they
    share: the instruments, the six start attributes, and the end (four attributes, four records).
    """

    operation = "chat"
    provider = "openai"
    model = REQUEST_MODEL
    server = "api.openai.com"
    max_tokens = CHAT_REQUEST["max_completion_tokens"]
    rates = (0.25, 2.0)  # USD per million input / output tokens

    def __init__(self, client: Any, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry.trace import SpanKind

        self.client = client
        self.kind = SpanKind.CLIENT
        self.tracer = tracer_provider.get_tracer("bench.floor")
        meter = meter_provider.get_meter("bench.floor")
        self.duration = meter.create_histogram("bench.floor.duration", unit="s")
        self.tokens = meter.create_histogram("bench.floor.tokens", unit="{token}")
        self.cost = meter.create_histogram("bench.floor.cost", unit="USD")
        self.span_name = f"{self.operation} {self.model}"
        self.start_attributes = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": self.provider,
            "gen_ai.request.model": self.model,
            "server.address": self.server,
            "server.port": 443,
            "gen_ai.request.max_tokens": self.max_tokens,
        }

    def _start(self) -> Any:
        return self.tracer.start_span(self.span_name, kind=self.kind, attributes=self.start_attributes)

    def _end(
        self,
        span: Any,
        start: float,
        model: str | None,
        response_id: str | None,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        span.set_attributes(
            {
                "gen_ai.response.model": model or "",
                "gen_ai.response.id": response_id or "",
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
            }
        )
        span.end()
        # Built per call, as instrumentation that reads the operation and model from the call does.
        attributes = {"gen_ai.operation.name": self.operation, "gen_ai.request.model": self.model}
        self.duration.record(time.perf_counter() - start, attributes)
        self.tokens.record(input_tokens, {**attributes, "gen_ai.token.type": "input"})
        self.tokens.record(output_tokens, {**attributes, "gen_ai.token.type": "output"})
        input_rate, output_rate = self.rates
        self.cost.record((input_tokens * input_rate + output_tokens * output_rate) / 1e6, attributes)

    def chat(self) -> Any:
        raise NotImplementedError

    def stream(self) -> Iterator[Any]:
        raise NotImplementedError


class OpenAIFloor(Floor):
    def chat(self) -> Any:
        start = time.perf_counter()
        span = self._start()
        response = self.client.chat.completions.create(**CHAT_REQUEST)
        usage = response.usage
        self._end(
            span,
            start,
            response.model,
            response.id,
            usage.prompt_tokens if usage is not None else 0,
            usage.completion_tokens if usage is not None else 0,
        )
        return response

    asks_usage = True  # False with --floor-without-usage

    def stream(self) -> Iterator[Any]:
        """A generator around the SDK stream: the span ends when the stream is exhausted. It does
        ask for the usage chunk the bare call does not (its token records would be zeros
        otherwise) and keeps that chunk from the application; without ``asks_usage`` it does not."""
        start = time.perf_counter()
        span = self._start()
        model = response_id = usage = None
        extra = {"stream_options": {"include_usage": True}} if self.asks_usage else {}
        for chunk in self.client.chat.completions.create(**CHAT_REQUEST, stream=True, **extra):
            model, response_id = chunk.model, chunk.id
            if chunk.usage is not None:
                usage = chunk.usage
                if self.asks_usage and not chunk.choices:
                    continue
            yield chunk
        self._end(
            span,
            start,
            model,
            response_id,
            usage.prompt_tokens if usage is not None else 0,
            usage.completion_tokens if usage is not None else 0,
        )


class AnthropicFloor(Floor):
    provider = "anthropic"
    model = ANTHROPIC_MODEL
    server = "api.anthropic.com"
    max_tokens = ANTHROPIC_REQUEST["max_tokens"]
    rates = (3.0, 15.0)

    def chat(self) -> Any:
        start = time.perf_counter()
        span = self._start()
        message = self.client.messages.create(**ANTHROPIC_REQUEST)
        usage = message.usage
        self._end(
            span,
            start,
            message.model,
            message.id,
            usage.input_tokens,
            usage.output_tokens,
        )
        return message

    def stream(self) -> Iterator[Any]:
        """Model, id and input tokens from ``message_start``; the output count from ``message_delta``
        (cumulative there, so the last one is the total)."""
        start = time.perf_counter()
        span = self._start()
        model = response_id = None
        input_tokens = output_tokens = 0
        for event in self.client.messages.create(**ANTHROPIC_REQUEST, stream=True):
            kind = event.type
            if kind == "message_start":
                message = event.message
                model, response_id = message.model, message.id
                input_tokens, output_tokens = (
                    message.usage.input_tokens,
                    message.usage.output_tokens,
                )
            elif kind == "message_delta":
                output_tokens = event.usage.output_tokens
            yield event
        self._end(span, start, model, response_id, input_tokens, output_tokens)


class GeminiFloor(Floor):
    operation = "generate_content"
    provider = "gcp.gemini"
    model = GEMINI_MODEL
    server = "generativelanguage.googleapis.com"
    max_tokens = 512
    rates = (0.3, 2.5)

    def __init__(self, client: Any, tracer_provider: Any, meter_provider: Any) -> None:
        super().__init__(client, tracer_provider, meter_provider)
        self.request = gemini_request()

    def chat(self) -> Any:
        start = time.perf_counter()
        span = self._start()
        response = self.client.models.generate_content(**self.request)
        usage = response.usage_metadata
        self._end(
            span,
            start,
            response.model_version,
            response.response_id,
            (usage.prompt_token_count or 0) if usage is not None else 0,
            (usage.candidates_token_count or 0) if usage is not None else 0,
        )
        return response

    def stream(self) -> Iterator[Any]:
        """Every chunk carries the running usage: the last one seen is the total."""
        start = time.perf_counter()
        span = self._start()
        model = response_id = usage = None
        for chunk in self.client.models.generate_content_stream(**self.request):
            model, response_id = chunk.model_version, chunk.response_id
            if chunk.usage_metadata is not None:
                usage = chunk.usage_metadata
            yield chunk
        self._end(
            span,
            start,
            model,
            response_id,
            (usage.prompt_token_count or 0) if usage is not None else 0,
            (usage.candidates_token_count or 0) if usage is not None else 0,
        )


class BedrockFloor(Floor):
    provider = "aws.bedrock"
    model = BEDROCK_MODEL
    server = "bedrock-runtime.us-east-1.amazonaws.com"
    max_tokens = BEDROCK_REQUEST["inferenceConfig"]["maxTokens"]
    rates = (3.3, 16.5)

    @staticmethod
    def _tokens(usage: Any) -> tuple[int, int]:
        """inputTokens excludes the cache: the input total adds its reads and writes."""
        if not usage:
            return 0, 0
        cached = usage.get("cacheReadInputTokens", 0) + usage.get("cacheWriteInputTokens", 0)
        return usage["inputTokens"] + cached, usage["outputTokens"]

    def chat(self) -> Any:
        start = time.perf_counter()
        span = self._start()
        response = self.client.converse(**BEDROCK_REQUEST)
        self._end(span, start, None, None, *self._tokens(response.get("usage")))
        return response

    def stream(self) -> Iterator[Any]:
        """The usage arrives in the last event, ``metadata``."""
        start = time.perf_counter()
        span = self._start()
        usage = None
        for event in self.client.converse_stream(**BEDROCK_REQUEST)["stream"]:
            if "metadata" in event:
                usage = event["metadata"].get("usage")
            yield event
        self._end(span, start, None, None, *self._tokens(usage))


class MistralFloor(Floor):
    provider = "mistral_ai"
    model = MISTRAL_MODEL
    server = "api.mistral.ai"
    max_tokens = MISTRAL_REQUEST["max_tokens"]
    rates = (0.4, 2.0)

    def chat(self) -> Any:
        start = time.perf_counter()
        span = self._start()
        response = self.client.chat.complete(**MISTRAL_REQUEST)
        usage = response.usage
        self._end(span, start, response.model, response.id, usage.prompt_tokens, usage.completion_tokens)
        return response

    def stream(self) -> Iterator[Any]:
        """Each event's ``data`` is a chunk; the last one carries the usage."""
        start = time.perf_counter()
        span = self._start()
        model = response_id = usage = None
        for event in self.client.chat.stream(**MISTRAL_REQUEST):
            chunk = event.data
            model, response_id = chunk.model, chunk.id
            if chunk.usage is not None:
                usage = chunk.usage
            yield event
        self._end(
            span,
            start,
            model,
            response_id,
            usage.prompt_tokens if usage is not None else 0,
            usage.completion_tokens if usage is not None else 0,
        )


class CohereFloor(Floor):
    provider = "cohere"
    model = COHERE_MODEL
    server = "api.cohere.com"
    max_tokens = COHERE_REQUEST["max_tokens"]
    rates = (2.5, 10.0)

    def chat(self) -> Any:
        start = time.perf_counter()
        span = self._start()
        response = self.client.chat(**COHERE_REQUEST)
        tokens = response.usage.tokens
        self._end(span, start, COHERE_MODEL, response.id, int(tokens.input_tokens), int(tokens.output_tokens))
        return response

    def stream(self) -> Iterator[Any]:
        """The usage comes on the ``message-end`` event."""
        start = time.perf_counter()
        span = self._start()
        response_id = None
        input_tokens = output_tokens = 0
        for event in self.client.chat_stream(**COHERE_REQUEST):
            if event.type == "message-start":
                response_id = event.id
            elif event.type == "message-end":
                tokens = event.delta.usage.tokens
                input_tokens, output_tokens = int(tokens.input_tokens), int(tokens.output_tokens)
            yield event
        self._end(span, start, COHERE_MODEL, response_id, input_tokens, output_tokens)


class _ChatCompletionsFloor(Floor):
    """An OpenAI-compatible SDK's chat completions (Together, Groq): the usage comes unasked, on the
    last chunk of a stream, where :meth:`stream_usage` finds it."""

    max_tokens = 512

    def chat(self) -> Any:
        start = time.perf_counter()
        span = self._start()
        response = self.client.chat.completions.create(**self.request())
        usage = response.usage
        self._end(span, start, response.model, response.id, usage.prompt_tokens, usage.completion_tokens)
        return response

    def stream(self) -> Iterator[Any]:
        start = time.perf_counter()
        span = self._start()
        model = response_id = usage = None
        for chunk in self.client.chat.completions.create(**self.request(), stream=True):
            model, response_id = chunk.model, chunk.id
            found = self.stream_usage(chunk)
            if found is not None:
                usage = found
            yield chunk
        self._end(
            span,
            start,
            model,
            response_id,
            usage.prompt_tokens if usage is not None else 0,
            usage.completion_tokens if usage is not None else 0,
        )

    @staticmethod
    def stream_usage(chunk: Any) -> Any:
        return chunk.usage

    def request(self) -> dict[str, Any]:
        return compatible_request(self.model)


class TogetherFloor(_ChatCompletionsFloor):
    provider = "together"
    model = TOGETHER_MODEL
    server = "api.together.ai"
    rates = (0.3, 1.2)


class GroqFloor(_ChatCompletionsFloor):
    provider = "groq"
    model = GROQ_MODEL
    server = "api.groq.com"
    rates = (0.15, 0.6)

    @staticmethod
    def stream_usage(chunk: Any) -> Any:
        """Under ``x_groq.usage``, on the last chunk."""
        x_groq = chunk.x_groq
        return x_groq.usage if x_groq is not None else None


class OllamaFloor(Floor):
    provider = "ollama"
    model = OLLAMA_MODEL
    server = "127.0.0.1"
    max_tokens = 512
    rates = (0.1, 0.4)

    def chat(self) -> Any:
        start = time.perf_counter()
        span = self._start()
        response = self.client.chat(**OLLAMA_REQUEST)
        self._end(span, start, response.model, None, response.prompt_eval_count, response.eval_count)
        return response

    def stream(self) -> Iterator[Any]:
        """The counts are on the last (``done``) line."""
        start = time.perf_counter()
        span = self._start()
        model = last = None
        for chunk in self.client.chat(**OLLAMA_REQUEST, stream=True):
            model = chunk.model
            if chunk.done:
                last = chunk
            yield chunk
        self._end(
            span,
            start,
            model,
            None,
            last.prompt_eval_count if last is not None else 0,
            last.eval_count if last is not None else 0,
        )


OLLAMA_REQUEST: dict[str, Any] = {
    "model": OLLAMA_MODEL,
    "messages": CHAT_REQUEST["messages"],
    "options": {"num_predict": 512, "temperature": 1, "seed": 7},
}


def compatible_request(model: str) -> dict[str, Any]:
    """CHAT_REQUEST for an OpenAI-compatible SDK's chat completions (``max_tokens``, its model)."""
    request = {**CHAT_REQUEST, "model": model, "max_tokens": 512}
    del request["max_completion_tokens"]
    return request


def compatible_workload(
    provider: str, fake: Any, floor_class: type[_ChatCompletionsFloor], chunk_note: str, providers: Any
) -> Workload:
    """The workload of an OpenAI-compatible SDK (Together, Groq): its chat completions, plain and
    streamed, against its fake and its floor."""
    client = fake.client()
    create = client.chat.completions.create
    floor = floor_class(client, providers.tracer_provider, providers.meter_provider)
    request = floor.request()
    return Workload(
        provider,
        f"client.chat.completions.create ({provider})",
        fake,
        client,
        chat=lambda: create(**request),
        stream=lambda: create(**request, stream=True),
        floor=floor,
        stream_items=fake.stream_chunks,
        chunk_note=chunk_note,
    )


# --- other instrumentations of the same call (--peers) --------------------------------------------


class Peer:
    """Another OpenTelemetry instrumentation of the openai SDK, on the same providers.

    Installed from ``benchmarks/requirements-peers.txt`` (see there); one that does not import is
    left out of the run and said so. Its streams ask for ``stream_options.include_usage`` as an
    application that wants a stream's usage from it must (tokentrail asks by itself, the floor asks
    too): every case then records the stream's real token counts.
    """

    name = ""
    label = ""
    full_usage = False  # records cache-read and reasoning tokens (on the span)

    def __init__(self, providers: Any, client: Any) -> None:
        self.providers = providers
        self.client = client

    def instrument(self) -> None:
        raise NotImplementedError

    def uninstrument(self) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Finish the work this instrumentation left to other threads (its own providers')."""


class _InstrumentorPeer(Peer):
    module = ""
    metrics = True

    def __init__(self, providers: Any, client: Any) -> None:
        super().__init__(providers, client)
        import importlib

        self.instrumentor = importlib.import_module(self.module).OpenAIInstrumentor()

    def instrument(self) -> None:
        options = {"tracer_provider": self.providers.tracer_provider, "skip_dep_check": True}
        if self.metrics:
            options["meter_provider"] = self.providers.meter_provider
        self.instrumentor.instrument(**options)

    def uninstrument(self) -> None:
        self.instrumentor.uninstrument()


class GenAIOpenAIPeer(_InstrumentorPeer):
    name, label, full_usage = "genai-openai", "official genai-openai", True
    module = "opentelemetry.instrumentation.genai.openai"


class OpenInferencePeer(_InstrumentorPeer):
    name, label, full_usage = "openinference", "OpenInference", True
    module = "openinference.instrumentation.openai"
    metrics = False  # it records spans only

    def uninstrument(self) -> None:
        super().uninstrument()
        # Its uninstrument (0.1.66) sets OpenAI.request (and AsyncOpenAI's) to the method it found,
        # inherited from the SDK's base client: the class then has a method of its own that hides
        # any later patch of the base client's (tokentrail's). Taken off here, as it was before.
        import openai

        for client_class in (openai.OpenAI, openai.AsyncOpenAI):
            if "request" in vars(client_class):
                delattr(client_class, "request")


class OpenLLMetryPeer(_InstrumentorPeer):
    name, label, full_usage = "openllmetry", "OpenLLMetry", True
    module = "opentelemetry.instrumentation.openai"

    def uninstrument(self) -> None:
        super().uninstrument()
        # Its uninstrument (0.62.4 with opentelemetry-instrumentation 0.66b2) leaves the wrappers in
        # place: it names "Completions.create" in the module path that unwrap() now splits on its
        # last dot. Taken off here, or every later configuration would run through them.
        import wrapt

        for name, module in list(sys.modules.items()):
            if not name.startswith("openai.resources") or module is None:
                continue
            for cls in list(vars(module).values()):
                if not isinstance(cls, type) or cls.__module__ != name:
                    continue
                for attribute, value in list(vars(cls).items()):
                    if isinstance(value, wrapt.FunctionWrapper):
                        setattr(cls, attribute, value.__wrapped__)


class LogfirePeer(Peer):
    """Logfire builds its own providers (``logfire.configure``): they get the same kind of span
    processor and exporter (a ``BatchSpanProcessor`` over an exporter that drops the spans) and an
    in-memory metric reader, and nothing is sent anywhere."""

    name, label, full_usage = "logfire", "Logfire", True

    def __init__(self, providers: Any, client: Any) -> None:
        super().__init__(providers, client)
        import logfire
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.logfire = logfire.configure(
            send_to_logfire=False,
            console=False,
            local=True,
            additional_span_processors=[BatchSpanProcessor(providers.exporter)],
            metrics=logfire.MetricsOptions(additional_readers=[InMemoryMetricReader()]),
            inspect_arguments=False,
        )
        self.undo: Any = None

    def instrument(self) -> None:
        # Instruments at once; the context manager it returns undoes it on exit.
        self.undo = self.logfire.instrument_openai(self.client)
        self.undo.__enter__()

    def uninstrument(self) -> None:
        if self.undo is not None:
            self.undo.__exit__(None, None, None)
            self.undo = None
            # Its undo (5.4.0) leaves the client the request method it found, as an attribute of the
            # instance: a bound method that hides any later patch of the class's (tokentrail's).
            for name in ("request", "_request"):
                if name in vars(self.client):
                    delattr(self.client, name)

    def flush(self) -> None:
        self.logfire.force_flush()


PEERS: tuple[type[Peer], ...] = (GenAIOpenAIPeer, OpenInferencePeer, OpenLLMetryPeer, LogfirePeer)


def load_peers(providers: Any, client: Any) -> tuple[list[Peer], dict[str, str]]:
    """(the peers that import here, {name: why not} for the others)."""
    found: list[Peer] = []
    missing: dict[str, str] = {}
    for peer_class in PEERS:
        try:
            found.append(peer_class(providers, client))
        except Exception as exc:  # not installed, or cannot run with this openai
            missing[peer_class.name] = f"{type(exc).__name__}: {exc}"[:200]
    return found, missing


@dataclass
class Workload:
    """One provider's call, bare: what the floor wraps and tokentrail patches."""

    provider: str
    call: str  # the SDK method, for the table's title
    fake: Any
    client: Any
    chat: Callable[[], Any]
    stream: Callable[[], Iterable[Any]]
    floor: Floor
    stream_items: int  # items the application receives from one stream
    chunk_note: str  # what the per-chunk figure includes, for the table's footer
    note: str = ""  # anything else the reader of the table must know
    options: dict[str, Any] = field(default_factory=dict)  # instrument()'s own, e.g. price overrides


def workload(provider: str, stream_chunks: int, providers: Any) -> Workload:
    tracer_provider, meter_provider = (
        providers.tracer_provider,
        providers.meter_provider,
    )
    if provider == "openai":
        fake: Any = FakeOpenAI(stream_chunks=stream_chunks)
        client = fake.client()
        create = client.chat.completions.create
        return Workload(
            provider,
            "client.chat.completions.create",
            fake,
            client,
            chat=lambda: create(**CHAT_REQUEST),
            stream=lambda: create(**CHAT_REQUEST, stream=True),
            floor=OpenAIFloor(client, tracer_provider, meter_provider),
            stream_items=stream_chunks,
            chunk_note=OPENAI_CHUNK_NOTE,
        )
    if provider == "anthropic":
        fake = FakeAnthropic(stream_chunks=stream_chunks)
        client = fake.client()
        messages = client.messages
        if getattr(client, "_tracer", None) is not None:
            note = (
                "bare includes the anthropic SDK's own span for each call (non-recording here: no global "
                "tracer provider), kept by the floor;\ntokentrail turns it off for the calls it instruments "
                "(anthropic_native_spans=off). ANTHROPIC_OPEN_TELEMETRY=false takes it out of every case."
            )
        else:
            note = "the anthropic SDK's own spans are off (ANTHROPIC_OPEN_TELEMETRY=false) in every case."
        return Workload(
            provider,
            "client.messages.create",
            fake,
            client,
            chat=lambda: messages.create(**ANTHROPIC_REQUEST),
            stream=lambda: messages.create(**ANTHROPIC_REQUEST, stream=True),
            floor=AnthropicFloor(client, tracer_provider, meter_provider),
            stream_items=stream_chunks + 5,
            chunk_note=(
                "N counts the text deltas; the app also iterates the stream's 5 other events "
                "(message_start, content_block_start/stop, message_delta, message_stop), in the figure."
            ),
            note=note,
        )
    if provider == "gemini":
        fake = FakeGemini(stream_chunks=stream_chunks)
        client = fake.client()
        models = client.models
        request = gemini_request()
        return Workload(
            provider,
            "client.models.generate_content[_stream]",
            fake,
            client,
            chat=lambda: models.generate_content(**request),
            stream=lambda: models.generate_content_stream(**request),
            floor=GeminiFloor(client, tracer_provider, meter_provider),
            stream_items=stream_chunks,
            chunk_note="every chunk carries usageMetadata (the running total); both read it from each chunk.",
        )
    if provider == "bedrock":
        fake = FakeBedrock(stream_chunks=stream_chunks)
        client = fake.client()
        converse, converse_stream = client.converse, client.converse_stream
        return Workload(
            provider,
            "client.converse / converse_stream (boto3 bedrock-runtime)",
            fake,
            client,
            chat=lambda: converse(**BEDROCK_REQUEST),
            stream=lambda: converse_stream(**BEDROCK_REQUEST)["stream"],
            floor=BedrockFloor(client, tracer_provider, meter_provider),
            stream_items=stream_chunks + 4,
            chunk_note=(
                "N counts the text deltas; the app also iterates messageStart, contentBlockStop, "
                "messageStop and metadata (the usage), in the figure."
            ),
            note="botocore answered in-process by a before-send handler: signing and parsing are real.",
        )
    if provider == "mistral":
        fake = FakeMistral(stream_chunks=stream_chunks)
        client = fake.client()
        chat = client.chat
        return Workload(
            provider,
            "client.chat.complete / client.chat.stream",
            fake,
            client,
            chat=lambda: chat.complete(**MISTRAL_REQUEST),
            stream=lambda: chat.stream(**MISTRAL_REQUEST),
            floor=MistralFloor(client, tracer_provider, meter_provider),
            stream_items=stream_chunks,
            chunk_note="the last chunk carries the usage (unasked); both read it there.",
        )
    if provider == "cohere":
        fake = FakeCohere(stream_chunks=stream_chunks)
        client = fake.client()
        return Workload(
            provider,
            "client.chat / client.chat_stream (ClientV2)",
            fake,
            client,
            chat=lambda: client.chat(**COHERE_REQUEST),
            stream=lambda: client.chat_stream(**COHERE_REQUEST),
            floor=CohereFloor(client, tracer_provider, meter_provider),
            stream_items=stream_chunks,
            chunk_note=(
                "the message-end event carries the usage; tokentrail finds it in the bytes, "
                "the floor in the events."
            ),
        )
    if provider == "together":
        return compatible_workload(
            provider,
            FakeTogether(stream_chunks=stream_chunks),
            TogetherFloor,
            "the last chunk carries the usage, unasked; both read chunk.usage on every chunk.",
            providers,
        )
    if provider == "ollama":
        fake = FakeOllama(stream_chunks=stream_chunks)
        client = fake.client()
        chat = client.chat
        return Workload(
            provider,
            "client.chat (ollama)",
            fake,
            client,
            chat=lambda: chat(**OLLAMA_REQUEST),
            stream=lambda: chat(**OLLAMA_REQUEST, stream=True),
            floor=OllamaFloor(client, tracer_provider, meter_provider),
            stream_items=stream_chunks,
            chunk_note="NDJSON lines; the counts are on the last (done) line; both check every line for it.",
            note="a local model: tokentrail prices it through an override (instrument(prices=...)).",
            options={"prices": OLLAMA_PRICES},
        )
    if provider == "groq":
        return compatible_workload(
            provider,
            FakeGroq(stream_chunks=stream_chunks),
            GroqFloor,
            "the last chunk carries the usage under x_groq.usage, unasked; both read every chunk.",
            providers,
        )
    raise ValueError(f"unknown provider {provider!r}: use one of {', '.join(PROVIDERS)}")


# --- the measurement -------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        provider: str = "openai",
        stream_chunks: int = STREAM_CHUNKS,
        features: bool = False,
        floor_usage: bool = True,
        peers: bool = False,
        without_ledger: bool = False,
    ) -> None:
        import tokentrail

        self.tokentrail = tokentrail
        self.stream_chunks = stream_chunks
        self.providers = make_providers()
        self.workload = workload(provider, stream_chunks, self.providers)
        self.fake = self.workload.fake
        self.client = self.workload.client
        self.floor = self.workload.floor
        self.floor_usage = floor_usage and provider == "openai"  # the others' streams carry usage
        if provider == "openai":
            self.floor.asks_usage = floor_usage
        chat = self.workload.chat
        open_stream = self.workload.stream
        floor = self.floor

        def stream() -> None:
            for _ in open_stream():
                pass

        def floor_chat() -> None:
            floor.chat()

        def floor_stream() -> None:
            for _ in floor.stream():
                pass

        self.features = features
        attribute = tokentrail.attribute

        def attributed(function: Callable[[], Any]) -> Callable[[], Any]:
            def call() -> None:  # what an attributed application runs: its unit of work, then the call
                with attribute(agent="bench-agent", task="overhead", phase="measure"):
                    function()

            return call

        # (config, kind) -> the timed function; bare and tokentrail run the same code (with
        # --all-features, tokentrail's inside an attribution context).
        self.functions: dict[tuple[str, str], Callable[[], Any]] = {
            ("bare", "chat"): chat,
            ("bare", "stream"): stream,
            ("floor", "chat"): floor_chat,
            ("floor", "stream"): floor_stream,
            ("tokentrail", "chat"): attributed(chat) if features else chat,
            ("tokentrail", "stream"): attributed(stream) if features else stream,
        }
        if without_ledger:
            for kind in KINDS:
                self.functions[(NO_LEDGER, kind)] = self.functions[("tokentrail", kind)]
        # --peers (openai): the other instrumentations, each a configuration of its own.
        self.peers: dict[str, Peer] = {}
        self.missing_peers: dict[str, str] = {}
        if peers and provider != "openai":
            self.missing_peers = {"all": "the peers measured here instrument the openai SDK only"}
        elif peers:
            found, self.missing_peers = load_peers(self.providers, self.client)
            completions = self.client.chat.completions
            usage = {"stream_options": {"include_usage": True}}

            # The method is looked up at each call: the peers patch the SDK's class methods (a bound
            # method taken before they did would bypass them); tokentrail patches the SDK's request.
            def peer_chat() -> None:
                completions.create(**CHAT_REQUEST)

            def peer_stream() -> None:
                for _ in completions.create(**CHAT_REQUEST, stream=True, **usage):
                    pass

            for peer in found:
                self.peers[peer.name] = peer
                self.functions[(peer.name, "chat")] = peer_chat
                self.functions[(peer.name, "stream")] = peer_stream
        self.configs = (*CONFIGS, *([NO_LEDGER] if without_ledger else []), *self.peers)

    def instrument(self, ledger: bool = True, sinks: Iterable[Any] = ()) -> None:
        # --all-features: a budget in raise mode that covers every call and is never reached, so each
        # call is estimated and reserved before it is sent and settled when it ends.
        budgets = [{"name": "bench", "usd": 1e9, "mode": "raise"}] if self.features else None
        self.tokentrail.instrument(
            tracer_provider=self.providers.tracer_provider,
            meter_provider=self.providers.meter_provider,
            budgets=budgets,
            ledger=None if ledger else False,
            sinks=sinks,
            **self.workload.options,
        )

    def uninstrument(self) -> None:
        self.tokentrail.uninstrument()

    def block(self, config: str, kind: str, calls: int) -> tuple[float, float, float]:
        """(calling-thread CPU ns, whole-process CPU ns, wall ns) per call, of one block.

        Both clocks in the same block: the calling thread's (``time.thread_time_ns``) stops when the
        last call returns, what the application waits for; the process's (``time.process_time_ns``)
        goes on until the work the block left to other threads is finished (tokentrail's recorder
        and ledger writer, the span processors' export), what the application pays for."""
        function = self.functions[(config, kind)]
        peer = self.peers.get(config)
        if config in ("tokentrail", NO_LEDGER):
            self.instrument(ledger=config == "tokentrail")
            function()  # untimed: fills the new instrumentation's host and price-card caches
        elif peer is not None:
            peer.instrument()
            function()
        try:
            self.finish_pending()  # untimed: what the warm-up call and earlier blocks left
            gc.collect()
            wall0 = time.perf_counter_ns()
            process0 = time.process_time_ns()
            thread0 = time.thread_time_ns()
            for _ in range(calls):
                function()
            thread1 = time.thread_time_ns()
            self.finish_pending()
            process1 = time.process_time_ns()
            wall1 = time.perf_counter_ns()
        finally:
            if config in ("tokentrail", NO_LEDGER):
                self.uninstrument()
            elif peer is not None:
                peer.uninstrument()
        return (thread1 - thread0) / calls, (process1 - process0) / calls, (wall1 - wall0) / calls

    def finish_pending(self) -> None:
        self.tokentrail.flush()
        self.providers.tracer_provider.force_flush()
        for peer in self.peers.values():
            peer.flush()

    def check_peers(self) -> dict[str, int]:
        """Each peer records a span for a chat call and for a stream (else it is not measuring
        anything); returns the spans each one exported for the two."""
        exported = {}
        exporter = self.providers.exporter
        for name, peer in self.peers.items():
            self.finish_pending()
            before = exporter.exported
            peer.instrument()
            try:
                self.functions[(name, "chat")]()
                self.functions[(name, "stream")]()
            finally:
                peer.uninstrument()
            self.finish_pending()
            exported[name] = exporter.exported - before
            assert exported[name] >= 2, f"{name} exported {exported[name]} spans for two calls"
        # A peer whose uninstrument leaves something behind must not change what the others measure:
        # bare, the floor and tokentrail are checked again after every peer has come and gone.
        self.fake.usage_requested = 0
        self.check()
        return exported

    def check(self) -> dict[str, Any]:
        """Prove each configuration does what it claims before timing it."""
        providers, workload = self.providers, self.workload
        points_before = metric_points(providers.reader)
        requests_before = self.fake.requests
        # bare: the whole stream, nothing recorded
        items = sum(1 for _ in workload.stream())
        assert items == workload.stream_items, (items, workload.stream_items)
        assert metric_points(providers.reader) == points_before
        if workload.provider == "openai":
            assert self.fake.usage_requested == 0
        # floor: the same items, the provider's usage read
        items = sum(1 for _ in self.floor.stream())
        assert items == workload.stream_items, (items, workload.stream_items)
        if workload.provider == "openai":
            assert self.fake.usage_requested == int(self.floor_usage)
            self.fake.usage_requested = 0
        self.floor.chat()
        floor_points = metric_points(providers.reader)
        assert floor_points.get("bench.floor.tokens") == 2, floor_points
        # tokentrail: records both calls with their usage and cost; the app sees the same stream
        seen: list[Any] = []
        self.tokentrail.instrument(
            tracer_provider=providers.tracer_provider,
            meter_provider=providers.meter_provider,
            sinks=[seen.append],
            **workload.options,
        )
        try:
            workload.chat()
            items = sum(1 for _ in workload.stream())
        finally:
            self.uninstrument()
        assert items == workload.stream_items, (
            f"the application saw {items} items, not {workload.stream_items}"
        )
        assert self.fake.requests - requests_before == 5, self.fake.requests - requests_before  # 3 + 2
        expected = {
            "openai": {"cache_read_tokens": 1024, "reasoning_tokens": 64},
            "anthropic": {"cache_read_tokens": 4000, "reasoning_tokens": 120},
            "gemini": {"cache_read_tokens": 1024, "reasoning_tokens": 120},
            "bedrock": {"cache_read_tokens": 4000, "input_tokens": 7500},
            "mistral": {"cache_read_tokens": 1024, "reasoning_tokens": 0},
            "cohere": {"cache_read_tokens": 1024, "reasoning_tokens": 0},
            "together": {"cache_read_tokens": 1024, "output_tokens": 300},
            "ollama": {"input_tokens": 1200, "output_tokens": 300},
            "groq": {"cache_read_tokens": 1024, "output_tokens": 300},
        }[workload.provider]
        if workload.provider == "openai":
            assert self.fake.usage_requested == 1, "tokentrail did not ask for stream usage"
        assert len(seen) == 2, seen
        for record in seen:
            assert record.usage is not None, record
            for name, value in expected.items():
                assert getattr(record.usage, name) == value, (name, record)
            assert record.cost is not None and record.cost.source == "local", record
        assert seen[0].cost.total == seen[1].cost.total, seen  # the same usage, streamed or not
        points = metric_points(providers.reader)
        assert points.get("gen_ai.client.token.usage"), points
        assert points.get("gen_ai.client.operation.duration"), points
        providers.tracer_provider.force_flush()
        assert providers.exporter.exported >= 4  # 2 floor spans, 2 of tokentrail
        checked = {"cost_usd_chat": seen[0].cost.total, "cost_usd_stream": seen[1].cost.total}
        if NO_LEDGER in self.configs:
            checked["ledger_rows"] = self._check_without_ledger(seen)
        return checked

    def _check_without_ledger(self, seen: list[Any]) -> dict[str, int]:
        """The ledger-off configuration records the same calls, and writes no ledger row."""
        path = os.environ.get("TOKENTRAIL_LEDGER", "off")
        assert path != "off", "--without-ledger needs the ledger on for tokentrail's defaults"
        self.tokentrail.flush()
        with contextlib.closing(sqlite3.connect(path)) as connection:
            with_ledger = connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        assert with_ledger >= 2, f"tokentrail's defaults wrote {with_ledger} ledger rows for 2 calls"
        without: list[Any] = []
        self.instrument(ledger=False, sinks=[without.append])  # as the timed ledger-off blocks are
        try:
            self.workload.chat()
            sum(1 for _ in self.workload.stream())
            self.tokentrail.flush()  # whatever it queued is written (or handed to the sink) by now
        finally:
            self.uninstrument()
        with contextlib.closing(sqlite3.connect(path)) as connection:
            after = connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        assert after == with_ledger, f"the ledger-off configuration wrote {after - with_ledger} rows"
        assert [r.cost.total for r in without] == [r.cost.total for r in seen], (without, seen)
        return {"with_ledger": with_ledger, "without_ledger_added": after - with_ledger}


def run(
    rounds: int,
    chat_calls: int,
    stream_calls: int,
    warmup: int,
    quiet: bool,
    provider: str = "openai",
    stream_chunks: int = STREAM_CHUNKS,
    features: bool = False,
    floor_usage: bool = True,
    peers: bool = False,
    without_ledger: bool = False,
) -> dict[str, Any]:
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    # instrument() runs before every tokentrail block; don't start a price-warming thread each time
    # (the untimed call after instrument() loads the prices instead).
    os.environ.setdefault("TOKENTRAIL_WARM_PRICES", "0")
    ledger = isolate_ledger()
    bench = Bench(provider, stream_chunks, features, floor_usage, peers, without_ledger)
    checked = bench.check()
    if bench.peers:
        checked["peer_spans_for_a_chat_and_a_stream"] = bench.check_peers()
    configs = bench.configs
    pairs = [(config, kind) for kind in KINDS for config in configs]
    calls = {"chat": chat_calls, "stream": stream_calls}
    for config, kind in pairs:  # warm-up: imports, caches, allocator
        bench.block(config, kind, warmup if kind == "chat" else max(1, warmup // 5))
    blocks: dict[str, dict[tuple[str, str], list[float]]] = {
        clock: {pair: [] for pair in pairs} for clock in (*CLOCKS, "wall")
    }
    started = time.perf_counter()
    count = len(configs)
    for round_index in range(rounds):
        # Within a round the configurations of a call kind run back to back (tens of ms each), in an
        # order that rotates and reverses from round to round.
        for kind in KINDS:
            order = list(configs[round_index % count :] + configs[: round_index % count])
            if (round_index // count) % 2:
                order.reverse()
            for config in order:
                thread_ns, process_ns, wall_ns = bench.block(config, kind, calls[kind])
                blocks["thread"][(config, kind)].append(thread_ns)
                blocks["process"][(config, kind)].append(process_ns)
                blocks["wall"][(config, kind)].append(wall_ns)
        if not quiet and (round_index + 1) % 10 == 0:
            print(f"\rround {round_index + 1}/{rounds}", end="", file=sys.stderr, flush=True)
    if not quiet:
        print(f"\r{provider}: {rounds} rounds in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    points = metric_points(bench.providers.reader)  # outside timing: the reader is collected only now
    bench.providers.shutdown()
    return {
        "provider": provider,
        "call": bench.workload.call,
        "chunk_note": bench.workload.chunk_note,
        "note": bench.workload.note,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "packages": _versions(),
            "tokentrail_source": source_state(),
            "ledger": ledger,
        },
        "method": {
            "rounds": rounds,
            "calls_per_block": calls,
            "warmup_calls": warmup,
            "clocks": {clock: f"time.{function.__name__}" for clock, function in CLOCKS.items()},
            "stream_chunks": stream_chunks,
            "stream_items": bench.workload.stream_items,
            "all_features": features,
            "floor_usage": bench.floor_usage,
            "configs": list(configs),
            "peers": {name: peer.label for name, peer in bench.peers.items()},
            "peers_not_run": bench.missing_peers,
        },
        "check": {**checked, "metric_points": points},
        "results": {
            clock: summarise(blocks[clock], configs, stream_chunks=stream_chunks) for clock in CLOCKS
        },
        "raw_ns_per_call": {
            clock: {f"{config}/{kind}": values for (config, kind), values in blocks[clock].items()}
            for clock in blocks
        },
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(
    cpu: dict[tuple[str, str], list[float]],
    configs: Iterable[str] = CONFIGS,
    quantile: float = 0.10,
    stream_chunks: int = STREAM_CHUNKS,
) -> dict[str, Any]:
    """Two estimates of each configuration's overhead over bare (see the module docstring), in µs
    per call, and its ratio to the floor's.

    ``low``: per-configuration ``quantile`` (p10) of the block times, minus bare's. Interference on a
    shared machine only ever slows a block down, so the low quantile is the code's own speed;
    90% interval by bootstrap over rounds.
    ``paired``: median over rounds of (configuration - bare) in the same round, with its IQR.
    Per chunk: (stream overhead - chat overhead) / ``stream_chunks``.
    """
    import random

    measured = [config for config in configs if config != "bare"]
    rng = random.Random(1)
    results: dict[str, Any] = {}
    for kind in KINDS:
        bare = cpu[("bare", kind)]
        rounds = len(bare)
        row: dict[str, Any] = {
            "bare_us": _quantile(bare, quantile) / 1e3,
            "bare_median_us": statistics.median(bare) / 1e3,
            "bare_p90_us": _quantile(bare, 0.9) / 1e3,
        }
        samples: dict[str, list[float]] = {config: [] for config in measured}
        ratios: dict[str, list[float]] = {config: [] for config in measured}
        for _ in range(400):
            picks = [rng.randrange(rounds) for _ in range(rounds)]
            base = _quantile([bare[i] for i in picks], quantile)
            over = {
                config: _quantile([cpu[(config, kind)][i] for i in picks], quantile) - base
                for config in measured
            }
            for config in measured:
                samples[config].append(over[config] / 1e3)
                if over["floor"] > 0:
                    ratios[config].append(over[config] / over["floor"])
        for config in measured:
            values = cpu[(config, kind)]
            row[f"{config}_us"] = _quantile(values, quantile) / 1e3
            row[f"{config}_overhead_us"] = row[f"{config}_us"] - row["bare_us"]
            row[f"{config}_overhead_ci90_us"] = (
                _quantile(samples[config], 0.05),
                _quantile(samples[config], 0.95),
            )
            paired = [v - b for v, b in zip(values, bare, strict=True)]
            row[f"{config}_paired_overhead_us"] = statistics.median(paired) / 1e3
            row[f"{config}_paired_overhead_iqr_us"] = (
                _quantile(paired, 0.25) / 1e3,
                _quantile(paired, 0.75) / 1e3,
            )
        for config in measured:
            # x floor: this configuration's overhead / the floor's (1.0 for the floor itself).
            row[f"{config}_ratio"] = row[f"{config}_overhead_us"] / row["floor_overhead_us"]
            # No resample with a positive floor overhead (a few rounds on a noisy machine): no interval.
            row[f"{config}_ratio_ci90"] = (
                (_quantile(ratios[config], 0.05), _quantile(ratios[config], 0.95))
                if ratios[config]
                else (float("nan"), float("nan"))
            )
            row[f"{config}_paired_ratio"] = (
                row[f"{config}_paired_overhead_us"] / row["floor_paired_overhead_us"]
            )
        # The names of earlier reports: tokentrail's ratio.
        row["ratio"] = row["tokentrail_ratio"]
        row["ratio_ci90"] = row["tokentrail_ratio_ci90"]
        row["paired_ratio"] = row["tokentrail_paired_ratio"]
        results[kind] = row
    chat, stream = results["chat"], results["stream"]
    results["per_chunk"] = {
        config: (stream[f"{config}_overhead_us"] - chat[f"{config}_overhead_us"]) / stream_chunks
        for config in measured
    }
    results["per_chunk"].update(
        {
            f"{config}_paired": (
                stream[f"{config}_paired_overhead_us"] - chat[f"{config}_paired_overhead_us"]
            )
            / stream_chunks
            for config in measured
        }
    )
    results["estimator"] = f"p{round(quantile * 100)} of block times per configuration"
    return results


def source_state() -> str:
    """The commit the measured tokentrail comes from, and whether src/ had uncommitted changes."""
    import importlib.util
    import subprocess

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.find_spec("tokentrail")
    if spec is not None and spec.origin is not None and not Path(spec.origin).is_relative_to(root / "src"):
        return f"tokentrail from {Path(spec.origin).parent}"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}{' + uncommitted changes in src/' if dirty else ''}"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    names = ("openai", "anthropic", "google-genai", "boto3", "httpx2", "httpx", "opentelemetry-sdk", "wrapt")
    for name in (*names, "genai-prices", "pydantic"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


CLOCK_TITLES = {
    "thread": "calling thread (time.thread_time_ns: what the application waits for)",
    "process": (
        "whole process (time.process_time_ns, each block's deferred work - tokentrail's recorder and "
        "ledger, span export - finished inside it: what the application pays for)"
    ),
}


def table(report: dict[str, Any]) -> str:
    method = report["method"]
    calls = method["calls_per_block"]
    chunks = method.get("stream_chunks", STREAM_CHUNKS)
    provider = report.get("provider", "openai")
    configs = [config for config in method.get("configs", CONFIGS) if config != "bare"]
    labels = {
        "floor": "floor",
        "tokentrail": "tokentrail (defaults)",
        NO_LEDGER: "tokentrail, ledger off",
        **method.get("peers", {}),
    }
    title = (
        "tokentrail overhead"
        if provider == "openai"
        else f"tokentrail overhead on {provider} ({report['call']})"
    )
    chunk_note = report.get("chunk_note", OPENAI_CHUNK_NOTE)
    lines = [
        f"{title} - {report['date']} - Python {report['machine']['python']}, "
        f"{report['machine']['cpus']} CPUs - {method['rounds']} rounds x ({calls['chat']} chat, "
        f"{calls['stream']} stream) calls per block"
        + (" - all features (attribution, a budget, the ledger)" if method.get("all_features") else "")
        + (
            " - the floor's stream asks for no usage (it records zero tokens)"
            if provider == "openai" and not method.get("floor_usage", False)
            else ""
        ),
        f"tokentrail source: {report['machine']['tokentrail_source']}",
    ]
    for clock, results in report["results"].items():
        chat, stream = results["chat"], results["stream"]
        lines += [
            "",
            CLOCK_TITLES.get(clock, clock),
            f"{'':<24}{'--- chat (non-streamed) ---':^40}{f'--- stream ({chunks} chunks) ---':^40}"
            f"{'paired median +µs':>19}",
            f"{'case':<24}{'+µs':>8}{'x floor':>9} {'[90% CI]':<13}{'':>8}{'+µs':>8}{'x floor':>9} "
            f"{'[90% CI]':<13}{'':>8}{'chat':>8}{'stream':>9}",
            f"{'bare (µs per call)':<24}{chat['bare_us']:>8.0f}{'':>38}{stream['bare_us']:>8.0f}",
        ]
        for config in configs:
            cells = []
            for row in (chat, stream):
                lo, hi = row[f"{config}_ratio_ci90"]
                interval = f"[{lo:.2f}-{hi:.2f}]" if config != "floor" else ""
                overhead, ratio = row[f"{config}_overhead_us"], row[f"{config}_ratio"]
                cells.append(f"{overhead:>8.0f}{ratio:>9.2f} {interval:<13}{'':>8}")
            lines.append(
                f"{labels.get(config, config):<24}{cells[0]}{cells[1]}"
                f"{chat[f'{config}_paired_overhead_us']:>8.0f}{stream[f'{config}_paired_overhead_us']:>9.0f}"
            )
        per_chunk = results["per_chunk"]
        lines.append(
            f"{'per chunk +µs':<24}" + "  ".join(f"{labels.get(c, c)} {per_chunk[c]:.2f}" for c in configs)
        )
    lines += [
        "",
        "+µs: p10 of the configuration's blocks - p10 of bare's (CPU µs per call); x floor: that over the "
        "floor's; 90% CI by bootstrap over rounds.",
        "paired median: median over rounds of (configuration - bare) in the same round.",
        f"per chunk: (stream overhead - chat overhead) / {chunks}; {chunk_note}",
    ]
    if method.get("peers"):
        lines.append(
            "peers: the application's streams ask for stream_options.include_usage (as the floor's do; "
            "tokentrail asks by itself)."
        )
    for name, why in method.get("peers_not_run", {}).items():
        lines.append(f"peer not run: {name} ({why})")
    if report.get("note"):
        lines.append(report["note"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="interleaved rounds (default 300)")
    parser.add_argument("--chat-calls", type=int, default=20, help="chat calls per timed block (default 20)")
    parser.add_argument("--stream-calls", type=int, default=4, help="streams per timed block (default 4)")
    parser.add_argument(
        "--warmup", type=int, default=200, help="untimed chat calls per config first (default 200)"
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="openai: also measure the other instrumentations of benchmarks/requirements-peers.txt "
        "that import here (their venv: see that file)",
    )
    parser.add_argument(
        "--provider",
        choices=[*PROVIDERS, "all"],
        default="openai",
        help="which SDK's call to measure; all: each in turn, one table each (default openai)",
    )
    parser.add_argument(
        "--stream-chunks",
        type=_stream_chunks,
        default=STREAM_CHUNKS,
        metavar="N",
        help=f"chunks per stream, at least 3 (Anthropic: text deltas; default {STREAM_CHUNKS})",
    )
    parser.add_argument(
        "--all-features",
        action="store_true",
        help="tokentrail calls inside tokentrail.attribute(...) and under a configured budget that is "
        "never reached (the ledger is on in every run)",
    )
    parser.add_argument(
        "--floor-without-usage",
        action="store_true",
        help="OpenAI: the floor's stream does not ask for the usage chunk (it records zero tokens)",
    )
    parser.add_argument(
        "--without-ledger",
        action="store_true",
        help="also measure tokentrail with its defaults but the local ledger (ledger=False), in the "
        "same run: what the ledger costs a call",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results (and raw blocks) as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    chosen = list(PROVIDERS) if args.provider == "all" else [args.provider]
    reports = {}
    for index, provider in enumerate(chosen):
        report = run(
            args.rounds,
            args.chat_calls,
            args.stream_calls,
            args.warmup,
            args.quiet,
            provider=provider,
            stream_chunks=args.stream_chunks,
            features=args.all_features,
            floor_usage=not args.floor_without_usage,
            peers=args.peers,
            without_ledger=args.without_ledger,
        )
        reports[provider] = report
        print(("\n" if index else "") + table(report), flush=True)
    if args.json:
        # One provider: its report, as before; all: {provider: report}.
        written = reports[chosen[0]] if len(chosen) == 1 else reports
        Path(args.json).write_text(json.dumps(written, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def _stream_chunks(text: str) -> int:
    """argparse type for --stream-chunks: an OpenAI stream here needs a role, a content and a
    finish chunk."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stream-chunks takes a whole number, not {text!r}") from None
    if value < 3:
        raise argparse.ArgumentTypeError(f"--stream-chunks must be at least 3, not {value}")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
