"""One wrapper for every AWS SDK call made through botocore (boto3's clients): ``_make_api_call``.

Every operation of every botocore client (``client.converse(...)``, ``client.invoke_model(...)``,
and any operation a later service model adds) goes through one method,
``botocore.client.BaseClient._make_api_call(operation_name, api_params)``, once per call, retries
included. Patching that one method on the class covers clients created before ``instrument()``
too, and makes exactly one call of each operation however many HTTP attempts botocore makes. Only
clients of the services a provider module names are looked at; any other service (S3, DynamoDB)
passes straight through. What is service-specific - which operations are LLM calls, how to read
their parameters and what they return - comes from an :class:`Adapter` supplied by the provider
module.

What comes back is the parsed response dict, returned to the application as botocore made it,
with two kinds of value followed in place, never read ahead of the application:

* an event stream (``botocore.eventstream.EventStream``, e.g. ConverseStream's ``stream``) is
  replaced in the dict by a :class:`~._stream.StreamProxy` around it: every event goes to the
  endpoint's stream state, then to the application; ``close()`` and garbage collection end the
  call, as for every other SDK's stream;
* a streaming body (``botocore.response.StreamingBody``, e.g. InvokeModel's ``body``) stays the
  SDK's own object: its raw stream underneath is swapped for a tee that keeps a copy of what the
  application reads. The call ends when the application has read the body to its end (or closes
  it, or drops it): then the endpoint reads the copy, off the calling thread. A body never read
  leaves the endpoint the response headers only.

aiobotocore overrides ``_make_api_call`` with a coroutine of its own (``AioBaseClient``), and its
bodies and event streams are aiohttp-based: this patch point is not shared, and aiobotocore is
not instrumented here.

Every step of ours is guarded: if tokentrail fails, the call runs as if tokentrail were not there,
and botocore's own errors reach the application unchanged.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol

import wrapt

from .. import _safety
from ..budgets import BudgetExceeded
from ..config import Settings
from ..lifecycle import Call, recording
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._stream import StreamProxy

__all__ = ["Adapter", "Instrumentation"]

# Every wrapt wrapper's base: wrapt 2's FunctionWrapper is no longer an ObjectProxy.
_PROXY: type = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)


class Adapter(Protocol):
    """The provider module's reader of one AWS service's operations."""

    service: str
    """The botocore service name (``bedrock-runtime``)."""

    def plan(
        self, client: Any, operation: str, params: Mapping[str, Any], settings: Settings
    ) -> Plan | NotRecorded | None:
        """A :class:`~._contract.Plan` for an LLM call, ``NOT_RECORDED`` for an operation known
        not to be one, None for an operation it does not know (counted as unrecognised)."""
        ...


class Instrumentation:
    """Patches ``BaseClient._make_api_call`` for the services of its adapters; undone by :meth:`remove`."""

    def __init__(self, name: str, adapters: tuple[Adapter, ...]) -> None:
        self.name = name
        self._adapters = {adapter.service: adapter for adapter in adapters}
        self._patch: _Underneath | None = None
        self._followed: tuple[type, type] | None = None

    def install(self) -> None:
        if self._patch is not None:
            return
        from botocore.client import BaseClient
        from botocore.eventstream import EventStream
        from botocore.response import StreamingBody

        self._followed = (EventStream, StreamingBody)
        self._patch = _Underneath(BaseClient, "_make_api_call", self._make_api_call)

    def remove(self) -> None:
        if self._patch is not None:
            self._patch.remove()
            self._patch = None

    @property
    def installed(self) -> bool:
        return self._patch is not None

    # --- the wrapper ----------------------------------------------------------------------------

    def _plan(self, client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Plan, Call] | None:
        try:
            adapter = self._adapters.get(client.meta.service_model.service_name)
        except Exception:  # not a client botocore made: not ours to read
            return None
        if adapter is None:
            return None
        telemetry = recording()
        if telemetry is None:
            return None
        try:
            operation, params = _arguments(args, kwargs)
            plan = adapter.plan(client, operation, params, telemetry.settings)
            if plan is None:
                telemetry.unrecognised(self.name, f"{adapter.service} {operation}")
                return None
            if plan is NOT_RECORDED:
                return None
            return plan, telemetry.start(plan.request)
        except BudgetExceeded:
            raise  # refused before sending: the application must see it
        except Exception as exc:
            _safety.internal_error(f"{self.name}.plan", exc)
            return None

    def _make_api_call(self, wrapped: Callable[..., Any], client: Any, args: Any, kwargs: Any) -> Any:
        planned = self._plan(client, args, kwargs)
        if planned is None:
            return wrapped(*args, **kwargs)
        plan, call = planned
        token = call.activate()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            call.fail(error)
            raise
        finally:
            call.deactivate(token)
        try:
            _follow_result(plan, call, result, *self._followed)  # type: ignore[misc]
        except Exception as exc:
            _safety.internal_error(f"{self.name}.result", exc)
            call.finish(None)
        return result


class _Underneath:
    """A wrapt wrapper put directly around botocore's own function, under any other wrappers.

    The official botocore instrumentation wraps the same method, and its ``uninstrument()`` removes
    whatever wrapper is outermost (``setattr(cls, name, current.__wrapped__)``). Going under the
    wrappers already there (theirs, if they instrumented first) means their removal takes theirs;
    going on top of the plain function when nothing else is there means a later wrapper of theirs
    sits above ours. :meth:`remove` takes out ours alone, wherever it is in the chain."""

    def __init__(self, owner: type, name: str, wrapper: Callable[..., Any]) -> None:
        self.owner, self.name = owner, name
        holder, inner = self._bottom()
        self.wrapper = wrapt.FunctionWrapper(inner, wrapper)
        if holder is None:
            setattr(owner, name, self.wrapper)
        else:
            holder.__wrapped__ = self.wrapper

    def _bottom(self) -> tuple[Any, Any]:
        """(the proxy that holds botocore's function or None, that function)."""
        holder, current = None, vars(self.owner)[self.name]
        while isinstance(current, _PROXY):
            holder, current = current, current.__wrapped__
        return holder, current

    def remove(self) -> None:
        holder, current = None, vars(self.owner).get(self.name)
        while current is not None and current is not self.wrapper:
            if not isinstance(current, _PROXY):
                return  # someone restored the plain function: ours is gone already
            holder, current = current, current.__wrapped__
        if current is None:
            return
        if holder is None:
            setattr(self.owner, self.name, self.wrapper.__wrapped__)
        else:
            holder.__wrapped__ = self.wrapper.__wrapped__


def _arguments(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    operation = kwargs["operation_name"] if "operation_name" in kwargs else args[0]
    params = kwargs["api_params"] if "api_params" in kwargs else args[1]
    return operation, params


# --- what came back ------------------------------------------------------------------------------


def _follow_result(plan: Plan, call: Call, result: Any, event_stream: type, streaming_body: type) -> None:
    """End the call now, or hand its event stream or streaming body to a follower."""
    if isinstance(result, dict):
        for key, value in result.items():
            if isinstance(value, event_stream):
                state = plan.endpoint.stream_state(plan.request, plan.hide_usage_chunk)
                result[key] = StreamProxy(value, call, state)
                return
            if isinstance(value, streaming_body):
                _tee_body(plan, call, result, key, value)
                return
    call.finish(partial(plan.endpoint.response, result, plan.request))  # read off-thread


def _tee_body(plan: Plan, call: Call, result: dict[str, Any], key: str, body: Any) -> None:
    # What the endpoint reads at the end: the response without its body (the dict holds the body,
    # which must stay collectable), and the body's bytes if the application read them all.
    rest = {name: value for name, value in result.items() if name != key}
    length = getattr(body, "_content_length", None)
    tee = _BodyTee(body._raw_stream, _BodyEnd(plan, call, rest, key), _length(length))
    body._raw_stream = tee
    weakref.finalize(body, tee._self_end.dropped)


def _length(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class _BodyEnd:
    """Ends the call of a teed body once: with the bytes read, or with the headers alone."""

    __slots__ = ("call", "key", "plan", "rest")

    def __init__(self, plan: Plan, call: Call, rest: dict[str, Any], key: str) -> None:
        self.plan, self.call, self.rest, self.key = plan, call, rest, key

    def read(self, data: bytes | None) -> None:
        if self.call.ended:
            return
        self.rest[self.key] = data
        self.call.finish(partial(self.plan.endpoint.response, self.rest, self.plan.request))

    def dropped(self) -> None:
        try:
            self.read(None)
        except Exception:  # never raise from a finaliser
            pass


class _BodyTee(wrapt.ObjectProxy):  # type: ignore[misc]
    """The raw HTTP stream under a ``StreamingBody``: passes every read through, keeping a copy.

    ``StreamingBody.read``, ``readinto``, ``readlines``, ``iter_chunks``, ``iter_lines`` and
    iteration all read through its raw stream, so the application may read the body any way it
    likes."""

    def __init__(self, wrapped: Any, end: _BodyEnd, length: int | None) -> None:
        super().__init__(wrapped)
        self._self_end = end
        self._self_kept = bytearray()
        self._self_length = length

    def _self_took(self, data: Any, whole: bool) -> None:
        try:
            self._self_kept += data
            if (
                whole
                or not data
                or (self._self_length is not None and len(self._self_kept) >= self._self_length)
            ):
                self._self_end.read(bytes(self._self_kept))
        except Exception as exc:
            _safety.internal_error("botocore.body", exc)

    def read(self, amt: Any = None, *args: Any, **kwargs: Any) -> Any:
        try:
            data = self.__wrapped__.read(amt, *args, **kwargs)
        except BaseException:
            self._self_end.dropped()  # the body broke off: what the headers say
            raise
        self._self_took(data, amt is None)
        return data

    def readinto(self, buffer: Any) -> Any:
        try:
            count = self.__wrapped__.readinto(buffer)
        except BaseException:
            self._self_end.dropped()
            raise
        self._self_took(bytes(memoryview(buffer)[:count]), False)
        return count

    def readlines(self, *args: Any) -> Any:
        lines = self.__wrapped__.readlines(*args)
        self._self_took(b"".join(lines), not args)
        return lines

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end.dropped()
