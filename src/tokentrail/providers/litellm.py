"""LiteLLM: every call made through ``litellm.completion`` and its kin, counted once, by the right layer.

LiteLLM is one API over a hundred providers. Some it reaches through an SDK tokentrail patches
(``openai/...``, Azure, and the OpenAI-compatible providers it drives with the openai SDK); most
over its own HTTP clients (Bedrock, Vertex AI, Ollama, Anthropic, ...). Each public entry point is
wrapped in a framework model call (:class:`tokentrail.providers._framework.ModelCall`, the one
layering mechanism):

* through an instrumented SDK, that SDK's call is the one counted (it marks the LiteLLM call
  covered) and carries whatever names the application or an outer framework set (CrewAI's agent);
* over LiteLLM's own HTTP, LiteLLM's layer reports the call from LiteLLM's normalised usage, with
  LiteLLM's resolved provider as ``gen_ai.provider.name`` (mapped to the semantic conventions'
  names, even where a host mapping would say otherwise: a Bedrock endpoint URL of a proxy is still
  Bedrock). The cost is tokentrail's pricer's; LiteLLM's own ``response_cost`` never is.

Wrapped: ``completion``, ``acompletion``, ``text_completion``, ``atext_completion``,
``embedding``, ``aembedding``, ``responses``, ``aresponses`` on the ``litellm`` package (where
applications and LiteLLM's ``Router`` find them: the Router looks its endpoints up on the package
at call time) and in the modules that define them. One ModelCall per application call however
the wrappers nest (``acompletion`` running ``completion`` in a thread, a public dispatcher calling
the implementation, the Router calling the package functions): an inner wrapper in the same flow
passes straight through.

Requests: the request model is the model sent to the provider, without LiteLLM's routing prefix
(``ollama/llama3.1`` asks Ollama for ``llama3.1``; ``bedrock/converse/<id>`` asks Bedrock for
``<id>``), which is also what the price catalogue knows. The response model is what the provider
answered, likewise without LiteLLM's prefix.

Streams: LiteLLM returns a ``CustomStreamWrapper`` (or a Responses event iterator); the
application gets it behind a transparent proxy that watches the chunks go by. The usage is on the
last chunk when the application asked for it (``stream_options={"include_usage": True}``);
otherwise LiteLLM keeps the provider's final chunk, usage included, in the wrapper's ``chunks``
and that is read at the end. The model call's context marks are undone when ``completion()``
returns (a stream is consumed afterwards, in the caller's context); whether to report is decided
when the stream ends: exhausted, failed, closed or dropped, exactly once.

Nothing is imported from LiteLLM until the application imports it (LiteLLM takes seconds to
import): the patches are applied by a post-import hook. Tests and offline applications should set
``LITELLM_LOCAL_MODEL_COST_MAP=True`` so that LiteLLM's import does not fetch its cost map.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import ModuleType
from typing import Any

import wrapt

from .. import _safety
from .. import semconv as sc
from .._patching import HookedPatchSet, PatchSetOnce
from ..lifecycle import recording
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage
from ._framework import ModelCall, done_parsing_raw_streams, parsing_raw_streams
from ._locate import server_of

__all__ = [
    "Instrumentation",
    "patches",
    "provider_name",
    "request_info",
    "response_info",
    "usage_of",
]

# LiteLLM's provider (``custom_llm_provider``) -> gen_ai.provider.name: the conventions' names, and
# tokentrail's for the providers they do not name. Any other provider is used as LiteLLM names it.
_PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "chatgpt": "openai",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "anthropic_text": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_mantle": "aws.bedrock",
    "sagemaker": "aws.sagemaker",
    "sagemaker_chat": "aws.sagemaker",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "text-completion-codestral": "mistral_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
    "moonshot": "moonshot_ai",
    "watsonx": "ibm.watsonx.ai",
    "watsonx_text": "ibm.watsonx.ai",
    "lm_studio": "lm_studio",
    "hosted_vllm": "vllm",
    "vllm": "vllm",
}
_DEFAULT_PROVIDER = "litellm"

# Bedrock route prefixes LiteLLM strips before it sends the model id (``bedrock/converse/<id>``).
_ROUTE_PREFIXES = ("converse/", "invoke/", "converse_like/")

# (public function, gen_ai.operation.name, async). The functions LiteLLM's Router reaches too.
_ENTRY_POINTS: tuple[tuple[str, str, bool], ...] = (
    ("completion", "chat", False),
    ("acompletion", "chat", True),
    ("text_completion", "text_completion", False),
    ("atext_completion", "text_completion", True),
    ("embedding", "embeddings", False),
    ("aembedding", "embeddings", True),
    ("responses", "chat", False),
    ("aresponses", "chat", True),
)
# Where LiteLLM defines them (a release has some of these): wrapped when they are the same
# function as the package's, or the implementation a public dispatcher calls.
_DEFINING_MODULES = (
    "litellm.main",
    "litellm.responses.main",
    "litellm.chat_completions.dispatch",
    "litellm.embeddings.dispatch",
    "litellm.responses.dispatch",
)

# LiteLLM's ``metadata`` keys that name the caller -> attribution keys (an application or a
# framework over LiteLLM that passes these names its calls, under names set with tokentrail).
_METADATA_NAMES: Mapping[str, str] = {
    "agent": "agent",
    "agent_name": "agent",
    "agent_id": "agent_id",
    "task": "task",
    "session_id": "session",
}

# Set while a LiteLLM entry point runs: an entry point called inside another (the implementation
# behind a dispatcher, ``completion`` run in a thread by ``acompletion`` in a copy of this
# context) passes straight through, so one application call is one ModelCall.
_inside: ContextVar[bool] = ContextVar("tokentrail_litellm_inside", default=False)


# ---------------------------------------------------------------------------------------------
# Reading LiteLLM objects (pure)
# ---------------------------------------------------------------------------------------------


def provider_name(litellm_provider: Any) -> str:
    """``gen_ai.provider.name`` for LiteLLM's resolved provider (``custom_llm_provider``)."""
    if not isinstance(litellm_provider, str) or not litellm_provider:
        return _DEFAULT_PROVIDER
    return _PROVIDERS.get(litellm_provider.lower(), litellm_provider.lower())


