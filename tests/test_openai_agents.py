"""The OpenAI Agents SDK: the real SDK over the fake provider server, no network.

Two agents: ``Triage`` hands off to ``Booker`` (its client gets ``X-Fake-Tool-Call:
transfer_to_booker``, so the fake model answers with the handoff's tool call), ``Booker`` answers.
Every model call is counted once (by the openai layer, or from the SDK's own usage when that layer
is off), named by the agent that made it, under that agent's ``invoke_agent`` roll-up span.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    set_trace_processors,
    set_tracing_disabled,
)
from agents.tracing import TracingProcessor
from openai import AsyncOpenAI

import tokentrail
from framework_support import (
    COST,
    assert_each_call_once,
    assert_rollup_totals,
    counted,
    instrumented,
    report_by_agent,
    rollups,
)
from tokentrail import semconv as sc
from tokentrail.context import current_attribution
from tokentrail.providers import openai_agents as oa
from tokentrail.testing.fake_server import FakeLLMServer

MODEL = "gpt-4o-mini"
PROMPT = "Book me a table for two."


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_export() -> Iterator[None]:
    # The SDK exports its traces to OpenAI by default: never from the tests.
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(True)


def model(server: FakeLLMServer, kind: str, tool_call: str | None = None, arguments: str = "{}") -> Any:
    headers = {"X-Fake-Tool-Call": tool_call, "X-Fake-Tool-Arguments": arguments} if tool_call else None
    client = AsyncOpenAI(base_url=server.base_url, api_key="fake", default_headers=headers, max_retries=0)
    if kind == "responses":
        return OpenAIResponsesModel(model=MODEL, openai_client=client)
    return OpenAIChatCompletionsModel(model=MODEL, openai_client=client)


def triage(server: FakeLLMServer, kind: str = "chat", settings: ModelSettings | None = None) -> Agent:
    settings = settings or ModelSettings()
    booker = Agent(
        name="Booker", instructions="Book tables.", model=model(server, kind), model_settings=settings
    )
    return Agent(
        name="Triage",
        instructions="Hand off to the booker.",
        handoffs=[booker],
        model=model(server, kind, tool_call="transfer_to_booker"),
        model_settings=settings,
    )


def run(agent: Agent, mode: str) -> Any:
    """One run of ``agent`` in ``mode``; the final output."""
    if mode == "run_sync":
        return Runner.run_sync(agent, PROMPT).final_output
    if mode == "run":
        return asyncio.run(Runner.run(agent, PROMPT)).final_output

    async def streamed() -> Any:
        result = Runner.run_streamed(agent, PROMPT)
        async for _ in result.stream_events():
            assert current_attribution().values.get("agent") is None  # nothing leaks to the caller
        return result.final_output

    return asyncio.run(streamed())


# --- what is recorded ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["chat", "responses"])
@pytest.mark.parametrize("mode", ["run", "run_sync", "run_streamed"])
def test_each_call_counted_once_named_by_its_agent_and_rolled_up(server, tmp_path, capsys, kind, mode):
    ledger = tmp_path / "ledger.sqlite"
    with instrumented(ledger, ["openai", "openai_agents"], server) as recorded:
        output = run(triage(server, kind), mode)
        summary = tokentrail.summary(format="dict")
    assert isinstance(output, str) and output  # the application's answer, unchanged
    assert_each_call_once(recorded, ledger, ["Triage", "Booker"], MODEL)
    spans = counted(recorded)
    assert {span.attributes[sc.PROVIDER_NAME] for span in spans} == {"openai"}  # the SDK layer's
    assert all(span.attributes.get(sc.REQUEST_MODEL) == MODEL for span in spans)
    runs = rollups(recorded)
    assert set(runs) == {"invoke_agent Triage", "invoke_agent Booker"}
    for name, span in runs.items():
        assert span.attributes[sc.AGENT_NAME] == name.removeprefix("invoke_agent ")
    assert_rollup_totals(recorded)
    assert report_by_agent(capsys, ledger) == {"Triage": 1, "Booker": 1}
    assert {name: agent["calls"] for name, agent in summary["agents"].items()} == {"Triage": 1, "Booker": 1}
    assert current_attribution().values == {}  # the run left the caller's context as it found it


@pytest.mark.parametrize("kind", ["chat", "responses"])
@pytest.mark.parametrize("mode", ["run", "run_streamed"])
def test_without_the_openai_layer_the_sdks_own_usage_is_reported(server, tmp_path, kind, mode):
    ledger = tmp_path / "ledger.sqlite"
    # A streamed chat completion carries usage only when asked to (the openai layer asks itself).
    settings = ModelSettings(include_usage=True)
    with instrumented(ledger, ["openai_agents"], server) as recorded:
        run(triage(server, kind, settings), mode)
    assert_each_call_once(recorded, ledger, ["Triage", "Booker"], MODEL)
    for span in counted(recorded):
        # The fake server's usage for the request: what the openai layer would have read.
        assert span.attributes[sc.USAGE_INPUT_TOKENS] > 0
        assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 8
        assert span.attributes[sc.PROVIDER_NAME] == "openai"
    assert_rollup_totals(recorded)


def test_a_streamed_chat_call_without_usage_is_still_counted_once(server, tmp_path):
    with instrumented(tmp_path / "ledger.sqlite", ["openai_agents"], server) as recorded:
        run(triage(server, "chat"), "run_streamed")
    assert [call.attribution["agent"] for call in recorded.calls] == ["Triage", "Booker"]
    assert all(call.usage is None or call.usage.total_tokens == 0 for call in recorded.calls)
    assert counted(recorded) == []  # no usage: no gen_ai.usage.* to carry
    assert all(span.attributes.get("tokentrail.usage.missing") for span in recorded.spans()
               if span.name.startswith("chat "))  # fmt: skip


def test_usage_is_the_same_whichever_layer_counts_it(server, tmp_path):
    figures = {}
    for providers in (["openai", "openai_agents"], ["openai_agents"]):
        with instrumented(tmp_path / f"{len(providers)}.sqlite", providers, server) as recorded:
            run(triage(server), "run")
        figures[len(providers)] = sorted(
            (s.attributes[sc.AGENT_NAME], s.attributes[sc.USAGE_INPUT_TOKENS],
             s.attributes[sc.USAGE_OUTPUT_TOKENS], s.attributes[COST])
            for s in counted(recorded)
        )  # fmt: skip
    assert figures[2] == figures[1]


# --- the matrix: openai layer x agents layer ----------------------------------------------------


@pytest.mark.parametrize("openai_layer", [True, False], ids=["openai-on", "openai-off"])
@pytest.mark.parametrize("agents_layer", [True, False], ids=["agents-on", "agents-off"])
@pytest.mark.parametrize("kind", ["chat", "responses"])
def test_matrix_one_counted_call_per_model_call(server, tmp_path, openai_layer, agents_layer, kind):
    providers = [name for name, on in (("openai", openai_layer), ("openai_agents", agents_layer)) if on]
    ledger = tmp_path / "ledger.sqlite"
    with instrumented(ledger, providers, server) as recorded:
        run(triage(server, kind), "run")
    if not providers:
        assert counted(recorded) == [] and recorded.calls == []
        return
    # Named by the agent only when the agents layer is on; counted once either way.
    agents = ["Triage", "Booker"] if agents_layer else [None, None]
    spans = sorted(counted(recorded), key=lambda span: span.start_time)
    assert [span.attributes.get(sc.AGENT_NAME) for span in spans] == agents
    assert len(recorded.calls) == 2
    assert bool(rollups(recorded)) == agents_layer


# --- the SDK's own tracing ----------------------------------------------------------------------


class InMemoryProcessor(TracingProcessor):
    """The SDK's own trace processor interface, keeping what it is given."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.traces: list[Any] = []

    def on_trace_start(self, trace: Any) -> None:
        self.traces.append(trace)

    def on_trace_end(self, trace: Any) -> None:
        pass

    def on_span_start(self, span: Any) -> None:
        pass

    def on_span_end(self, span: Any) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


