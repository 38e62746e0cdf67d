"""The ``ollama`` SDK: a local (or self-hosted) Ollama server's native API.

Pure reading of SDK objects; the call mechanics are the shared method patches (:mod:`._patch`).

Where the calls are seen. Every request of ``Client`` and ``AsyncClient`` goes through their one
``_request(cls, method, url, json=..., stream=...)`` method, which returns the parsed response or,
for ``stream=True``, a generator (an async generator) of parsed NDJSON lines. That method is
patched (a ``request`` target), not ``chat`` / ``generate``: ``ollama.chat``, ``ollama.generate``,
... are bound methods of a default client made at import, which a patch of ``Client.chat`` would
miss, and requests the SDK adds later are counted as unrecognised instead of being missed.

Usage, handled here once:

* ``prompt_eval_count`` is every prompt token (cached ones included) and ``eval_count`` the
  answer's tokens; a stream carries them only on its last line (``"done": true``);
* a count the server left out is unknown, not 0 (older servers omitted ``prompt_eval_count``
  when the whole prompt was cached): the call is then recorded with usage missing;
* ``prompt_eval_cached_count`` (the cached part, sent by current servers) is read where the SDK
  keeps it; its types (through 0.6) drop it, so cache reads are not recorded there;
* ``/api/embed`` reports ``prompt_eval_count``; the deprecated ``/api/embeddings`` nothing;
* a ``generate`` without a prompt or a ``chat`` without messages only loads or unloads a model:
  not a model call, not recorded.

The provider is Ollama whatever the host (``provider_hosts`` can rename one). Local models have no
list price: calls are unpriced unless the user's price overrides price them (``provider =
"ollama"``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from functools import partial
from typing import Any

from .. import semconv as sc
from ..config import Settings
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._estimate import input_tokens
from ._locate import Locator
from ._patch import Patches, Target
from ._read import field as _get
from ._read import fields as _fields
from ._stainless import endpoint_label
from .openai import chat_input_messages

__all__ = ["OLLAMA", "embed_usage", "generate_usage", "patches", "request_params"]

OLLAMA = "ollama"
# Requests the ollama SDK sends that are not model calls: model management and Ollama's web tools.
_NOT_BILLED = ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/show", "/api/blobs",
               "/api/web_search", "/api/web_fetch")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Usage in the normal form
# ---------------------------------------------------------------------------------------------


def generate_usage(response: Any) -> Usage | None:
    """Usage of a chat or generate response (or a stream's ``done`` line); None when a count is missing."""
    return _usage(*_fields(response, _COUNTS))


_COUNTS = ("prompt_eval_count", "eval_count", "prompt_eval_cached_count")
_INFO = ("done_reason", "model", *_COUNTS)  # what a response (or a stream's done line) tells


def _usage(prompt: Any, output: Any, cached: Any) -> Usage | None:
    if prompt is None or output is None:
        return None  # unknown, never 0
    return Usage.of(input_tokens=prompt, output_tokens=output, cache_read_tokens=cached)


def embed_usage(response: Any) -> Usage | None:
    """Usage of an ``/api/embed`` response; None when it reports no count (``/api/embeddings``)."""
    prompt = _get(response, "prompt_eval_count")
    return None if prompt is None else Usage.of(input_tokens=prompt)


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

_OPTIONS: tuple[tuple[str, str], ...] = (
    ("num_predict", sc.REQUEST_MAX_TOKENS),
    ("temperature", sc.REQUEST_TEMPERATURE),
    ("top_p", sc.REQUEST_TOP_P),
    ("top_k", sc.REQUEST_TOP_K),
    ("frequency_penalty", sc.REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.REQUEST_PRESENCE_PENALTY),
    ("seed", sc.REQUEST_SEED),
)


_NUMBERS = (int, float)


def request_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """A request's ``options`` (and ``format``) as semantic-convention attributes."""
    params: dict[str, Any] = {}
    options = body.get("options")
    if type(options) is dict or isinstance(options, Mapping):  # (the ABC check only for the rare)
        for key, attribute in _OPTIONS:
            value = options.get(key)
            if isinstance(value, _NUMBERS) and type(value) is not bool:
                params[attribute] = value
        stop = options.get("stop")
        if isinstance(stop, (list, tuple)) and stop and all(isinstance(s, str) for s in stop):
            params[sc.REQUEST_STOP_SEQUENCES] = tuple(stop)
    if body.get("format"):  # "json" or a JSON schema
        params[sc.OUTPUT_TYPE] = "json"
    return params


def _method_and_url(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    """``_request(cls, method, url, ...)``'s method and URL (positional in every version)."""
    method = args[1] if len(args) > 1 else kwargs.get("method")
    url = args[2] if len(args) > 2 else kwargs.get("url")
    return method, url


# ---------------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------------


class Generate:
    """``/api/chat`` and ``/api/generate``: the counts on the response, or on a stream's last line."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat

    def text(self, response: Any) -> Any:
        return _get(_get(response, "message"), "content") if self.chat else _get(response, "response")

    def response(self, result: Any, request: RequestInfo) -> ResponseInfo:
        info = self.info(result)
        if request.input_messages is not None:
            info.output_messages = [_output_message(self.text(result), _get(result, "done_reason"))]
        return info

    @staticmethod
    def info(result: Any) -> ResponseInfo:
        reason, model, *counts = _fields(result, _INFO)  # one look at the object for all five
        return ResponseInfo(
            response_model=model,
            finish_reasons=(reason,) if isinstance(reason, str) and reason else (),
            usage=_usage(*counts),
        )

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> GenerateStreamState:
        return GenerateStreamState(self, request.input_messages is not None)


def _output_message(text: Any, reason: Any) -> dict[str, Any]:
    parts = [{"type": "text", "content": text}] if isinstance(text, str) else []
    return {"role": "assistant", "parts": parts, "finish_reason": reason}


class GenerateStreamState:
    """Follows one NDJSON stream: the model from its first line, the counts from its ``done`` line."""

    __slots__ = ("capture", "endpoint", "final", "model", "received", "texts")

    def __init__(self, endpoint: Generate, capture: bool) -> None:
        self.endpoint = endpoint
        self.capture = capture
        self.received = False
        self.model: Any = None
        self.final: Any = None
        self.texts: list[str] = []

    def add(self, chunk: Any) -> bool:
        self.received = True
        # Read inline, not through _get: this runs for every line of every stream, on the calling
        # thread (the SDK's models declare ``done``; older SDKs stream plain dicts).
        done = chunk.get("done") if type(chunk) is dict else getattr(chunk, "done", None)
        if done:
            self.final = chunk
        elif self.model is None:
            self.model = _get(chunk, "model")
        if self.capture:
            text = self.endpoint.text(chunk)
            if isinstance(text, str) and text:
                self.texts.append(text)
        return True

    def result(self) -> ResponseInfo | None:
        if not self.received:
            return None  # the request failed before its first line
        if self.final is None:
            return ResponseInfo(response_model=self.model)  # cut or closed before its counts
        info = self.endpoint.info(self.final)
        if self.capture:
            info.output_messages = [_output_message("".join(self.texts), _get(self.final, "done_reason"))]
        return info


class Embed:
    """``/api/embed`` (counts its input) and the deprecated ``/api/embeddings`` (counts nothing)."""

    def response(self, result: Any, request: RequestInfo) -> ResponseInfo:
        return ResponseInfo(response_model=_get(result, "model"), usage=embed_usage(result))

    def stream_state(  # pragma: no cover - never streamed
        self, request: RequestInfo, hide_usage_chunk: bool
    ) -> GenerateStreamState:
        raise TypeError("embeddings are not streamed")


_CHAT = Generate(chat=True)
_GENERATE = Generate(chat=False)
_EMBED = Embed()

# Path suffix -> (operation, endpoint).
_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("/api/chat", "chat", _CHAT),
    ("/api/generate", "text_completion", _GENERATE),
    ("/api/embed", "embeddings", _EMBED),
    ("/api/embeddings", "embeddings", _EMBED),
)


def _ollama(kind: Hashable, host: str | None, port: int | None) -> str:
    return OLLAMA


class OllamaRequest:
    """Reads ``Client._request`` / ``AsyncClient._request``: which requests are model calls, and
    what they ask."""

    def __init__(self) -> None:
        self._locate = Locator(_ollama)

    def endpoint(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """``POST /api/...``: the label an unrecognised request is counted under."""
        return endpoint_label(*_method_and_url(args, kwargs))

    def request(
        self, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], settings: Settings
    ) -> Plan | NotRecorded | None:
        method, url = _method_and_url(args, kwargs)
        if not isinstance(method, str) or method.upper() != "POST":
            return NOT_RECORDED  # listings, deletes: never a model call
        path = str(url).partition("?")[0]
        route = next((r for r in _ROUTES if path.endswith(r[0])), None)
        if route is None:  # model management is known; anything else is counted as unrecognised
            return NOT_RECORDED if any(part in path for part in _NOT_BILLED) else None
        _, operation, endpoint = route
        body = kwargs.get("json")
        if not isinstance(body, Mapping):
            return None
        if (endpoint is _CHAT and not body.get("messages")) or (
            endpoint is _GENERATE and not body.get("prompt") and not body.get("images")
        ):
            return NOT_RECORDED  # loads or unloads the model: nothing is generated
        http_client = getattr(instance, "_client", None)
        provider, address, port = self._locate(
            None, getattr(http_client, "base_url", ""), settings.provider_hosts
        )
        model = body.get("model")
        request = RequestInfo(
            operation=operation,
            provider=provider,
            request_model=model if isinstance(model, str) and model else None,
            server_address=address,
            server_port=port,
            stream=bool(kwargs.get("stream", False)),
            params=partial(request_params, body),  # read at the end, off the calling thread
        )
        if endpoint is not _EMBED:
            request.input_estimate = partial(_input_estimate, body, request.request_model or "")
            if settings.content.enabled:
                _capture(request, body, endpoint is _CHAT)
        return Plan(request=request, endpoint=endpoint)


def _prompt_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A generate request's system and prompt, as chat messages."""
    messages = [{"role": "user", "content": body.get("prompt") or ""}]
    if isinstance(body.get("system"), str):
        messages.insert(0, {"role": "system", "content": body["system"]})
    return messages


def _capture(request: RequestInfo, body: Mapping[str, Any], chat: bool) -> None:
    if chat:
        request.input_messages = chat_input_messages(body.get("messages"))
        return
    prompt = body.get("prompt")
    request.input_messages = [
        {"role": "user", "parts": [{"type": "text", "content": prompt}] if isinstance(prompt, str) else []}
    ]
    system = body.get("system")
    if isinstance(system, str):
        request.system_instructions = [{"type": "text", "content": system}]


def _input_estimate(body: Mapping[str, Any], model: str) -> tuple[int | None, float]:
    """An approximate input count when a budget asks (local models have no offline tokenizer here)."""
    messages = body.get("messages") if "messages" in body else _prompt_messages(body)
    tokens, _, margin, _ = input_tokens(OLLAMA, model, messages, body.get("tools"))
    return tokens, margin


def patches() -> Patches | None:
    """The patch set for the installed ``ollama`` SDK, or None if it is not installed."""
    try:
        # Not ``from ollama import _client``: the package's own ``_client`` is its default client.
        from ollama._client import AsyncClient, Client
    except ImportError:
        return None
    reader = OllamaRequest()
    targets = [Target(owner, ("_request",), "request", reader) for owner in (Client, AsyncClient)]
    return Patches("ollama", targets)
