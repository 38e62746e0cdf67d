"""The one layering mechanism for frameworks over SDKs: each model call counted once, named.

A framework layer (LangChain, LiteLLM, the OpenAI Agents SDK, PydanticAI, CrewAI) wraps each
model call it makes in a :class:`ModelCall`:

* :meth:`ModelCall.open`, just before the call: marks a framework run in the context
  (:class:`tokentrail.context.FrameworkLLMRun`) and makes the framework's names (agent, task,
  workflow) current, under whatever the application set itself (the application's names win);
* the call runs. If tokentrail counts a call inside it (an instrumented SDK call, or a framework
  layer further down that reports its own), that call marks the run and every run around it
  covered, and carries the framework's names: it is the one counted;
* :meth:`ModelCall.close`, when the framework's call returns (or its stream ends): undoes the
  context;
* :meth:`ModelCall.report`: if nothing inside was counted (the framework reached the provider
  over raw HTTP, or through an SDK tokentrail does not patch or was told not to), records the
  call from the usage the framework reports, as of the moment it was opened (its start time,
  names and parent span). Otherwise does nothing.

One span, one set of metrics, one ledger row per model call, whichever layers are instrumented,
in either order, with either one removed. A framework layer's own report marks the layers
around it covered too (CrewAI over LiteLLM over raw HTTP: LiteLLM reports, CrewAI does not).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Self

from opentelemetry import context as otel_context

from .. import _safety
from .. import semconv as sc
from ..context import (
    MAX_VALUE_LENGTH,
    Attribution,
    FrameworkLLMRun,
    current_attribution,
    current_framework_llm_run,
    enter_attribution,
    enter_framework_llm_run,
    exit_attribution,
    exit_framework_llm_run,
)
from ..lifecycle import Unit, recording, start_unit
from ..records import RequestInfo, ResponseInfo

__all__ = [
    "AgentRun",
    "ModelCall",
    "WorkflowRun",
    "done_parsing_raw_streams",
    "framework_parses_raw_streams",
    "names_under",
    "parsing_raw_streams",
]

# What _enter_names entered into a context: the attribution and the framework-set values.
_Entered = tuple[Token[Attribution], Token[Mapping[str, str]]]


# The attribution values framework layers set in this context (not the application): an inner
# framework layer may replace those (a nested agent names its own calls), never the application's.
_NONE_SET: Mapping[str, str] = MappingProxyType({})
_framework_values: ContextVar[Mapping[str, str]] = ContextVar(
    "tokentrail_framework_values", default=_NONE_SET
)


# Set by a framework layer whose own code (not the application) parses the raw SDK responses it
# asks for, and only reads them through the SDK's parsed stream (LiteLLM's openai route): an SDK
# layer may then ask for a stream's usage chunk on a raw request too, since it drops that chunk
# from the parsed stream before anyone sees it.
_parses_raw_streams: ContextVar[bool] = ContextVar("tokentrail_framework_parses_raw_streams", default=False)


def parsing_raw_streams() -> Token[bool]:
    """Mark the current context: the framework running here parses its raw SDK streams itself.
    Undo with :func:`done_parsing_raw_streams`."""
    return _parses_raw_streams.set(True)


def done_parsing_raw_streams(token: Token[bool]) -> None:
    try:
        _parses_raw_streams.reset(token)
    except ValueError:  # another context than the one marked: nothing of it to undo here
        pass


def framework_parses_raw_streams() -> bool:
    """True inside a framework call whose raw SDK streams only the framework parses."""
    return _parses_raw_streams.get()


def names_under(attribution: Attribution, names: Mapping[str, str | None]) -> Attribution:
    """``attribution`` with the framework's ``names``: where the application set none, or where
    only a framework layer around this one did (the innermost framework names its calls; the
    application's own names always win).

    ``names`` are attribution keys (``agent``, ``agent_id``, ``task``, ``label:workflow``, ...);
    empty or None values are skipped; values are cut to the longest an attribution value may be.
    """
    by_frameworks = _framework_values.get()
    current = attribution.values
    applied = {
        key: text
        for key, value in names.items()
        if value and (key not in current or current[key] == by_frameworks.get(key))
        for text in (str(value)[:MAX_VALUE_LENGTH],)
        if current.get(key) != text
    }
    if not applied:
        return attribution
    return Attribution.of({**current, **applied}, attribution.rollups)


def _enter_names(names: Mapping[str, str | None], rollup: Unit | None = None) -> _Entered | None:
    """Make the framework's names (and a roll-up) current here; None when nothing changes."""
    attribution = current_attribution()
    named = names_under(attribution, names)
    if rollup is not None:
        named = replace(named, rollups=(*named.rollups, rollup.rollup))
    if named is attribution:
        return None
    set_here = {key: value for key, value in named.values.items() if attribution.values.get(key) != value}
    values_token = _framework_values.set({**_framework_values.get(), **set_here})
    return enter_attribution(named), values_token


def _exit_names(entered: _Entered | None) -> bool:
    """Undo :func:`_enter_names`; False in another context than the one entered (nothing to undo)."""
    if entered is None:
        return True
    attribution_token, values_token = entered
    try:
        exit_attribution(attribution_token)
        _framework_values.reset(values_token)
    except ValueError:
        return False
    return True


class ModelCall:
    """One model call of a framework, from just before it is made to just after it returns.

    Not thread-safe by itself: open, close and report it from the framework's own flow (``close``
    in the context ``open`` ran in; ``report`` anywhere). Every method is guarded: nothing here
    raises into the application.
    """

    __slots__ = ("_attribution", "_entered", "_otel_context", "_run", "_run_token", "started_at")

    def __init__(self) -> None:
        self.started_at = 0.0
        self._run: FrameworkLLMRun | None = None
        self._run_token: Token[FrameworkLLMRun | None] | None = None
        self._attribution: Attribution | None = None
        self._entered: _Entered | None = None
        self._otel_context: otel_context.Context | None = None

    def open(self, names: Mapping[str, str | None] | None = None) -> ModelCall:
        """Mark the call in the context; ``names`` (attribution keys) name it under the application's."""
        try:
            self.started_at = time.time()
            self._run, self._run_token = enter_framework_llm_run()
            if names:
                self._entered = _enter_names(names)
            self._attribution = current_attribution()
            self._otel_context = otel_context.get_current()
        except Exception as exc:
            _safety.internal_error("framework.open", exc)
        return self

    def close(self) -> bool:
        """Undo what :meth:`open` set. False when called in another context than ``open``'s (a
        framework that ends its calls in a copy of the context): nothing of it can be undone there,
        and that copy dies on its own."""
        try:
            entered, self._entered = self._entered, None
            if not _exit_names(entered):
                return False
            if self._run_token is not None:
                token_run, self._run_token = self._run_token, None
                exit_framework_llm_run(token_run)
        except ValueError:
            return False
        except Exception as exc:
            _safety.internal_error("framework.close", exc)
        return True

    def __enter__(self) -> ModelCall:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def covered(self) -> bool:
        """A call inside was counted: this layer must not report it."""
        return self._run is not None and self._run.covered

    @property
    def run(self) -> FrameworkLLMRun | None:
        """The framework run marked in the context (None if opening failed)."""
        return self._run

    @property
    def attribution(self) -> Attribution | None:
        """The attribution the call was opened with (the framework's names included)."""
        return self._attribution

    def report(
        self,
        request: RequestInfo | None,
        response: ResponseInfo | None,
        error: BaseException | None = None,
        *,
        started_at: float | None = None,
        attribution: Attribution | None = None,
        parent_context: otel_context.Context | None = None,
    ) -> None:
        """Record the call from the framework's own figures, unless a call inside was counted.

        The call is recorded as of when it was opened (start time, names, parent span); a
        framework whose one :class:`ModelCall` stands for several of its calls (LangChain's batch)
        passes each call's own. ``request`` None: the framework's call could not be read, and
        nothing is recorded. A budget cannot refuse a call reported after the fact: it is counted.
        """
        try:
            run = self._run
            if run is None or run.covered or request is None:
                return
            telemetry = recording()
            if telemetry is None:
                return
            # A framework run of its own whose parent is this one's parent: the layers around this
            # one are marked covered by the report, this run (maybe shared by a batch) is not.
            attribution = attribution if attribution is not None else self._attribution
            parent_context = parent_context if parent_context is not None else self._otel_context
            attribution_token = enter_attribution(attribution) if attribution is not None else None
            span_token = otel_context.attach(parent_context) if parent_context is not None else None
            _, shield = enter_framework_llm_run(run.parent)
            try:
                call = telemetry.start(request, started_at=started_at or self.started_at)
            finally:
                exit_framework_llm_run(shield)
                if span_token is not None:
                    otel_context.detach(span_token)
                if attribution_token is not None:
                    exit_attribution(attribution_token)
            if error is None:
                call.finish(response if response is not None else ResponseInfo())
            else:
                call.fail(error, response)
        except Exception as exc:
            _safety.internal_error("framework.report", exc)


class _NamedRun:
    """A framework's unit of work around model calls, as a roll-up span that adds up the calls
    inside it and names them (``KEY``: the attribution key its name sets, under the application's
    own). It carries only ``tokentrail.rollup.*`` totals, never a call's ``gen_ai.usage.*``: the
    calls inside are the counted ones. ``close`` in the context ``open`` ran in. Every method is
    guarded; opening an open run does nothing (``with Run(name).open(names):`` is one opening)."""

    KEY = ""
    SPAN = ""
    """The span's name before the run's name (``invoke_agent``, ``workflow``)."""
    OPERATION: str | None = None
    """``gen_ai.operation.name`` on the span, if the conventions give it one."""
    SHIELDS = False
    """Opened inside a framework's model call, whether its own calls are model calls of their own."""

    __slots__ = ("_entered", "_opened", "_otel_token", "_shield", "name", "unit")

    def __init__(self, name: str) -> None:
        self.name = str(name)[:MAX_VALUE_LENGTH] or self.SPAN.rsplit("_", 1)[-1]
        self.unit: Unit | None = None
        self._opened = False
        self._entered: _Entered | None = None
        self._otel_token: object = None
        self._shield: Token[FrameworkLLMRun | None] | None = None

    def open(self, names: Mapping[str, str | None] | None = None) -> Self:
        """Open the roll-up span and name the calls inside; ``names`` adds other attribution keys
        (``agent_id``, ``task``, ``label:workflow``) with the same precedence as the name."""
        if self._opened:
            return self
        self._opened = True
        try:
            if recording() is None:
                return self
            given = {self.KEY: self.name, **(names or {})}
            attribution = names_under(current_attribution(), given)
            span_attributes = dict(attribution.span_attributes)
            if self.OPERATION is not None:
                span_attributes[sc.OPERATION_NAME] = self.OPERATION
            self.unit = start_unit(f"{self.SPAN} {self.name}", span_attributes)
            self._entered = _enter_names(given, self.unit)
            if self.unit is not None:
                self._otel_token = self.unit.activate()
            if self.SHIELDS and current_framework_llm_run() is not None:
                _, self._shield = enter_framework_llm_run(None)
        except Exception as exc:
            _safety.internal_error(f"framework.{self.SPAN}_open", exc)
        return self

    def close(self, error: BaseException | None = None) -> None:
        """End the span (its totals are set once the calls inside have been added up)."""
        try:
            entered, self._entered = self._entered, None
            token, self._otel_token = self._otel_token, None
            shield, self._shield = self._shield, None
            if shield is not None:
                try:
                    exit_framework_llm_run(shield)
                except ValueError:
                    pass  # closed in another context than opened: nothing of it to undo here
            if _exit_names(entered) and token is not None:
                Unit.deactivate(token)
            if self.unit is not None:
                self.unit.end(error)
        except Exception as exc:
            _safety.internal_error(f"framework.{self.SPAN}_close", exc)

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(exc)


class AgentRun(_NamedRun):
    """An agent's run (an agent SDK's ``Runner.run``, a PydanticAI ``Agent.run``, a CrewAI task's
    agent): a roll-up span ``invoke_agent {name}`` whose calls carry the agent's name
    (``gen_ai.agent.name``) unless the application named one itself. A handoff closes one run and
    opens the next agent's.

    Opened inside a framework's model call (a PydanticAI ``FunctionModel`` that runs another agent),
    it shields that call: the inner agent's model calls are its own and do not cover the one around.
    """

    KEY = "agent"
    SPAN = "invoke_agent"
    OPERATION = "invoke_agent"
    SHIELDS = True
    __slots__ = ()


class WorkflowRun(_NamedRun):
    """A framework's workflow run around its agents (a CrewAI crew's kickoff): a roll-up span
    ``workflow {name}`` whose calls carry the workflow's name (the ``label:workflow`` attribution
    key) unless the application set one itself. No ``gen_ai.operation.name``: it is no model call
    and no agent."""

    KEY = "label:workflow"
    SPAN = "workflow"
    __slots__ = ()
