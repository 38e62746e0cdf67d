"""The one layering mechanism (providers/_framework.ModelCall): each model call counted once.

A framework layer is played here by the smallest thing that uses the mechanism the way every
framework integration does; the SDK underneath is the real openai SDK over a mock transport. The
frameworks themselves (LangChain, LiteLLM, the agent SDKs) have their own tests on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import genai_prices
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokentrail
from conftest import Recorded
from openai_wire import MODEL, FakeOpenAI
from tokentrail import semconv as sc
from tokentrail.context import current_attribution, current_framework_llm_run
from tokentrail.providers._framework import AgentRun, ModelCall
from tokentrail.records import RequestInfo, ResponseInfo
from tokentrail.usage import Usage

pytestmark = pytest.mark.tokentrail(providers=["openai"])

RAW_USAGE = Usage(input_tokens=1200, output_tokens=80, cache_read_tokens=1000)
RAW_MODEL = "claude-sonnet-4-5"


def framework_request(model: str = RAW_MODEL) -> RequestInfo:
    return RequestInfo(operation="chat", provider="anthropic", request_model=model)


@contextmanager
def framework_call(
    names: dict[str, str] | None = None, usage: Usage | None = RAW_USAGE
) -> Iterator[ModelCall]:
    """What a framework layer does around one model call: open, run, close, report."""
    call = ModelCall().open(names)
    try:
        yield call
    finally:
        call.close()
    call.report(framework_request(), ResponseInfo(response_model=RAW_MODEL, usage=usage))


def counted(recorded: Recorded) -> list[Any]:
    """tokentrail's spans that carry a call's usage (roll-up spans carry only rollup totals)."""
    return [span for span in recorded.spans() if sc.USAGE_INPUT_TOKENS in (span.attributes or {})]


def raw_cost() -> float:
    price = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1200, output_tokens=80, cache_read_tokens=1000),
        RAW_MODEL,
        provider_id="anthropic",
    )
    return float(price.total_price)


def test_sdk_call_inside_is_the_one_counted_and_carries_the_framework_names(recorded: Recorded) -> None:
    fake = FakeOpenAI()
    client = fake.client()
    with framework_call({"agent": "Planner", "task": "plan", "label:workflow": "trip"}) as call:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert call.covered
    spans = counted(recorded)
    assert len(spans) == 1
    attributes = spans[0].attributes
    assert attributes[sc.PROVIDER_NAME] == "openai"  # the SDK's call, not the framework's report
    assert attributes[sc.AGENT_NAME] == "Planner"
    assert attributes["tokentrail.task"] == "plan"
    assert attributes["tokentrail.label.workflow"] == "trip"
    assert len(recorded.calls) == 1
    assert recorded.calls[0].attribution["agent"] == "Planner"


def test_no_sdk_call_inside_the_framework_reports_its_own_usage(recorded: Recorded) -> None:
    with framework_call({"agent": "Researcher"}) as call:
        pass  # the framework reached its provider over raw HTTP
    assert not call.covered
    (span,) = counted(recorded)
    assert span.attributes[sc.PROVIDER_NAME] == "anthropic"
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 1200
    assert span.attributes[sc.AGENT_NAME] == "Researcher"
    (record,) = recorded.calls
    assert record.cost is not None
    assert float(record.cost.total) == pytest.approx(raw_cost())


def test_the_applications_own_names_win(recorded: Recorded) -> None:
    with tokentrail.attribute(agent="AppAgent"), framework_call({"agent": "FrameworkAgent", "task": "t1"}):
        pass
    (span,) = counted(recorded)
    assert span.attributes[sc.AGENT_NAME] == "AppAgent"
    assert span.attributes["tokentrail.task"] == "t1"


def test_stacked_frameworks_over_an_sdk_count_once_named_by_the_innermost(
    recorded: Recorded,
) -> None:
    client = FakeOpenAI().client()
    with (
        framework_call({"agent": "Crew agent", "label:workflow": "crew"}) as outer,
        framework_call({"agent": "Inner agent", "task": "inner task"}) as inner,
    ):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert inner.covered and outer.covered
    (span,) = counted(recorded)
    assert span.attributes[sc.AGENT_NAME] == "Inner agent"  # the innermost framework names its calls
    assert span.attributes["tokentrail.task"] == "inner task"
    assert span.attributes["tokentrail.label.workflow"] == "crew"
    assert len(recorded.calls) == 1


def test_stacked_frameworks_over_raw_http_count_once_by_the_inner_report(recorded: Recorded) -> None:
    with framework_call({"agent": "Outer"}) as outer, framework_call({"task": "inner"}) as inner:
        pass
    assert not inner.covered
    assert outer.covered  # the inner layer's report covers the layers around it
    (span,) = counted(recorded)
    assert span.attributes[sc.AGENT_NAME] == "Outer"  # the inner layer named no agent
    assert span.attributes["tokentrail.task"] == "inner"


@pytest.mark.tokentrail(providers=["openai", "anthropic"])  # the framework stays instrumented
def test_with_the_sdk_layer_removed_the_framework_counts_the_call(recorded: Recorded) -> None:
    tokentrail.uninstrument(["openai"])
    client = FakeOpenAI().client()
    with framework_call({"agent": "A"}) as call:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert not call.covered
    (span,) = counted(recorded)
    assert span.attributes[sc.PROVIDER_NAME] == "anthropic"


def test_a_failed_call_is_reported_as_failed(recorded: Recorded) -> None:
    call = ModelCall().open({"agent": "A"})
    call.close()
    call.report(framework_request(), None, TimeoutError("upstream"))
    (span,) = recorded.spans()
    assert span.attributes[sc.ERROR_TYPE] == "TimeoutError"
    assert span.attributes[sc.AGENT_NAME] == "A"


def test_the_context_is_left_as_it_was_found(recorded: Recorded) -> None:
    before = current_attribution()
    with framework_call({"agent": "A"}):
        assert current_attribution().values["agent"] == "A"
        assert current_framework_llm_run() is not None
    assert current_attribution() is before
    assert current_framework_llm_run() is None


def test_concurrent_framework_calls_do_not_cover_each_other(recorded: Recorded) -> None:
    client = FakeOpenAI().client(is_async=True)

    async def one(agent: str, use_sdk: bool) -> bool:
        with framework_call({"agent": agent}) as call:
            await asyncio.sleep(0)
            if use_sdk:
                await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
            await asyncio.sleep(0)
        return call.covered

    async def main() -> list[bool]:
        return await asyncio.gather(one("sdk", True), one("raw", False))

    covered = asyncio.run(main())
    assert covered == [True, False]
    agents = sorted(span.attributes[sc.AGENT_NAME] for span in counted(recorded))
    assert agents == ["raw", "sdk"]


def test_nothing_is_reported_when_tokentrail_is_not_instrumented() -> None:
    with framework_call({"agent": "A"}) as call:
        pass
    assert not call.covered  # and report() above was a no-op: nothing to record it with


def test_suppressed_instrumentation_records_nothing(recorded: Recorded) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation(), framework_call({"agent": "A"}):
        pass
    assert recorded.spans() == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depth=st.integers(min_value=1, max_value=4), sdk_inside=st.booleans(), calls=st.integers(1, 3))
def test_any_stack_of_layers_counts_each_model_call_exactly_once(
    recorded: Recorded, depth: int, sdk_inside: bool, calls: int
) -> None:
    recorded.exporter.clear()
    recorded.finished.clear()
    client = FakeOpenAI().client()

    def layer(level: int) -> None:
        if level == depth:
            for _ in range(calls):
                if sdk_inside:
                    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
                else:
                    with framework_call({"agent": f"innermost {level}"}):
                        pass
            return
        with framework_call({"agent": f"layer {level}"}):
            layer(level + 1)

    layer(0)
    assert len(counted(recorded)) == calls
    assert len(recorded.calls) == calls
    innermost = f"innermost {depth}" if not sdk_inside else f"layer {depth - 1}"
    assert {record.attribution["agent"] for record in recorded.calls} == {innermost}


def test_an_agent_run_is_a_rollup_span_naming_its_calls(recorded: Recorded) -> None:
    client = FakeOpenAI().client()
    with AgentRun("Planner").open({"label:workflow": "trip"}) as planner:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}])
        with AgentRun("Booker"):  # an agent run as a tool of another
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "b"}])
    assert planner.unit is not None
    spans = {span.name: span for span in recorded.spans()}
    calls = counted(recorded)
    assert sorted(span.attributes[sc.AGENT_NAME] for span in calls) == ["Booker", "Planner"]
    outer, inner = spans["invoke_agent Planner"], spans["invoke_agent Booker"]
    for rollup in (outer, inner):
        assert rollup.attributes[sc.OPERATION_NAME] == "invoke_agent"
        assert sc.USAGE_INPUT_TOKENS not in rollup.attributes  # not a counted span
    assert outer.attributes[sc.ROLLUP_CALLS] == 2
    assert inner.attributes[sc.ROLLUP_CALLS] == 1
    assert inner.parent.span_id == outer.context.span_id
    assert all(span.attributes["tokentrail.label.workflow"] == "trip" for span in calls)
    totals = sum(span.attributes[sc.USAGE_INPUT_TOKENS] for span in calls)
    assert outer.attributes[sc.ROLLUP_INPUT_TOKENS] == totals


def test_an_agent_run_never_renames_the_applications_agent(recorded: Recorded) -> None:
    client = FakeOpenAI().client()
    with tokentrail.attribute(agent="Mine"), AgentRun("Theirs"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}])
    (call,) = counted(recorded)
    assert call.attributes[sc.AGENT_NAME] == "Mine"
    assert current_attribution().values == {}


def test_an_agent_run_inside_a_model_call_does_not_cover_it(recorded: Recorded) -> None:
    # A framework model call whose implementation runs another agent (PydanticAI's FunctionModel
    # delegating): the inner agent's SDK call is its own; the outer call still reports its usage.
    client = FakeOpenAI().client()
    with framework_call() as outer:
        with AgentRun("Specialist"):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert current_framework_llm_run() is outer.run  # the agent run's shield is gone again
    assert not outer.covered
    spans = counted(recorded)
    assert sorted(span.attributes[sc.PROVIDER_NAME] for span in spans) == ["anthropic", "openai"]
    assert len(recorded.calls) == 2