def test_the_sdks_tracing_keeps_working_and_adds_no_counted_span(server, tmp_path):
    processor = InMemoryProcessor()
    set_trace_processors([processor])  # replaces the default exporter to OpenAI
    set_tracing_disabled(False)
    with instrumented(tmp_path / "ledger.sqlite", ["openai", "openai_agents"], server) as recorded:
        asyncio.run(Runner.run(triage(server), PROMPT, run_config=RunConfig(workflow_name="booking")))
    kinds = [span.span_data.type for span in processor.spans]
    assert kinds.count("agent") == 2 and kinds.count("generation") == 2 and "handoff" in kinds
    assert [trace.name for trace in processor.traces] == ["booking"]
    agent_spans = [span.span_data.name for span in processor.spans if span.span_data.type == "agent"]
    assert agent_spans == ["Triage", "Booker"]
    # tokentrail's spans: two counted calls and two roll-ups, nothing made of the SDK's spans.
    assert len(counted(recorded)) == 2
    assert len(recorded.spans()) == 4
    assert_rollup_totals(recorded)


# --- the application's names, nesting, failures ---------------------------------------------------


def test_the_applications_agent_name_wins(server, tmp_path):
    with (
        instrumented(tmp_path / "ledger.sqlite", ["openai", "openai_agents"], server) as recorded,
        tokentrail.attribute(agent="Concierge", pipeline="dinner"),
    ):
        run(triage(server), "run")
    spans = counted(recorded)
    assert [span.attributes[sc.AGENT_NAME] for span in spans] == ["Concierge", "Concierge"]
    assert {call.attribution["pipeline"] for call in recorded.calls} == {"dinner"}


