"""CrewAI: crew, agent and task names on every model call, each call counted once.

Three patches, each applied when its CrewAI module is imported (post-import hooks: nothing is
imported from CrewAI, which takes seconds to import, before the application imports it):

* **The crew.** ``Crew.kickoff`` / ``akickoff`` (``kickoff_async`` runs ``kickoff`` in a thread)
  open a roll-up span ``workflow {crew.name}`` (:class:`~._framework.WorkflowRun`) that adds up
  every call of the crew, and name its calls ``label:workflow`` = the crew's name (CrewAI's
  default name is ``crew``). A streaming kickoff runs a plain one inside: that one is the span.
* **Each agent's work on a task.** ``Agent.execute_task`` / ``aexecute_task`` open an
  ``invoke_agent {role}`` roll-up span (:class:`~._framework.AgentRun`) that names the calls
  inside it: ``agent`` = the agent's role, ``task`` = the task's name (or the first line of its
  description when it has none). The agent's ``id`` is a random UUID per instance, not a name
  that holds from one run to the next: it is not used.
* **Each model call.** Every CrewAI LLM class's ``call`` / ``acall`` (the native OpenAI,
  Anthropic, Azure, Bedrock and Gemini clients, the LiteLLM fallback ``LLM``, and any
  ``BaseLLM`` subclass an agent uses) is a framework model call
  (:class:`~._framework.ModelCall`, the layering every framework shares), named from the call's
  ``from_agent`` / ``from_task`` as well. CrewAI's native clients call the openai / anthropic /
  google-genai SDKs or boto3: when tokentrail instruments that SDK, the SDK call is the one
  counted, with the crew's names on it. When it does not (the SDK layer off, or a provider
  tokentrail does not patch), the call is reported from the usage CrewAI itself tracks: each
  provider response's usage reaches ``BaseLLM._track_token_usage_internal`` once, and each such
  response is one reported call. Over LiteLLM, LiteLLM's own layer (when instrumented) counts the
  call and covers this one.

A ``call`` can make several requests (a native client's tool loop): after each response's usage
the model call is closed and a new one opened, so each request is counted once, by whichever
layer saw it. A call that fails before any response is reported as a failed call (unless a hook
or CrewAI's own guard refused it). A call whose provider reported no usage (a stream without
usage) is not reported by this layer. The cost is always tokentrail's pricer's, never a figure
of CrewAI's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from .. import _safety
from .. import semconv as sc
from .._patching import HookedPatchSet, PatchSetOnce
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage
from ._framework import AgentRun, ModelCall, WorkflowRun

__all__ = ["Instrumentation", "agent_names", "patches", "provider_name", "task_name", "usage_of"]

# CrewAI's provider names (its native providers and LiteLLM's prefixes) -> gen_ai.provider.name;
# any other value is used as it is.
_PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "claude": "anthropic",
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "groq": "groq",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "together_ai": "together_ai",
}
_DEFAULT_PROVIDER = "crewai"
# How much of a task's description names it when the task has no name.
_TASK_DESCRIPTION_CHARS = 80
# Refusals before any request was sent (a before-call hook, CrewAI's call guard): no model call.
_REFUSALS = frozenset({"HookAborted", "LLMCallBlockedError"})

_CREW_MODULE = "crewai.crew"
_AGENT_MODULE = "crewai.agent.core"
_BASE_LLM_MODULE = "crewai.llms.base_llm"
# The modules that define CrewAI's LLM classes: each one's import may bring new classes to wrap.
_LLM_MODULES = (
    _BASE_LLM_MODULE,
    "crewai.llm",
    "crewai.llms.providers.openai.completion",
    "crewai.llms.providers.anthropic.completion",
    "crewai.llms.providers.azure.completion",
    "crewai.llms.providers.bedrock.completion",
    "crewai.llms.providers.gemini.completion",
    "crewai.llms.providers.openai_compatible.completion",
    "crewai.llms.providers.snowflake.completion",
)
_USAGE_METHOD = "_track_token_usage_internal"


# ---------------------------------------------------------------------------------------------
# Reading CrewAI objects (pure)
# ---------------------------------------------------------------------------------------------


def provider_name(provider: Any) -> str:
    """``gen_ai.provider.name`` for a CrewAI provider name (``openai``, ``anthropic``, ``ollama``...)."""
    if not isinstance(provider, str) or not provider:
        return _DEFAULT_PROVIDER
    return _PROVIDERS.get(provider.lower(), provider.lower())


def task_name(task: Any) -> str | None:
    """A task's name, else the first line of its description (cut short), else None."""
    name = _text(getattr(task, "name", None))
    if name:
        return name
    description = _text(getattr(task, "description", None))
    if not description:
        return None
    first = description.splitlines()[0].strip()
    return first if len(first) <= _TASK_DESCRIPTION_CHARS else first[: _TASK_DESCRIPTION_CHARS - 1] + "…"


