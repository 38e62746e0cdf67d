"""The ``mistralai`` SDK (Speakeasy-generated, 2.x on httpx and 3.x on httpx2): Mistral's API.

Pure reading of SDK requests and responses; the call mechanics are the shared Speakeasy ones
(:mod:`._speakeasy`), at the SDK's one request method, so endpoints added later pass through too
(and, until read here, are counted as unrecognised). Mistral reports usage in OpenAI's
``CompletionUsage`` shape - ``prompt_tokens`` (with a ``prompt_tokens_details.cached_tokens``
subset the SDK's model keeps as an extra field), ``completion_tokens`` - so the OpenAI readers read
it. What is Mistral's own, handled here once:

* chat, FIM (``text_completion``) and agent completions have the chat completion's shape; a
  stream's usage comes on its last chunk, unasked (the SDK has no ``stream_options``): the last
  one seen is taken;
* an agent completion names no model in its request (``agent_id``): the span is named by the
  operation alone, carries ``gen_ai.agent.id``, and is priced at the model the response names;
* ``usage.service_tier`` (``standard``, ``priority``) selects no price (the catalogue has none);
* the SDK's own tracing hook (``TracingHook``; on for any global tracer provider in 2.x, opt-in
  through ``MISTRAL_SDK_TELEMETRY`` or ``configure_telemetry`` in 3.x) would make a second span
  with the same ``gen_ai.usage.*`` figures for every call. For the calls tokentrail records it is
  kept out (option ``mistral_native_spans="off"``, the default): its ``before_request`` is skipped
  for that call, so it starts no span and the rest of the hook finds none to end. ``keep`` leaves
  it alone; its span then nests under tokentrail's, without cost. Other operations (files,
  agents' management, OCR until read here) keep the SDK's spans;
* the provider is ``mistral_ai`` whatever the host (``provider_hosts`` can rename a gateway's).

Not read yet (counted as unrecognised): conversations, OCR, moderations, classifiers, audio; the
SDK's Azure and GCP clients (``mistralai.azure`` / ``mistralai.gcp``) are not patched.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import Any

from .. import semconv as sc
from .._patching import ClassPatches
from ..config import Settings
from ..lifecycle import active
from ..records import RequestInfo, ResponseInfo
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._estimate import input_tokens
from ._locate import Locator
from ._read import field as _get
from ._speakeasy import SDK, Instrumentation, LazyBody, json_body, leading_model, recording
from .openai import ChatCompletions, ChatStreamState, Embeddings, chat_input_messages, request_params

__all__ = ["MISTRAL", "MistralChat", "MistralStreamState", "patches"]

MISTRAL = "mistral_ai"
# Requests the SDK sends that are not billed model calls (listings, uploads, jobs, management).
_NOT_BILLED = ("/files", "/batch", "/fine_tuning", "/models", "/libraries", "/workflows", "/observability")


class MistralChat(ChatCompletions):
    """``/v1/chat/completions``, ``/v1/fim/completions``, ``/v1/agents/completions``."""

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> MistralStreamState:
        return MistralStreamState(False, False, request.input_messages is not None)


class MistralStreamState(ChatStreamState):
    """The SDK's ``CompletionEvent`` s: each carries a chat completion chunk as its ``data``."""

    __slots__ = ()

    def add(self, event: Any) -> bool:
        return ChatStreamState.add(self, event.data)  # per event: no super object

    def result(self) -> ResponseInfo:
        for parts in self.texts.values():  # a reasoning model streams lists of text and thinking chunks
            parts[:] = [p if isinstance(p, str) else "".join(_chunk_text(c) for c in p) for p in parts]
        return super().result()


def _chunk_text(chunk: Any) -> str:
    text = _get(chunk, "text")
    return text if isinstance(text, str) else ""


_CHAT = MistralChat()
_EMBEDDINGS = Embeddings()
# Path suffix -> (operation, endpoint); paths end the same whatever the server URL's prefix.
_ROUTES = (
    ("/chat/completions", "chat", _CHAT),
    ("/fim/completions", "text_completion", _CHAT),
    ("/agents/completions", "chat", _CHAT),
    ("/embeddings", "embeddings", _EMBEDDINGS),
)