def test_an_agent_used_as_a_tool_names_its_own_calls(server, tmp_path):
    researcher = Agent(name="Researcher", instructions="Find facts.", model=model(server, "chat"))
    lead = Agent(
        name="Lead",
        instructions="Ask the researcher.",
        tools=[researcher.as_tool(tool_name="research", tool_description="Research a question.")],
        model=model(server, "chat", tool_call="research", arguments='{"input": "opening hours"}'),
    )
    with instrumented(tmp_path / "ledger.sqlite", ["openai", "openai_agents"], server) as recorded:
        _run_until_max_turns(lead)
    names = [span.attributes[sc.AGENT_NAME] for span in sorted(counted(recorded), key=lambda s: s.start_time)]
    assert names[:2] == ["Lead", "Researcher"]
    runs = rollups(recorded)
    researcher_run, lead_run = runs["invoke_agent Researcher"], runs["invoke_agent Lead"]
    assert researcher_run.parent is not None  # nested in the lead's run
    assert researcher_run.attributes[f"{sc.ROLLUP_PREFIX}calls"] >= 1
    assert lead_run.attributes[f"{sc.ROLLUP_PREFIX}calls"] == len(names)  # its own and the tool's


def _run_until_max_turns(agent: Agent) -> None:
    """The lead's model always calls its tool: the run stops at its turn limit."""
    from agents.exceptions import MaxTurnsExceeded

    with pytest.raises(MaxTurnsExceeded):
        asyncio.run(Runner.run(agent, PROMPT, max_turns=2))


def test_a_failing_model_call_passes_through_and_is_counted_once(server, tmp_path):
    from openai import InternalServerError

    for providers in (["openai", "openai_agents"], ["openai_agents"]):
        server.fail_next(500)
        with (
            instrumented(tmp_path / f"{len(providers)}.sqlite", providers, server) as recorded,
            pytest.raises(InternalServerError),
        ):
            run(triage(server), "run")
        assert len(recorded.calls) == 1
        assert recorded.calls[0].attribution["agent"] == "Triage"
        assert recorded.calls[0].error_type is not None
        assert math.isclose(sum(call.cost.total if call.cost else 0 for call in recorded.calls), 0)


def test_a_bug_in_the_layer_never_reaches_the_application(server, tmp_path, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(oa, "request_info", broken)
    with instrumented(tmp_path / "ledger.sqlite", ["openai_agents"], server) as recorded:
        output = run(triage(server), "run")
    assert output
    assert recorded.calls == []


def test_uninstrument_removes_the_patches(server, tmp_path):
    from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel as Chat
    from agents.tracing.spans import NoOpSpan

    places = ((Chat, "get_response"), (Chat, "stream_response"), (NoOpSpan, "start"))
    originals = [vars(owner)[name] for owner, name in places]

    def unchanged() -> list[bool]:
        return [
            vars(owner)[name] is original for (owner, name), original in zip(places, originals, strict=True)
        ]

    with instrumented(tmp_path / "ledger.sqlite", ["openai_agents"], server):
        assert unchanged() == [False, False, False]
    assert unchanged() == [True, True, True]


# --- the pure readers -----------------------------------------------------------------------------


def test_request_info_names_the_provider_from_a_litellm_prefix():
    class Named:
        model = "anthropic/claude-sonnet-4-5"

    request = oa.request_info(Named(), None, None, stream=False)
    assert (request.provider, request.request_model) == ("anthropic", "claude-sonnet-4-5")
    Named.model = "my-local-model"
    assert oa.request_info(Named(), None, None, stream=True).provider == "openai_agents"


def test_usage_of_the_sdks_usage():
    from agents.usage import InputTokensDetails, OutputTokensDetails, Usage

    usage = Usage(
        requests=1,
        input_tokens=1200,
        input_tokens_details=InputTokensDetails(cached_tokens=1000, cache_write_tokens=0),
        output_tokens=300,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=120),
        total_tokens=1500,
    )
    normal = oa.usage_of(usage)
    assert normal is not None and normal.consistent
    assert (normal.input_tokens, normal.cache_read_tokens) == (1200, 1000)
    assert (normal.output_tokens, normal.reasoning_tokens) == (300, 120)
    assert oa.usage_of(Usage()) is None  # the model reported nothing
    assert oa.usage_of(None) is None


def test_nothing_imported_before_the_application_imports_the_sdk(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, tokentrail\n"
        "tokentrail.instrument(providers=['openai_agents'], setup_otel=False, ledger=False)\n"
        "assert 'agents' not in sys.modules\n"
        "import agents\n"
        "from agents.tracing.spans import NoOpSpan\n"
        "assert hasattr(NoOpSpan.start, '__wrapped__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_layer_needs_the_openai_agents_distribution():
    assert isinstance(oa.patches(), oa.Instrumentation)
    assert Path(oa.__file__).name == "openai_agents.py"
