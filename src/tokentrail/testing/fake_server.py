"""A fake LLM provider: a real HTTP server speaking the OpenAI wire format, for tests and demos.

Point the real SDK at it and every call behaves like the provider's, with deterministic answers
and usage (see :mod:`._openai_wire` for the bodies and usage shapes, :mod:`._model` for the
numbers)::

    with FakeLLMServer() as server:
        client = OpenAI(base_url=server.base_url, api_key="sk-fake")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        server.requests[-1].body["model"]          # what the SDK sent

The Gemini wire format (:mod:`._gemini_wire`) is served on the same port: point google-genai at
the server's root, ``genai.Client(api_key="fake", http_options={"base_url": server.url})``
(Gemini API) or the same with ``vertexai=True`` (Vertex AI paths). The Anthropic Messages format
(:mod:`._anthropic_wire`) too: ``Anthropic(base_url=server.url, api_key="fake")``, and Groq's
(:mod:`._groq_wire`): ``Groq(base_url=server.url, api_key="fake")``, Amazon Bedrock's
(:mod:`._bedrock_wire`, with its binary event streams): ``boto3.client("bedrock-runtime",
endpoint_url=server.url, region_name="us-east-1", ...)`` with any credentials.
Mistral's
(:mod:`._mistral_wire`, under ``/mistral``): ``Mistral(api_key="fake", server_url=server.url + "/mistral")``,
and Cohere's v1 and v2 (:mod:`._cohere_wire`): ``cohere.ClientV2(api_key="fake", base_url=server.url)``,
Together's
(:mod:`._together_wire`): ``Together(base_url=f"{server.url}/together", api_key="fake")``, and
Ollama's native API (:mod:`._ollama_wire`, NDJSON streams): ``ollama.Client(host=server.url)``.

Failures are scripted from the test (:meth:`FakeLLMServer.fail_next`,
:meth:`FakeLLMServer.cut_next_stream`) or, when the test cannot reach the server object (a demo
application, another process), per request through headers:

``X-Fake-Scenario``
    ``rate_limit`` (429), ``server_error`` (500) or ``cut_stream`` (a streamed answer stops after
    ``X-Fake-Cut-After`` events, default 3, without its last event or ``[DONE]``).
``X-Fake-Chunks``
    How many words (= content chunks, = completion tokens) the answer has; default 8.
``X-Fake-Flavor``
    ``openai`` (default), ``openrouter``, ``xai`` or ``deepseek``: the provider whose usage shape
    the answer carries.
``X-Fake-Tool-Call``
    A function name: OpenAI Chat Completions and Responses answers (streamed or not) call that
    tool with ``{}`` (or ``X-Fake-Tool-Arguments``, a JSON object) as arguments instead of
    answering in text (finish reason ``tool_calls``; a Responses ``function_call`` output item).
    Usage is what the text answer's would have been.
    An agent framework's handoff is such a call (``transfer_to_<agent>``): give the handing-off
    agent's client the header (``default_headers``) and the next agent's none.

Run it on its own with ``tokentrail fake-server`` (:func:`main`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from . import (
    _anthropic_wire,
    _bedrock_wire,
    _cohere_wire,
    _gemini_wire,
    _groq_wire,
    _mistral_wire,
    _ollama_wire,
    _openai_wire,
    _together_wire,
)
from ._wire import ErrorBuilder, Handler, JsonReply, StreamReply, WireRequest

__all__ = ["DEFAULT_CHUNKS", "FakeLLMServer", "RecordedRequest", "main"]

DEFAULT_CHUNKS = 8
DEFAULT_CUT_AFTER = 3
MAX_CHUNKS = 100_000

SCENARIOS = ("rate_limit", "server_error", "cut_stream")
_SCENARIO_STATUS = {"rate_limit": 429, "server_error": 500}

# Credentials never end up in recorded requests (tests print them, reports keep them).
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key"}
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received (recorded before any scripted failure applies)."""

    method: str
    path: str
    """The URL path, without the query string."""
    headers: dict[str, str]
    """Lower-cased header names, credentials (``authorization``, ``api-key``, ...) removed."""
    body: Any
    """The JSON body, parsed; ``None`` when the request had no body or it was not JSON."""


@dataclass(frozen=True)
class _Route:
    handler: Handler
    error: ErrorBuilder


@dataclass(frozen=True)
class _Answer:
    reply: JsonReply | StreamReply
    cut_after: int | None = None