def resolve(model: Any, kwargs: Mapping[str, Any], litellm: Any = None) -> tuple[str | None, str | None]:
    """(model sent to the provider, LiteLLM's provider) for a call's ``model`` and keywords.

    Asks LiteLLM's own ``get_llm_provider`` (the function its calls resolve with) when given the
    ``litellm`` module; else splits a ``provider/`` prefix."""
    if not isinstance(model, str) or not model:
        return None, _text(kwargs.get("custom_llm_provider"))
    provider = _text(kwargs.get("custom_llm_provider"))
    resolved = model
    get_llm_provider = getattr(litellm, "get_llm_provider", None)
    if get_llm_provider is not None:
        try:
            resolved, provider = get_llm_provider(
                model=model, custom_llm_provider=provider, api_base=_text(kwargs.get("api_base"))
            )[:2]
        except Exception:  # LiteLLM could not route it: the call itself will say so
            pass
    elif provider is None and "/" in model:
        provider, _, resolved = model.partition("/")
    if provider in ("bedrock", "bedrock_mantle"):
        for prefix in _ROUTE_PREFIXES:
            if resolved.startswith(prefix):
                resolved = resolved[len(prefix) :]
                break
    return resolved or None, provider


def request_info(
    operation: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], litellm: Any = None
) -> RequestInfo:
    """What a LiteLLM call asked for: the operation, provider, model sent and its parameters."""
    model = kwargs.get("model", args[0] if args else None)
    resolved, provider = resolve(model, kwargs, litellm)
    params: dict[str, Any] = {}
    for key, attribute in (
        ("temperature", sc.REQUEST_TEMPERATURE),
        ("top_p", sc.REQUEST_TOP_P),
    ):
        value = kwargs.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            params[attribute] = float(value)
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = kwargs.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            params[sc.REQUEST_MAX_TOKENS] = value
            break
    stop = kwargs.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list | tuple) and stop and all(isinstance(s, str) for s in stop):
        params[sc.REQUEST_STOP_SEQUENCES] = tuple(stop)
    api_base = _text(kwargs.get("api_base")) or _text(kwargs.get("base_url"))
    host, port = server_of(api_base) if api_base else (None, None)
    return RequestInfo(
        operation=operation,
        provider=provider_name(provider),
        request_model=resolved,
        server_address=host,
        server_port=port,
        stream=kwargs.get("stream") is True,
        params=params,
    )


