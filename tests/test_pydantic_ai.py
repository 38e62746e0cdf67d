"""PydanticAI: the real library over the fake provider server (OpenAI and Anthropic models), no network.

Every model request is counted once (by the openai / anthropic layer, or from PydanticAI's own
``RequestUsage`` when that layer is off), named by the agent whose run made it, under that run's
``invoke_agent`` roll-up span; with PydanticAI's own OpenTelemetry instrumentation on, its spans
are there too and tokentrail still counts each request once.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from pydantic_ai import Agent
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

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
from tokentrail.providers import pydantic_ai as pa
from tokentrail.testing.fake_server import FakeLLMServer

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
SDK_LAYERS = ["openai", "anthropic"]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeLLMServer, FakeLLMServer]]:
    """One fake server named OpenAI's, one Anthropic's (by address, as a real deployment would be)."""
    with FakeLLMServer() as openai_server, FakeLLMServer() as anthropic_server:
        _ANTHROPIC_USABLE.append(_anthropic_model_works(anthropic_server))
        yield openai_server, anthropic_server


# Whether the installed PydanticAI's AnthropicModel can call the installed anthropic SDK at all
# (probed once, before tokentrail is instrumented): the floor, pydantic-ai-slim 2.31, sends
# arguments anthropic 1.17 (the previous major, in the previous-majors venv) no longer takes.
_ANTHROPIC_USABLE: list[bool] = []


def _anthropic_model_works(anthropic_server: FakeLLMServer) -> bool:
    client = AsyncAnthropic(base_url=anthropic_server.url, api_key="fake")
    model = AnthropicModel(ANTHROPIC_MODEL, provider=AnthropicProvider(anthropic_client=client))
    try:
        Agent(model, name="probe").run_sync("probe")
    except TypeError:
        return False
    return True


def openai_model(servers: Any) -> OpenAIChatModel:
    client = AsyncOpenAI(base_url=servers[0].base_url, api_key="fake")
    return OpenAIChatModel(OPENAI_MODEL, provider=OpenAIProvider(openai_client=client))


def anthropic_model(servers: Any) -> AnthropicModel:
    if not _ANTHROPIC_USABLE[-1]:
        pytest.skip("this PydanticAI's AnthropicModel cannot call this anthropic SDK (upstream)")
    # The SDK's own client: PydanticAI's default HTTP client must match the SDK's HTTP library.
    client = AsyncAnthropic(base_url=servers[1].url, api_key="fake")
    return AnthropicModel(ANTHROPIC_MODEL, provider=AnthropicProvider(anthropic_client=client))


def team(servers: Any) -> list[tuple[str, Any, str]]:
    """(agent name, model, provider): a Planner on OpenAI and a Writer on Anthropic (where usable)."""
    agents = [("Planner", openai_model(servers), "openai")]
    if _ANTHROPIC_USABLE[-1]:
        agents.append(("Writer", anthropic_model(servers), "anthropic"))
    return agents


def recording(tmp_path: Any, servers: Any, providers: list[str], name: str = "ledger.sqlite") -> Any:
    return instrumented(tmp_path / name, providers, servers[0], anthropic_server=servers[1])


def run_agent(agent: Agent, mode: str) -> str:
    """One run in ``mode``; the output the application gets."""
    if mode == "run_sync":
        return agent.run_sync("Plan a trip.").output
    if mode == "run":
        return asyncio.run(agent.run("Plan a trip.")).output

    async def streamed() -> str:
        async with agent.run_stream("Plan a trip.") as result:
            return "".join([piece async for piece in result.stream_text(delta=True)])

    async def iterated() -> str:
        async with agent.iter("Plan a trip.") as agent_run:
            async for _ in agent_run:
                assert current_attribution().values.get("agent") == agent.name
        assert agent_run.result is not None
        return agent_run.result.output

    return asyncio.run(streamed() if mode == "run_stream" else iterated())


# --- what is recorded ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["run", "run_sync", "run_stream", "iter"])
def test_each_request_counted_once_named_by_its_agent_and_rolled_up(servers, tmp_path, capsys, mode):
    ledger = tmp_path / "ledger.sqlite"
    with recording(tmp_path, servers, [*SDK_LAYERS, "pydantic_ai"]) as recorded:
        agents = team(servers)
        outputs = [
            run_agent(Agent(model, name=name, instructions="Plan."), mode) for name, model, _ in agents
        ]
        summary = tokentrail.summary(format="dict")
    names = [name for name, _, _ in agents]
    assert all(isinstance(output, str) and output for output in outputs)  # unchanged answers
    assert_each_call_once(recorded, ledger, names, None)
    by_agent = {span.attributes[sc.AGENT_NAME]: span for span in counted(recorded)}
    for name, _, provider in agents:
        assert by_agent[name].attributes[sc.PROVIDER_NAME] == provider
    assert set(rollups(recorded)) == {f"invoke_agent {name}" for name in names}
    assert_rollup_totals(recorded)
    assert report_by_agent(capsys, ledger) == dict.fromkeys(names, 1)
    assert {name: agent["calls"] for name, agent in summary["agents"].items()} == dict.fromkeys(names, 1)
    assert current_attribution().values == {}  # nothing left in the caller's context


@pytest.mark.parametrize("mode", ["run", "run_stream"])
def test_without_the_sdk_layers_pydantic_ais_own_usage_is_reported(servers, tmp_path, mode):
    figures = {}
    for providers in ([*SDK_LAYERS, "pydantic_ai"], ["pydantic_ai"]):
        ledger = tmp_path / f"{len(providers)}.sqlite"
        with recording(tmp_path, servers, providers, ledger.name) as recorded:
            agents = team(servers)
            for name, model, _ in agents:
                run_agent(Agent(model, name=name), mode)
        assert_each_call_once(recorded, ledger, [name for name, _, _ in agents], None)
        assert_rollup_totals(recorded)
        figures[len(providers)] = sorted(
            (s.attributes[sc.AGENT_NAME], s.attributes[sc.PROVIDER_NAME], s.attributes[sc.USAGE_INPUT_TOKENS],
             s.attributes[sc.USAGE_OUTPUT_TOKENS], s.attributes[COST])
            for s in counted(recorded)
        )  # fmt: skip
    assert figures[3] == figures[1]  # the same tokens and cost whichever layer counted them


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.integers(min_value=1, max_value=60), streamed=st.booleans())
def test_pydantic_ais_figures_equal_the_sdk_layers_at_any_length(servers, tmp_path, words, streamed):
    # The answer's length is set per request (X-Fake-Chunks): the framework layer's report of a
    # request (SDK layer off) has the tokens and cost the openai layer reads from the wire.
    figures = []
    for providers in (["openai", "pydantic_ai"], ["pydantic_ai"]):
        # A client per run: each run has its own event loop.
        headers = {"X-Fake-Chunks": str(words)}
        client = AsyncOpenAI(base_url=servers[0].base_url, api_key="fake", default_headers=headers)
        model = OpenAIChatModel(OPENAI_MODEL, provider=OpenAIProvider(openai_client=client))
        ledger = f"{words}-{streamed}-{len(providers)}.sqlite"
        with recording(tmp_path, servers, providers, ledger) as recorded:
            run_agent(Agent(model, name="Planner"), "run_stream" if streamed else "run")
        (span,) = counted(recorded)
        figures.append(
            tuple(span.attributes[key] for key in (sc.USAGE_INPUT_TOKENS, sc.USAGE_OUTPUT_TOKENS, COST))
        )
    assert figures[0] == figures[1]
    assert figures[0][1] == words


def test_anthropic_cache_tokens_reported_from_pydantic_ais_usage(servers, tmp_path):
    # A long prompt: the fake Anthropic API reports part of it as cache reads and writes.
    prompt = "Plan a trip along the coast, with every stop described. " * 200
    for providers in (["anthropic", "pydantic_ai"], ["pydantic_ai"]):
        with recording(tmp_path, servers, providers, f"{len(providers)}.sqlite") as recorded:
            Agent(anthropic_model(servers), name="Writer").run_sync(prompt)
        (span,) = counted(recorded)
        assert span.attributes[sc.PROVIDER_NAME] == "anthropic"
        usage = recorded.calls[0].usage
        assert usage is not None and usage.consistent
        assert usage.input_tokens >= usage.cache_read_tokens + usage.cache_write_tokens
        if len(providers) == 2:
            sdk_usage = usage
        else:
            assert usage.input_tokens == sdk_usage.input_tokens
            assert usage.cache_read_tokens == sdk_usage.cache_read_tokens
            assert usage.cache_write_tokens == sdk_usage.cache_write_tokens
            assert usage.output_tokens == sdk_usage.output_tokens


def test_an_unnamed_agent_is_named_as_pydantic_ai_names_it(servers, tmp_path):
    with recording(tmp_path, servers, [*SDK_LAYERS, "pydantic_ai"]) as recorded:
        researcher = Agent(openai_model(servers))
        researcher.run_sync("Find facts.")  # PydanticAI names it after this variable
        anonymous = Agent(openai_model(servers))
        asyncio.run(anonymous.run("Find facts.", infer_name=False))  # no name: PydanticAI's "agent"
    assert researcher.name == "researcher" and anonymous.name is None  # PydanticAI's behaviour, kept
    names = [span.attributes[sc.AGENT_NAME] for span in sorted(counted(recorded), key=lambda s: s.start_time)]
    assert names == ["researcher", "agent"]


def test_nested_agent_runs_name_their_own_calls(servers, tmp_path):
    async def delegate(messages: list[Any], info: AgentInfo) -> Any:
        from pydantic_ai.messages import ModelResponse, TextPart

        result = await specialist.run("Details, please.")
        return ModelResponse(parts=[TextPart(f"lead: {result.output}")])

    specialist = Agent(openai_model(servers), name="Specialist")
    lead = Agent(FunctionModel(delegate), name="Lead")
    with recording(tmp_path, servers, [*SDK_LAYERS, "pydantic_ai"]) as recorded:
        output = lead.run_sync("Plan.")
    assert output.output.startswith("lead: ")
    names = sorted(span.attributes[sc.AGENT_NAME] for span in counted(recorded))
    # The function model's own request is reported from PydanticAI's usage (no SDK below it).
    assert names == ["Lead", "Specialist"]
    runs = rollups(recorded)
    assert runs["invoke_agent Specialist"].parent.span_id == runs["invoke_agent Lead"].context.span_id
    assert runs["invoke_agent Lead"].attributes[f"{sc.ROLLUP_PREFIX}calls"] == 2


def test_the_applications_agent_name_wins(servers, tmp_path):
    with (
        recording(tmp_path, servers, [*SDK_LAYERS, "pydantic_ai"]) as recorded,
        tokentrail.attribute(agent="Concierge"),
    ):
        Agent(openai_model(servers), name="Planner").run_sync("Plan.")
    assert [span.attributes[sc.AGENT_NAME] for span in counted(recorded)] == ["Concierge"]


def test_a_failing_request_passes_through_and_is_counted_once(servers, tmp_path):
    from pydantic_ai.exceptions import ModelHTTPError

    for providers in ([*SDK_LAYERS, "pydantic_ai"], ["pydantic_ai"]):
        servers[0].fail_next(400)
        with (
            recording(tmp_path, servers, providers, f"{len(providers)}.sqlite") as recorded,
            pytest.raises(ModelHTTPError),
        ):
            Agent(openai_model(servers), name="Planner", retries=0).run_sync("Plan.")
        assert [call.attribution["agent"] for call in recorded.calls] == ["Planner"]
        assert recorded.calls[0].error_type is not None
        errored = [s for s in rollups(recorded).values() if s.status.status_code.name == "ERROR"]
        assert len(errored) == 1


# --- PydanticAI's own OpenTelemetry instrumentation -------------------------------------------------


@pytest.mark.parametrize("sdk_layers", [True, False], ids=["sdk-on", "sdk-off"])
def test_with_pydantic_ais_instrumentation_each_request_is_still_counted_once(servers, tmp_path, sdk_layers):
    providers = [*SDK_LAYERS, "pydantic_ai"] if sdk_layers else ["pydantic_ai"]
    ledger = tmp_path / "ledger.sqlite"
    with recording(tmp_path, servers, providers) as recorded:
        Agent.instrument_all(InstrumentationSettings(tracer_provider=recorded.tracer_provider))
        try:
            Agent(openai_model(servers), name="Planner").run_sync("Plan.")
            run_agent(Agent(anthropic_model(servers), name="Writer"), "run_stream")
        finally:
            Agent.instrument_all(False)
    spans = recorded.spans()
    theirs = [s for s in spans if s.instrumentation_scope.name != "tokentrail"]
    ours = [s for s in spans if s.instrumentation_scope.name == "tokentrail"]
    # PydanticAI's request spans carry gen_ai.usage.* too: a sum over every span would double count.
    their_requests = [s for s in theirs if sc.USAGE_INPUT_TOKENS in (s.attributes or {})]
    assert {s.name for s in their_requests} >= {f"chat {OPENAI_MODEL}", f"chat {ANTHROPIC_MODEL}"}
    # tokentrail: one counted span per request (recognisable by its scope and cost), one ledger
    # row, one set of metrics; its counted span is a child of PydanticAI's request span.
    our_counted = [s for s in ours if sc.USAGE_INPUT_TOKENS in (s.attributes or {})]
    assert len(our_counted) == 2 and all(COST in s.attributes for s in our_counted)
    assert all(not (s.attributes or {}).get(COST) for s in theirs)
    their_ids = {s.context.span_id for s in their_requests}
    assert all(s.parent is not None and s.parent.span_id in their_ids for s in our_counted)
    assert len(recorded.calls) == 2
    from ledger_data import raw_rows

    assert sorted(row["agent"] for row in raw_rows(ledger)) == ["Planner", "Writer"]
    points = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input")
    assert sum(point.count for point in points) == 2


# --- the matrix: SDK layers x PydanticAI layer ----------------------------------------------------


@pytest.mark.parametrize("sdk_layers", [True, False], ids=["sdk-on", "sdk-off"])
@pytest.mark.parametrize("framework_layer", [True, False], ids=["pydantic_ai-on", "pydantic_ai-off"])
@pytest.mark.parametrize("which", ["openai", "anthropic"])
def test_matrix_one_counted_call_per_request(servers, tmp_path, sdk_layers, framework_layer, which):
    providers = [*(SDK_LAYERS if sdk_layers else []), *(["pydantic_ai"] if framework_layer else [])]
    make = openai_model if which == "openai" else anthropic_model
    with recording(tmp_path, servers, providers) as recorded:
        for mode in ("run", "run_stream"):  # a client per run: each run has its own event loop
            run_agent(Agent(make(servers), name="Planner"), mode)
    spans = counted(recorded)
    if not providers:
        assert spans == [] and recorded.calls == []
        return
    assert len(spans) == len(recorded.calls) == 2
    assert {span.attributes[sc.PROVIDER_NAME] for span in spans} == {which}
    expected_name = "Planner" if framework_layer else None
    assert [span.attributes.get(sc.AGENT_NAME) for span in spans] == [expected_name] * 2
    assert bool(rollups(recorded)) == framework_layer


# --- robustness, laziness, the readers --------------------------------------------------------------


def test_a_bug_in_the_layer_never_reaches_the_application(servers, tmp_path, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(pa, "request_info", broken)
    with recording(tmp_path, servers, ["pydantic_ai"]) as recorded:
        output = Agent(openai_model(servers), name="Planner").run_sync("Plan.").output
    assert output
    assert recorded.calls == []


def test_uninstrument_removes_the_patches(servers, tmp_path):
    from pydantic_ai.models.openai import OpenAIChatModel as Chat

    places = ((Agent, "iter"), (Chat, "request"), (Chat, "request_stream"))
    originals = [vars(owner)[name] for owner, name in places]

    def unchanged() -> list[bool]:
        now = [vars(owner)[name] for owner, name in places]
        return [current is original for current, original in zip(now, originals, strict=True)]

    with recording(tmp_path, servers, ["pydantic_ai"]):
        assert unchanged() == [False, False, False]
    assert unchanged() == [True, True, True]


def test_nothing_imported_before_the_application_imports_pydantic_ai():
    code = (
        "import sys, tokentrail\n"
        "tokentrail.instrument(providers=['pydantic_ai'], setup_otel=False, ledger=False)\n"
        "assert 'pydantic_ai' not in sys.modules\n"
        "from pydantic_ai import Agent\n"
        "from pydantic_ai.models.openai import OpenAIChatModel\n"
        "assert hasattr(Agent.iter, '__wrapped__') and hasattr(OpenAIChatModel.request, '__wrapped__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_usage_of_pydantic_ais_request_usage():
    from pydantic_ai.usage import RequestUsage

    usage = pa.usage_of(
        RequestUsage(input_tokens=2000, cache_read_tokens=1500, cache_write_tokens=200, output_tokens=300,
                     output_reasoning_tokens=100)
    )  # fmt: skip
    assert usage is not None and usage.consistent
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (2000, 1500, 200)
    assert (usage.output_tokens, usage.reasoning_tokens) == (300, 100)
    assert pa.usage_of(RequestUsage()) is None
    assert pa.usage_of(None) is None


@pytest.mark.parametrize(
    ("system", "expected"),
    [("openai", "openai"), ("anthropic", "anthropic"), ("google-gla", "gcp.gemini"),
     ("mistral", "mistral_ai"), ("function", "function"), (None, "pydantic_ai")],
)  # fmt: skip
def test_provider_names(system, expected):
    assert pa.provider_name(system) == expected


def test_cost_is_tokentrails_never_pydantic_ais(servers, tmp_path):
    with recording(tmp_path, servers, ["pydantic_ai"]) as recorded:
        Agent(openai_model(servers), name="Planner").run_sync("Plan.")
    (call,) = recorded.calls
    assert call.cost is not None
    assert math.isclose(call.cost.total, counted(recorded)[0].attributes[COST])