def _crew_of(agent: Any, task: Any) -> Any:
    return getattr(agent, "crew", None) or getattr(getattr(task, "agent", None), "crew", None)


def agent_names(agent: Any, task: Any) -> dict[str, str | None]:
    """The attribution names of an agent's work on a task: role, task, crew (as ``label:workflow``)."""
    crew = _crew_of(agent, task)
    return {
        "agent": _text(getattr(agent, "role", None)),
        "task": task_name(task) if task is not None else None,
        "label:workflow": _text(getattr(crew, "name", None)) if crew is not None else None,
    }


def usage_of(data: Any) -> Usage | None:
    """The usage of one provider response as CrewAI passes it to ``_track_token_usage_internal``.

    The shapes CrewAI's clients pass: OpenAI's (``prompt_tokens`` with ``cached_prompt_tokens``
    and ``reasoning_tokens``), the native Anthropic client's (``input_tokens`` with the cache
    reads and writes already folded in), Anthropic's raw one through LiteLLM (``input_tokens``
    without them, beside ``cache_read_input_tokens`` / ``cache_creation_input_tokens``),
    Gemini's (``prompt_token_count``; ``completion_tokens`` includes the thoughts), Bedrock's
    Converse one (``inputTokens`` without the cache), and LiteLLM's ``Usage`` objects. The same
    reconciliation CrewAI's ``UsageMetrics.from_provider_dict`` does, onto tokentrail's
    :class:`Usage` (input tokens include cache reads and writes; output tokens include reasoning).
    None when there is no usage in it.
    """
    values = _as_mapping(data)
    if not values:
        return None
    if "inputTokens" in values or "outputTokens" in values:  # Bedrock Converse
        cache_read = _int(values.get("cacheReadInputTokens") or values.get("cacheReadInputTokenCount"))
        cache_write = _int(values.get("cacheWriteInputTokens") or values.get("cacheWriteInputTokenCount"))
        return Usage.of(
            input_tokens=_int(values.get("inputTokens")) + cache_read + cache_write,
            output_tokens=values.get("outputTokens"),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )
    prompt_details = _as_mapping(values.get("prompt_tokens_details"))
    completion_details = _as_mapping(values.get("completion_tokens_details"))
    raw_anthropic = "input_tokens" in values and (
        "cache_read_input_tokens" in values or "cache_creation_input_tokens" in values
    )
    cache_read = _first(values, "cached_tokens", "cached_prompt_tokens", "cache_read_input_tokens")
    cache_read = cache_read or _int(prompt_details.get("cached_tokens"))
    cache_write = _int(values.get("cache_creation_tokens")) or _int(values.get("cache_creation_input_tokens"))
    if raw_anthropic:
        input_tokens = _int(values.get("input_tokens")) + cache_read + cache_write
    else:
        input_tokens = _first(values, "prompt_tokens", "prompt_token_count", "input_tokens")
    output_tokens = _first(values, "completion_tokens", "candidates_token_count", "output_tokens")
    if not input_tokens and not output_tokens:
        return None  # CrewAI's {"total_tokens": 0}: the response had no usage
    reasoning = _int(values.get("reasoning_tokens")) or _int(completion_details.get("reasoning_tokens"))
    return Usage.of(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
    )


def request_info(llm: Any) -> RequestInfo:
    """What a CrewAI LLM asks for: its provider, model, endpoint and sampling parameters."""
    model = _text(getattr(llm, "model", None))
    provider = _text(getattr(llm, "provider", None))
    if model and "/" in model and getattr(llm, "is_litellm", False):
        prefix, _, rest = model.partition("/")  # LiteLLM's "ollama/llama3.2"
        provider, model = provider if provider and provider != "openai" else prefix, rest
    address = port = None
    base_url = _text(getattr(llm, "base_url", None)) or _text(getattr(llm, "api_base", None))
    if base_url:
        try:
            split = urlsplit(base_url)
            address, port = split.hostname, split.port
        except ValueError:
            pass
    params: dict[str, Any] = {}
    temperature = getattr(llm, "temperature", None)
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        params[sc.REQUEST_TEMPERATURE] = float(temperature)
    max_tokens = getattr(llm, "max_tokens", None)
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        params[sc.REQUEST_MAX_TOKENS] = max_tokens
    return RequestInfo(
        operation="chat",
        provider=provider_name(provider),
        request_model=model,
        server_address=address,
        server_port=port,
        stream=getattr(llm, "stream", None) is True,
        params=params,
    )


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _first(values: Mapping[str, Any], *keys: str) -> int:
    for key in keys:
        if _int(values.get(key)):
            return _int(values.get(key))
    return 0


