"""The ``cohere`` SDK (Fern-generated, 5.x to 7.x): ``ClientV2`` and the v1 ``Client``.

Pure reading of requests and JSON bodies; the call mechanics are the shared Fern ones
(:mod:`._fern`), at the SDK's one HTTP client, so endpoints added later pass through too (and,
until read here, are counted as unrecognised). What is Cohere's own, handled here once:

* two usages per call. ``tokens`` is what the model processed, Cohere's default system prompt and
  special tokens included; ``billed_units`` is what Cohere charges. The token attributes and
  metrics carry the processed tokens (``usage``); the cost is computed on the billed units
  (``billed_usage``), which also go on the span as ``tokentrail.usage.billed_input_tokens`` /
  ``..._output_tokens``. A response with billed units only (embeddings) is both. Every count is
  a float on the wire (``12.0``): whole floats are read as counts. ``cached_tokens`` (prompt
  tokens served from Cohere's cache) is the processed usage's cache-read part, clamped to its
  input; it is not taken off the billed input, whose price Cohere does not document a discount for;
* v2 bodies carry ``usage``, v1 bodies ``meta`` (the same fields), embeddings and rerank ``meta``;
  a chat response names no model: the call is priced by the request's;
* rerank is billed in search units (``tokentrail.usage.billed_search_units`` on the span), which
  the catalogue does not price: a rerank call is recorded unpriced (flagged), never at $0;
* a v2 stream's usage is on its ``message-end`` event, a v1 stream's on its ``stream-end`` event
  (NDJSON): the stream state finds that event in the bytes and decodes it alone (see
  :mod:`._fern`);
* the provider is ``cohere``, but ``aws.bedrock`` for the SDK's Bedrock client (by host).

Not read yet (counted as unrecognised): v1 ``generate``, ``classify``, ``summarize``, audio. With
content capture on, a v2 chat's messages are captured, and a plain answer; a streamed answer is not
(its text events pass undecoded).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from functools import partial
from typing import Any

from .. import semconv as sc
from ..config import Settings
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._estimate import input_tokens
from ._fern import SDK, Instrumentation
from ._locate import Locator
from ._read import field as _get
from .openai import chat_input_messages, request_params

__all__ = ["COHERE", "Chat", "ChatStreamState", "Embed", "Rerank", "patches", "usages"]

COHERE = "cohere"
# Requests the SDK sends that are not billed model calls (token counts, listings, jobs, uploads).
_NOT_BILLED = ("tokenize", "detokenize", "check-api-key", "models", "datasets", "connectors", "embed-jobs",
               "finetuning", "batches")  # fmt: skip


def _count(value: Any) -> Any:
    """Cohere's float counts (``12.0``) as ints; anything else as it came, for Usage to judge."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def usages(container: Any) -> tuple[Usage | None, Usage | None, dict[str, Any]]:
    """(processed usage, billed usage or None when it is the same, billed span attributes) of a
    v2 ``usage`` or a v1 / embed / rerank ``meta``."""
    billed = _get(container, "billed_units")
    tokens = _get(container, "tokens")
    attributes: dict[str, Any] = {}
    billed_input, billed_output = _count(_get(billed, "input_tokens")), _count(_get(billed, "output_tokens"))
    for attribute, value in (
        (sc.USAGE_BILLED_INPUT_TOKENS, billed_input),
        (sc.USAGE_BILLED_OUTPUT_TOKENS, billed_output),
        (sc.USAGE_BILLED_SEARCH_UNITS, _count(_get(billed, "search_units"))),
    ):
        if type(value) is int:
            attributes[attribute] = value
    billed_usage = None
    if billed_input is not None or billed_output is not None:
        billed_usage = Usage.of(input_tokens=billed_input, output_tokens=billed_output)
    if tokens is None:
        return billed_usage, None, attributes
    processed_input = _count(_get(tokens, "input_tokens"))
    cached = _count(_get(container, "cached_tokens"))
    if type(cached) is int and type(processed_input) is int:
        cached = min(cached, processed_input)
    processed = Usage.of(
        input_tokens=processed_input,
        output_tokens=_count(_get(tokens, "output_tokens")),
        cache_read_tokens=cached,
    )
    return processed, billed_usage, attributes