def _mistral(kind: Hashable, host: str | None, port: int | None) -> str:
    return MISTRAL


class MistralAdapter:
    """Decides which mistralai SDK requests are LLM calls and describes them."""

    def __init__(self) -> None:
        self._locate = Locator(_mistral)

    def plan(
        self, sdk: Any, hook_ctx: Any, request: Any, stream: bool, settings: Settings
    ) -> Plan | NotRecorded | None:
        if request.method != "POST":
            return NOT_RECORDED  # listings, retrievals, deletes: never a billed model call
        path = request.url.path
        route = next((r for r in _ROUTES if path.endswith(r[0])), None)
        if route is None:  # conversations, OCR, audio and anything new: counted as unrecognised
            return NOT_RECORDED if any(part in path for part in _NOT_BILLED) else None
        _, operation, endpoint = route
        # The request model is needed now, the rest of the body (parameters, an estimate) later.
        model = None if settings.content.enabled else leading_model(request)
        if model is not None:
            body_of: Callable[[], Mapping[str, Any]] = LazyBody(request)
        else:
            body = json_body(request)
            if not isinstance(body, Mapping):
                return None
            model = body.get("model")
            body_of = partial(_same, body)
        base_url = hook_ctx.base_url or sdk.sdk_configuration.get_server_details()[0]
        provider, address, port = self._locate(None, base_url, settings.provider_hosts)
        request_info = RequestInfo(
            operation=operation,
            provider=provider,
            request_model=model if isinstance(model, str) else None,
            server_address=address,
            server_port=port,
            stream=stream,
            params=partial(_params, body_of),  # read at the end, off the calling thread
        )
        if endpoint is _CHAT:
            request_info.input_estimate = partial(_input_estimate, body_of, request_info.request_model or "")
            if settings.content.enabled:
                request_info.input_messages = chat_input_messages(body_of().get("messages"))
        return Plan(request=request_info, endpoint=endpoint)


def _same(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body


def _params(body_of: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
    body = body_of()
    params = request_params(body)
    params.pop(sc.OPENAI_REQUEST_SERVICE_TIER, None)  # Mistral's tiers are not OpenAI's
    seed = body.get("random_seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        params[sc.REQUEST_SEED] = seed
    agent = body.get("agent_id")
    if isinstance(agent, str):
        params[sc.AGENT_ID] = agent
    return params


def _input_estimate(body_of: Callable[[], Mapping[str, Any]], model: str) -> tuple[int | None, float]:
    """An approximate input count when a budget asks (no offline Mistral tokenizer here); none
    for a body without messages."""
    body = body_of()
    if "messages" not in body:
        return None, 0.0
    tokens, _, margin, _ = input_tokens(MISTRAL, model, body.get("messages"), body.get("tools"))
    return tokens, margin


def _without_native_span(wrapped: Any, hook: Any, args: Any, kwargs: Any) -> Any:
    """``TracingHook.before_request``: skipped for a call tokentrail records (``native_spans`` off)."""
    if recording() is not None and _native_spans_off():
        return args[1] if len(args) > 1 else kwargs["request"]  # the request, unchanged
    return wrapped(*args, **kwargs)


def _native_spans_off() -> bool:
    telemetry = active()
    return telemetry is not None and telemetry.settings.option("mistral", "native_spans") == "off"


def _tracing_hook(patches: ClassPatches) -> None:
    try:
        from mistralai.client._hooks.tracing import TracingHook
    except ImportError:  # a version without its own tracing: nothing to keep out
        return
    patches.wrap(TracingHook, "before_request", _without_native_span)


def patches() -> Instrumentation | None:
    """The patch set for the installed ``mistralai`` SDK, or None if it is not installed."""
    try:
        from mistralai.client import basesdk
        from mistralai.client.utils import eventstreaming
    except ImportError:
        return None
    sdk = SDK(
        name="mistralai",
        base_sdk=basesdk.BaseSDK,
        event_stream=eventstreaming.EventStream,
        async_event_stream=eventstreaming.EventStreamAsync,
    )
    return Instrumentation(sdk, MistralAdapter(), extra=_tracing_hook)
