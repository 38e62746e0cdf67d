"""Method-level patches, for SDKs that have no single request method to wrap (google-genai, ...).

Stainless SDKs send every call through one ``request`` method (see :mod:`._stainless`). Other SDKs
make each billed HTTP request from one of several methods, or from a request method of their own
that returns either a response or a stream (ollama's ``_request``: a ``request`` target, whose
unknown requests are counted as unrecognised); a provider module then names those methods as
:class:`Target` s, each with a :class:`Reader` that turns the method's arguments into a
:class:`~._contract.Plan` (the request, and the :class:`~._contract.Endpoint` that reads its
result or stream). Here lives only the mechanics, the same as for Stainless SDKs:

* patch on the class, so clients created before ``instrument()`` are covered; idempotent;
  :meth:`Patches.remove` restores the SDK's own functions;
* start the call, make its span current while the request is sent, end it with the response, or
  hand a stream to the shared stream followers (:mod:`._stream`), which end it exactly once;
* guard every step of ours: if tokentrail fails, the SDK call runs as if it were not there, and
  the SDK's own errors pass through unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

from .. import _safety
from .._patching import ClassPatches
from ..budgets import BudgetExceeded
from ..config import Settings
from ..lifecycle import Call, recording
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._stream import AsyncStreamProxy, StreamProxy, StreamState, follow_generator

__all__ = ["Patches", "Reader", "Target"]


class Reader(Protocol):
    """The provider module's request reader for one kind of patched method (pure)."""

    def request(
        self, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], settings: Settings
    ) -> Plan | NotRecorded | None:
        """What the call asks, and how to read what it returns; ``None`` leaves it uninstrumented
        (for a ``request`` target: counted as unrecognised, by the reader's ``endpoint(args,
        kwargs)`` label), ``NOT_RECORDED`` too, uncounted (a request known not to be an LLM call)."""
        ...


@dataclass(frozen=True, slots=True)
class Target:
    """One method to patch. Sync or async is read from the SDK's own function."""

    owner: type
    names: tuple[str, ...]
    """Candidate method names, first present wins (SDK versions name the same step differently)."""
    kind: Literal["call", "stream", "request"]
    """``call``: returns the response. ``stream``: returns an iterator of chunks (a generator, or
    a coroutine that sends the request and returns an async iterator). ``request``: an SDK's one
    request method (ollama's ``_request``), which does either, as the reader's plan says
    (``plan.request.stream``)."""
    reader: Reader


class Patches:
    """The patches of one SDK; :meth:`install` is idempotent and :meth:`remove` undoes it."""

    def __init__(self, name: str, targets: list[Target]) -> None:
        self.name = name
        self.targets = targets
        self._patches = ClassPatches()

    def install(self) -> None:
        if self._patches:
            return
        for target in self.targets:
            name = next((n for n in target.names if n in target.owner.__dict__), None)
            if name is None:
                _safety.warn_once(
                    (self.name, target.owner, target.names),
                    "tokentrail: %s.%s not found in this %s version; those calls are not instrumented",
                    target.owner.__name__,
                    "/".join(target.names),
                    self.name,
                )
                continue
            original = target.owner.__dict__[name]
            self._patches.wrap(target.owner, name, _wrapper(self.name, name, target, original))

    def remove(self) -> None:
        self._patches.undo()

    @property
    def installed(self) -> bool:
        return bool(self._patches)


# --- the wrappers ------------------------------------------------------------------------------


def _wrapper(sdk: str, name: str, target: Target, original: Any) -> Callable[..., Any]:
    reader = target.reader
    where = f"{sdk}.{name}"
    if target.kind == "request":
        if inspect.iscoroutinefunction(original):
            return _async_request(where, reader, sdk)
        return _sync_request(where, reader, sdk)
    if target.kind == "call":
        if inspect.iscoroutinefunction(original):
            return _async_call(where, reader)
        return _sync_call(where, reader)
    if inspect.iscoroutinefunction(original):
        return _async_stream(where, reader)
    if inspect.isasyncgenfunction(original):
        return _async_generator_stream(where, reader)
    return _sync_stream(where, reader)


def _start(
    where: str, reader: Reader, instance: Any, args: Any, kwargs: Any, sdk: str | None = None
) -> tuple[Plan, Call] | None:
    """The call started for a plan; None when there is none (``sdk``: a request method's, whose
    requests the reader does not know are counted as unrecognised)."""
    telemetry = recording()
    if telemetry is None:
        return None
    try:
        plan = reader.request(instance, args, kwargs, telemetry.settings)
        if plan is None:
            if sdk is not None:
                telemetry.unrecognised(sdk, reader.endpoint(args, kwargs))  # type: ignore[attr-defined]
            return None
        if plan is NOT_RECORDED:
            return None
        return plan, telemetry.start(plan.request)  # type: ignore[union-attr]
    except BudgetExceeded:
        raise  # refused before sending: the application must see it
    except Exception as exc:
        _safety.internal_error(f"{where}.request", exc)
        return None


