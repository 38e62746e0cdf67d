"""A bounded hand-off from the application's threads to one background thread.

:meth:`Batcher.submit` runs on the calling thread at the end of every LLM call: it appends to a
deque and returns, never blocking and never raising. A full queue drops the item and reports it
(``on_drop``). A daemon thread takes everything queued once per flush interval (sooner when
``batch_size`` items are waiting) and hands it to ``handle`` as one batch.

With ``handle_when_full`` nothing is dropped: a full queue is drained by the calling thread, in
order (back-pressure instead of loss). ``flush()`` drains the queue synchronously; ``close()``
drains it and stops the thread. At interpreter exit the queue is drained once more, and anything
submitted after that (a stream finalised late in shutdown) is handled synchronously, since nothing
else would. A forked child starts a thread of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from . import _safety

__all__ = ["Batcher"]

_MAX_BATCH = 50_000  # one transaction holds at most this many rows


class Batcher:
    def __init__(
        self,
        name: str,
        handle: Callable[[list[Any]], None],
        *,
        on_drop: Callable[[int, str], None],
        queue_size: int = 50_000,
        flush_interval: float = 0.5,
        batch_size: int = 5_000,
        on_close: Callable[[], None] | None = None,
        on_fork: Callable[[], None] | None = None,
        handle_when_full: bool = False,
    ) -> None:
        self.name = name
        self._handle = handle
        self._on_drop = on_drop
        self._on_close = on_close
        self._on_fork = on_fork
        self._handle_when_full = handle_when_full
        self._queue: deque[Any] = deque()
        self._max = queue_size
        self._wake_at = max(1, min(batch_size, queue_size))
        self._interval = flush_interval
        self._wake = threading.Event()
        self._drain_lock = threading.RLock()  # a sink may flush from inside a drain
        self._closed = False
        self._exiting = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        # A weak reference: an atexit entry must not keep a closed batcher alive.
        ref = weakref.ref(self)
        self._exit_hook = lambda: _at_exit(ref)
        atexit.register(self._exit_hook)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    # --- the calling thread -------------------------------------------------------------------

    def submit(self, item: Any) -> None:
        """Queue ``item`` (never blocks). Dropped and reported when the queue is full."""
        queue = self._queue
        if len(queue) >= self._max or self._closed:
            if self._exiting and not self._closed:
                queue.append(item)  # late in shutdown: nothing will drain it later
                self.flush()
            elif self._handle_when_full and not self._closed:
                queue.append(item)  # back-pressure: drain here, in order; late, but nothing lost
                self.flush()
            elif not self._closed:
                self._on_drop(1, "queue_full")
            return
        queue.append(item)
        if len(queue) == self._wake_at:
            self._wake.set()
        if self._exiting:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def hook_exit(self) -> None:
        """Register the exit drain again, so that it runs before every exit hook registered until
        now (exit hooks run last-registered first): e.g. before an OpenTelemetry provider's own
        shutdown, which must come after the last spans and measurements we hand it."""
        atexit.unregister(self._exit_hook)
        atexit.register(self._exit_hook)

    # --- draining -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Handle everything queued so far, on this thread. Never raises."""
        with self._drain_lock:
            queue = self._queue
            while queue:
                count = min(len(queue), _MAX_BATCH)
                batch = [queue.popleft() for _ in range(count)]
                try:
                    self._handle(batch)
                except Exception as exc:
                    _safety.internal_error(f"{self.name}.batch", exc)
                    self._on_drop(len(batch), "write_error")

    def close(self) -> None:
        """Drain the queue and stop the thread. Later submissions are ignored. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.flush()
        with contextlib.suppress(Exception):
            atexit.unregister(self._exit_hook)
        if self._on_close is not None:
            try:
                self._on_close()
            except Exception as exc:
                _safety.internal_error(f"{self.name}.close", exc)

    def _run(self) -> None:
        wake = self._wake
        while not self._closed:
            wake.wait(self._interval)
            wake.clear()
            if self._queue:
                self.flush()

    def drain_for_exit(self) -> None:
        """Interpreter exit: drain now, and handle whatever is submitted later at once."""
        self._exiting = True
        self.flush()


def _after_fork(ref: weakref.ReferenceType[Batcher]) -> None:
    """A forked child (gunicorn, multiprocessing) has the queue but not the thread: start its own.
    The parent still writes what it had queued; the child starts empty."""
    batcher = ref()
    if batcher is None or batcher._closed:
        return
    batcher._queue.clear()
    batcher._drain_lock = threading.RLock()
    batcher._wake = threading.Event()
    if batcher._on_fork is not None:
        batcher._on_fork()
    batcher._thread = threading.Thread(target=batcher._run, name=batcher.name, daemon=True)
    batcher._thread.start()


def _at_exit(ref: weakref.ReferenceType[Batcher]) -> None:
    batcher = ref()
    if batcher is not None:
        batcher.drain_for_exit()
