"""The hand-off from the application's threads to one background thread (tokentrail._batcher)."""

from __future__ import annotations

import threading

from tokentrail._batcher import Batcher


def test_a_full_queue_is_drained_by_the_caller_in_order_when_nothing_may_be_dropped():
    handled: list[tuple[str, list[int]]] = []
    dropped: list[int] = []
    batcher = Batcher(
        "test-batcher",
        lambda batch: handled.append((threading.current_thread().name, list(batch))),
        on_drop=lambda count, reason: dropped.append(count),
        queue_size=3,
        batch_size=100,  # the background thread is not woken by size ...
        flush_interval=3600,  # ... nor by time, during this test
        handle_when_full=True,
    )
    try:
        for item in range(3):
            batcher.submit(item)
        assert handled == [] and batcher.pending == 3
        batcher.submit(3)  # full: the caller drains, in order, itself included
        assert handled == [(threading.current_thread().name, [0, 1, 2, 3])]
        for item in range(4, 10):
            batcher.submit(item)
        batcher.flush()
        assert [item for _, batch in handled for item in batch] == list(range(10))
        assert dropped == []
    finally:
        batcher.close()


def test_without_back_pressure_a_full_queue_drops_and_says_so():
    dropped: list[tuple[int, str]] = []
    handled: list[int] = []
    batcher = Batcher(
        "test-batcher",
        handled.extend,
        on_drop=lambda count, reason: dropped.append((count, reason)),
        queue_size=2,
        batch_size=100,
        flush_interval=3600,
    )
    try:
        for item in range(5):
            batcher.submit(item)
        batcher.flush()
        assert handled == [0, 1]
        assert dropped == [(1, "queue_full")] * 3
    finally:
        batcher.close()
