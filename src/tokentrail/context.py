"""Context that travels with the application's own work and shapes how calls are recorded.

* **Attribution** (pipeline, phase, role, agent, task, user, ...) names the unit of work a call
  belongs to: ``with tokentrail.attribute(pipeline="pip_123", agent="QA"):``. Every call made
  inside carries it on its span, its ledger row and (for allowed keys) its metrics.
* **Roll-up spans** (``tokentrail.span("phase pm")`` or ``attribute(..., span=True)``) are parent
  spans for a unit of work that add up the tokens and cost of every call inside them.
* **Price context** selects price variants the provider cannot tell us, such as batch
  processing (``with tokentrail.price_context(processing="batch"):``).

All of it lives in :mod:`contextvars`, so it follows asyncio tasks and threads started with
``contextvars.copy_context()`` and never leaks between concurrent units of work. Values are
validated when they are set, so a bad value fails at the line that set it.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from opentelemetry import context as otel_context

from . import _safety, runtime
from . import semconv as sc
from ._safety import shown
from .semconv import ATTRIBUTION_KEYS
from .semconv import attribution_attribute as span_attribute_name
from .totals import Totals

__all__ = [
    "ATTRIBUTION_KEYS",
    "Attribution",
    "Rollup",
    "attribute",
    "current_attribution",
    "current_price_context",
    "price_context",
    "span",
]

F = TypeVar("F", bound=Callable[..., Any])

MAX_VALUE_LENGTH = 256
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Attribution:
    """The attribution active at one point: built once per ``attribute()`` block, read per call."""

    values: Mapping[str, str]
    """Key -> value: ``agent``, ``task``, ..., and ``label:<key>`` for free-form labels."""
    span_attributes: Mapping[str, str]
    """The same, under their span attribute names."""
    rollups: tuple[Rollup, ...] = ()
    """Roll-up spans enclosing this point, outermost first."""

    @classmethod
    def of(cls, values: Mapping[str, str], rollups: tuple[Rollup, ...] = ()) -> Attribution:
        """The attribution of these (validated) values: the one place keys become span attributes."""
        return cls(values, {span_attribute_name(key): value for key, value in values.items()}, rollups)


_EMPTY = Attribution({}, {})
_EMPTY_MAP: Mapping[str, str] = {}
_attribution: ContextVar[Attribution] = ContextVar("tokentrail_attribution", default=_EMPTY)
_price_context: ContextVar[Mapping[str, str]] = ContextVar("tokentrail_price_context", default=_EMPTY_MAP)

# The price-context keys genai-prices understands, and their values.
PRICE_CONTEXT_KEYS = {
    "processing": ("batch",),
    "service_tier": ("default", "flex", "priority", "fast", "scale"),
}


class FrameworkLLMRun:
    """A framework's model call (LangChain, LiteLLM, an agent SDK) in progress on this context.

    The framework layer opens one just before its model call (see
    :mod:`tokentrail.providers._framework`). A call tokentrail counts inside it - an instrumented
    SDK call, or a framework layer further down that reports its own - marks it ``covered``, and
    every framework run it is nested in: the layers above then record nothing themselves. Exactly
    one counted call per model call, whichever layer saw it, however many layers are stacked
    (CrewAI over LiteLLM over openai).
    """

    __slots__ = ("covered", "parent")

    def __init__(self, parent: FrameworkLLMRun | None) -> None:
        self.covered = False
        self.parent = parent

    def mark_covered(self) -> None:
        """A counted call happened inside: this run and the runs around it must not count it again."""
        run: FrameworkLLMRun | None = self
        while run is not None and not run.covered:
            run.covered = True
            run = run.parent


_framework_llm_run: ContextVar[FrameworkLLMRun | None] = ContextVar(
    "tokentrail_framework_llm_run", default=None
)
_CURRENT: Any = object()


def enter_framework_llm_run(
    parent: FrameworkLLMRun | None = _CURRENT,
) -> tuple[FrameworkLLMRun, Token[FrameworkLLMRun | None]]:
    """Open a framework run here, nested in ``parent`` (by default the run current here)."""
    run = FrameworkLLMRun(_framework_llm_run.get() if parent is _CURRENT else parent)
    return run, _framework_llm_run.set(run)


def exit_framework_llm_run(token: Token[FrameworkLLMRun | None]) -> None:
    _framework_llm_run.reset(token)


def current_framework_llm_run() -> FrameworkLLMRun | None:
    return _framework_llm_run.get()


def current_attribution() -> Attribution:
    """The attribution active here (empty when none)."""
    return _attribution.get()


def enter_attribution(attribution: Attribution) -> Token[Attribution]:
    """Make an attribution built elsewhere current here; undo with :func:`exit_attribution`.

    For framework integrations (LangChain) whose unit of work starts in one context and runs its
    steps in others: they carry the unit's attribution into each. Applications use ``attribute``.
    """
    return _attribution.set(attribution)


def exit_attribution(token: Token[Attribution]) -> None:
    _attribution.reset(token)


def current_price_context() -> Mapping[str, str]:
    return _price_context.get()


def validate(values: Mapping[str, Any]) -> dict[str, str]:
    """Check attribution keys and values; returns them as strings. Raises ValueError naming the key."""
    clean: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("label:"):
            label = key[6:]
            if not _LABEL_KEY.fullmatch(label):  # not match: "$" also accepts "team\n"
                raise ValueError(
                    f"attribution label {shown(label)}: use lower-case letters, digits and _ (at most 64)"
                )
        elif key not in ATTRIBUTION_KEYS:
            raise ValueError(
                f"unknown attribution key {shown(key)}; use one of {', '.join(ATTRIBUTION_KEYS)}, "
                "or labels={...} for your own keys"
            )
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"attribution {key}={shown(value)}: values must be strings (or integers)")
        try:
            text = str(value)
        except ValueError:  # an integer past Python's 4300-digit str() limit
            raise ValueError(
                f"attribution {key}: values must be 1 to {MAX_VALUE_LENGTH} characters, "
                "got an integer of thousands of digits"
            ) from None
        if not text or len(text) > MAX_VALUE_LENGTH:
            raise ValueError(
                f"attribution {key}: values must be 1 to {MAX_VALUE_LENGTH} characters, got {len(text)}"
            )
        clean[key] = text
    return clean


class Rollup:
    """Adds up the calls made inside a roll-up span (thread-safe: calls may end on any thread)."""

    __slots__ = ("_lock", "totals")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals = Totals()

    def add(self, usage: Any, cost: float | None, failed: bool) -> None:
        with self._lock:
            self.totals.add_call(usage, cost, failed=failed)

    def attributes(self) -> dict[str, Any]:
        """The span attributes of the totals (``tokentrail.rollup.<figure>``)."""
        with self._lock:
            figures = self.totals.summary()
        return {sc.ROLLUP_PREFIX + name: value for name, value in figures.items()}


class attribute:
    """Attribute the LLM calls made inside a block or function to a unit of work.

    Use as a context manager or a decorator (sync and async functions, generators)::

        with tokentrail.attribute(pipeline="pip_123", phase="qa", agent="QA"):
            ...

        @tokentrail.attribute(task="summarize", span=True)
        async def summarize(text): ...

    Nested blocks merge, the inner value winning. ``labels`` adds your own keys
    (``tokentrail.label.<key>`` on spans). ``span=True`` (or a span name) also opens a parent
    span for the unit of work whose attributes add up the tokens and cost of the calls inside.
    Invalid keys or values raise ``ValueError`` here, not later.
    """

    __slots__ = ("_name", "_span", "_tokens", "_values")

    def __init__(
        self,
        *,
        pipeline: str | None = None,
        phase: str | None = None,
        role: str | None = None,
        agent: str | None = None,
        agent_id: str | None = None,
        task: str | None = None,
        user: str | None = None,
        session: str | None = None,
        conversation: str | None = None,
        labels: Mapping[str, str] | None = None,
        span: bool | str = False,
    ) -> None:
        given = {
            "pipeline": pipeline, "phase": phase, "role": role, "agent": agent, "agent_id": agent_id,
            "task": task, "user": user, "session": session, "conversation": conversation,
        }  # fmt: skip
        values = {key: value for key, value in given.items() if value is not None}
        if labels is not None and not isinstance(labels, Mapping):
            raise ValueError(
                f"attribute(labels={shown(labels)}): use a mapping of your own keys to values, "
                "e.g. labels={'team': 'search'}"
            )
        for label, value in (labels or {}).items():
            values[f"label:{label}"] = value
        self._values = validate(values)
        if span is not False and not (span is True or (isinstance(span, str) and span)):
            raise ValueError("attribute(span=...): use True or a non-empty span name")
        self._span = span
        self._name: str | None = span if isinstance(span, str) else None
        self._tokens: list[tuple[Token[Attribution], Any]] = []

    # --- context manager -------------------------------------------------------------------

    def __enter__(self) -> attribute:
        self._tokens.append(self._push(self._name))
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._pop(self._tokens.pop(), exc, end_unit=True)

    async def __aenter__(self) -> attribute:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def _push(self, name: str | None, unit: Any = None) -> tuple[Token[Attribution], Any, object, object]:
        """Make this attribution current; open (or re-enter) the roll-up span if it has one."""
        baggage_token = _write_baggage(self._values)
        outer = _attribution.get()
        attribution = Attribution.of({**outer.values, **self._values}, outer.rollups)
        if unit is None and self._span is not False:
            unit = start_unit(name or _default_span_name(self._values), attribution.span_attributes)
        otel_token = None
        if unit is not None:
            attribution = replace(attribution, rollups=(*attribution.rollups, unit.rollup))
            otel_token = unit.activate()
        token = _attribution.set(attribution)
        return token, unit, otel_token, baggage_token

    @staticmethod
    def _pop(
        pushed: tuple[Token[Attribution], Any, object, object], error: BaseException | None, *, end_unit: bool
    ) -> None:
        token, unit, otel_token, baggage_token = pushed
        _attribution.reset(token)
        if unit is not None:
            unit.deactivate(otel_token)
            if end_unit:
                unit.end(error)
        if baggage_token is not None:
            otel_context.detach(baggage_token)  # type: ignore[arg-type]

    # --- decorator ----------------------------------------------------------------------------

    def __call__(self, function: F) -> F:
        name = self._name or (function.__qualname__ if self._span is not False else None)
        if inspect.isasyncgenfunction(function):
            return self._wrap_async_generator(function, name)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(function):
            return self._wrap_generator(function, name)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                pushed = self._push(name)
                error = None
                try:
                    return await function(*args, **kwargs)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._pop(pushed, error, end_unit=True)

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            pushed = self._push(name)
            error = None
            try:
                return function(*args, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._pop(pushed, error, end_unit=True)

        return run  # type: ignore[return-value]

    def _wrap_generator(self, function: Callable[..., Any], name: str | None) -> Callable[..., Any]:
        # The attribution must hold while the generator runs, not while it is suspended in its
        # caller (it would leak into the caller's context): push it around each step. A roll-up
        # span opens at the first step and ends with the generator.
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            generator = function(*args, **kwargs)
            unit: Any = None
            sent: Any = None
            thrown: BaseException | None = None
            error: BaseException | None = None
            try:
                while True:
                    pushed = self._push(name, unit)
                    unit = pushed[1]
                    try:
                        item = generator.throw(thrown) if thrown is not None else generator.send(sent)
                    except StopIteration as stop:
                        return stop.value
                    finally:
                        self._pop(pushed, None, end_unit=False)
                    try:
                        sent, thrown = (yield item), None
                    except GeneratorExit:
                        generator.close()
                        raise
                    except BaseException as exc:
                        sent, thrown = None, exc
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
                raise
            finally:
                if unit is not None:
                    unit.end(error)

        return run

    def _wrap_async_generator(self, function: Callable[..., Any], name: str | None) -> Callable[..., Any]:
        @functools.wraps(function)
        async def run(*args: Any, **kwargs: Any) -> Any:
            generator = function(*args, **kwargs)
            unit: Any = None
            sent: Any = None
            thrown: BaseException | None = None
            error: BaseException | None = None
            try:
                while True:
                    pushed = self._push(name, unit)
                    unit = pushed[1]
                    try:
                        if thrown is not None:
                            item = await generator.athrow(thrown)
                        else:
                            item = await generator.asend(sent)
                    except StopAsyncIteration:
                        return
                    finally:
                        self._pop(pushed, None, end_unit=False)
                    try:
                        sent, thrown = (yield item), None
                    except GeneratorExit:
                        await generator.aclose()
                        raise
                    except BaseException as exc:
                        sent, thrown = None, exc
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
                raise
            finally:
                if unit is not None:
                    unit.end(error)

        return run


def start_unit(name: str, span_attributes: Mapping[str, str]) -> Any:
    """A roll-up span for a unit of work, opened by the lifecycle; None when not instrumented."""
    active = runtime.current()
    if active is None or active.start_unit is None:
        return None
    return active.start_unit(name, span_attributes)


# --- baggage: attribution across services (opt-in: instrument(baggage=True)) ---------------------

BAGGAGE_PREFIX = "tokentrail."


def _baggage() -> Any:
    """The baggage API, imported at its first use: baggage is opt-in, and importing it compiles its
    header regular expressions (a few ms of every start-up that instrument() need not pay)."""
    from opentelemetry import baggage

    return baggage


def baggage_enabled() -> bool:
    active = runtime.current()
    return active is not None and active.settings.baggage


def with_baggage(
    values: Mapping[str, str], context: otel_context.Context | None = None
) -> otel_context.Context:
    """``context`` (default: the current one) with the attribution as ``tokentrail.<key>`` baggage
    entries, for the application's propagators to send. Free-form labels stay local."""
    current = otel_context.get_current() if context is None else context
    for key, value in values.items():
        if not key.startswith("label:"):
            current = _baggage().set_baggage(BAGGAGE_PREFIX + key, value, current)
    return current