def usage_of(usage: Any) -> Usage | None:
    """LiteLLM's normalised usage in the normal form; None when there is none.

    LiteLLM's ``prompt_tokens`` is the input TOTAL on every route (it adds Anthropic's and
    Bedrock's cache reads and writes to their uncached input); ``prompt_tokens_details``
    carries the cache read (``cached_tokens``) and write (``cache_creation_tokens``); Anthropic-
    shaped answers repeat them as ``cache_read_input_tokens`` / ``cache_creation_input_tokens``.
    ``completion_tokens_details.reasoning_tokens`` is part of ``completion_tokens``. Should a route
    ever hand over cache counts larger than the total they are part of, the total evidently left
    them out (the providers' own convention): they are added to it, so that parts never exceed
    their whole. Responses-API usage (``input_tokens`` / ``output_tokens``) reads the same way.
    LiteLLM's ``cost`` on the usage is its own estimate in streams, never a provider's bill: unused.
    """
    if usage is None:
        return None
    prompt = _get(usage, "prompt_tokens")
    completion = _get(usage, "completion_tokens")
    prompt_details = _get(usage, "prompt_tokens_details")
    completion_details = _get(usage, "completion_tokens_details")
    if prompt is None and completion is None:  # the Responses API's shape
        prompt = _get(usage, "input_tokens")
        completion = _get(usage, "output_tokens")
        prompt_details = _get(usage, "input_tokens_details")
        completion_details = _get(usage, "output_tokens_details")
    if prompt is None and completion is None:
        return None
    cache_read = _first(_get(prompt_details, "cached_tokens"), _get(usage, "cache_read_input_tokens"))
    cache_write = _first(
        _get(prompt_details, "cache_creation_tokens"),
        _get(prompt_details, "cache_write_tokens"),
        _get(usage, "cache_creation_input_tokens"),
    )
    write_details = _get(prompt_details, "cache_creation_token_details")
    cache_write_1h = _get(write_details, "ephemeral_1h_input_tokens")
    reasoning = _get(completion_details, "reasoning_tokens")
    if _count(prompt) and _count(cache_read, True) and _count(cache_write, True):
        cached = (cache_read or 0) + (cache_write or 0)
        if cached > prompt:
            prompt += cached
    if _count(completion) and _count(reasoning) and reasoning > completion:
        completion += reasoning
    return Usage.of(
        input_tokens=prompt,
        output_tokens=completion,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        reasoning_tokens=reasoning,
        input_audio_tokens=_get(prompt_details, "audio_tokens"),
        output_audio_tokens=_get(completion_details, "audio_tokens"),
        reported_total_tokens=_get(usage, "total_tokens"),
        total_check=False,  # Bedrock's own total, and LiteLLM's sum after it adds the cache
    )


