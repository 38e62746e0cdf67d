"""Attribution: cost per pipeline, phase, role, agent, task and user, on spans, metrics and records."""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context

import tokentrail
from openai_wire import MODEL, FakeOpenAI
from tokentrail import semconv as sc
from tokentrail.context import current_attribution

MESSAGES = [{"role": "user", "content": "hi"}]


def chat(client) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES)


def test_every_span_carries_the_attribution(recorded):
    client = FakeOpenAI().client()
    with tokentrail.attribute(
        pipeline="pip_123", phase="pm", role="pm", agent="PM", task="filter", user="u1"
    ):
        chat(client)
    attributes = recorded.span().attributes
    assert attributes["tokentrail.pipeline"] == "pip_123"
    assert attributes["tokentrail.phase"] == "pm"
    assert attributes["tokentrail.role"] == "pm"
    assert attributes[sc.AGENT_NAME] == "PM"
    assert attributes["tokentrail.task"] == "filter"
    assert attributes[sc.USER_ID] == "u1"
    assert recorded.calls[0].attribution == {
        "pipeline": "pip_123", "phase": "pm", "role": "pm", "agent": "PM", "task": "filter", "user": "u1",
    }  # fmt: skip


def test_nested_contexts_merge_inner_wins(recorded):
    client = FakeOpenAI().client()
    with tokentrail.attribute(pipeline="p1", agent="outer"):
        with tokentrail.attribute(agent="inner", labels={"customer": "acme"}):
            chat(client)
        chat(client)
    chat(client)
    inner, outer, none = recorded.calls
    assert inner.attribution == {"pipeline": "p1", "agent": "inner", "label:customer": "acme"}
    assert outer.attribution == {"pipeline": "p1", "agent": "outer"}
    assert none.attribution == {}
    assert recorded.spans()[0].attributes["tokentrail.label.customer"] == "acme"


def test_decorator_sync_async_and_generators(recorded):
    client = FakeOpenAI().client()

    @tokentrail.attribute(task="sync")
    def run_sync():
        chat(client)
        return current_attribution().values["task"]

    @tokentrail.attribute(task="async")
    async def run_async():
        chat(client)
        return current_attribution().values["task"]

    @tokentrail.attribute(task="gen")
    def run_gen():
        for _ in range(2):
            chat(client)
            yield current_attribution().values.get("task")

    assert run_sync() == "sync"
    assert asyncio.run(run_async()) == "async"
    seen = []
    for value in run_gen():
        seen.append(value)
        # While the generator is suspended, its attribution must not leak into the caller.
        assert current_attribution().values == {}
    assert seen == ["gen", "gen"]
    assert [c.attribution.get("task") for c in recorded.calls] == ["sync", "async", "gen", "gen"]


async def test_async_generator_decorator(recorded):
    client = FakeOpenAI().client(is_async=True)

    @tokentrail.attribute(agent="streamer")
    async def produce():
        for _ in range(2):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            yield current_attribution().values["agent"]

    values = []
    async for value in produce():
        values.append(value)
        assert current_attribution().values == {}
    assert values == ["streamer", "streamer"]
    assert [c.attribution["agent"] for c in recorded.calls] == ["streamer", "streamer"]


async def test_concurrent_tasks_never_leak(recorded):
    client = FakeOpenAI().client(is_async=True)

    async def agent(name: str) -> None:
        with tokentrail.attribute(agent=name):
            for _ in range(3):
                await asyncio.sleep(0)
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)
                assert current_attribution().values["agent"] == name

    await asyncio.gather(*(agent(f"a{i}") for i in range(5)))
    counts = {}
    for call in recorded.calls:
        counts[call.attribution["agent"]] = counts.get(call.attribution["agent"], 0) + 1
    assert counts == {f"a{i}": 3 for i in range(5)}


def test_threads_with_copied_context(recorded):
    client = FakeOpenAI().client()
    errors = []

    def work(name: str) -> None:
        try:
            with tokentrail.attribute(role=name):
                chat(client)
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    with tokentrail.attribute(pipeline="threads"):
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(work, f"r{i}")) for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    assert sorted(c.attribution["role"] for c in recorded.calls) == sorted(f"r{i}" for i in range(8))
    assert {c.attribution["pipeline"] for c in recorded.calls} == {"threads"}


