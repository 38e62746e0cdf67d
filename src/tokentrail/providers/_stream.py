"""The shared stream wrapper: the application iterates the SDK's stream through it, untouched.

Each item goes to the provider's stream state (which accumulates what the response will say:
usage, model, finish reasons) and then to the application. The call ends exactly once: when the
stream is exhausted, raises, is closed, leaves its ``with`` block, or is garbage-collected
unfinished (the generator's ``GeneratorExit``, or, for a stream never iterated, the call's own
finaliser). Errors in our own handling are swallowed; the SDK's errors pass through unchanged.

One per-item loop (the follower generators), two ways to put it between SDK and application:

* :func:`follow` taps an SDK stream object in place: Stainless streams (openai, anthropic) pull
  every item from their private ``_iterator``, so that iterator is swapped for a follower of it.
  The application keeps the SDK's own object, and per item we cost one generator step and the
  state's ``add``. The SDK classes' ``close`` is patched (by :mod:`._stainless`) to call
  :func:`end_followed`.
* :func:`follow_generator` replaces a generator that only the SDK's own code iterates
  (google-genai's per-request streams) with a follower generator.
* :class:`StreamProxy` / :class:`AsyncStreamProxy` stand in for any other stream: a
  ``wrapt.ObjectProxy`` (every attribute passes through, ``isinstance`` still holds) around a
  follower.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import wrapt

from .. import _safety
from ..lifecycle import Call
from ..records import ResponseInfo

__all__ = ["AsyncStreamProxy", "StreamProxy", "StreamState", "end_followed", "follow", "follow_generator"]

_perf_counter = time.perf_counter
_END = object()
_FOLLOWED = "_tokentrail_followed"  # on a tapped SDK stream: (call, state)


class StreamState(Protocol):
    """Per-stream accumulator supplied by a provider module.

    It may also have ``watch(stream)``: called once with the SDK's stream object before
    its first item, to read what the SDK would otherwise parse for nothing (the OpenAI usage
    chunk)."""

    def add(self, item: Any) -> bool:
        """Take one item; return False to keep it from the application (a chunk we asked for)."""
        ...

    def result(self) -> ResponseInfo | None:
        """What the stream has told us so far (called once, off the calling thread)."""
        ...


def _follow(
    items: Iterator[Any], call: Call, state: StreamState, first_step_in_span: bool = False
) -> Iterator[Any]:
    add = state.add
    clock = _perf_counter
    arrived = call.chunk_times.append
    try:
        if first_step_in_span:
            # A generator sends its request on its first step, long after the patched method
            # returned: that step runs with the call's span current, as a non-streamed request
            # does. ``chain`` (C) then hands on the rest at no cost per item.
            token = call.activate()
            try:
                head = next(items, _END)
            finally:
                call.deactivate(token)
            items = itertools.chain(() if head is _END else (head,), items)
        for item in items:
            try:
                deliver = add(item)
            except Exception as exc:
                _safety.internal_error("stream.item", exc)
                deliver = True
            if deliver:
                arrived(clock())
                yield item
    except GeneratorExit:  # closed, or dropped, before the end
        call.finish(state.result, incomplete=True)
        raise
    except BaseException as error:
        call.fail(error, state.result)
        raise
    call.finish(state.result)


async def _follow_async(items: AsyncIterator[Any], call: Call, state: StreamState) -> AsyncIterator[Any]:
    # _follow's twin for async iterators, line for line (a generator cannot serve both): keep alike.
    add = state.add
    clock = _perf_counter
    arrived = call.chunk_times.append
    try:
        async for item in items:
            try:
                deliver = add(item)
            except Exception as exc:
                _safety.internal_error("stream.item", exc)
                deliver = True
            if deliver:
                arrived(clock())
                yield item
    except GeneratorExit:
        call.finish(state.result, incomplete=True)
        # Closed or dropped unfinished: close the SDK's iterator now, in this same aclose(). Left
        # to its own finaliser, it would close in a later task of the event loop, which may be
        # shutting down and closing it at the same time ("aclose(): asynchronous generator is
        # already running"); without tokentrail the SDK's iterator is the one being closed. Not
        # when something (the loop's shutdown) is closing it already.
        aclose = getattr(items, "aclose", None)
        if aclose is not None and not getattr(items, "ag_running", False):
            await aclose()
        raise
    except BaseException as error:
        call.fail(error, state.result)
        raise
    call.finish(state.result)


def follow(
    stream: Any, call: Call, state: StreamState, *, is_async: bool, attribute: str = "_iterator"
) -> bool:
    """Tap an SDK stream object in place: the generator its ``__next__`` pulls items from
    (``attribute``: Stainless's ``_iterator``, Speakeasy's ``generator``) becomes a follower of itself.

    False, with nothing changed, if this SDK version's stream has no such generator to tap."""
    if attribute not in type(stream).__dict__ and attribute not in getattr(stream, "__dict__", {}):
        return False
    items, runner = _items_without_cycle(stream, attribute)
    watch = getattr(state, "watch", None)
    if watch is not None:
        try:
            watch(runner)  # the object whose generator will run: still unstarted
        except Exception as exc:
            _safety.internal_error("stream.watch", exc)
    setattr(stream, attribute, (_follow_async if is_async else _follow)(items, call, state))
    setattr(stream, _FOLLOWED, (call, state))
    return True