def _write_baggage(values: Mapping[str, str]) -> object:
    """With baggage on, put the attribution in OpenTelemetry baggage for outgoing requests."""
    if not baggage_enabled():
        return None
    return otel_context.attach(with_baggage(values))


def under_incoming_baggage(attribution: Attribution) -> Attribution:
    """Attribution from incoming baggage (``tokentrail.<key>`` entries) under the local one."""
    try:
        incoming = {
            name[len(BAGGAGE_PREFIX) :]: str(value)
            for name, value in _baggage().get_all().items()
            if name.startswith(BAGGAGE_PREFIX) and name[len(BAGGAGE_PREFIX) :] in ATTRIBUTION_KEYS
        }
        if not incoming:
            return attribution
        values = {**validate(incoming), **attribution.values}
    except Exception as exc:  # a malformed baggage value from another service is not our error
        _safety.warn_once("baggage", "tokentrail: ignoring invalid attribution in baggage: %s", exc)
        return attribution
    return Attribution.of(values, attribution.rollups)


def span(name: str, **values: Any) -> attribute:
    """A roll-up span for a unit of work: ``with tokentrail.span("phase pm", phase="pm"):``.

    Its attributes add up the tokens and cost of the LLM calls made inside it, set when it ends.
    """
    return attribute(span=name, **values)


def _default_span_name(values: Mapping[str, str]) -> str:
    for key in ("task", "phase", "agent", "role", "pipeline"):
        if key in values:
            return f"{key} {values[key]}"
    return "tokentrail.unit"


def price_context(**values: str) -> AbstractContextManager[None]:
    """Price the calls made inside this block with a price variant, e.g. ``processing="batch"``.

    Use it where the provider's response cannot say it, such as requests that went through a
    batch API. Unknown keys or values are rejected here, when ``price_context(...)`` is called
    (not when the block is entered, nor silently ignored at pricing time).
    """
    for key, value in values.items():
        allowed = PRICE_CONTEXT_KEYS.get(key)
        if allowed is None:
            raise ValueError(
                f"price_context: unknown key {shown(key)}; use one of {', '.join(sorted(PRICE_CONTEXT_KEYS))}"
            )
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"price_context: {key}={shown(value)}; use one of {', '.join(allowed)}")
    return _price_context_block(values)


@contextmanager
def _price_context_block(values: Mapping[str, str]) -> Iterator[None]:
    token = _price_context.set({**_price_context.get(), **values})
    try:
        yield
    finally:
        _price_context.reset(token)
