"""Many concurrent callers: every call recorded once, totals exact, attribution never crossed."""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading

import tokentrail
from openai_wire import MODEL, FakeOpenAI
from tokentrail import semconv as sc

MESSAGES = [{"role": "user", "content": "hi"}]


def test_100_threads_totals_are_exact(recorded):
    client = FakeOpenAI().client()
    barrier = threading.Barrier(100)

    def worker(index: int) -> None:
        barrier.wait()
        with tokentrail.attribute(agent=f"a{index % 10}"):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
            list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(worker, i)) for i in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = recorded.spans()
    assert len(spans) == len(recorded.calls) == 200
    assert sum(s.attributes[sc.USAGE_INPUT_TOKENS] for s in spans) == 200 * 1200
    (input_total,) = recorded.points(
        sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input", gen_ai__agent__name="a3"
    )
    assert input_total.sum == 20 * 1200 and input_total.count == 20
    cost_points = recorded.points(sc.METRIC_OPERATION_COST)
    assert math.isclose(sum(p.sum for p in cost_points), sum(s.attributes[sc.COST_AMOUNT] for s in spans))
    per_agent = {}
    for call in recorded.calls:
        per_agent[call.attribution["agent"]] = per_agent.get(call.attribution["agent"], 0) + 1
    assert per_agent == {f"a{i}": 20 for i in range(10)}


async def test_100_asyncio_tasks_totals_are_exact(recorded):
    client = FakeOpenAI().client(is_async=True)

    async def worker(index: int) -> None:
        with tokentrail.attribute(task=f"t{index % 4}"):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            async for _chunk in stream:
                await asyncio.sleep(0)

    await asyncio.gather(*(worker(i) for i in range(100)))
    spans = recorded.spans()
    assert len(spans) == 200
    assert sum(s.attributes[sc.USAGE_OUTPUT_TOKENS] for s in spans) == 200 * 30
    for task in range(4):
        (point,) = recorded.points(sc.METRIC_OPERATION_DURATION, tokentrail__task=f"t{task}")
        assert point.count == 50
    assert all(call.attribution["task"] in {"t0", "t1", "t2", "t3"} for call in recorded.calls)
    assert sorted(call.attribution["task"] for call in recorded.calls) == sorted(
        f"t{i % 4}" for i in range(100) for _ in range(2)
    )