def test_bad_values_are_rejected_where_they_are_set():
    with pytest.raises(ValueError, match="agent"):
        tokentrail.attribute(agent="x" * 300)
    with pytest.raises(ValueError, match="strings"):
        tokentrail.attribute(task=["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label"):
        tokentrail.attribute(labels={"Bad Key": "v"})
    with pytest.raises(ValueError, match="1 to 256"):
        tokentrail.attribute(user="")


def test_metrics_carry_only_allowed_keys(recorded):
    client = FakeOpenAI().client()
    with tokentrail.attribute(agent="QA", task="review", phase="qa", pipeline="pip_1", user="u9"):
        chat(client)
    (point,) = recorded.points(sc.METRIC_OPERATION_DURATION)
    assert point.attributes[sc.AGENT_NAME] == "QA"
    assert point.attributes["tokentrail.task"] == "review"
    assert point.attributes["tokentrail.phase"] == "qa"
    assert "tokentrail.pipeline" not in point.attributes
    assert sc.USER_ID not in point.attributes


@pytest.mark.tokentrail(metric_attributes=["agent"], metric_value_limit=3)
def test_cardinality_cap_folds_into_other_and_counts(recorded):
    client = FakeOpenAI().client()
    for i in range(6):
        with tokentrail.attribute(agent=f"agent-{i}"):
            chat(client)
    agents = sorted(p.attributes[sc.AGENT_NAME] for p in recorded.points(sc.METRIC_OPERATION_DURATION))
    assert agents == ["_other", "agent-0", "agent-1", "agent-2"]
    (other,) = recorded.points(sc.METRIC_OPERATION_DURATION, gen_ai__agent__name="_other")
    assert other.count == 3
    (overflow,) = recorded.points(sc.METRIC_ATTRIBUTION_OVERFLOW)
    assert overflow.value == 3 and overflow.attributes["tokentrail.attribution.key"] == "agent"
    # Spans keep the real value: only metrics are capped.
    assert sorted(s.attributes[sc.AGENT_NAME] for s in recorded.spans()) == [f"agent-{i}" for i in range(6)]


def test_rollup_span_adds_up_the_calls_inside(recorded):
    client = FakeOpenAI().client()
    with tokentrail.span("phase pm", phase="pm"):
        chat(client)
        with tokentrail.attribute(agent="dev", span=True):
            chat(client)
            list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    spans = {s.name: s for s in recorded.spans()}
    outer, inner = spans["phase pm"], spans["agent dev"]
    llm = [s for s in recorded.spans() if s.name == f"chat {MODEL}"]
    assert len(llm) == 3
    assert outer.kind.name == "INTERNAL"
    assert outer.attributes[sc.ROLLUP_CALLS] == 3 and inner.attributes[sc.ROLLUP_CALLS] == 2
    assert outer.attributes[sc.ROLLUP_INPUT_TOKENS] == sum(s.attributes[sc.USAGE_INPUT_TOKENS] for s in llm)
    assert math.isclose(outer.attributes[sc.ROLLUP_COST], sum(s.attributes[sc.COST_AMOUNT] for s in llm))
    # The trace nests: LLM calls under their unit, the inner unit under the outer one.
    assert inner.parent.span_id == outer.context.span_id
    assert sum(1 for s in llm if s.parent.span_id == inner.context.span_id) == 2
    assert inner.attributes["tokentrail.phase"] == "pm"


def test_rollup_span_records_errors(recorded):
    with pytest.raises(KeyError), tokentrail.span("doomed"):
        raise KeyError("x")
    (span,) = recorded.spans()
    assert span.attributes[sc.ERROR_TYPE] == "KeyError"
    assert span.attributes[sc.ROLLUP_CALLS] == 0


@pytest.mark.tokentrail(baggage=True)
def test_baggage_in_and_out(recorded):
    client = FakeOpenAI().client()
    # Incoming: another service put the pipeline in baggage.
    token = otel_context.attach(baggage.set_baggage("tokentrail.pipeline", "from-upstream"))
    try:
        with tokentrail.attribute(agent="local"):
            # Outgoing: our attribution is in the current baggage for propagators to send.
            assert baggage.get_baggage("tokentrail.agent") == "local"
            chat(client)
    finally:
        otel_context.detach(token)
    assert baggage.get_baggage("tokentrail.agent") is None
    assert recorded.calls[0].attribution == {"pipeline": "from-upstream", "agent": "local"}


def test_baggage_is_ignored_unless_enabled(recorded):
    client = FakeOpenAI().client()
    token = otel_context.attach(baggage.set_baggage("tokentrail.pipeline", "from-upstream"))
    try:
        chat(client)
    finally:
        otel_context.detach(token)
    assert recorded.calls[0].attribution == {}


def test_bad_metric_attribute_setting():
    with pytest.raises(tokentrail.ConfigError, match="not an attribution key"):
        tokentrail.instrument(metric_attributes=["agnt"], setup_otel=False)


def test_rollup_span_without_attribution_values_still_adds_up(recorded):
    client = FakeOpenAI().client()
    with tokentrail.span("just a unit"):
        chat(client)
        chat(client)
    unit = next(s for s in recorded.spans() if s.name == "just a unit")
    assert unit.attributes[sc.ROLLUP_CALLS] == 2
    assert unit.attributes[sc.ROLLUP_INPUT_TOKENS] == 2400