def _items_without_cycle(stream: Any, attribute: str) -> tuple[Any, Any]:
    """The stream's item generator, made over a shallow copy of the stream where the SDK made it
    over the stream itself (openai's ``self._iterator = self.__stream__()``): that generator
    refers to the stream, and a stream in a reference cycle is freed only by the cyclic garbage
    collector, so one the application drops unfinished would end its call late. anthropic's SDK
    already makes it on a copy, for the same reason; the same move, for the others.

    Returns (the items, the stream object that generator runs over)."""
    items = getattr(stream, attribute)
    frame = getattr(items, "gi_frame", None) or getattr(items, "ag_frame", None)
    if frame is None or not _unstarted(items) or frame.f_locals.get("self") is not stream:
        return items, stream  # not a generator over this stream, or already started: leave it
    clone = copy.copy(stream)
    clone.__dict__.pop(attribute, None)
    return clone.__stream__(), clone


async def _reference() -> AsyncIterator[None]:
    yield None


_CREATED_LASTI = _reference().ag_frame.f_lasti  # type: ignore[attr-defined]


def _unstarted(items: Any) -> bool:
    if inspect.isgenerator(items):
        return inspect.getgeneratorstate(items) == inspect.GEN_CREATED
    state = getattr(inspect, "getasyncgenstate", None)  # Python 3.12+
    if state is not None:
        return state(items) == inspect.AGEN_CREATED  # type: ignore[attr-defined]
    return not items.ag_running and items.ag_frame.f_lasti == _CREATED_LASTI


def follow_generator(items: Iterator[Any], call: Call, state: StreamState) -> Iterator[Any]:
    """A generator in place of an SDK's generator of items: same type, same items; only for one
    that the SDK's own code consumes (a per-request stream inside its public one), where nothing
    but iteration and ``close()`` is ever asked of it. If ``items`` has not started yet, its
    first step (the request) runs inside the call's span."""
    unstarted = inspect.isgenerator(items) and inspect.getgeneratorstate(items) == inspect.GEN_CREATED
    return _follow(items, call, state, unstarted)


def end_followed(stream: Any) -> None:
    """After an SDK stream's own ``close()``: end the call it was following, if any."""
    try:
        followed = getattr(stream, "__dict__", {}).get(_FOLLOWED)
        if followed is not None:
            _closed_early(followed)
    except Exception as exc:  # runs in the SDK's close(): never let ours replace its outcome
        _safety.internal_error("stream.close", exc)


def _closed_early(followed: tuple[Call, StreamState]) -> None:
    call, state = followed
    call.finish(state.result, incomplete=True)  # a no-op once the call has ended


def _dropped(proxy: Any) -> None:
    try:
        _closed_early(proxy._self_followed)
    except Exception:  # never raise from a finaliser (nor for a proxy whose __init__ failed)
        pass


class StreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Stands in for a synchronous SDK stream that cannot be tapped (a generator)."""

    def __init__(self, wrapped: Any, call: Call, state: StreamState) -> None:
        super().__init__(wrapped)
        self._self_follower = _follow(wrapped, call, state)
        self._self_followed = (call, state)

    def __iter__(self) -> StreamProxy:
        return self

    def __del__(self) -> None:  # dropped unfinished: end now, not when the follower is finalised
        _dropped(self)

    def __next__(self) -> Any:
        return self._self_follower.__next__()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            _closed_early(self._self_followed)

    def __enter__(self) -> StreamProxy:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()


class AsyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Stands in for an asynchronous SDK stream that cannot be tapped (an async generator)."""

    def __init__(self, wrapped: Any, call: Call, state: StreamState) -> None:
        super().__init__(wrapped)
        self._self_follower = _follow_async(wrapped, call, state)
        self._self_followed = (call, state)

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    def __del__(self) -> None:  # an async generator would wait for the event loop to finalise it
        _dropped(self)

    async def __anext__(self) -> Any:
        return await self._self_follower.__anext__()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            _closed_early(self._self_followed)

    async def aclose(self) -> None:
        """Closes an async generator (google-genai's streams are async generators)."""
        try:
            await self.__wrapped__.aclose()
        finally:
            _closed_early(self._self_followed)

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()
