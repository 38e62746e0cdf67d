"""Fork safety: a child forked at any moment inherits nothing of ours in a half-done state.

``os.fork()`` copies the memory of every thread but keeps only the one that forked. A lock one of
our threads held at that moment stays held in the child for ever, with nobody to release it; an
import in progress on one of our threads leaves that module's import lock held, so the child
hangs the first time it imports the module (the price catalogue, ``openai`` and everything they
share, such as ``httpx``). Pre-forking servers (gunicorn ``--preload``, uWSGI), Celery and
``multiprocessing`` all fork after start-up, often within a fraction of a second of it.

So, before every fork, the forking thread waits (boundedly) for our short start-up threads to
finish their imports and takes our locks; after it, the parent releases them and the child gets
new ones. Objects register here with three callbacks and are held weakly: registering never
keeps anything alive. ``os.register_at_fork`` handlers cannot be removed, so there is one set for
the process and it walks what is registered at the time.

A ``multiprocessing`` worker (any start method) ends with ``os._exit()``, never running the exit
hooks that drain our queues. :func:`worker_kind` tells the recorder what it is in: a ``Process``
(also a ``ProcessPoolExecutor`` worker, or uvicorn's) runs ``multiprocessing``'s own finalizers
when its target returns, so :func:`at_worker_exit` drains there; a ``Pool`` worker may instead be
killed by its pool's SIGTERM (``with Pool() as pool:`` ends in ``terminate()``) once it has sent
its last result, so there each call is written through before it returns.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["at_worker_exit", "finish_before_fork", "install", "on_fork", "renew_locks", "worker_kind"]

log = logging.getLogger("tokentrail")

# How long a fork waits for a start-up thread of ours to finish (the price catalogue loads in
# about 0.3 s). Past it the fork goes ahead: a hang in the child is then possible, and logged.
_START_UP_WAIT_S = 5.0

_Callbacks = tuple[Callable[[], None], Callable[[], None], Callable[[], None]]
# (owner, callbacks), owners held weakly (by identity: an owner need not be hashable).
_registered: list[tuple[weakref.ReferenceType[Any], _Callbacks]] = []
_start_up_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_lock = threading.Lock()


def on_fork(
    owner: object,
    *,
    before: Callable[[], None],
    after_in_parent: Callable[[], None],
    after_in_child: Callable[[], None],
) -> None:
    """Run these around every fork for as long as ``owner`` lives. The callbacks must not hold
    ``owner`` strongly (take a weak reference), or it would never be collected."""
    with _lock:
        _registered[:] = [entry for entry in _registered if entry[0]() is not None]
        _registered.append((weakref.ref(owner), (before, after_in_parent, after_in_child)))


def renew_locks(owner: object, *names: str) -> None:
    """In a forked child, give ``owner`` (an object, or a module for its globals) new locks under
    these attribute names: one held at the fork by a thread the child does not have would be held
    for ever. Used for locks any thread may hold briefly (ours are free at a fork: see _before)."""
    ref = weakref.ref(owner)

    def renew() -> None:
        target = ref()
        if target is not None:
            for name in names:
                lock = getattr(target, name)
                setattr(target, name, threading.RLock() if isinstance(lock, _RLOCK) else threading.Lock())

    on_fork(owner, before=_nothing, after_in_parent=_nothing, after_in_child=renew)


_RLOCK = type(threading.RLock())


def _nothing() -> None:
    pass


def finish_before_fork(thread: threading.Thread) -> None:
    """A start-up thread of ours that imports modules: a fork waits for it to end first."""
    with _lock:
        _start_up_threads.add(thread)


def worker_kind() -> str | None:
    """``"pool"`` in a ``multiprocessing.Pool`` worker, ``"process"`` in any other process
    ``multiprocessing`` started (whatever the start method), None elsewhere."""
    module = sys.modules.get("multiprocessing")
    if module is None:  # never imported: not one of its workers
        return None
    try:
        if module.parent_process() is None:
            return None
        # Pool names its workers ForkPoolWorker-N, SpawnPoolWorker-N, ForkServerPoolWorker-N.
        return "pool" if "PoolWorker-" in module.current_process().name else "process"
    except Exception:  # pragma: no cover - a replaced multiprocessing module
        return None


_worker_exit_hooked = False


def at_worker_exit(callback: Callable[[], None]) -> None:
    """Run ``callback`` when this ``multiprocessing`` worker's target returns (before its
    ``os._exit()``); once per process, whatever the callback."""
    global _worker_exit_hooked
    if _worker_exit_hooked:
        return
    _worker_exit_hooked = True
    from multiprocessing import util  # imported already: we are one of its workers

    util.Finalize(None, callback, exitpriority=100)


def _callbacks() -> list[_Callbacks]:
    # No lock here: a lock taken by a thread that no longer exists in the child would be held.
    return [callbacks for ref, callbacks in list(_registered) if ref() is not None]


def _before() -> None:
    deadline = time.monotonic() + _START_UP_WAIT_S
    for thread in list(_start_up_threads):
        if thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning(
                "tokentrail: forking while %s has not finished after %.0f s; the child may hang on "
                "an import it holds. Set TOKENTRAIL_WARM_PRICES=0 to load prices on first use.",
                thread.name,
                _START_UP_WAIT_S,
            )
    for before, _, _ in _callbacks():
        _run(before, "fork.before")


def _after_in_parent() -> None:
    for _, after, _ in reversed(_callbacks()):
        _run(after, "fork.parent")


def _after_in_child() -> None:
    global _lock, _worker_exit_hooked
    _lock = threading.Lock()
    _worker_exit_hooked = False  # multiprocessing clears its finalizers in a new worker
    for _, _, after in _callbacks():
        _run(after, "fork.child")


def _run(callback: Callable[[], None], where: str) -> None:
    try:
        callback()
    except Exception:  # never break a fork over our own bookkeeping
        log.debug("tokentrail: error in %s", where, exc_info=True)


_installed = False


def install() -> None:
    """Register the fork handlers (``instrument()``, or a ledger writer of the span exporter, does):
    importing tokentrail registers no hook. ``os.register_at_fork`` handlers cannot be removed, so
    this happens once; they walk whatever is registered at the time of each fork."""
    global _installed
    if _installed or not hasattr(os, "register_at_fork"):
        return
    _installed = True
    os.register_at_fork(before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child)