def _as_mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if value is None:
        return {}
    dump = getattr(value, "model_dump", None)  # LiteLLM's Usage, an SDK's usage object
    if callable(dump):
        try:
            dumped = dump()
        except Exception:
            return {}
        return dumped if isinstance(dumped, Mapping) else {}
    return {}


# ---------------------------------------------------------------------------------------------
# One LLM call: the framework model call around it, one report per response
# ---------------------------------------------------------------------------------------------


class _LLMCall:
    """A CrewAI LLM's ``call`` in progress: the model call open now, its names and request."""

    __slots__ = ("llm", "model_call", "names", "request", "responses")

    def __init__(self, llm: Any, names: Mapping[str, str | None]) -> None:
        self.llm = llm
        self.names = names
        self.request = request_info(llm)
        self.model_call = ModelCall().open(names)
        self.responses = 0

    def response(self, usage: Usage) -> None:
        """One response's usage: reported unless a call inside was counted; then the next request
        gets a model call of its own."""
        self.responses += 1
        self.model_call.report(self.request, ResponseInfo(usage=usage))
        if self.model_call.close():
            self.model_call = ModelCall().open(self.names)

    def end(self, error: BaseException | None) -> None:
        if error is not None and not self.responses and type(error).__name__ not in _REFUSALS:
            self.model_call.report(self.request, None, error)
        self.model_call.close()


_current_call: ContextVar[_LLMCall | None] = ContextVar("tokentrail_crewai_call", default=None)


def _call_names(llm: Any, kwargs: Mapping[str, Any]) -> dict[str, str | None]:
    agent, task = kwargs.get("from_agent"), kwargs.get("from_task")
    if agent is None and task is not None:
        agent = getattr(task, "agent", None)
    if agent is None and task is None:
        return {}
    return agent_names(agent, task)


def _open_call(llm: Any, kwargs: Mapping[str, Any]) -> tuple[_LLMCall, Token[_LLMCall | None]] | None:
    try:
        state = _LLMCall(llm, _call_names(llm, kwargs))
        return state, _current_call.set(state)
    except Exception as exc:
        _safety.internal_error("crewai.call_open", exc)
        return None


def _close_call(opened: tuple[_LLMCall, Token[_LLMCall | None]] | None, error: BaseException | None) -> None:
    if opened is None:
        return
    state, token = opened
    try:
        try:
            _current_call.reset(token)
        except ValueError:  # ended in another context than it began in: that copy dies with it
            pass
        state.end(error)
    except Exception as exc:
        _safety.internal_error("crewai.call_close", exc)


# ---------------------------------------------------------------------------------------------
# Patching
# ---------------------------------------------------------------------------------------------


