"""The OpenAI Agents SDK (``openai-agents``, module ``agents``): agents named, runs rolled up.

Two seams, both the SDK's own public types:

* **Agent runs.** The runner opens one agent span (``agents.tracing.agent_span``) per agent it
  runs - at the start, and again for the next agent after each handoff - marks it current and
  finishes it when that agent is done. It does so whether tracing is on or off (off, the span is a
  ``NoOpSpan`` that still carries its ``AgentSpanData`` and is still made current), so
  ``Span.start`` / ``Span.finish`` of both span classes are wrapped: an agent span's start opens an
  :class:`~tokentrail.providers._framework.AgentRun` (the roll-up span ``invoke_agent {name}``,
  whose calls carry ``gen_ai.agent.name``), its finish closes it. A handoff therefore closes one
  agent's run and opens the next one's: its calls carry the new name. ``Runner.run``,
  ``run_sync`` and ``run_streamed`` all go through it; a streamed run's loop runs in a background
  task (a copy of the caller's context), so nothing it sets reaches the caller.
* **Model calls.** ``get_response`` / ``stream_response`` of the SDK's model classes
  (``OpenAIChatCompletionsModel``, ``OpenAIResponsesModel``, and the ``LitellmModel`` /
  ``AnyLLMModel`` extensions) run inside a :class:`~tokentrail.providers._framework.ModelCall`.
  When the model reaches the provider through the instrumented ``openai`` SDK (or LiteLLM's
  layer), that call is the one counted, named by the agent; otherwise (the openai layer off, a
  provider tokentrail does not patch) the call is reported from the SDK's own
  ``ModelResponse.usage`` (or the completed stream event's ``response.usage``). Model classes of
  the application's own are not wrapped: their SDK calls are still counted and named if the SDK
  underneath is instrumented.

The SDK's own tracing is left alone: its spans go to its trace processors as before, and
tokentrail never turns them into counted spans. Nothing is imported from the SDK until the
application imports it (post-import hooks).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from types import ModuleType
from typing import Any

from .. import _safety
from .. import semconv as sc
from .._patching import HookedPatchSet, PatchSetOnce
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage
from ._framework import AgentRun, ModelCall

__all__ = ["Instrumentation", "patches", "request_info", "response_info", "stream_response_info", "usage_of"]

# The span classes whose agent spans become agent runs (tracing on: SpanImpl; off: NoOpSpan).
_SPANS_MODULE = "agents.tracing.spans"
_SPAN_CLASSES = ("SpanImpl", "NoOpSpan")
# The SDK's model classes: module -> (class, provider of its calls when it names none itself).
_MODEL_CLASSES: Mapping[str, tuple[str, str | None]] = {
    "agents.models.openai_chatcompletions": ("OpenAIChatCompletionsModel", "openai"),
    "agents.models.openai_responses": ("OpenAIResponsesModel", "openai"),
    "agents.extensions.models.litellm_model": ("LitellmModel", None),
    "agents.extensions.models.any_llm_model": ("AnyLLMModel", None),
}
# LiteLLM / any-llm model prefixes ("anthropic/claude-...") -> gen_ai.provider.name.
_PREFIX_PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "groq": "groq",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "ollama": "ollama",
    "together_ai": "together_ai",
}
_DEFAULT_PROVIDER = "openai_agents"
# The id the SDK gives the Response it builds from a chat-completions stream (no real one).
_FAKE_RESPONSE_ID = "__fake_id__"
_COMPLETED_EVENTS = frozenset({"response.completed", "response.incomplete"})


# ---------------------------------------------------------------------------------------------
# Reading the SDK's objects (pure)
# ---------------------------------------------------------------------------------------------


def request_info(model: Any, model_settings: Any, provider: str | None, stream: bool) -> RequestInfo:
    """What one model call asks for: the model object's name, the run's model settings."""
    name = getattr(model, "model", None)
    name = name if isinstance(name, str) and name else None
    request_model = name
    if provider is None:
        # "anthropic/claude-sonnet-4-5": the prefix names the provider, the rest the model.
        prefix, _, rest = (name or "").partition("/")
        if rest:
            provider, request_model = _PREFIX_PROVIDERS.get(prefix, prefix), rest
        else:
            provider = _DEFAULT_PROVIDER
    params: dict[str, Any] = {}
    temperature = getattr(model_settings, "temperature", None)
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        params[sc.REQUEST_TEMPERATURE] = float(temperature)
    max_tokens = getattr(model_settings, "max_tokens", None)
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        params[sc.REQUEST_MAX_TOKENS] = max_tokens
    return RequestInfo(
        operation="chat", provider=provider, request_model=request_model, stream=stream, params=params
    )


def usage_of(usage: Any) -> Usage | None:
    """The SDK's ``Usage`` (or the Responses API's ``ResponseUsage``: the same names) in normal
    form; None when the model reported nothing (no request counted, no tokens)."""
    if usage is None:
        return None
    if not getattr(usage, "requests", 1) and not getattr(usage, "total_tokens", 0):
        return None
    # Plain attribute reads: the SDK's Usage is a pydantic *dataclass*, the shared pydantic-model
    # reader (openai.responses_usage) does not apply. input_tokens includes the cached tokens,
    # output_tokens the reasoning: OpenAI's meaning, which is the normal form's.
    input_details = getattr(usage, "input_tokens_details", None)
    output_details = getattr(usage, "output_tokens_details", None)
    return Usage.of(
        input_tokens=getattr(usage, "input_tokens", None),
        output_tokens=getattr(usage, "output_tokens", None),
        cache_read_tokens=getattr(input_details, "cached_tokens", None),
        reasoning_tokens=getattr(output_details, "reasoning_tokens", None),
        reported_total_tokens=getattr(usage, "total_tokens", None),
    )


def response_info(response: Any) -> ResponseInfo:
    """What a ``ModelResponse`` says: its usage and response id (it names no model)."""
    response_id = getattr(response, "response_id", None)
    return ResponseInfo(
        response_id=response_id if isinstance(response_id, str) else None,
        usage=usage_of(getattr(response, "usage", None)),
    )


def stream_response_info(completed: Any) -> ResponseInfo:
    """What the ``Response`` of a stream's completed event says."""
    if completed is None:
        return ResponseInfo()
    model = getattr(completed, "model", None)
    response_id = getattr(completed, "id", None)
    if response_id == _FAKE_RESPONSE_ID:
        response_id = None
    return ResponseInfo(
        response_model=model if isinstance(model, str) and model else None,
        response_id=response_id if isinstance(response_id, str) and response_id else None,
        usage=usage_of(getattr(completed, "usage", None)),
    )


