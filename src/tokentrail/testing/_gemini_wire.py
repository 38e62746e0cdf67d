"""Gemini wire format: the fake server's ``generateContent``, ``streamGenerateContent`` and
embedding routes, for the Gemini API and Vertex AI.

Paths (``POST``; the model comes from the path, as with the real APIs):

* Gemini API: ``/{v1,v1beta,v1alpha}/models/{model}:{method}`` (google-genai 3.x uses ``v1``,
  2.x ``v1beta``; point ``HttpOptions(base_url=server.url)`` at the server's root);
* Vertex AI: ``/{v1,v1beta1}/[projects/P/locations/L/]publishers/google/models/{model}:{method}``,
  answered with Vertex's extras (``createTime``, ``usageMetadata.trafficType``).

Methods: ``generateContent``; ``streamGenerateContent`` (SSE ``data:`` frames with ``?alt=sse``,
as the SDK asks; a JSON array of the same chunks without it); ``embedContent`` and
``batchEmbedContents``. Errors have Google's shape, ``{"error": {"code", "message", "status"}}``.

Usage (``usageMetadata``, zero counts left out, as the API's proto JSON does) follows
:mod:`._model` with these additions, so every number can be recomputed by hand:

* a text part costs ``count_tokens(text)`` (no per-message overhead); an image part
  :data:`IMAGE_TOKENS`, audio :data:`AUDIO_TOKENS`, video :data:`VIDEO_TOKENS`, a PDF
  :data:`DOCUMENT_TOKENS`, each reported under its modality in ``promptTokensDetails``; function
  calls and responses, and function declarations in ``tools``, cost their JSON's text;
* ``cachedContent`` names a cache of :data:`CACHED_CONTENT_TOKENS` text tokens (or ``N`` for a
  name ending in ``-N``), which counts in ``promptTokenCount`` and again, as the part served from
  the cache, in ``cachedContentTokenCount`` / ``cacheTokensDetails``;
* each server-side tool (code execution, Google Search, URL context) feeds
  :data:`TOOL_USE_PROMPT_TOKENS` tokens of results back: ``toolUsePromptTokenCount``, outside
  ``promptTokenCount``;
* 2.5 and 3 models think only when asked: ``thinkingConfig.thinkingBudget`` > 0 thinks exactly
  the budget, -1 (dynamic) or ``thinkingLevel`` as :data:`._model.REASONING_TOKENS`;
  ``thoughtsTokenCount`` sits beside (not inside) ``candidatesTokenCount``; ``maxOutputTokens``
  bounds thoughts and answer together, the answer then stopping with ``MAX_TOKENS``;
* ``candidateCount`` n answers n identical candidates: ``candidatesTokenCount`` is n times one
  answer (thoughts are counted once);
* ``totalTokenCount`` = prompt + tool-use prompt + candidates + thoughts.

A stream sends one chunk per answer word; every chunk's ``usageMetadata`` is the running total so
far (the prompt side from the first chunk on), the last one, which carries the finish reason, the
same as the non-streamed answer's. So a client that adds chunks up instead of taking the last one
over-counts, and a cut stream still tells what it had consumed when it broke.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from . import _model
from ._openai_wire import embedding_vector
from ._wire import Handler, JsonReply, StreamReply, WireRequest, sse_data

__all__ = [
    "AUDIO_TOKENS",
    "CACHED_CONTENT_TOKENS",
    "DOCUMENT_TOKENS",
    "IMAGE_TOKENS",
    "TOOL_USE_PROMPT_TOKENS",
    "VIDEO_TOKENS",
    "error_reply",
    "match",
]

IMAGE_TOKENS = 258
"""An image part (Gemini counts 258 tokens for an image up to 384x384 pixels)."""
AUDIO_TOKENS = 320
"""An audio part: ten seconds at Gemini's 32 tokens per second."""
VIDEO_TOKENS = 2630
"""A video part: ten seconds at 263 tokens per second."""
DOCUMENT_TOKENS = 258
"""A PDF part: one page."""
CACHED_CONTENT_TOKENS = 4096
"""Text tokens held by a ``cachedContents/...`` cache whose name does not end in ``-N``."""
TOOL_USE_PROMPT_TOKENS = 96
"""Tool-result tokens fed back to the model per server-side tool in the request."""

