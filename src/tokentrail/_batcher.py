"""A bounded hand-off from the application's threads to one background thread.

:meth:`Batcher.submit` runs on the calling thread at the end of every LLM call: it appends to a
deque and returns, never blocking and never raising. A full queue drops the item and reports it
(``on_drop``). A daemon thread takes everything queued once per flush interval (sooner when
``batch_size`` items are waiting) and hands it to ``handle`` as one batch.

With ``handle_when_full`` nothing is dropped: a full queue is drained by the calling thread, in
order (back-pressure instead of loss). ``flush()`` drains the queue synchronously; ``close()``
drains it and stops the thread. At interpreter exit the queue is drained once more, and anything
submitted after that (a stream finalised late in shutdown) is handled synchronously, since nothing
else would.

``handle`` may give back the items it could not handle yet (a ledger locked by another process):
they go back to the front of the queue and the drain stops there, to be tried again on the next
one. ``flush(timeout)`` waits at most about ``timeout`` for a drain in progress on another thread.

Across a fork (see :mod:`._fork`) no drain is in progress: the forking thread holds the drain
lock. A forked child starts with an empty queue (the parent handles what it had queued) and new
locks, and starts a thread of its own with its first item, not before.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from . import _fork, _safety

__all__ = ["Batcher"]

_MAX_BATCH = 50_000  # one transaction holds at most this many rows
# How long a fork waits for a drain in progress on our thread (it holds the drain lock) before
# going ahead without it: the child replaces the lock either way.
_FORK_WAIT_S = 2.0


class Batcher:
    def __init__(
        self,
        name: str,
        handle: Callable[[list[Any]], list[Any] | None],
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
        self._fork_holds_lock = False
        self._thread: threading.Thread | None = None
        self._start_thread()
        # A weak reference: an atexit entry must not keep a closed batcher alive.
        ref = weakref.ref(self)
        self._exit_hook = lambda: _at_exit(ref)
        atexit.register(self._exit_hook)
        _fork.install()  # a queue with a thread of its own: forks must leave it whole
        _fork.on_fork(
            self,
            before=lambda: _before_fork(ref),
            after_in_parent=lambda: _after_fork_in_parent(ref),
            after_in_child=lambda: _after_fork_in_child(ref),
        )

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

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
        if self._thread is None:  # a forked child's first item
            self._start_thread()
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

    def flush(self, timeout: float | None = None) -> bool:
        """Handle everything queued so far, on this thread. Never raises.

        With a ``timeout``, waits at most that long for a drain in progress on another thread.
        False when items are left queued (that wait ran out, or ``handle`` gave items back)."""
        lock = self._drain_lock
        if not lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        try:
            queue = self._queue
            while queue:
                count = min(len(queue), _MAX_BATCH)
                batch = [queue.popleft() for _ in range(count)]
                try:
                    left = self._handle(batch)
                except Exception as exc:
                    _safety.internal_error(f"{self.name}.batch", exc)
                    self._on_drop(len(batch), "write_error")
                    continue
                if left:
                    queue.extendleft(reversed(left))
                    return False
            return True
        finally:
            lock.release()

    def take_all(self) -> list[Any]:
        """Empty the queue and return what it held (to count what is given up at exit)."""
        queue = self._queue
        return [queue.popleft() for _ in range(len(queue))]

    def close(self) -> None:
        """Drain the queue and stop the thread. Later submissions are ignored. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
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


def _before_fork(ref: weakref.ReferenceType[Batcher]) -> None:
    batcher = ref()
    if batcher is not None and not batcher._closed:
        batcher._fork_holds_lock = batcher._drain_lock.acquire(timeout=_FORK_WAIT_S)


def _after_fork_in_parent(ref: weakref.ReferenceType[Batcher]) -> None:
    batcher = ref()
    if batcher is not None and batcher._fork_holds_lock:
        batcher._fork_holds_lock = False
        batcher._drain_lock.release()


def _after_fork_in_child(ref: weakref.ReferenceType[Batcher]) -> None:
    """A forked child (gunicorn, multiprocessing) has the queue but not the thread. The parent
    still handles what it had queued; the child starts empty, with new locks, and its own thread
    starts with its first item (a worker that never makes a call never starts one)."""
    batcher = ref()
    if batcher is None:
        return
    batcher._fork_holds_lock = False
    batcher._queue.clear()
    batcher._drain_lock = threading.RLock()
    batcher._wake = threading.Event()
    batcher._thread = None
    if batcher._closed:
        return
    if batcher._on_fork is not None:
        batcher._on_fork()


def _at_exit(ref: weakref.ReferenceType[Batcher]) -> None:
    batcher = ref()
    if batcher is not None:
        batcher.drain_for_exit()
