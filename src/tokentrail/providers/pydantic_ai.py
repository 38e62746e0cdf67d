"""PydanticAI (``pydantic-ai-slim``, module ``pydantic_ai``): agent runs named and rolled up.

* **Agent runs.** ``Agent.iter`` is the one door every run goes through (``run``, ``run_sync`` and
  ``run_stream`` open it too), so it is wrapped: the run becomes an
  :class:`~tokentrail.providers._framework.AgentRun` (the roll-up span ``invoke_agent {name}``,
  whose calls carry ``gen_ai.agent.name``) from when the run is entered until it exits. The name is
  the agent's ``name``; PydanticAI infers a missing one from the caller's variable (done here, as
  PydanticAI does it, so the wrapper does not stand between the agent and its caller), else
  ``"agent"``, the name PydanticAI's own run span falls back to.
* **Model requests.** ``request`` / ``request_stream`` of every concrete model class (those that
  define them: ``OpenAIChatModel``, ``OpenAIResponsesModel``, ``AnthropicModel``, Google, Groq,
  ``FunctionModel``, ...; not the wrappers such as ``InstrumentedModel``, which call one of those)
  run inside a :class:`~tokentrail.providers._framework.ModelCall`. A request that reaches the
  provider through an instrumented SDK (openai, anthropic, ...) is counted there, named by the
  agent; otherwise it is reported from PydanticAI's own ``RequestUsage`` (input, output, cache
  read / write, reasoning and audio tokens; never its ``cost``: tokentrail prices the tokens).

PydanticAI's own OpenTelemetry instrumentation (``instrument=True``, ``Agent.instrument_all()``)
keeps working: its ``invoke_agent`` and ``chat {model}`` spans are its own, and its model-request
span carries ``gen_ai.usage.*`` too. tokentrail counts each request once, in its own span (a child
of PydanticAI's request span, carrying ``tokentrail.*`` attributes), its metrics and its ledger;
a backend that sums ``gen_ai.usage.*`` over every span would count PydanticAI's span as well.
Nothing is imported from PydanticAI until the application imports it (post-import hooks).
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

from .. import _safety
from .. import semconv as sc
from .._patching import HookedPatchSet, PatchSetOnce
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage
from ._framework import AgentRun, ModelCall

__all__ = ["Instrumentation", "patches", "provider_name", "request_info", "response_info", "usage_of"]

_AGENT_MODULE = "pydantic_ai.agent"
_MODELS_MODULE = "pydantic_ai.models"
# Where PydanticAI defines its model classes (across versions: a module or a package each); when
# one loads, every model class defined so far is looked for and wrapped.
_MODEL_MODULES = (
    _MODELS_MODULE,
    "pydantic_ai.models.openai",
    "pydantic_ai.models.anthropic",
    "pydantic_ai.models.google",
    "pydantic_ai.models.gemini",
    "pydantic_ai.models.groq",
    "pydantic_ai.models.mistral",
    "pydantic_ai.models.cohere",
    "pydantic_ai.models.bedrock",
    "pydantic_ai.models.huggingface",
    "pydantic_ai.models.openrouter",
    "pydantic_ai.models.function",
    "pydantic_ai.models.test",
)
_DEFAULT_AGENT_NAME = "agent"  # what PydanticAI's own run span is named after without a name
# PydanticAI's provider / system names -> gen_ai.provider.name; others are used as they are.
_PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "google-gla": "gcp.gemini",
    "google-vertex": "gcp.vertex_ai",
    "google": "gcp.gemini",
    "groq": "groq",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "bedrock": "aws.bedrock",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "grok": "x_ai",
    "ollama": "ollama",
    "together": "together_ai",
}
_DEFAULT_PROVIDER = "pydantic_ai"


# ---------------------------------------------------------------------------------------------
# Reading PydanticAI's objects (pure)
# ---------------------------------------------------------------------------------------------


def provider_name(system: Any) -> str:
    """``gen_ai.provider.name`` for a PydanticAI model's ``system`` / response's ``provider_name``."""
    if not isinstance(system, str) or not system:
        return _DEFAULT_PROVIDER
    return _PROVIDERS.get(system.lower(), system)


def request_info(model: Any, model_settings: Any, stream: bool) -> RequestInfo:
    """What one model request asks for: the model's name and system, the request's settings."""
    name = _text(getattr(model, "model_name", None))
    params: dict[str, Any] = {}
    settings = model_settings if isinstance(model_settings, Mapping) else {}
    temperature = settings.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        params[sc.REQUEST_TEMPERATURE] = float(temperature)
    max_tokens = settings.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        params[sc.REQUEST_MAX_TOKENS] = max_tokens
    return RequestInfo(
        operation="chat",
        provider=provider_name(getattr(model, "system", None)),
        request_model=name,
        stream=stream,
        params=params,
    )


def usage_of(usage: Any) -> Usage | None:
    """PydanticAI's ``RequestUsage`` in normal form (its ``input_tokens`` already includes cache
    reads and writes, its ``output_tokens`` the reasoning); None when it reports nothing."""
    if usage is None or not (getattr(usage, "input_tokens", 0) or getattr(usage, "output_tokens", 0)):
        return None
    reasoning = getattr(usage, "output_reasoning_tokens", None)
    if reasoning is None:  # older releases keep it only in the provider's details
        details = getattr(usage, "details", None)
        reasoning = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
    return Usage.of(
        input_tokens=getattr(usage, "input_tokens", None),
        output_tokens=getattr(usage, "output_tokens", None),
        cache_read_tokens=getattr(usage, "cache_read_tokens", None),
        cache_write_tokens=getattr(usage, "cache_write_tokens", None),
        cache_write_1h_tokens=getattr(usage, "cache_write_1h_tokens", None),
        reasoning_tokens=reasoning,
        input_audio_tokens=getattr(usage, "input_audio_tokens", None),
        output_audio_tokens=getattr(usage, "output_audio_tokens", None),
    )


def response_info(response: Any, usage: Any = None) -> ResponseInfo:
    """What a ``ModelResponse`` says (a stream's ``get()``; ``usage`` its ``usage()`` then)."""
    if response is None:
        return ResponseInfo(usage=usage_of(usage))
    reason = _text(getattr(response, "finish_reason", None))
    return ResponseInfo(
        response_model=_text(getattr(response, "model_name", None)),
        response_id=_text(getattr(response, "provider_response_id", None)),
        finish_reasons=(reason,) if reason else (),
        usage=usage_of(usage if usage is not None else getattr(response, "usage", None)),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: int, name: str) -> Any:
    return kwargs[name] if name in kwargs else args[position] if len(args) > position else None


# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------


class Instrumentation(HookedPatchSet):
    """Wraps ``Agent.iter`` and the model classes' requests, as their modules load.

    One instance per process; :meth:`remove` undoes every patch.
    """

    def __init__(self) -> None:
        super().__init__((_AGENT_MODULE, *_MODEL_MODULES))
        self._lock = threading.Lock()

    def remove(self) -> None:
        with self._lock:
            super().remove()

    def _on_import(self, _name: str, module: ModuleType) -> None:
        if not self._installed:
            return
        try:
            with self._lock:
                if module.__name__ == _AGENT_MODULE:
                    agent_class = getattr(module, "Agent", None)
                    if agent_class is not None and "iter" in vars(agent_class):
                        self._patch(agent_class, "iter", _on_iter)
                else:
                    self._patch_models(sys.modules.get(_MODELS_MODULE))
        except Exception as exc:
            _safety.internal_error("pydantic_ai.install", exc)

    def _patch_models(self, models: ModuleType | None) -> None:
        """Every concrete model class defined so far (wrappers call one of them: left alone)."""
        base = getattr(models, "Model", None)
        if base is None:
            return
        wrappers = tuple(
            cls
            for cls in (getattr(sys.modules.get("pydantic_ai.models.wrapper"), "WrapperModel", None),)
            if cls is not None
        )
        pending, seen = [base], set()
        while pending:
            cls = pending.pop()
            if cls in seen:
                continue
            seen.add(cls)
            pending.extend(cls.__subclasses__())
            if cls is base or (wrappers and issubclass(cls, wrappers)) or inspect.isabstract(cls):
                continue
            if "request" in vars(cls):
                self._patch(cls, "request", _on_request)
            if "request_stream" in vars(cls):
                self._patch(cls, "request_stream", _on_request_stream)

    def _patch(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        if not self._patches.patched(owner, name):
            self._patches.wrap(owner, name, wrapper)


# --- agent runs ----------------------------------------------------------------------------------


def _on_iter(wrapped: Callable[..., Any], agent: Any, args: Any, kwargs: Any) -> Any:
    try:
        # PydanticAI (from the releases that walk up past the frames holding the agent as `self`,
        # `_entry_point_caller`) names an unnamed agent after the variable of the frame that called
        # iter: this wrapper would be the frame it finds. Do it from here, as it would. (Older
        # releases look only at the frame right above iter's generator, contextlib's: unchanged.)
        if (
            kwargs.get("infer_name", True)
            and getattr(agent, "name", None) is None
            and hasattr(agent, "_entry_point_caller")
        ):
            infer = getattr(agent, "_infer_name", None)
            if callable(infer):
                infer(inspect.currentframe())
    except Exception as exc:
        _safety.internal_error("pydantic_ai.infer_name", exc)
    return _AgentIter(wrapped(*args, **kwargs), agent)


class _AgentIter:
    """``Agent.iter``'s context manager, inside the agent's run (entered and exited with it)."""

    __slots__ = ("_agent", "_inner", "_run")

    def __init__(self, inner: Any, agent: Any) -> None:
        self._inner = inner
        self._agent = agent
        self._run: AgentRun | None = None

    async def __aenter__(self) -> Any:
        try:
            name = getattr(self._agent, "name", None) or _DEFAULT_AGENT_NAME
            self._run = AgentRun(str(name)).open()
        except Exception as exc:
            _safety.internal_error("pydantic_ai.run_open", exc)
        try:
            return await self._inner.__aenter__()
        except BaseException as error:
            self._close(error)
            raise

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> Any:
        try:
            return await self._inner.__aexit__(exc_type, exc, traceback)
        finally:
            self._close(exc)

    def _close(self, error: BaseException | None) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.close(error)


# --- model requests --------------------------------------------------------------------------------


def _on_request(wrapped: Callable[..., Any], model: Any, args: Any, kwargs: Any) -> Any:
    """``Model.request``: a coroutine; the model call is opened when it runs."""
    return _request(wrapped(*args, **kwargs), model, args, kwargs)


async def _request(coroutine: Any, model: Any, args: Any, kwargs: Any) -> Any:
    call = ModelCall().open()
    try:
        response = await coroutine
    except Exception as error:
        call.close()
        _report(call, model, args, kwargs, False, None, None, error)
        raise
    except BaseException:
        call.close()
        raise
    call.close()
    _report(call, model, args, kwargs, False, response, None, None)
    return response


def _on_request_stream(wrapped: Callable[..., Any], model: Any, args: Any, kwargs: Any) -> Any:
    """``Model.request_stream``: an async context manager yielding the ``StreamedResponse``."""
    return _request_stream(wrapped(*args, **kwargs), model, args, kwargs)


@asynccontextmanager
async def _request_stream(inner: Any, model: Any, args: Any, kwargs: Any) -> AsyncIterator[Any]:
    call = ModelCall().open()
    streamed: Any = None
    error: BaseException | None = None
    try:
        async with inner as streamed:
            yield streamed
    except Exception as exc:
        error = exc
        raise
    finally:
        call.close()
        response = usage = None
        if streamed is not None and not call.covered:
            try:
                response, usage = streamed.get(), streamed.usage
                if callable(usage):  # a method in older releases, a property now
                    usage = usage()
            except Exception as exc:
                _safety.internal_error("pydantic_ai.stream_read", exc)
        if streamed is not None or error is not None:
            _report(call, model, args, kwargs, True, response, usage, error)


def _report(
    call: ModelCall,
    model: Any,
    args: Any,
    kwargs: Any,
    stream: bool,
    response: Any,
    usage: Any,
    error: BaseException | None,
) -> None:
    """The request from PydanticAI's own figures, unless a counted call inside covered it."""
    if call.covered:
        return
    try:
        # request(messages, model_settings, model_request_parameters[, run_context])
        request = request_info(model, _argument(args, kwargs, 1, "model_settings"), stream)
        info = None if error is not None else response_info(response, usage)
    except Exception as exc:
        _safety.internal_error("pydantic_ai.read", exc)
        return
    call.report(request, info, error)


# The patch set for PydanticAI, made once; None while ``pydantic_ai`` is not installed.
patches = PatchSetOnce("pydantic_ai", Instrumentation)