def _info(container: Any, **fields: Any) -> ResponseInfo:
    usage, billed, attributes = usages(container)
    return ResponseInfo(usage=usage, billed_usage=billed, attributes=attributes or None, **fields)


def _reason(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) and value else ()


class Chat:
    """``v2/chat`` and ``v1/chat`` (plain and streamed)."""

    def __init__(self, v2: bool) -> None:
        self.v2 = v2

    def response(self, body: Any, request: RequestInfo) -> ResponseInfo:
        if self.v2:
            info = _info(_get(body, "usage"), response_id=_get(body, "id"))
        else:
            info = _info(
                _get(body, "meta"), response_id=_get(body, "response_id") or _get(body, "generation_id")
            )
        info.finish_reasons = _reason(_get(body, "finish_reason"))
        if request.input_messages is not None:
            info.output_messages = [_output_message(body, self.v2)]
        return info

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> ChatStreamState:
        return ChatStreamState(self.v2)


def _output_message(body: Any, v2: bool) -> dict[str, Any]:
    if v2:
        parts = _get(_get(body, "message"), "content") or []
        text = "".join(t for p in parts if isinstance(t := _get(p, "text"), str))
    else:
        text = _get(body, "text") or ""
    return {
        "role": "assistant",
        "parts": [{"type": "text", "content": text}],
        "finish_reason": _get(body, "finish_reason"),
    }


class ChatStreamState:
    """Finds the event that carries a stream's usage (v2 ``message-end``, v1 ``stream-end``) in the
    bytes on their way to the SDK: one substring search per chunk until it appears, then the bytes
    from the start of its line are kept, and decoded once, at the end, off the calling thread.
    ``complete``: that event arrived (a stream left right after it is not cut short)."""

    __slots__ = ("_found", "_marker", "_tail", "v2")

    def __init__(self, v2: bool) -> None:
        self.v2 = v2
        self._marker = b"message-end" if v2 else b'"stream-end"'
        self._tail = b""  # the current line's bytes so far (the marker may span two chunks)
        self._found: bytearray | None = None

    @property
    def complete(self) -> bool:
        return self._found is not None and self._event() is not None

    def add(self, chunk: bytes) -> bool:
        found = self._found
        if found is not None:
            found += chunk
            return True
        text = self._tail + chunk
        at = text.find(self._marker)
        if at >= 0:
            self._found = bytearray(text[text.rfind(b"\n", 0, at) + 1 :])
            self._tail = b""
        else:
            self._tail = text[text.rfind(b"\n") + 1 :]
        return True

    def _event(self) -> Mapping[str, Any] | None:
        kind, key = ("message-end", "type") if self.v2 else ("stream-end", "event_type")
        for line in bytes(self._found or b"").splitlines():
            data = line[5:] if line.startswith(b"data:") else line
            if not data.strip():
                continue
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get(key) == kind:
                return event
        return None

    def result(self) -> ResponseInfo:
        event = self._event() if self._found is not None else None
        if event is None:
            return ResponseInfo()  # the stream ended before its usage (cut, closed, abandoned)
        if self.v2:
            delta = event.get("delta")
            info = _info(_get(delta, "usage"), response_id=event.get("id"))
            info.finish_reasons = _reason(_get(delta, "finish_reason"))
            return info
        response = event.get("response")
        info = _info(_get(response, "meta"), response_id=_get(response, "response_id"))
        info.finish_reasons = _reason(event.get("finish_reason"))
        return info


class Embed:
    """``v2/embed`` and ``v1/embed``: billed input tokens (and images) in ``meta``."""

    def response(self, body: Any, request: RequestInfo) -> ResponseInfo:
        return _info(_get(body, "meta"), response_id=_get(body, "id"))

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> ChatStreamState:
        raise TypeError("embeddings are not streamed")