def response_info(result: Any, provider: str | None = None) -> ResponseInfo:
    """What a LiteLLM response says: usage, response model, id and finish reasons.

    ``provider``: LiteLLM's provider name, whose routing prefix is taken off the response model
    (LiteLLM answers ``ollama/llama3.1`` for what Ollama called ``llama3.1``)."""
    reasons: list[str] = []
    for choice in _get(result, "choices") or ():
        reason = _text(_get(choice, "finish_reason"))
        if reason:
            reasons.append(reason)
    status = _text(_get(result, "status"))  # a Responses-API response
    if not reasons and status and _get(result, "output") is not None:
        reasons.append(status)
    return ResponseInfo(
        response_model=_unprefixed(_text(_get(result, "model")), provider),
        response_id=_text(_get(result, "id")),
        finish_reasons=tuple(reasons),
        usage=usage_of(_get(result, "usage")),
    )


def _unprefixed(model: str | None, provider: str | None) -> str | None:
    if model and provider and model.startswith(provider + "/"):
        return model[len(provider) + 1 :] or model
    return model


def _get(value: Any, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(name)
    try:
        return getattr(value, name, None)
    except Exception:  # a lazy pydantic field that fails to build: as if absent
        return None


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _count(value: Any, absent_ok: bool = False) -> bool:
    """A token count that arithmetic can use (``absent_ok``: or not reported)."""
    return (absent_ok and value is None) or (type(value) is int and value >= 0)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _names(kwargs: Mapping[str, Any]) -> dict[str, str]:
    """The attribution names a LiteLLM call carries itself (``metadata``, ``user``)."""
    names: dict[str, str] = {}
    metadata = kwargs.get("metadata")
    if isinstance(metadata, Mapping):
        for key, name in _METADATA_NAMES.items():
            value = metadata.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and name not in names:
                names[name] = str(value)
    user = kwargs.get("user")
    if isinstance(user, str) and user:
        names["user"] = user
    return names


# ---------------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------------


class _StreamState:
    """What a LiteLLM stream has told so far: the last usage, model, id and finish reasons."""

    __slots__ = ("model", "reasons", "response_id", "usage")

    def __init__(self) -> None:
        self.usage: Any = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.reasons: list[str] = []

    def add(self, item: Any) -> None:
        response = _get(item, "response")  # a Responses-API event: the final one has it all
        if response is not None and _get(response, "usage") is not None:
            self.usage = _get(response, "usage")
            self.model = _text(_get(response, "model")) or self.model
            self.response_id = _text(_get(response, "id")) or self.response_id
            status = _text(_get(response, "status"))
            if status:
                self.reasons.append(status)
            return
        usage = _get(item, "usage")
        if usage is not None:
            self.usage = usage
        self.model = self.model or _text(_get(item, "model"))
        self.response_id = self.response_id or _text(_get(item, "id"))
        for choice in _get(item, "choices") or ():
            reason = _text(_get(choice, "finish_reason"))
            if reason:
                self.reasons.append(reason)

    def result(self, stream: Any, provider: str | None) -> ResponseInfo:
        # LiteLLM's record of the provider's last chunk first: the chunks a text-completion stream
        # hands out carry a zeroed placeholder usage on some releases (1.100).
        kept = _kept_usage(stream)
        usage = kept if kept is not None else self.usage
        return ResponseInfo(
            response_model=_unprefixed(self.model, provider),
            response_id=self.response_id,
            finish_reasons=tuple(self.reasons),
            usage=usage_of(usage),
        )


def _kept_usage(stream: Any) -> Any:
    """The usage LiteLLM kept from the provider's last chunk when the application did not ask
    for it in the stream (``CustomStreamWrapper.chunks``; a text-completion stream wraps one)."""
    for owner in (stream, _get(stream, "completion_stream")):
        chunks = _get(owner, "chunks")
        if isinstance(chunks, list):
            for chunk in reversed(chunks):
                usage = _get(chunk, "usage")
                if usage is not None:
                    return usage
    return None


class _Report:
    """The deferred report of one streamed LiteLLM call: made once, when the stream ends."""

    __slots__ = ("args", "call", "ended", "kwargs", "operation", "state")

    def __init__(
        self, call: ModelCall, operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.call = call
        self.operation = operation
        self.args = args
        self.kwargs = kwargs
        self.state = _StreamState()
        self.ended = False

    def end(self, stream: Any, error: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            if self.call.covered:
                return  # an instrumented SDK's stream inside counted it
            request = request_info(self.operation, self.args, self.kwargs, sys.modules.get("litellm"))
            request.stream = True
            provider = _provider_of(stream, self.args, self.kwargs)
            self.call.report(request, self.state.result(stream, provider), error)
        except Exception as exc:
            _safety.internal_error("litellm.stream_end", exc)


class _FollowedStream(wrapt.ObjectProxy):  # type: ignore[misc]
    """LiteLLM's stream, unchanged for the application (every attribute passes through,
    ``isinstance`` holds), watched on the way: the call is reported when it ends."""

    def __init__(self, wrapped: Any, report: _Report) -> None:
        super().__init__(wrapped)
        self._self_report = report

    def __iter__(self) -> _FollowedStream:
        return self

    def __next__(self) -> Any:
        report = self._self_report
        try:
            item = self.__wrapped__.__next__()
        except StopIteration:
            report.end(self.__wrapped__)
            raise
        except BaseException as error:
            report.end(self.__wrapped__, error)
            raise
        _observe(report, item)
        return item

    def __aiter__(self) -> _FollowedStream:
        return self

    async def __anext__(self) -> Any:
        report = self._self_report
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            report.end(self.__wrapped__)
            raise
        except BaseException as error:
            report.end(self.__wrapped__, error)
            raise
        _observe(report, item)
        return item

    def close(self) -> Any:
        try:
            close = getattr(self.__wrapped__, "close", None)
            return close() if close is not None else None
        finally:
            self._self_report.end(self.__wrapped__)

    async def aclose(self) -> Any:
        try:
            aclose = getattr(self.__wrapped__, "aclose", None)
            return await aclose() if aclose is not None else None
        finally:
            self._self_report.end(self.__wrapped__)

    def __enter__(self) -> _FollowedStream:
        enter = getattr(self.__wrapped__, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__exit__", None)
            return exit_(*exc_info) if exit_ is not None else None
        finally:
            self._self_report.end(self.__wrapped__)

    async def __aenter__(self) -> _FollowedStream:
        enter = getattr(self.__wrapped__, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__aexit__", None)
            return await exit_(*exc_info) if exit_ is not None else None
        finally:
            self._self_report.end(self.__wrapped__)

    def __del__(self) -> None:  # dropped unfinished: what it told so far is reported now
        try:
            self._self_report.end(self.__wrapped__)
        except Exception:  # never raise from a finaliser (nor for a proxy whose __init__ failed)
            pass


def _observe(report: _Report, item: Any) -> None:
    try:
        report.state.add(item)
    except Exception as exc:
        _safety.internal_error("litellm.stream_item", exc)


def _is_stream(result: Any) -> bool:
    """A LiteLLM stream (chat, text or Responses): iterable, and not a response object."""
    cls = type(result)
    return (hasattr(cls, "__next__") or hasattr(cls, "__anext__")) and not hasattr(result, "choices")


# ---------------------------------------------------------------------------------------------
# The wrappers
# ---------------------------------------------------------------------------------------------


def _start(kwargs: Mapping[str, Any]) -> ModelCall | None:
    try:
        return ModelCall().open(_names(kwargs))
    except Exception as exc:
        _safety.internal_error("litellm.start", exc)
        return None


def _finish(
    call: ModelCall,
    operation: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    result: Any,
    error: BaseException | None,
) -> Any:
    """After the LiteLLM call returned (or raised): undo the context; report it, or follow its
    stream to report it at the stream's end. Returns what the application gets."""
    try:
        call.close()
        if error is None and inspect.isawaitable(result):
            return result  # completion(acompletion=True): the awaited call is the one followed
        if call.covered:
            return result  # an instrumented SDK call inside counted it
        if error is None and _is_stream(result):
            # Read when the stream ends, and only if no SDK inside counted it; the keywords are
            # copied now (the application may reuse its dict), the values are its own.
            return _FollowedStream(result, _Report(call, operation, args, dict(kwargs)))
        request = request_info(operation, args, kwargs, sys.modules.get("litellm"))
        response = response_info(result, _provider_of(result, args, kwargs)) if error is None else None
        call.report(request, response, error)
    except Exception as exc:
        _safety.internal_error("litellm.finish", exc)
    return result


def _provider_of(result: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    """LiteLLM's provider for a call: as its response says (``_hidden_params``), else as resolved."""
    hidden = _get(result, "_hidden_params")
    if isinstance(hidden, Mapping) and _text(hidden.get("custom_llm_provider")):
        return str(hidden["custom_llm_provider"])
    model = kwargs.get("model", args[0] if args else None)
    return resolve(model, kwargs, sys.modules.get("litellm"))[1]


def _not_a_model_call(kwargs: Mapping[str, Any]) -> bool:
    """LiteLLM's mocked calls (``mock_response=...``) reach no provider and bill nothing."""
    return kwargs.get("mock_response") is not None


def _sync_wrapper(operation: str) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _inside.get() or _not_a_model_call(kwargs) or recording() is None:
            return wrapped(*args, **kwargs)
        token = _inside.set(True)
        raw = parsing_raw_streams()
        try:
            call = _start(kwargs)
            if call is None:
                return wrapped(*args, **kwargs)
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as error:
                _finish(call, operation, args, kwargs, None, error)
                raise
            return _finish(call, operation, args, kwargs, result, None)
        finally:
            done_parsing_raw_streams(raw)
            _inside.reset(token)

    return wrapper


def _async_wrapper(operation: str) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _not_a_model_call(kwargs) or recording() is None:
            return wrapped(*args, **kwargs)
        return _run_async(wrapped, operation, args, kwargs)

    return wrapper


async def _run_async(
    wrapped: Callable[..., Any], operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # Runs in the awaiting task: the marks are set and undone in its context, and whether another
    # entry point is running is asked there too (``completion(acompletion=True)`` makes this
    # coroutine inside the sync entry point; it runs once the application awaits it).
    if _inside.get():
        return await wrapped(*args, **kwargs)
    token = _inside.set(True)
    raw = parsing_raw_streams()
    try:
        call = _start(kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as error:
            _finish(call, operation, args, kwargs, None, error)
            raise
        return _finish(call, operation, args, kwargs, result, None)
    finally:
        done_parsing_raw_streams(raw)
        _inside.reset(token)


# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------


class Instrumentation(HookedPatchSet):
    """Wraps LiteLLM's public entry points when ``litellm`` is imported (at once if it already
    is); :meth:`remove` puts the originals back."""

    def __init__(self) -> None:
        super().__init__(("litellm",))

    def _on_import(self, _name: str, litellm: ModuleType) -> None:
        if not self._installed:
            return
        try:
            self._patch_all(litellm)
        except Exception as exc:
            _safety.internal_error("litellm.install", exc)

    def _patch_all(self, litellm: ModuleType) -> None:
        modules = [litellm]
        # Defining modules are imported by ``litellm/__init__`` itself: only those already loaded.
        modules += [sys.modules[name] for name in _DEFINING_MODULES if name in sys.modules]
        for name, operation, is_async in _ENTRY_POINTS:
            wrapper = (_async_wrapper if is_async else _sync_wrapper)(operation)
            for module in modules:
                function = vars(module).get(name)
                if callable(function) and not self._patches.patched(module, name):
                    self._patches.wrap(module, name, wrapper)


# The patch set for LiteLLM, made once; None while ``litellm`` is not installed.
patches = PatchSetOnce("litellm", Instrumentation)
