"""The shared stream wrapper: the application iterates the SDK's stream through it, untouched.

Each item goes to the provider's stream state (which accumulates what the response will say:
usage, model, finish reasons) and then to the application. The call ends exactly once: when the
stream is exhausted, raises, is closed, leaves its ``with`` block, or is garbage-collected
unfinished. Errors in our own handling are swallowed; the SDK's errors pass through unchanged.

Two ways to stand between the SDK and the application, one per-item logic (the followers):

* :func:`follow` taps an SDK stream object in place: Stainless streams (openai, anthropic) pull
  every item from their private ``_iterator``, so that iterator is swapped for a follower of it.
  The application keeps the SDK's own object; per item we cost one method call and the state's
  ``add``. The SDK classes' ``close`` is patched (by :mod:`._stainless`) to end the follower.
* :class:`StreamProxy` / :class:`AsyncStreamProxy` stand in for a stream we cannot tap (a plain
  generator, as google-genai returns): a ``wrapt.ObjectProxy`` (every attribute passes through,
  ``isinstance`` still holds) around a follower.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import wrapt

from .. import _safety
from ..lifecycle import Call
from ..records import ResponseInfo

__all__ = ["AsyncFollower", "AsyncStreamProxy", "Follower", "StreamProxy", "StreamState", "follow"]

_perf_counter = time.perf_counter


class StreamState(Protocol):
    """Per-stream accumulator supplied by a provider module.

    It may also have ``watch(stream)``: called once with the SDK's stream object before its first
    item, to read what the SDK would otherwise parse for nothing (see the OpenAI usage chunk)."""

    def add(self, item: Any) -> bool:
        """Take one item; return False to keep it from the application (a chunk we asked for)."""
        ...

    def result(self) -> ResponseInfo | None:
        """What the stream has told us so far (called once, off the calling thread)."""
        ...


class _FollowerBase:
    __slots__ = ("_add", "_call", "_count", "_first", "_last", "_next", "_state")

    def __init__(self, call: Call, state: StreamState) -> None:
        self._call = call
        self._state = state
        self._add = state.add
        self._count = 0
        self._first: float | None = None
        self._last: float | None = None

    def _take(self, item: Any) -> bool:
        """Give ``item`` to the state; True if the application gets it."""
        try:
            deliver = self._add(item)
        except Exception as exc:
            _safety.internal_error("stream.item", exc)
            return True
        if deliver:
            now = _perf_counter()
            if self._first is None:
                self._first = now
            self._last = now
            self._count += 1
        return deliver

    def _end(self, error: BaseException | None, *, incomplete: bool) -> None:
        # What the stream said is read from its state off the calling thread (the state is ours,
        # and nothing adds to it once the stream has ended).
        call = self._call
        if call.ended:
            return
        call.streamed(self._first, self._last, self._count)
        if error is None:
            call.finish(self._state.result, incomplete=incomplete)
        else:
            call.fail(error, self._state.result)

    def close(self) -> None:
        """The application closed the stream (or left its ``with`` block) before its end."""
        self._end(None, incomplete=True)

    def __del__(self) -> None:
        # The application dropped the stream unfinished (or never iterated it): the span still
        # ends, marked incomplete, with whatever usage had arrived.
        try:
            self._end(None, incomplete=True)
        except Exception:  # never raise from a finaliser
            pass


class Follower(_FollowerBase):
    """Follows a synchronous iterator of SDK items."""

    __slots__ = ()

    def __init__(self, items: Any, call: Call, state: StreamState) -> None:
        super().__init__(call, state)
        self._next = items.__next__

    def __iter__(self) -> Follower:
        return self

    def __next__(self) -> Any:
        next_item = self._next
        while True:
            try:
                item = next_item()
            except StopIteration:
                self._end(None, incomplete=False)
                raise
            except BaseException as error:
                self._end(error, incomplete=True)
                raise
            if self._take(item):
                return item


class AsyncFollower(_FollowerBase):
    """Follows an asynchronous iterator of SDK items."""

    __slots__ = ()

    def __init__(self, items: Any, call: Call, state: StreamState) -> None:
        super().__init__(call, state)
        self._next = items.__anext__

    def __aiter__(self) -> AsyncFollower:
        return self

    async def __anext__(self) -> Any:
        next_item = self._next
        while True:
            try:
                item = await next_item()
            except StopAsyncIteration:
                self._end(None, incomplete=False)
                raise
            except BaseException as error:
                self._end(error, incomplete=True)
                raise
            if self._take(item):
                return item


def follow(stream: Any, call: Call, state: StreamState, *, is_async: bool) -> bool:
    """Tap a Stainless SDK stream in place (its ``_iterator`` becomes a follower of itself).

    False, with nothing changed, if this SDK version's stream has no ``_iterator`` to tap."""
    watch = getattr(state, "watch", None)
    try:
        items = stream._iterator
    except AttributeError:
        return False
    if watch is not None:
        try:
            watch(stream)
        except Exception as exc:
            _safety.internal_error("stream.watch", exc)
    stream._iterator = (AsyncFollower if is_async else Follower)(items, call, state)
    return True


def end_followed(stream: Any) -> None:
    """After an SDK stream's own ``close()``: end the call it was following, if any."""
    follower = getattr(stream, "__dict__", {}).get("_iterator")
    if isinstance(follower, _FollowerBase):
        follower.close()


class StreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Stands in for a synchronous SDK stream that cannot be tapped (a generator)."""

    def __init__(self, wrapped: Any, call: Call, state: StreamState) -> None:
        super().__init__(wrapped)
        self._self_follower = Follower(wrapped, call, state)

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        return self._self_follower.__next__()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_follower.close()

    def __enter__(self) -> StreamProxy:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()


class AsyncStreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Stands in for an asynchronous SDK stream that cannot be tapped (an async generator)."""

    def __init__(self, wrapped: Any, call: Call, state: StreamState) -> None:
        super().__init__(wrapped)
        self._self_follower = AsyncFollower(wrapped, call, state)

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        return await self._self_follower.__anext__()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_follower.close()

    async def aclose(self) -> None:
        """Closes an async generator (google-genai's streams are async generators)."""
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_follower.close()

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()
