"""The ``together`` SDK (Stainless-generated, 2.x and 3.x): Together AI's OpenAI-like API.

Pure reading of SDK objects; the call mechanics are the shared Stainless ones (:mod:`._stainless`):
both majors send every endpoint through ``SyncAPIClient.request`` / ``AsyncAPIClient.request``
(2.x with ``/v1`` in the base URL and paths like ``/chat/completions``, 3.x with paths like
``/v1/chat/completions``: routes match on the path's end). Together reports usage in OpenAI's
``prompt_tokens`` / ``completion_tokens`` shape, so the OpenAI readers read it. What is Together's
own, handled here once:

* a stream carries its usage on its last chunk unasked: the SDK has no ``stream_options``, so
  nothing is asked for and nothing is hidden, and the last non-null ``usage`` is taken;
* a legacy completion chunk has its finish reason on the chunk, not on its choices;
* embeddings report no usage: recorded with usage missing (never as $0);
* the provider is Together whatever the host (``provider_hosts`` can rename a gateway's host), and
  prices are the catalogue's ``together`` ones, found by the exact model id (the SDK's default host
  ``api.together.ai`` is not the catalogue's API pattern, so the provider id is what finds them).

Rerank, images, audio and video (billed per search unit, image, second or video) are not recorded
yet: they are counted in ``tokentrail.client.unrecognised_calls``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from functools import partial
from typing import Any

from ..config import Settings
from ..records import RequestInfo
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._estimate import input_tokens
from ._locate import Locator
from ._read import field as _get
from ._stainless import SDK, Instrumentation
from .openai import (
    ChatCompletions,
    ChatStreamState,
    Embeddings,
    chat_input_messages,
    request_params,
)

__all__ = ["TOGETHER", "CompletionStreamState", "TogetherCompletions", "patches"]

TOGETHER = "together"
# Requests the together SDK sends that are not billed model calls (uploads, fine-tuning, endpoint
# and cluster management, evaluations' bookkeeping, listings).
_NOT_BILLED = (
    "/files", "/batches", "/fine-tunes", "/finetune", "/models", "/endpoints", "/deployments",
    "/evaluation", "/compute", "/clusters", "/hardware", "/jobs", "/projects", "/rl/", "/shaping",
    "/queue/status", "/queue/metrics", "/queue/cancel", "/queue/clear", "/billing", "/voices",
)  # fmt: skip


class TogetherCompletions(ChatCompletions):
    """``/completions``: a legacy completion, whose stream chunks carry their own finish reason."""

    def __init__(self) -> None:
        super().__init__(legacy=True)

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> CompletionStreamState:
        return CompletionStreamState(True, False, request.input_messages is not None)


class CompletionStreamState(ChatStreamState):
    """A legacy completion stream: ``finish_reason`` and ``usage`` on the last chunk itself."""

    __slots__ = ()

    def add(self, chunk: Any) -> bool:
        if self.id is None:
            self.id = _get(chunk, "id")
            self.model = _get(chunk, "model")
        reason = _get(chunk, "finish_reason")
        for position, choice in enumerate(_get(chunk, "choices") or ()):
            index = _get(choice, "index")
            index = index if type(index) is int else position
            choice_reason = _get(choice, "finish_reason") or reason
            if choice_reason:
                self.finish_reasons[index] = str(choice_reason)
            if self.capture:
                text = _get(choice, "text")
                if text:
                    self.texts.setdefault(index, []).append(text)
        if reason and not self.finish_reasons:
            self.finish_reasons[0] = str(reason)
        usage = _get(chunk, "usage")
        if usage is not None:
            self.usage = usage
        return True


_CHAT = ChatCompletions()  # its stream state takes the last non-null usage, as Together sends it
_COMPLETIONS = TogetherCompletions()
_EMBEDDINGS = Embeddings()

# Path suffix -> (operation, endpoint).
_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("/chat/completions", "chat", _CHAT),
    ("/completions", "text_completion", _COMPLETIONS),
    ("/embeddings", "embeddings", _EMBEDDINGS),
)


def _together(kind: Hashable, host: str | None, port: int | None) -> str:
    return TOGETHER


class TogetherAdapter:
    """Decides which together SDK requests are LLM calls and describes them."""

    def __init__(self) -> None:
        self._locate = Locator(_together)

    def plan(self, client: Any, options: Any, stream: bool, settings: Settings) -> Plan | NotRecorded | None:
        if options.method != "post":
            return NOT_RECORDED  # listings, retrievals, deletes: never a billed model call
        path = str(options.url).partition("?")[0]
        route = next((r for r in _ROUTES if path.endswith(r[0])), None)
        if route is None:  # rerank, images, audio, video and anything new: counted as unrecognised
            return NOT_RECORDED if any(part in path for part in _NOT_BILLED) else None
        _, operation, endpoint = route
        body = options.json_data
        if not isinstance(body, Mapping):
            return None
        provider, address, port = self._locate(None, client.base_url, settings.provider_hosts)
        model = body.get("model")
        request = RequestInfo(
            operation=operation,
            provider=provider,
            request_model=model if isinstance(model, str) else None,
            server_address=address,
            server_port=port,
            stream=stream,
            params=partial(request_params, body),  # read at the end, off the calling thread
        )
        if endpoint is _CHAT:
            request.input_estimate = partial(_input_estimate, body, request.request_model or "")
        if settings.content.enabled:
            if endpoint is _CHAT:
                request.input_messages = chat_input_messages(body.get("messages"))
            elif endpoint is _COMPLETIONS:
                prompt = body.get("prompt")
                parts = [{"type": "text", "content": prompt}] if isinstance(prompt, str) else []
                request.input_messages = [{"role": "user", "parts": parts}]
        return Plan(request=request, endpoint=endpoint, options=options)


def _input_estimate(body: Mapping[str, Any], model: str) -> tuple[int | None, float]:
    """An approximate input count when a budget asks (Together's open models have no offline tokenizer)."""
    tokens, _, margin, _ = input_tokens(TOGETHER, model, body.get("messages"), body.get("tools"))
    return tokens, margin


def patches() -> Instrumentation | None:
    """The patch set for the installed ``together`` SDK (2.x or 3.x), or None if it is not installed."""
    try:
        import together
        from together import _base_client, _response
    except ImportError:
        return None
    if not hasattr(_base_client, "SyncAPIClient"):
        return None  # together 1.x is not Stainless-generated: not instrumented
    sdk = SDK(
        name="together",
        sync_client=_base_client.SyncAPIClient,
        async_client=_base_client.AsyncAPIClient,
        stream_types=(together.Stream,),
        async_stream_types=(together.AsyncStream,),
        raw_response_types=(_response.APIResponse,),
        async_raw_response_types=(_response.AsyncAPIResponse,),
    )
    return Instrumentation(sdk, TogetherAdapter())
