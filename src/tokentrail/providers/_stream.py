"""The shared stream wrapper: the application iterates the SDK's stream through it, untouched.

A proxy stands in for the SDK's stream object (every attribute passes through, ``isinstance``
still holds). Each item goes to the provider's stream state (which accumulates what the response
will say: usage, model, finish reasons) and then to the application. The call ends exactly once:
when the stream is exhausted, raises, is closed, leaves its ``with`` block, or is garbage-collected
unfinished. Errors in our own handling are swallowed; the SDK's errors pass through unchanged.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

import wrapt

from .. import _safety
from ..lifecycle import Call
from ..records import ResponseInfo

__all__ = ["AsyncStreamProxy", "StreamProxy", "StreamState"]


class StreamState(Protocol):
    """Per-stream accumulator supplied by a provider module."""

    def add(self, item: Any) -> bool:
        """Take one item; return False to keep it from the application (a chunk we asked for)."""
        ...

    def result(self) -> ResponseInfo | None:
        """What the stream has told us so far."""
        ...


def _abandoned(call: Call, state: StreamState) -> None:
    # Runs from the garbage collector (or at exit) when the application dropped an unfinished
    # stream: the span still ends, marked incomplete, with whatever usage had arrived.
    if not call.ended:
        call.finish(state.result, incomplete=True)


class _StreamProxyBase(wrapt.ObjectProxy):  # type: ignore[misc]
    def __init__(self, wrapped: Any, call: Call, state: StreamState) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_state = state
        weakref.finalize(self, _abandoned, call, state)

    def _self_take(self, item: Any) -> bool:
        try:
            deliver = self._self_state.add(item)
        except Exception as exc:
            _safety.internal_error("stream.item", exc)
            return True
        if deliver:
            self._self_call.chunk()
        return deliver

    def _self_end(self, error: BaseException | None, *, incomplete: bool) -> None:
        # What the stream said is read from its state off the calling thread (the state is ours,
        # and nothing adds to it once the stream has ended).
        call = self._self_call
        if call.ended:
            return
        if error is None:
            call.finish(self._self_state.result, incomplete=incomplete)
        else:
            call.fail(error, self._self_state.result)


class StreamProxy(_StreamProxyBase):
    """Wraps a synchronous SDK stream (``openai.Stream``, ``anthropic.Stream``, ...)."""

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        wrapped_next = self.__wrapped__.__next__
        while True:
            try:
                item = wrapped_next()
            except StopIteration:
                self._self_end(None, incomplete=False)
                raise
            except BaseException as error:
                self._self_end(error, incomplete=True)
                raise
            if self._self_take(item):
                return item

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end(None, incomplete=True)

    def __enter__(self) -> StreamProxy:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()


class AsyncStreamProxy(_StreamProxyBase):
    """Wraps an asynchronous SDK stream (``openai.AsyncStream``, ...)."""

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        wrapped_next = self.__wrapped__.__anext__
        while True:
            try:
                item = await wrapped_next()
            except StopAsyncIteration:
                self._self_end(None, incomplete=False)
                raise
            except BaseException as error:
                self._self_end(error, incomplete=True)
                raise
            if self._self_take(item):
                return item

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_end(None, incomplete=True)

    async def aclose(self) -> None:
        """Closes an async generator (google-genai's streams are async generators)."""
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_end(None, incomplete=True)

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()