def _argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: int, name: str) -> Any:
    return kwargs[name] if name in kwargs else args[position] if len(args) > position else None


# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------


class Instrumentation(HookedPatchSet):
    """Wraps the agent spans' start / finish and the model classes' calls, as their modules load.

    One instance per process; :meth:`remove` undoes every patch (agent runs already open are
    closed by the finish of their span only while installed).
    """

    def __init__(self) -> None:
        super().__init__((_SPANS_MODULE, *_MODEL_CLASSES))
        # id(agent span) -> (the span, its run): spans have __slots__ and no weak references.
        self._agent_runs: dict[int, tuple[Any, AgentRun]] = {}
        self._lock = threading.Lock()

    def remove(self) -> None:
        super().remove()
        with self._lock:  # their spans' finish is no longer seen: end them now
            runs, self._agent_runs = list(self._agent_runs.values()), {}
        for _, run in runs:
            run.close()

    def _on_import(self, _name: str, module: ModuleType) -> None:
        if not self._installed:
            return
        try:
            if module.__name__ == _SPANS_MODULE:
                for class_name in _SPAN_CLASSES:
                    span_class = getattr(module, class_name, None)
                    if span_class is not None:
                        self._patch(span_class, "start", self._on_span_start)
                        self._patch(span_class, "finish", self._on_span_finish)
                return
            class_name, provider = _MODEL_CLASSES[module.__name__]
            model_class = getattr(module, class_name, None)
            if model_class is not None:
                self._patch(model_class, "get_response", _response_wrapper(provider))
                self._patch(model_class, "stream_response", _stream_wrapper(provider))
        except Exception as exc:
            _safety.internal_error("openai_agents.install", exc)

    def _patch(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        if name in vars(owner) and not self._patches.patched(owner, name):
            self._patches.wrap(owner, name, wrapper)

    # --- agent spans -> agent runs ----------------------------------------------------------

    def _on_span_start(self, wrapped: Callable[..., Any], span: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        try:
            current = _argument(args, kwargs, 0, "mark_as_current")
            data = span.span_data
            # Only a span made current names what runs inside it (the runner's are).
            if current and getattr(data, "type", None) == "agent":
                with self._lock:
                    if id(span) in self._agent_runs:
                        return result  # started twice: the SDK ignores it, so do we
                    run = AgentRun(str(getattr(data, "name", "") or "agent"))
                    # The entry holds the span: its id cannot be reused while the run is open.
                    self._agent_runs[id(span)] = (span, run)
                run.open()
        except Exception as exc:
            _safety.internal_error("openai_agents.span_start", exc)
        return result

    def _on_span_finish(self, wrapped: Callable[..., Any], span: Any, args: Any, kwargs: Any) -> Any:
        try:
            with self._lock:
                entry = self._agent_runs.pop(id(span), None)
            if entry is not None:
                entry[1].close(_span_error(span))
        except Exception as exc:
            _safety.internal_error("openai_agents.span_finish", exc)
        return wrapped(*args, **kwargs)


class _AgentError(Exception):
    """An agent span's error (the SDK records a message, not the exception) for the roll-up span."""


def _span_error(span: Any) -> BaseException | None:
    error = getattr(span, "error", None)
    if not error:
        return None
    message = error.get("message") if isinstance(error, Mapping) else None
    return _AgentError(message if isinstance(message, str) and message else "agent run failed")


# --- model calls ---------------------------------------------------------------------------------


def _response_wrapper(provider: str | None) -> Callable[..., Any]:
    """``Model.get_response``: a coroutine; the model call is opened when it runs."""

    def wrapper(wrapped: Callable[..., Any], model: Any, args: Any, kwargs: Any) -> Any:
        return _get_response(wrapped(*args, **kwargs), model, args, kwargs, provider)

    return wrapper


async def _get_response(coroutine: Any, model: Any, args: Any, kwargs: Any, provider: str | None) -> Any:
    call = ModelCall().open()
    try:
        response = await coroutine
    except Exception as error:
        call.close()
        _report(call, model, args, kwargs, provider, False, None, error)
        raise
    except BaseException:
        call.close()  # cancelled: the SDK call inside (if any) ended it; nothing to report
        raise
    call.close()
    _report(call, model, args, kwargs, provider, False, response, None)
    return response


def _stream_wrapper(provider: str | None) -> Callable[..., Any]:
    """``Model.stream_response``: an async generator; the model call spans its iteration."""

    def wrapper(wrapped: Callable[..., Any], model: Any, args: Any, kwargs: Any) -> Any:
        return _stream_response(wrapped(*args, **kwargs), model, args, kwargs, provider)

    return wrapper


async def _stream_response(
    stream: AsyncIterator[Any], model: Any, args: Any, kwargs: Any, provider: str | None
) -> AsyncIterator[Any]:
    call = ModelCall().open()
    completed: Any = None
    error: BaseException | None = None
    try:
        async with aclosing(stream) as events:  # type: ignore[type-var]
            async for event in events:
                if getattr(event, "type", None) in _COMPLETED_EVENTS:
                    completed = getattr(event, "response", None)
                yield event
    except Exception as exc:
        error = exc
        raise
    finally:
        call.close()
        if error is not None or completed is not None:
            _report(call, model, args, kwargs, provider, True, completed, error)


def _report(
    call: ModelCall,
    model: Any,
    args: Any,
    kwargs: Any,
    provider: str | None,
    stream: bool,
    result: Any,
    error: BaseException | None,
) -> None:
    """The call from the SDK's own figures, unless a counted call inside covered it."""
    if call.covered:
        return
    try:
        # get_response(system_instructions, input, model_settings, ...): the same for streams.
        settings = _argument(args, kwargs, 2, "model_settings")
        request = request_info(model, settings, provider, stream)
        if error is not None:
            response = None
        elif stream:
            response = stream_response_info(result)
        else:
            response = response_info(result)
    except Exception as exc:
        _safety.internal_error("openai_agents.read", exc)
        return
    call.report(request, response, error)


# The patch set for the OpenAI Agents SDK, made once; None while it is not installed (``agents`` is a
# common import name: the ``openai-agents`` distribution must be the one installed).
patches = PatchSetOnce("agents", Instrumentation, distribution="openai-agents")
