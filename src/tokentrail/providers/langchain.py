"""LangChain and LangGraph: the usage of any chat model or LLM, and the graph as the parent of its calls.

One callback handler reaches every LangChain run without user code: ``instrument()`` wraps
``BaseCallbackManager.__init__`` so that every ``CallbackManager`` / ``AsyncCallbackManager``
carries it as an inheritable handler. A run's manager comes from ``CallbackManager.configure``,
its children's from ``get_child`` (a new manager given the parent's inheritable handlers), and
``copy`` / ``merge`` build new ones too, so every run has it, LangGraph's included (LangGraph's own
graph-event managers, for interrupts and resumes, are left alone).

* **LLM runs.** If tokentrail instruments the SDK underneath (ChatOpenAI over ``openai``), that
  SDK call is the one counted: the run is opened as a framework model call
  (:class:`tokentrail.providers._framework.ModelCall`, the layering every framework shares), the
  SDK call marks it covered, and the handler records nothing. Otherwise (a third-party model, a
  fake, an SDK we do not patch) the handler reports the call after the fact from
  ``AIMessage.usage_metadata`` (or the ``llm_output["token_usage"]`` of older integrations),
  provider and model from the run's ``ls_*`` metadata.
* **Scopes.** The top-level run and each LangGraph node open a roll-up span, so the calls made in
  a node nest under it and add up on it and on the graph, and the node's name becomes
  ``gen_ai.agent.name`` unless the application named an agent itself.

Context, and why it is not pushed at chain start and popped at chain end: LangChain ends async
runs in a copy of the context (``on_chain_end`` and ``on_llm_end`` are shielded tasks), so a value
set when a run starts could never be reset and would leak into the caller - the next node, or the
application after ``await graph.ainvoke()``. Instead a scope is entered only into the contexts
LangChain and LangGraph create for a run's steps (``_set_config_context``, the same place
LangSmith sets its parent run), which die with them; that also covers SDK calls made directly
in a node. As a fallback an LLM run enters its scope at its own start. Node and graph spans
get their parent explicitly from the run tree.

The handler runs inline (``run_inline``) so that what it sets lands in the caller's context, and
it never raises into the application (``raise_error`` is False, every method is guarded).
Nothing is imported from LangChain until the application imports it (LangChain takes hundreds
of milliseconds to import): the patches are applied by post-import hooks.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace

from .. import _safety
from .. import semconv as sc
from .._patching import HookedPatchSet, PatchSetOnce
from ..context import (
    MAX_VALUE_LENGTH,
    Attribution,
    baggage_enabled,
    current_attribution,
    current_framework_llm_run,
    enter_attribution,
    exit_attribution,
    with_baggage,
)
from ..lifecycle import Unit, recording, start_unit
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage
from ._framework import ModelCall
from .openai import chat_usage

__all__ = [
    "Instrumentation",
    "TokentrailCallbackHandler",
    "patches",
    "provider_name",
    "request_info",
    "response_info",
    "usage_of",
]

F = TypeVar("F", bound=Callable[..., Any])

# LangChain's ls_provider -> gen_ai.provider.name; any other value is used as it is.
_PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "google_genai": "gcp.gemini",
    "google_vertexai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "xai": "x_ai",
    "groq": "groq",
    "mistralai": "mistral_ai",
    "deepseek": "deepseek",
    "ollama": "ollama",
}
_DEFAULT_PROVIDER = "langchain"
_MODEL_KEYS = ("model", "model_name", "model_id")
_GRAPH_STEP_TAG = "graph:step:"  # LangGraph tags the run of a node (only) with graph:step:<n>
# LangGraph's own entry step (``START``): LangGraph before 0.3 runs it as a tagged node too; it is no agent.
_GRAPH_START_NODE = "__start__"


# ---------------------------------------------------------------------------------------------
# Reading LangChain objects (pure)
# ---------------------------------------------------------------------------------------------


def provider_name(ls_provider: Any) -> str:
    """``gen_ai.provider.name`` for LangChain's ``ls_provider`` metadata value."""
    if not isinstance(ls_provider, str) or not ls_provider:
        return _DEFAULT_PROVIDER
    return _PROVIDERS.get(ls_provider.lower(), ls_provider)


