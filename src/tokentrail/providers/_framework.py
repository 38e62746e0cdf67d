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
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context

from .. import _safety
from ..context import (
    Attribution,
    FrameworkLLMRun,
    current_attribution,
    enter_attribution,
    enter_framework_llm_run,
    exit_attribution,
    exit_framework_llm_run,
)
from ..lifecycle import recording
from ..records import RequestInfo, ResponseInfo

__all__ = ["ModelCall", "names_under"]


def names_under(attribution: Attribution, names: Mapping[str, str | None]) -> Attribution:
    """``attribution`` with the framework's ``names`` filled in where the application set none.

    ``names`` are attribution keys (``agent``, ``agent_id``, ``task``, ``label:workflow``, ...);
    empty or None values are skipped; values longer than an attribution value may be are cut.
    """
    given = {key: str(value)[:256] for key, value in names.items() if value}
    missing = {key: value for key, value in given.items() if key not in attribution.values}
    if not missing:
        return attribution
    return Attribution.of({**attribution.values, **missing}, attribution.rollups)


class ModelCall:
    """One model call of a framework, from just before it is made to just after it returns.

    Not thread-safe by itself: open, close and report it from the framework's own flow (``close``
    in the context ``open`` ran in; ``report`` anywhere). Every method is guarded: nothing here
    raises into the application.
    """

    __slots__ = ("_attribution", "_attribution_token", "_otel_context", "_run", "_run_token", "started_at")

    def __init__(self) -> None:
        self.started_at = 0.0
        self._run: FrameworkLLMRun | None = None
        self._run_token: Token[FrameworkLLMRun | None] | None = None
        self._attribution: Attribution | None = None
        self._attribution_token: Token[Attribution] | None = None
        self._otel_context: otel_context.Context | None = None

    def open(self, names: Mapping[str, str | None] | None = None) -> ModelCall:
        """Mark the call in the context; ``names`` (attribution keys) name it under the application's."""
        try:
            self.started_at = time.time()
            self._run, self._run_token = enter_framework_llm_run()
            attribution = current_attribution()
            if names:
                named = names_under(attribution, names)
                if named is not attribution:
                    self._attribution_token = enter_attribution(named)
                    attribution = named
            self._attribution = attribution
            self._otel_context = otel_context.get_current()
        except Exception as exc:
            _safety.internal_error("framework.open", exc)
        return self

    def close(self) -> bool:
        """Undo what :meth:`open` set. False when called in another context than ``open``'s (a
        framework that ends its calls in a copy of the context): nothing of it can be undone there,
        and that copy dies on its own."""
        try:
            if self._attribution_token is not None:
                token, self._attribution_token = self._attribution_token, None
                exit_attribution(token)
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