class Instrumentation(HookedPatchSet):
    """The crew, agent and LLM patches; each applied when its module is imported (at once if it
    already is). :meth:`remove` undoes them; wrappers that a class kept pass straight through."""

    def __init__(self) -> None:
        super().__init__((_CREW_MODULE, _AGENT_MODULE, *_LLM_MODULES))
        self._base_llm: type | None = None

    def _on_import(self, name: str, module: ModuleType) -> None:
        # By the name the hook was registered for: CrewAI puts other module objects under its
        # modules' names in sys.modules while it imports (``crewai.crew`` reads as
        # ``crewai.agents.agent_builder.base_agent``, with ``Crew`` in it).
        if not self._installed:
            return
        try:
            if name == _CREW_MODULE:
                self._patch(module.Crew, "kickoff", self._on_kickoff)
                self._patch(module.Crew, "akickoff", self._on_akickoff)
            elif name == _AGENT_MODULE:
                self._patch(module.Agent, "execute_task", self._on_execute_task)
                self._patch(module.Agent, "aexecute_task", self._on_aexecute_task)
            else:
                if name == _BASE_LLM_MODULE:
                    self._base_llm = module.BaseLLM
                self._patch_llm_classes()
        except Exception as exc:
            _safety.internal_error("crewai.install", exc)

    def _patch(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        if name in vars(owner) and not self._patches.patched(owner, name):
            self._patches.wrap(owner, name, wrapper)

    def _patch_llm_classes(self) -> None:
        """Wrap ``call`` / ``acall`` (and the usage tracker) of every LLM class defined so far."""
        base = self._base_llm
        if base is None:
            return
        self._patch(base, _USAGE_METHOD, self._on_usage)
        pending = list(base.__subclasses__())
        while pending:
            cls = pending.pop()
            pending.extend(cls.__subclasses__())
            self._patch_llm_class(cls)

    def _patch_llm_class(self, cls: type) -> None:
        self._patch(cls, "call", self._on_call)
        self._patch(cls, "acall", self._on_acall)
        self._patch(cls, _USAGE_METHOD, self._on_usage)  # Bedrock's client reads its own shape

    def _ensure_llm(self, llm: Any) -> None:
        """An LLM class defined after the hooks ran (the application's own ``BaseLLM``)."""
        base = self._base_llm
        if llm is None or base is None or not isinstance(llm, base):
            return
        for cls in type(llm).__mro__:
            if cls is base:
                break
            if not (self._patches.patched(cls, "call") or self._patches.patched(cls, "acall")):
                self._patch_llm_class(cls)

    # --- the model call ------------------------------------------------------------------------

    def _on_call(self, wrapped: Callable[..., Any], llm: Any, args: Any, kwargs: Any) -> Any:
        if not self._installed:
            return wrapped(*args, **kwargs)
        opened = _open_call(llm, kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _close_call(opened, exc)
            raise
        _close_call(opened, None)
        return result

    async def _on_acall(self, wrapped: Callable[..., Any], llm: Any, args: Any, kwargs: Any) -> Any:
        if not self._installed:
            return await wrapped(*args, **kwargs)
        opened = _open_call(llm, kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _close_call(opened, exc)
            raise
        _close_call(opened, None)
        return result

    def _on_usage(self, wrapped: Callable[..., Any], llm: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        try:
            state = _current_call.get()
            if self._installed and state is not None and state.llm is llm:
                data = args[0] if args else next(iter(kwargs.values()), None)
                usage = usage_of(data)
                if usage is not None:
                    state.response(usage)
        except Exception as exc:
            _safety.internal_error("crewai.usage", exc)
        return result

    # --- the agent's work on a task ----------------------------------------------------------

    def _open_agent(self, agent: Any, args: Any, kwargs: Any) -> AgentRun | None:
        if not self._installed:
            return None
        try:
            task = args[0] if args else kwargs.get("task")
            self._ensure_llm(getattr(agent, "llm", None))
            # Read past the deprecated property (it warns on every access).
            self._ensure_llm(vars(agent).get("function_calling_llm"))
            names = agent_names(agent, task)
            return AgentRun(names.pop("agent") or "agent").open(names)
        except Exception as exc:
            _safety.internal_error("crewai.agent_open", exc)
            return None

    def _on_execute_task(self, wrapped: Callable[..., Any], agent: Any, args: Any, kwargs: Any) -> Any:
        run = self._open_agent(agent, args, kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            if run is not None:
                run.close(exc)
            raise
        if run is not None:
            run.close()
        return result

    async def _on_aexecute_task(self, wrapped: Callable[..., Any], agent: Any, args: Any, kwargs: Any) -> Any:
        run = self._open_agent(agent, args, kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            if run is not None:
                run.close(exc)
            raise
        if run is not None:
            run.close()
        return result

    # --- the crew ----------------------------------------------------------------------------

    def _open_crew(self, crew: Any) -> WorkflowRun | None:
        # A streaming kickoff returns at once and runs a plain kickoff inside: that one is the run.
        if not self._installed or getattr(crew, "stream", False):
            return None
        try:
            return WorkflowRun(_text(getattr(crew, "name", None)) or "crew").open()
        except Exception as exc:
            _safety.internal_error("crewai.crew_open", exc)
            return None

    def _on_kickoff(self, wrapped: Callable[..., Any], crew: Any, args: Any, kwargs: Any) -> Any:
        run = self._open_crew(crew)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            if run is not None:
                run.close(exc)
            raise
        if run is not None:
            run.close()
        return result

    async def _on_akickoff(self, wrapped: Callable[..., Any], crew: Any, args: Any, kwargs: Any) -> Any:
        run = self._open_crew(crew)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            if run is not None:
                run.close(exc)
            raise
        if run is not None:
            run.close()
        return result


# The patch set for CrewAI, made once; None while ``crewai`` is not installed.
patches = PatchSetOnce("crewai", Instrumentation)