def _finish(call: Call, plan: Plan, result: Any) -> None:
    call.finish(partial(plan.endpoint.response, result, plan.request))  # read off the calling thread


def _stream_state(where: str, call: Call, plan: Plan) -> StreamState | None:
    try:
        return plan.endpoint.stream_state(plan.request, plan.hide_usage_chunk)
    except Exception as exc:
        _safety.internal_error(f"{where}.stream", exc)
        call.finish(None)
        return None


def _sync_call(where: str, reader: Reader) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        started = _start(where, reader, instance, args, kwargs)
        if started is None:
            return wrapped(*args, **kwargs)
        return _run_sync_call(started, wrapped, args, kwargs)

    return wrapper


def _run_sync_call(started: tuple[Plan, Call], wrapped: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    plan, call = started
    token = call.activate()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as error:
        call.fail(error)
        raise
    finally:
        call.deactivate(token)
    _finish(call, plan, result)
    return result


def _async_call(where: str, reader: Reader) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        started = _start(where, reader, instance, args, kwargs)
        if started is None:
            return await wrapped(*args, **kwargs)
        return await _run_async_call(started, wrapped, args, kwargs)

    return wrapper


async def _run_async_call(
    started: tuple[Plan, Call], wrapped: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    plan, call = started
    token = call.activate()
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as error:
        call.fail(error)
        raise
    finally:
        call.deactivate(token)
    _finish(call, plan, result)
    return result


def _sync_stream(where: str, reader: Reader) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        started = _start(where, reader, instance, args, kwargs)
        if started is None:
            return wrapped(*args, **kwargs)
        return _run_sync_stream(where, started, wrapped, args, kwargs)

    return wrapper


def _run_sync_stream(
    where: str, started: tuple[Plan, Call], wrapped: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    plan, call = started
    try:
        chunks = wrapped(*args, **kwargs)
    except BaseException as error:
        call.fail(error)
        raise
    state = _stream_state(where, call, plan)
    if state is None:
        return chunks
    if inspect.isgenerator(chunks):
        return follow_generator(chunks, call, state)  # a generator: iteration and close() only
    return StreamProxy(chunks, call, state)


def _async_stream(where: str, reader: Reader) -> Callable[..., Any]:
    # A coroutine that sends the request, then returns the async iterator of chunks.
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        started = _start(where, reader, instance, args, kwargs)
        if started is None:
            return await wrapped(*args, **kwargs)
        return await _run_async_stream(where, started, wrapped, args, kwargs)

    return wrapper


async def _run_async_stream(
    where: str, started: tuple[Plan, Call], wrapped: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    plan, call = started
    token = call.activate()
    try:
        chunks = await wrapped(*args, **kwargs)
    except BaseException as error:
        call.fail(error)
        raise
    finally:
        call.deactivate(token)
    state = _stream_state(where, call, plan)
    return chunks if state is None else AsyncStreamProxy(chunks, call, state)


def _sync_request(where: str, reader: Reader, sdk: str) -> Callable[..., Any]:
    # One request method for plain and streamed calls: the plan says which this one is.
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        started = _start(where, reader, instance, args, kwargs, sdk)
        if started is None:
            return wrapped(*args, **kwargs)
        if started[0].request.stream:
            return _run_sync_stream(where, started, wrapped, args, kwargs)
        return _run_sync_call(started, wrapped, args, kwargs)

    return wrapper


def _async_request(where: str, reader: Reader, sdk: str) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        started = _start(where, reader, instance, args, kwargs, sdk)
        if started is None:
            return await wrapped(*args, **kwargs)
        if started[0].request.stream:
            return await _run_async_stream(where, started, wrapped, args, kwargs)
        return await _run_async_call(started, wrapped, args, kwargs)

    return wrapper


def _async_generator_stream(where: str, reader: Reader) -> Callable[..., Any]:
    # An async generator function: the request goes out on the first __anext__.
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        started = _start(where, reader, instance, args, kwargs)
        if started is None:
            return wrapped(*args, **kwargs)
        plan, call = started
        try:
            chunks = wrapped(*args, **kwargs)
        except BaseException as error:
            call.fail(error)
            raise
        state = _stream_state(where, call, plan)
        return chunks if state is None else AsyncStreamProxy(chunks, call, state)

    return wrapper
