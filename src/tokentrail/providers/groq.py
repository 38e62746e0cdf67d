"""The ``groq`` SDK (Stainless-generated): Groq's OpenAI-compatible API.

Pure reading of SDK objects; the call mechanics are the shared Stainless ones (:mod:`._stainless`).
Groq reports usage in OpenAI's ``CompletionUsage`` shape (``prompt_tokens`` with its cached
subset, ``completion_tokens`` with its reasoning subset), so the OpenAI readers read it. What is
Groq's own, handled here once:

* a stream carries its usage in the last chunk under ``x_groq.usage`` (``chunk.usage`` only when
  the application sent ``stream_options.include_usage`` through ``extra_body``): one source is
  taken, never both, so nothing is asked for and nothing is hidden from the application;
* ``x_groq.usage``'s ``dram_cached_tokens`` / ``sram_cached_tokens`` (non-streamed) are hardware
  cache statistics, not billing: ignored;
* ``service_tier`` (``on_demand``, ``flex``, ``performance``) is Groq's, not OpenAI's: it selects
  no price variant (the catalogue prices Groq's on-demand rates);
* the provider is Groq whatever the host (``provider_hosts`` can rename a gateway's host).

Compound systems' ``usage_breakdown`` (per-model usage inside one call) is not priced per model
yet: the call is priced at its own model on its top-level usage.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from functools import partial
from typing import Any

from ..config import Settings
from ..records import RequestInfo, ResponseInfo
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._estimate import input_tokens
from ._locate import Locator
from ._stainless import Instrumentation, installed_sdk
from .openai import ChatCompletions, ChatStreamState, Embeddings, chat_input_messages, request_params

__all__ = ["GROQ", "GroqChat", "GroqChatStreamState", "patches"]

GROQ = "groq"
# Path suffix -> (operation, endpoint): the SDK's paths are /openai/v1/...
_CHAT_PATH = "/chat/completions"
_EMBEDDINGS_PATH = "/embeddings"
# Requests the groq SDK sends that are not billed model calls.
_NOT_BILLED = ("/files", "/batches", "/models")


class GroqChat(ChatCompletions):
    """``/openai/v1/chat/completions``: OpenAI's shape, Groq's tiers and stream usage."""

    def response(self, parsed: Any, request: RequestInfo) -> ResponseInfo:
        return _without_openai_tier(super().response(parsed, request))

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> GroqChatStreamState:
        return GroqChatStreamState(False, False, request.input_messages is not None)


class GroqChatStreamState(ChatStreamState):
    """A chat stream whose usage may come as ``x_groq.usage`` on its last chunk."""

    __slots__ = ()

    def add(self, chunk: Any) -> bool:
        keep = ChatStreamState.add(self, chunk)  # not super(): a super object a chunk costs ~0.2 µs
        # x_groq.usage comes on the chunk with the finish reason (or one after it): not looked for
        # in the chunks before, which are most of the stream.
        if self.usage is None and (self.finish_reasons or not chunk.choices):
            x_groq = getattr(chunk, "x_groq", None)
            if x_groq is not None and x_groq.usage is not None:
                self.usage = x_groq.usage
                self.service_tier = getattr(chunk, "service_tier", None)
        return keep

    def result(self) -> ResponseInfo:
        return _without_openai_tier(super().result())


def _without_openai_tier(info: ResponseInfo) -> ResponseInfo:
    # OpenAI's readers took the tier as OpenAI's; Groq's names none of OpenAI's price variants.
    info.price_context = None
    info.attributes = None
    return info


_CHAT = GroqChat()
_EMBEDDINGS = Embeddings()


def _groq(kind: Hashable, host: str | None, port: int | None) -> str:
    return GROQ


class GroqAdapter:
    """Decides which groq SDK requests are LLM calls and describes them."""

    def __init__(self) -> None:
        self._locate = Locator(_groq)

    def plan(self, client: Any, options: Any, stream: bool, settings: Settings) -> Plan | NotRecorded | None:
        if options.method != "post":
            return NOT_RECORDED  # listings, retrievals, deletes: never a billed model call
        path = str(options.url).partition("?")[0]
        if path.endswith(_CHAT_PATH):
            operation, endpoint = "chat", _CHAT
        elif path.endswith(_EMBEDDINGS_PATH):
            operation, endpoint = "embeddings", _EMBEDDINGS
        else:  # audio (billed per second) and anything new: counted as unrecognised
            return NOT_RECORDED if any(part in path for part in _NOT_BILLED) else None
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
                request.input_messages = chat_input_messages(body.get("messages"))
        return Plan(request=request, endpoint=endpoint, options=options)


def _input_estimate(body: Mapping[str, Any], model: str) -> tuple[int | None, float]:
    """An approximate input count when a budget asks (Groq's open models have no offline tokenizer here)."""
    tokens, _, margin, _ = input_tokens(GROQ, model, body.get("messages"), body.get("tools"))
    return tokens, margin


def patches() -> Instrumentation | None:
    """The patch set for the installed ``groq`` SDK, or None if it is not installed."""
    sdk = installed_sdk("groq")
    return None if sdk is None else Instrumentation(sdk, GroqAdapter())