def request_info(
    operation: str, metadata: Mapping[str, Any], invocation_params: Mapping[str, Any], streamed: bool
) -> RequestInfo:
    """What an LLM run asked for, from its ``ls_*`` metadata and invocation parameters."""
    model = _text(metadata.get("ls_model_name"))
    for key in _MODEL_KEYS:
        model = model or _text(invocation_params.get(key))
    params: dict[str, Any] = {}
    temperature = metadata.get("ls_temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        params[sc.REQUEST_TEMPERATURE] = float(temperature)
    max_tokens = metadata.get("ls_max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        params[sc.REQUEST_MAX_TOKENS] = max_tokens
    stop = metadata.get("ls_stop")
    if isinstance(stop, list | tuple) and stop and all(isinstance(s, str) for s in stop):
        params[sc.REQUEST_STOP_SEQUENCES] = tuple(stop)
    return RequestInfo(
        operation=operation,
        provider=provider_name(metadata.get("ls_provider")),
        request_model=model,
        stream=streamed or invocation_params.get("stream") is True,
        params=params,
    )


def usage_of(result: Any) -> Usage | None:
    """The usage of an ``LLMResult``: the first message's ``usage_metadata``, else ``token_usage``.

    Only the first message counts: with ``n > 1`` integrations put the response's usage on every
    generation, and LangChain reports each prompt of a batch as its own run.
    """
    for generations in getattr(result, "generations", None) or ():
        for generation in generations:
            metadata = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if metadata:
                return usage_from_metadata(metadata)
    llm_output = getattr(result, "llm_output", None)
    token_usage = llm_output.get("token_usage") if isinstance(llm_output, Mapping) else None
    if isinstance(token_usage, Mapping) and token_usage:
        if "input_tokens" in token_usage:
            return usage_from_metadata(token_usage)
        return chat_usage(token_usage)  # the OpenAI shape: prompt_tokens, completion_tokens, ...
    return None


def usage_from_metadata(metadata: Mapping[str, Any]) -> Usage:
    """LangChain's ``UsageMetadata``: ``input_tokens`` already includes cache reads and writes."""
    input_details = _mapping(metadata.get("input_token_details"))
    output_details = _mapping(metadata.get("output_token_details"))
    return Usage.of(
        input_tokens=metadata.get("input_tokens"),
        output_tokens=metadata.get("output_tokens"),
        cache_read_tokens=input_details.get("cache_read"),
        cache_write_tokens=input_details.get("cache_creation"),
        input_audio_tokens=input_details.get("audio"),
        reasoning_tokens=output_details.get("reasoning"),
        output_audio_tokens=output_details.get("audio"),
        reported_total_tokens=metadata.get("total_tokens"),
    )


def response_info(result: Any) -> ResponseInfo:
    """What came back in an ``LLMResult``: usage, response model, id and finish reasons."""
    model = response_id = None
    finish_reasons: list[str] = []
    for generations in getattr(result, "generations", None) or ():
        for generation in generations:
            metadata = _mapping(getattr(getattr(generation, "message", None), "response_metadata", None))
            info = _mapping(getattr(generation, "generation_info", None))
            model = model or _text(metadata.get("model_name")) or _text(metadata.get("model"))
            response_id = response_id or _text(metadata.get("id"))
            reason = _text(metadata.get("finish_reason") or metadata.get("stop_reason"))
            reason = reason or _text(info.get("finish_reason"))
            if reason:
                finish_reasons.append(reason)
    llm_output = getattr(result, "llm_output", None)
    if model is None and isinstance(llm_output, Mapping):
        model = _text(llm_output.get("model_name")) or _text(llm_output.get("model"))
    return ResponseInfo(
        response_model=model,
        response_id=response_id,
        finish_reasons=tuple(finish_reasons),
        usage=usage_of(result),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_control_flow(error: BaseException) -> bool:
    """LangGraph's interrupts and parent commands travel as exceptions; they are not failures."""
    return any(cls.__name__ == "GraphBubbleUp" for cls in type(error).__mro__)


# ---------------------------------------------------------------------------------------------
# The callback handler
# ---------------------------------------------------------------------------------------------


def _guarded(function: F) -> F:
    """A handler method that never raises into LangChain (and so into the application)."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception as exc:
            _safety.internal_error(f"langchain.{function.__name__}", exc)

    return guarded  # type: ignore[return-value]


@dataclass(slots=True, eq=False)
class _Scope:
    """A graph's or node's roll-up span, and what its steps run with."""

    unit: Unit
    attribution: Attribution
    """The attribution of the calls inside: the enclosing one, the agent, the roll-ups."""
    otel_context: otel_context.Context
    """The span to parent what runs inside (and the attribution as baggage, when enabled)."""
    node_agent: str | None
    """The agent a node set in this scope (a node may replace it, never the application's)."""


# What a scope entered into a context: undone when that context is the current one again.
_Entered = tuple[Token[Attribution], object]


@dataclass(slots=True, eq=False)
class _Batch:
    """The framework model call shared by the LLM runs of one ``generate()`` call.

    LangChain starts every prompt of a batch before it runs any of them, so their SDK calls can
    only mark whichever framework run is current: the runs of one batch share it.
    """

    call: ModelCall
    parent_run_id: UUID | None
    open_runs: int = 1


@dataclass(slots=True, eq=False)
class _LLMRun:
    started_at: float
    operation: str
    metadata: Mapping[str, Any]
    invocation_params: Mapping[str, Any]
    batch: _Batch
    entered: _Entered | None
    attribution: Attribution
    """Attribution and span at the start: a call reported at the end is reported as of then."""
    otel_context: otel_context.Context
    streamed: bool = False


class TokentrailCallbackHandler:
    """Records the LangChain LLM runs no instrumented SDK saw, and opens graph and node spans.

    Mixed with LangChain's ``BaseCallbackHandler`` when LangChain is imported, and added to every
    callback manager by :class:`Instrumentation`: there is no need to pass it in ``callbacks=``.
    """

    run_inline = True  # what we set must land in the caller's context, not in a copy
    raise_error = False

    def __init__(self) -> None:
        self.enabled = False
        self._owners: dict[UUID, _Scope] = {}  # open chain / tool / retriever run -> nearest scope
        self._scopes: dict[UUID, _Scope] = {}  # the runs that opened a scope
        self._llm_runs: dict[UUID, _LLMRun] = {}
        self._batches: dict[int, _Batch] = {}  # id(framework run) -> its batch
        self._lock = threading.Lock()

    # LangChain copies configs and handler lists: there must stay one handler and one state.
    def __copy__(self) -> TokentrailCallbackHandler:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokentrailCallbackHandler:
        return self

    @property
    def ignore_retry(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True

    # --- chain runs: the graph and its nodes -----------------------------------------------

    @_guarded
    def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.enabled or recording() is None:
            return
        owner = self._owners.get(parent_run_id) if parent_run_id is not None else None
        name = kwargs.get("name")
        name = name[:MAX_VALUE_LENGTH] if isinstance(name, str) and name else None
        node = name is not None and _is_node_run(name, tags, metadata)
        # A run of ours whose parent we never saw is a top-level run: it is the root.
        if owner is None or node:
            scope = self._open_scope(name or "langchain", node, owner)
            if scope is not None:
                self._scopes[run_id] = owner = scope
        if owner is not None:
            self._owners[run_id] = owner

    @_guarded
    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id, None)

    @_guarded
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id, None if _is_control_flow(error) else error)

    # Tools and retrievers open no scope; they are followed so that the runs inside find theirs.
    @_guarded
    def on_tool_start(
        self,
        serialized: Any,
        input_str: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._follow(run_id, parent_run_id)

    @_guarded
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._owners.pop(run_id, None)

    @_guarded
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._owners.pop(run_id, None)

    @_guarded
    def on_retriever_start(
        self, serialized: Any, query: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._follow(run_id, parent_run_id)

    @_guarded
    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._owners.pop(run_id, None)

    @_guarded
    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._owners.pop(run_id, None)

    def enter_child_context(self, config: Any) -> None:
        """LangChain made the context a run's steps run in: enter the run's scope into it.

        That context is the steps' own and dies with them, so nothing needs undoing.
        """
        if not self.enabled:
            return
        callbacks = config.get("callbacks") if isinstance(config, Mapping) else None
        parent_run_id = getattr(callbacks, "parent_run_id", None)
        owner = self._owners.get(parent_run_id) if parent_run_id is not None else None
        if owner is not None:
            _enter(owner)

    def _follow(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        owner = self._owners.get(parent_run_id) if parent_run_id is not None else None
        if owner is not None:
            self._owners[run_id] = owner

    def _end_run(self, run_id: UUID, error: BaseException | None) -> None:
        self._owners.pop(run_id, None)
        scope = self._scopes.pop(run_id, None)
        if scope is not None:
            scope.unit.end(error)

    def _open_scope(self, name: str, node: bool, owner: _Scope | None) -> _Scope | None:
        ambient = current_attribution()
        parent, parent_context = ambient, None
        if owner is not None and owner.unit.rollup not in ambient.rollups:
            # Started outside its parent's steps (LangGraph starts nodes from its loop): take the
            # parent from the run tree. Inside them, what the application set there counts too.
            parent, parent_context = owner.attribution, owner.otel_context
        node_agent = owner.node_agent if owner is not None else None
        values = dict(parent.values)
        if node and values.get("agent") in (None, node_agent):
            values["agent"] = node_agent = name
        attribution = Attribution.of(values, parent.rollups)
        token = otel_context.attach(parent_context) if parent_context is not None else None
        try:
            unit = start_unit(name, attribution.span_attributes)
        finally:
            if token is not None:
                otel_context.detach(token)
        if unit is None:
            return None
        context = trace.set_span_in_context(unit.span, parent_context)
        if baggage_enabled():
            context = with_baggage(values, context)
        attribution = Attribution.of(values, (*parent.rollups, unit.rollup))
        return _Scope(unit, attribution, context, node_agent)

    # --- LLM runs ---------------------------------------------------------------------------

    @_guarded
    def on_chat_model_start(
        self,
        serialized: Any,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_llm("chat", run_id, parent_run_id, metadata, kwargs)

    @_guarded
    def on_llm_start(
        self,
        serialized: Any,
        prompts: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_llm("text_completion", run_id, parent_run_id, metadata, kwargs)

    @_guarded
    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._llm_runs.get(run_id)
        if run is not None:
            run.streamed = True

    @_guarded
    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_llm(run_id, response, None)

    @_guarded
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_llm(run_id, kwargs.get("response"), error)

    def _start_llm(
        self,
        operation: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        if not self.enabled or recording() is None:
            return
        started_at = time.time()
        owner = self._owners.get(parent_run_id) if parent_run_id is not None else None
        entered = _enter(owner) if owner is not None else None  # the SDK call runs in this context
        batch_size = kwargs.get("batch_size")
        with self._lock:
            current = current_framework_llm_run()
            sibling = self._batches.get(id(current)) if current is not None else None
            in_batch = isinstance(batch_size, int) and batch_size > 1
            if in_batch and sibling is not None and sibling.parent_run_id == parent_run_id:
                sibling.open_runs += 1
                batch = sibling
            else:
                call = ModelCall().open()
                batch = self._batches[id(call.run)] = _Batch(call, parent_run_id)
        invocation_params = kwargs.get("invocation_params")
        self._llm_runs[run_id] = _LLMRun(
            started_at,
            operation,
            metadata or {},
            invocation_params if isinstance(invocation_params, Mapping) else {},
            batch,
            entered,
            current_attribution(),
            otel_context.get_current(),
        )

    def _end_llm(self, run_id: UUID, response: Any, error: BaseException | None) -> None:
        run = self._llm_runs.pop(run_id, None)
        if run is None:
            return
        self._release(run)
        call = run.batch.call
        if call.covered:
            return  # an instrumented SDK call inside already counted it
        request = request_info(run.operation, run.metadata, run.invocation_params, run.streamed)
        call.report(
            request,
            response_info(response) if error is None or response is not None else None,
            error,
            started_at=run.started_at,
            attribution=run.attribution,
            parent_context=run.otel_context,
        )

    def _release(self, run: _LLMRun) -> None:
        batch = run.batch
        with self._lock:
            batch.open_runs -= 1
            last = batch.open_runs == 0
            if last:
                self._batches.pop(id(batch.call.run), None)
        # LangChain ends async runs in a copy of the context, where nothing set at the start can
        # be reset (the value stays in the caller's context, where it is stale and harmless).
        undone = batch.call.close() if last else True
        if run.entered is not None and undone:
            _exit(run.entered)


def _enter(scope: _Scope) -> _Entered | None:
    """Enter a scope into the current context, unless this context is already inside it."""
    if scope.unit.rollup in current_attribution().rollups:
        return None
    return enter_attribution(scope.attribution), otel_context.attach(scope.otel_context)


def _exit(entered: _Entered) -> None:
    attribution_token, span_token = entered
    try:
        exit_attribution(attribution_token)
    except ValueError:
        return  # another context than the one entered: nothing of it to undo here
    otel_context.detach(span_token)  # type: ignore[arg-type]


def _is_node_run(name: str, tags: list[str] | None, metadata: Mapping[str, Any] | None) -> bool:
    """The run of a LangGraph node itself, not of a runnable inside it (which inherit its metadata)."""
    if not metadata or metadata.get("langgraph_node") != name or name == _GRAPH_START_NODE:
        return False
    return any(isinstance(tag, str) and tag.startswith(_GRAPH_STEP_TAG) for tag in tags or ())


@functools.cache
def _langchain_handler_class() -> type[TokentrailCallbackHandler]:
    """Our handler as a LangChain ``BaseCallbackHandler`` (built once LangChain is imported)."""
    from langchain_core.callbacks.base import BaseCallbackHandler

    return type(
        "LangChainCallbackHandler",
        (TokentrailCallbackHandler, BaseCallbackHandler),
        {"__module__": __name__, "__doc__": TokentrailCallbackHandler.__doc__},
    )


# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------

_MANAGERS = "langchain_core.callbacks.manager"
# Where LangChain and LangGraph make the context a run's steps run in (LangGraph has its own; before
# 1.0 in langgraph.utils.runnable, often as a name imported from langchain_core, bound at its import).
_CHILD_CONTEXT_MODULES = (
    "langchain_core.runnables.config",
    "langgraph._internal._runnable",
    "langgraph.utils.runnable",
)
_CHILD_CONTEXT_FUNCTION = "_set_config_context"


class Instrumentation(HookedPatchSet):
    """Adds the handler to every LangChain callback manager and carries scopes into child contexts.

    Each patch is applied when its module is imported (at once if it already is); :meth:`remove`
    undoes them. One instance per process: its handler outlives an ``uninstrument()`` in the
    managers made before it (disabled, it only closes the runs it opened).
    """

    def __init__(self) -> None:
        self.handler: TokentrailCallbackHandler | None = None
        self._manager_types: tuple[type, ...] = ()
        super().__init__((_MANAGERS, *_CHILD_CONTEXT_MODULES))

    def remove(self) -> None:
        if self.handler is not None:
            self.handler.enabled = False
        super().remove()

    def _on_import(self, _name: str, module: ModuleType) -> None:
        if not self._installed:
            return
        try:
            if module.__name__ == _MANAGERS:
                self._patch_managers(module)
            elif hasattr(module, _CHILD_CONTEXT_FUNCTION) and not self._patches.owns(
                getattr(module, _CHILD_CONTEXT_FUNCTION)
            ):  # a module that imported our wrapper already goes through it: no second one
                self._patch(module, _CHILD_CONTEXT_FUNCTION, self._on_child_context)
        except Exception as exc:
            _safety.internal_error("langchain.install", exc)

    def _patch_managers(self, managers: ModuleType) -> None:
        if self.handler is None:
            self.handler = _langchain_handler_class()()
        self._manager_types = (managers.CallbackManager, managers.AsyncCallbackManager)
        self._patch(managers.BaseCallbackManager, "__init__", self._on_manager_init)
        self.handler.enabled = True

    def _patch(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        if not self._patches.patched(owner, name):
            self._patches.wrap(owner, name, wrapper)

    def _on_manager_init(self, wrapped: Callable[..., Any], manager: Any, args: Any, kwargs: Any) -> None:
        wrapped(*args, **kwargs)
        try:
            handler = self.handler
            if isinstance(manager, self._manager_types) and not any(
                isinstance(each, TokentrailCallbackHandler) for each in manager.handlers
            ):
                # New lists: the ones passed in may be the caller's own.
                manager.handlers = [*manager.handlers, handler]
                manager.inheritable_handlers = [*manager.inheritable_handlers, handler]
        except Exception as exc:
            _safety.internal_error("langchain.manager_init", exc)

    def _on_child_context(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        try:
            if self.handler is not None:
                self.handler.enter_child_context(args[0] if args else kwargs.get("config"))
        except Exception as exc:
            _safety.internal_error("langchain.child_context", exc)
        return result


# The patch set for LangChain / LangGraph, made once; None while ``langchain_core`` is not installed.
patches = PatchSetOnce("langchain_core", Instrumentation)