class Rerank:
    """``v2/rerank`` and ``v1/rerank``: billed in search units, which the catalogue does not price."""

    def response(self, body: Any, request: RequestInfo) -> ResponseInfo:
        info = _info(_get(body, "meta"), response_id=_get(body, "id"))
        if info.usage is None:
            info.usage = Usage()  # tokens are not what a rerank reports; the search units say it all
        return info

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> ChatStreamState:
        raise TypeError("rerank is not streamed")


_CHAT_V2 = Chat(v2=True)
_CHAT_V1 = Chat(v2=False)
_EMBED = Embed()
_RERANK = Rerank()


def _route(path: str) -> tuple[str, Any] | None:
    """(operation, endpoint) of a relative path such as ``v2/chat``."""
    version, _, name = path.strip("/").rpartition("/")
    if name == "chat":
        return "chat", _CHAT_V2 if version.endswith("v2") else _CHAT_V1
    if name == "embed":
        return "embeddings", _EMBED
    if name == "rerank":
        return "rerank", _RERANK
    return None


def _cohere(kind: Hashable, host: str | None, port: int | None) -> str:
    return "aws.bedrock" if host is not None and host.startswith("bedrock-runtime.") else COHERE


class CohereAdapter:
    """Decides which cohere SDK requests are LLM calls and describes them."""

    def __init__(self) -> None:
        self._locate = Locator(_cohere)

    def plan(
        self, method: str, path: str, body: Any, base_url: str, stream: bool, settings: Settings
    ) -> Plan | NotRecorded | None:
        if method != "POST":
            return NOT_RECORDED  # listings, retrievals, deletes: never a billed model call
        route = _route(path)
        if route is None:  # generate, classify, summarize, audio and anything new: counted
            return NOT_RECORDED if any(part in path for part in _NOT_BILLED) else None
        operation, endpoint = route
        if not isinstance(body, Mapping):
            return None
        provider, address, port = self._locate(None, base_url, settings.provider_hosts)
        model = body.get("model")
        request = RequestInfo(
            operation=operation,
            provider=provider,
            request_model=model if isinstance(model, str) else None,
            server_address=address,
            server_port=port,
            stream=stream,
            params=partial(_params, body),  # read at the end, off the calling thread
        )
        if endpoint is _CHAT_V2:
            request.input_estimate = partial(_input_estimate, body, request.request_model or "")
            if settings.content.enabled:
                request.input_messages = chat_input_messages(body.get("messages"))
        return Plan(request=request, endpoint=endpoint)


def _params(body: Mapping[str, Any]) -> dict[str, Any]:
    params = request_params(body)  # max_tokens, temperature, seed, penalties (unset ones are absent)
    top_p = body.get("p")
    if isinstance(top_p, int | float) and not isinstance(top_p, bool):
        params[sc.REQUEST_TOP_P] = top_p
    stop = body.get("stop_sequences")
    if isinstance(stop, list | tuple) and all(isinstance(s, str) for s in stop):
        params[sc.REQUEST_STOP_SEQUENCES] = tuple(stop)
    return params


def _input_estimate(body: Mapping[str, Any], model: str) -> tuple[int | None, float]:
    """An approximate input count when a budget asks (no offline Cohere tokenizer here)."""
    tools = body.get("tools")
    tokens, _, margin, _ = input_tokens(
        COHERE, model, body.get("messages"), tools if isinstance(tools, list) else None
    )
    return tokens, margin


def patches() -> Instrumentation | None:
    """The patch set for the installed ``cohere`` SDK, or None if it is not installed."""
    try:
        from cohere.core import http_client
    except ImportError:
        return None
    sdk = SDK(
        name="cohere", http_client=http_client.HttpClient, async_http_client=http_client.AsyncHttpClient
    )
    return Instrumentation(sdk, CohereAdapter())