EMBEDDING_DIMENSIONS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
DEFAULT_EMBEDDING_DIMENSIONS = 768

_SERVER_TOOLS = ("codeExecution", "code_execution", "googleSearch", "google_search",
                 "googleSearchRetrieval", "google_search_retrieval", "urlContext", "url_context")  # fmt: skip
_THINKING_FAMILIES = ("gemini-2.5", "gemini-3")
_MAX_CANDIDATES = 8

# HTTP status -> (google.rpc status, message), as the API words them.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
                      "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}  # fmt: skip


def error_reply(status: int, message: str | None = None) -> JsonReply:
    """An error in Google's shape: ``{"error": {"code", "message", "status"}}``.

    A 429 carries a ``RetryInfo`` detail with a zero delay, so SDK retries (when enabled) do not wait.
    """
    name, default = _ERRORS.get(
        status, ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION", _phrase(status))
    )
    error: dict[str, Any] = {"code": status, "message": message or default, "status": name}
    if status == 429:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}]
    return JsonReply(status, {"error": error})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _field(obj: Any, camel: str, snake: str) -> Any:
    """A field under either spelling: the API accepts both, and the SDK sends both."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _int_field(obj: Any, camel: str, snake: str) -> int | None:
    value = _field(obj, camel, snake)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _BadRequest(f"Invalid value at '{camel}', expected an integer.")
    return value


# --- counting the prompt ------------------------------------------------------------------------


class _Counts:
    """Tokens by modality (``TEXT``, ``IMAGE``, ``AUDIO``, ``VIDEO``, ``DOCUMENT``)."""

    def __init__(self) -> None:
        self.by_modality: dict[str, int] = {}

    def add(self, modality: str, tokens: int) -> None:
        if tokens:
            self.by_modality[modality] = self.by_modality.get(modality, 0) + tokens

    @property
    def total(self) -> int:
        return sum(self.by_modality.values())

    def details(self) -> list[dict[str, Any]]:
        return [{"modality": m, "tokenCount": n} for m, n in self.by_modality.items()]


def _media_modality(mime_type: Any) -> tuple[str, int]:
    mime = mime_type if isinstance(mime_type, str) else ""
    if mime.startswith("image/"):
        return "IMAGE", IMAGE_TOKENS
    if mime.startswith("audio/"):
        return "AUDIO", AUDIO_TOKENS
    if mime.startswith("video/"):
        return "VIDEO", VIDEO_TOKENS
    return "DOCUMENT", DOCUMENT_TOKENS


def _count_parts(parts: Any, counts: _Counts) -> None:
    if not isinstance(parts, list):
        raise _BadRequest("Invalid value at 'contents.parts': expected a list.")
    for part in parts:
        if not isinstance(part, dict):
            raise _BadRequest("Invalid value at 'contents.parts': expected an object.")
        text = part.get("text")
        media = _field(part, "inlineData", "inline_data") or _field(part, "fileData", "file_data")
        if isinstance(text, str):
            counts.add("TEXT", _model.count_tokens(text))
        elif isinstance(media, dict):
            counts.add(*_media_modality(_field(media, "mimeType", "mime_type")))
        else:  # function calls and responses, executable code: their JSON is text to the model
            counts.add("TEXT", _model.count_tokens(json.dumps(part)))


def _count_contents(contents: Any, counts: _Counts) -> None:
    for content in contents:
        if not isinstance(content, dict):
            raise _BadRequest("Invalid value at 'contents': expected an object.")
        _count_parts(content.get("parts") or [], counts)


def _cached_tokens(name: Any) -> int:
    # Vertex AI sends the full resource name (projects/.../cachedContents/ID).
    if not isinstance(name, str) or not re.search(r"(^|/)cachedContents/[^/]+$", name):
        raise _BadRequest("Invalid value at 'cached_content': expected 'cachedContents/{id}'.")
    suffix = re.search(r"-(\d+)$", name)
    return int(suffix.group(1)) if suffix else CACHED_CONTENT_TOKENS


# --- what one request produced ------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    model: str
    prompt: _Counts
    cached: int
    tool_use: int
    thoughts: int
    candidates: int
    generation: _model.Generation

    @property
    def finish_reason(self) -> str:
        return "MAX_TOKENS" if self.generation.truncated else "STOP"

    def usage(self, answered: int) -> dict[str, Any]:
        """``usageMetadata`` after ``answered`` answer tokens per candidate."""
        candidates = answered * self.candidates
        prompt = self.prompt.total
        usage: dict[str, Any] = {"promptTokenCount": prompt}
        if candidates:
            usage["candidatesTokenCount"] = candidates
        usage["totalTokenCount"] = prompt + self.tool_use + candidates + self.thoughts
        if self.cached:
            usage["cachedContentTokenCount"] = self.cached
        if self.tool_use:
            usage["toolUsePromptTokenCount"] = self.tool_use
        if self.thoughts:
            usage["thoughtsTokenCount"] = self.thoughts
        usage["promptTokensDetails"] = self.prompt.details()
        if self.cached:
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached}]
        if candidates:
            usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": candidates}]
        if self.tool_use:
            usage["toolUsePromptTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.tool_use}]
        return usage


def _thoughts(model: str, config: dict[str, Any]) -> int:
    thinking = _field(config, "thinkingConfig", "thinking_config")
    if not isinstance(thinking, dict) or not model.startswith(_THINKING_FAMILIES):
        return 0
    budget = _int_field(thinking, "thinkingBudget", "thinking_budget")
    if budget is not None:
        return _model.REASONING_TOKENS["medium"] if budget == -1 else max(budget, 0)
    level = _field(thinking, "thinkingLevel", "thinking_level")
    if isinstance(level, str):
        return _model.REASONING_TOKENS.get(level.lower(), _model.REASONING_TOKENS["medium"])
    return 0


def _call(req: WireRequest, model: str) -> _Call:
    body = req.body
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _BadRequest("* GenerateContentRequest.contents: contents is not specified")
    prompt = _Counts()
    _count_contents(contents, prompt)
    system = _field(body, "systemInstruction", "system_instruction")
    if isinstance(system, dict):
        _count_parts(system.get("parts") or [], prompt)
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise _BadRequest("Invalid value at 'tools': expected a list.")
    tool_use = 0
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        declarations = _field(tool, "functionDeclarations", "function_declarations")
        if declarations:
            prompt.add("TEXT", _model.count_tokens(json.dumps(declarations)))
        tool_use += TOOL_USE_PROMPT_TOKENS * sum(1 for name in _SERVER_TOOLS if name in tool)
    cache_name = _field(body, "cachedContent", "cached_content")
    cached = _cached_tokens(cache_name) if cache_name is not None else 0
    prompt.add("TEXT", cached)
    config = _field(body, "generationConfig", "generation_config") or {}
    if not isinstance(config, dict):
        raise _BadRequest("Invalid value at 'generation_config': expected an object.")
    candidates = _int_field(config, "candidateCount", "candidate_count") or 1
    if not 1 <= candidates <= _MAX_CANDIDATES:
        raise _BadRequest(f"candidateCount must be from 1 to {_MAX_CANDIDATES}.")
    limit = _int_field(config, "maxOutputTokens", "max_output_tokens")
    thoughts = _thoughts(model, config)
    generation = _model.generate(req.chunks, thoughts, limit)
    return _Call(model, prompt, cached, tool_use, generation.reasoning_tokens, candidates, generation)


def _candidate(call: _Call, index: int, text: str | None, finish: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"role": "model"}
    if text:
        content = {"parts": [{"text": text}], "role": "model"}
    candidate: dict[str, Any] = {"content": content}
    if finish:
        candidate["finishReason"] = call.finish_reason
    candidate["index"] = index
    return candidate


def _envelope(req: WireRequest, call: _Call, vertex: bool, candidates: list[dict[str, Any]],
              usage: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"candidates": candidates, "usageMetadata": usage, "modelVersion": call.model}
    if vertex:
        usage["trafficType"] = "ON_DEMAND"
        body["createTime"] = datetime.fromtimestamp(req.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    body["responseId"] = f"fake-gemini-{req.serial:012d}"
    return body


def generate_content(
    req: WireRequest, model: str, vertex: bool, stream: bool, sse: bool
) -> JsonReply | StreamReply:
    """``models/{model}:generateContent`` and ``:streamGenerateContent``."""
    call = _call(req, model)
    pieces = call.generation.pieces
    if not stream:
        candidates = [_candidate(call, i, call.generation.text, True) for i in range(call.candidates)]
        return JsonReply(200, _envelope(req, call, vertex, candidates, call.usage(len(pieces))))
    chunks = []
    for number, piece in enumerate(pieces, start=1):
        last = number == len(pieces)
        candidates = [_candidate(call, i, piece, last) for i in range(call.candidates)]
        chunks.append(_envelope(req, call, vertex, candidates, call.usage(number)))
    if not pieces:  # everything went to thinking: one chunk with the finish reason and no text
        candidates = [_candidate(call, i, None, True) for i in range(call.candidates)]
        chunks.append(_envelope(req, call, vertex, candidates, call.usage(0)))
    if not sse:
        return JsonReply(200, chunks)  # without alt=sse the API sends one JSON array
    return StreamReply([sse_data(chunk) for chunk in chunks])


# --- embeddings ---------------------------------------------------------------------------------


def _embed_one(model: str, request: Any) -> tuple[list[float], int]:
    if not isinstance(request, dict) or not isinstance(request.get("content"), dict):
        raise _BadRequest("* EmbedContentRequest.content: content is not specified")
    content = request["content"]
    counts = _Counts()
    _count_parts(content.get("parts") or [], counts)
    dimensions = _int_field(request, "outputDimensionality", "output_dimensionality")
    if dimensions is not None and dimensions < 1:
        raise _BadRequest("outputDimensionality must be positive.")
    size = dimensions or EMBEDDING_DIMENSIONS.get(model, DEFAULT_EMBEDDING_DIMENSIONS)
    return embedding_vector(model, json.dumps(content, sort_keys=True), size), max(1, counts.total)


def _embed_usage(tokens: int) -> dict[str, Any]:
    return {"promptTokenCount": tokens, "totalTokenCount": tokens}


def embed_content(req: WireRequest, model: str) -> JsonReply:
    """``models/{model}:embedContent``: one content."""
    vector, tokens = _embed_one(model, req.body)
    return JsonReply(200, {"embedding": {"values": vector}, "usageMetadata": _embed_usage(tokens)})


def batch_embed_contents(req: WireRequest, model: str) -> JsonReply:
    """``models/{model}:batchEmbedContents``: ``{"requests": [...]}``, one embedding each."""
    requests = req.body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise _BadRequest("* BatchEmbedContentsRequest.requests: requests is not specified")
    embedded = [_embed_one(model, request) for request in requests]
    return JsonReply(200, {
        "embeddings": [{"values": vector} for vector, _ in embedded],
        "usageMetadata": _embed_usage(sum(tokens for _, tokens in embedded)),
    })  # fmt: skip


# --- routing ------------------------------------------------------------------------------------

_PATH = re.compile(
    r"^/(?P<version>v1|v1beta|v1alpha|v1beta1)/(?P<scope>(?:[^:]*/)?)models/(?P<model>[^/:]+):(?P<method>\w+)$"
)


def _guarded(handler: Callable[[WireRequest], JsonReply | StreamReply]) -> Handler:
    def route(req: WireRequest) -> JsonReply | StreamReply:
        try:
            return handler(req)
        except _BadRequest as bad:
            return error_reply(400, bad.message)

    return route


def match(path: str, query: str = "") -> Handler | None:
    """The handler for a Gemini or Vertex AI model path, or None if ``path`` is not one.

    An unknown method on a model path answers 404 in Google's shape.
    """
    found = _PATH.match(path)
    if found is None:
        return None
    model, method, scope = found["model"], found["method"], found["scope"]
    if "publishers/" in scope and "publishers/google/" not in scope:
        return None  # another publisher's models on Vertex AI (Anthropic's rawPredict, ...)
    vertex = "publishers/" in scope or scope.startswith("projects/")
    sse = "alt=sse" in query.split("&")
    if method in ("generateContent", "streamGenerateContent"):
        stream = method == "streamGenerateContent"
        return _guarded(lambda req: generate_content(req, model, vertex, stream, sse))
    if method == "embedContent":
        return _guarded(lambda req: embed_content(req, model))
    if method == "batchEmbedContents":
        return _guarded(lambda req: batch_embed_contents(req, model))
    return lambda req: error_reply(404, f"models/{model}:{method} is not found for this fake server.")