class FakeLLMServer:
    """A fake LLM provider API on a local port, served from a background thread.

    ``port=0`` picks a free port; read the actual one from :attr:`url` / :attr:`base_url` once
    started. Usable as a context manager (starts on enter, stops on exit). Thread-safe: the SDK
    may call it from many threads or event loops at once. ``log_requests`` prints one access-log
    line per request to stderr (the foreground :func:`main` turns it on).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, log_requests: bool = False) -> None:
        self._host = host
        self._port = port  # 0 until bound; url/base_url tell the real one
        self.log_requests = log_requests
        self._routes = {path: _Route(handler, _openai_wire.error_reply)
                        for path, handler in _openai_wire.routes().items()}  # fmt: skip
        self._routes.update({path: _Route(handler, _openai_wire.error_reply)
                             for path, handler in _groq_wire.routes().items()})  # fmt: skip
        self._routes.update({path: _Route(handler, _mistral_wire.error_reply)
                             for path, handler in _mistral_wire.routes().items()})  # fmt: skip
        self._routes.update({path: _Route(handler, _cohere_wire.error_reply)
                             for path, handler in _cohere_wire.routes().items()})  # fmt: skip
        self._routes.update({path: _Route(handler, _openai_wire.error_reply)
                             for path, handler in _together_wire.routes().items()})  # fmt: skip
        self._routes.update({path: _Route(handler, _ollama_wire.error_reply)
                             for path, handler in _ollama_wire.routes().items()})  # fmt: skip
        self._anthropic = _anthropic_wire.AnthropicWire()  # holds this server's prompt cache
        self._routes.update({path: _Route(handler, _anthropic_wire.error_reply)
                             for path, handler in self._anthropic.routes().items()})  # fmt: skip
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures: deque[int] = deque()
        self._cuts: deque[int] = deque()
        self._serial = itertools.count(1)
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind the port and serve from a daemon thread; returns ``self``."""
        if self._http is not None:
            raise RuntimeError("FakeLLMServer is already started")
        self._http = _HTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            # A short poll keeps stop() fast; serve_forever only checks for shutdown between polls.
            kwargs={"poll_interval": 0.05},
            name=f"tokentrail-fake-llm-server:{self._http.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections. Safe to call more than once."""
        http, thread = self._http, self._thread
        if http is None:
            return
        http.shutdown()
        http.server_close()
        http.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        self._http = self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self if self._http is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, the server's root."""
        if self._http is None:
            raise RuntimeError("FakeLLMServer is not started; call start() first")
        host, port = self._http.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: what ``OpenAI(base_url=...)`` takes."""
        return f"{self.url}/v1"

    # --- recording and scripting ----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    def fail_next(self, status: int = 429, times: int = 1) -> None:
        """Answer the next ``times`` requests with HTTP ``status`` in the provider's error shape.

        A 429 carries ``retry-after: 0``. Failures queue up behind ones already scripted.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), not {status}")
        with self._lock:
            self._failures.extend([status] * times)

    def cut_next_stream(self, after_chunks: int = DEFAULT_CUT_AFTER) -> None:
        """Make the next streamed answer send ``after_chunks`` SSE events, then drop the connection.

        The stream never gets its last event (the usage chunk, the finish chunk or
        ``response.completed``) nor ``data: [DONE]``, however large ``after_chunks`` is; the HTTP
        body ends mid-transfer, so the client sees a broken connection, not a clean end. An
        Anthropic stream instead ends with an ``error`` event (``overloaded_error``) in place of
        ``message_delta`` / ``message_stop``, as Anthropic's API ends a stream that failed.
        Non-streamed requests pass through unaffected.
        """
        if after_chunks < 0:
            raise ValueError("after_chunks must be >= 0")
        with self._lock:
            self._cuts.append(after_chunks)

    def reset(self) -> None:
        """Forget recorded requests, any scripted failures or cuts not yet used, and the prompt cache."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._cuts.clear()
        self._anthropic.reset()

    # --- answering (called from handler threads) ------------------------------------------------

    def _route(self, method: str, path: str, query: str) -> _Route | None:
        if method != "POST":
            return None
        route = self._routes.get(path)
        if route is None:
            gemini = _gemini_wire.match(path, query)  # the model is part of Gemini's paths
            if gemini is not None:
                route = _Route(gemini, _gemini_wire.error_reply)
            bedrock = _bedrock_wire.match(path)  # so is Bedrock's model id
            if bedrock is not None:
                route = _Route(bedrock, _bedrock_wire.error_reply)
        return route

    def _answer(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, query: str = ""
    ) -> _Answer:
        body, parsed = _parse_json(raw)
        with self._lock:
            self._requests.append(RecordedRequest(method, path, headers, body))
            failure = self._failures.popleft() if self._failures else None
        route = self._route(method, path, query)
        error = route.error if route is not None else _openai_wire.error_reply
        if failure is not None:
            return _Answer(error(failure, None))

        scenario = headers.get("x-fake-scenario", "").strip().lower() or None
        try:
            chunks = _header_int(headers, "x-fake-chunks", DEFAULT_CHUNKS, MAX_CHUNKS)
            cut_header = _header_int(headers, "x-fake-cut-after", DEFAULT_CUT_AFTER, MAX_CHUNKS)
            flavor = headers.get("x-fake-flavor", "openai").strip().lower()
            if scenario is not None and scenario not in SCENARIOS:
                raise ValueError(
                    f"Unknown X-Fake-Scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}."
                )
            if flavor not in _openai_wire.FLAVORS:
                raise ValueError(
                    f"Unknown X-Fake-Flavor {flavor!r}; expected one of {', '.join(_openai_wire.FLAVORS)}."
                )
        except ValueError as bad:
            return _Answer(error(400, str(bad)))
        if scenario in _SCENARIO_STATUS:
            return _Answer(error(_SCENARIO_STATUS[scenario], None))
        if route is None:
            return _Answer(error(404, f"Invalid URL ({method} {path})"))
        if not parsed or not isinstance(body, dict):
            return _Answer(error(400, "We could not parse the JSON body of your request."))

        tool_call = headers.get("x-fake-tool-call", "").strip() or None
        arguments = headers.get("x-fake-tool-arguments", "").strip() or "{}"
        request = WireRequest(
            body, chunks, flavor, next(self._serial), int(time.time()), tool_call, arguments
        )
        try:
            reply = route.handler(request)
        except Exception as exc:  # a bug in the fake must not look like a hung or dropped call
            traceback.print_exc()
            return _Answer(error(500, f"fake server bug: {exc!r}"))
        if not isinstance(reply, StreamReply):
            return _Answer(reply)
        with self._lock:
            cut = self._cuts.popleft() if self._cuts else None
        if cut is None and scenario == "cut_stream":
            cut = cut_header
        return _Answer(reply, cut)


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    """(body, whether it parsed); an empty body is ``(None, False)``."""
    if not raw.strip():
        return None, False
    try:
        return json.loads(raw), True
    except ValueError:
        return None, False


def _header_int(headers: dict[str, str], name: str, default: int, maximum: int) -> int:
    value = headers.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= maximum:
        raise ValueError(f"{name} must be an integer from 0 to {maximum}, not {value!r}.")
    return number


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Don't wait for handler threads on close: a keep-alive connection idles in its handler until
    # the client hangs up, which could be never. close_connections() wakes them instead.
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: FakeLLMServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS round trip we have no use for.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer are routine here (cut streams, stop()); anything else is a bug.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as the SDK's client expects
    server: _HTTPServer
    server_version = "tokentrail-fake-llm"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle's algorithm and the
        # client's delayed ACK hold the second one back ~40 ms on every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        try:
            raw = self._read_body()
        except ValueError:
            # A malformed body length: the stream position is unknown, so this connection is done.
            raw, self.close_connection = b"", True
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() not in _SECRET_HEADERS}
        url = urlsplit(self.path)
        answer = self.server.owner._answer(self.command, url.path, headers, raw, url.query)
        try:
            if isinstance(answer.reply, StreamReply):
                self._send_stream(answer.reply, answer.cut_after)
            else:
                self._send_json(answer.reply)
        except ConnectionError:
            self.close_connection = True  # the client went away; nothing left to tell it

    def _read_body(self) -> bytes:
        # The whole body must be consumed, or the next request on this keep-alive connection
        # would start in the middle of it.
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF closing each chunk
            while self.rfile.readline().strip():
                pass  # trailers, up to the blank line
            return b"".join(parts)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, reply: JsonReply) -> None:
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self._send_common_headers(reply.headers)
        self.end_headers()
        self.wfile.write(payload)

    def _send_stream(self, reply: StreamReply, cut_after: int | None) -> None:
        self.send_response(200)
        self.send_header("content-type", reply.content_type)
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self._send_common_headers({})
        self.end_headers()
        events = reply.events
        if cut_after is not None:
            # Never the last event: it carries the usage (or the finish), which a cut stream lacks.
            for frame in events[: min(cut_after, len(events) - 1)]:
                self._write_chunk(frame)
            if reply.cut_frame is not None:
                self._write_chunk(reply.cut_frame)
                self.wfile.write(b"0\r\n\r\n")
                return
            # Drop the connection inside the chunked body: the client reads an incomplete
            # message, exactly what a network failure mid-stream looks like.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        for frame in [*events, *reply.trailer]:
            self._write_chunk(frame)
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, frame: str | bytes) -> None:
        data = frame if isinstance(frame, bytes) else frame.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _send_common_headers(self, extra: dict[str, str]) -> None:
        self.send_header("x-request-id", f"req_fake{time.monotonic_ns():x}")
        self.send_header("openai-version", "2020-10-01")
        self.send_header("openai-processing-ms", "1")
        for name, value in extra.items():
            self.send_header(name, value)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.log_requests:
            super().log_message(format, *args)


def main(argv: list[str] | None = None) -> int:
    """Run the fake server in the foreground until Ctrl-C or SIGTERM; prints its base URL."""
    parser = argparse.ArgumentParser(
        prog="tokentrail fake-server", description="Run the fake LLM provider server (OpenAI wire format)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)

    try:
        server = FakeLLMServer(args.host, args.port, log_requests=True).start()
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        print(f"tokentrail fake-server: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
        return 1
    stopping = threading.Event()
    # Off the main thread, signals are the caller's business (and signal.signal() would fail).
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set()) if on_main_thread else None
    print(f"Fake LLM server listening; OpenAI base URL: {server.base_url}", flush=True)
    try:
        # A timed wait, so a Ctrl-C KeyboardInterrupt gets through promptly.
        while not stopping.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print("Fake LLM server stopped.", flush=True)
    return 0
