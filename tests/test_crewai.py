"""CrewAI: the real package, its native OpenAI client over the fake provider server, no network.

A two-agent crew (sequential process, two tasks) runs with each combination of layers: the SDK
layer (openai) instrumented or not, the CrewAI layer on or off. Whatever the combination, each
model call is counted once (one span with ``gen_ai.usage.*``, one set of token metrics, one ledger
row), named by the crew's agent, task and crew when the CrewAI layer is on, and priced by
tokentrail's pricer.

CrewAI cannot be installed beside openai 3.x: these tests run in their own venv
(``.venv-crewai``, built by ``scripts/test``, which sets ``TOKENTRAIL_EXPECT_CREWAI=1`` so that a
missing CrewAI fails there instead of skipping). In the main venv they skip.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace

import tokentrail
from conftest import Recorded
from tokentrail import _safety
from tokentrail import semconv as sc
from tokentrail.testing import FakeLLMServer

if os.environ.get("TOKENTRAIL_EXPECT_CREWAI") != "1" and importlib.util.find_spec("crewai") is None:
    pytest.skip(
        "crewai is not installed here (it needs openai<3): scripts/test runs these tests in .venv-crewai",
        allow_module_level=True,
    )

# Before CrewAI is imported: no anonymous telemetry to CrewAI's endpoint, no trace upload, no
# prompt; what CrewAI writes under the user's home goes to a directory of the test session's.
_HOME = tempfile.mkdtemp(prefix="tokentrail-crewai-home-")
os.environ["CREWAI_DISABLE_TELEMETRY"] = "true"
os.environ["CREWAI_DISABLE_TRACKING"] = "true"
os.environ["CREWAI_TRACING_ENABLED"] = "false"
os.environ["CREWAI_STORAGE_DIR"] = _HOME
os.environ["HOME"] = _HOME
os.environ.pop("OPENAI_API_KEY", None)
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # LiteLLM fetches its cost map from the web otherwise

from crewai import LLM, Agent, Crew, Process, Task  # noqa: E402

from tokentrail.cli import main as cli_main  # noqa: E402
from tokentrail.providers import crewai as cw  # noqa: E402

# The fixture's instrumentation; each test re-instruments with the layers it is about.
pytestmark = pytest.mark.tokentrail(providers=["openai", "crewai"])

MODEL = "gpt-4o-mini"
TASK = sc.attribution_attribute("task")
WORKFLOW = sc.attribution_attribute("label:workflow")
CREW_NAME = "launch crew"
ROLES = ("Researcher", "Writer")
TASKS = ("research", "Write the announcement")  # the second task has no name: its description's first line


def expected_cost(model: str, provider: str = "openai", **tokens: int) -> float:
    """What genai-prices computes for these tokens: our figure must equal it."""
    price = genai_prices.calc_price(genai_prices.Usage(**tokens), model, provider_id=provider)
    return float(price.total_price)


@dataclass
class CrewRun:
    recorded: Recorded
    server: FakeLLMServer
    ledger: Path
    result: Any

    def counted(self) -> list[Any]:
        """The spans that carry a call's usage: the counted ones."""
        return [s for s in self.recorded.spans() if sc.USAGE_INPUT_TOKENS in (s.attributes or {})]

    def spans_named(self, prefix: str) -> list[Any]:
        return [s for s in self.recorded.spans() if s.name.startswith(prefix)]

    def ledger_rows(self) -> list[dict[str, Any]]:
        connection = sqlite3.connect(self.ledger)
        connection.row_factory = sqlite3.Row
        try:
            if not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'calls'").fetchone():
                return []  # nothing was ever recorded
            return [dict(row) for row in connection.execute("SELECT * FROM calls ORDER BY start_time")]
        finally:
            connection.close()


def instrument(recorded: Recorded, server: FakeLLMServer, providers: list[str], ledger: Path) -> None:
    """Re-instrument onto the test's in-memory providers, the fake server's host mapped to OpenAI."""
    port = server.url.rsplit(":", 1)[1]
    tokentrail.uninstrument()  # only these layers: none left from the fixture's instrument()
    tokentrail.instrument(
        tracer_provider=recorded.tracer_provider,
        meter_provider=recorded.meter_provider,
        providers=providers,
        provider_hosts={f"127.0.0.1:{port}": "openai"},
        sinks=[recorded.finished.append],
        ledger=ledger,
        setup_otel=False,
    )


def two_agent_crew(server: FakeLLMServer, **llm_options: Any) -> Crew:
    llm_options = {"model": MODEL, "base_url": server.base_url, "api_key": "sk-test-SECRET", **llm_options}
    llm = LLM(**llm_options)
    researcher = Agent(role=ROLES[0], goal="Find the facts", backstory="A careful analyst.", llm=llm)
    writer = Agent(role=ROLES[1], goal="Write it up", backstory="A clear writer.", llm=llm)
    research = Task(
        name=TASKS[0], description="Research the product launch.", expected_output="Notes.", agent=researcher
    )
    write = Task(description=f"{TASKS[1]}\nKeep it short.", expected_output="A paragraph.", agent=writer)
    return Crew(
        agents=[researcher, writer], tasks=[research, write], process=Process.sequential, name=CREW_NAME
    )


@pytest.fixture
def run_crew(recorded: Recorded, tmp_path: Path) -> Iterator[Any]:
    """Runs the two-agent crew with the given tokentrail providers; returns a :class:`CrewRun`."""
    with FakeLLMServer() as server:

        def run(providers: list[str], kickoff: str = "kickoff", **llm_options: Any) -> CrewRun:
            ledger = tmp_path / "ledger.sqlite"
            instrument(recorded, server, providers, ledger)
            # An option may be a function of the server (its root URL, not the OpenAI base URL).
            options = {key: value(server) if callable(value) else value for key, value in llm_options.items()}
            crew = two_agent_crew(server, **options)
            result = crew.kickoff() if kickoff == "kickoff" else asyncio.run(getattr(crew, kickoff)())
            tokentrail.flush()
            tokentrail.uninstrument()  # closes the ledger: its rows are on disk
            return CrewRun(recorded, server, ledger, result)

        yield run


MODEL_PATHS = ("/chat/completions", "/v1/messages", "/api/chat", "/api/generate")


def chat_requests(server: FakeLLMServer) -> int:
    """The model calls the server answered (LiteLLM's Ollama route also asks /api/show: no call)."""
    return sum(1 for r in server.requests if r.path.endswith(MODEL_PATHS))


# --- the matrix: SDK layer instrumented or not x CrewAI layer on or off --------------------------


@pytest.mark.parametrize("crewai_layer", [True, False], ids=["crewai-on", "crewai-off"])
@pytest.mark.parametrize("sdk_layer", [True, False], ids=["sdk-on", "sdk-off"])
def test_each_model_call_is_counted_once_in_every_combination(run_crew, sdk_layer, crewai_layer):
    providers = (["openai"] if sdk_layer else []) + (["crewai"] if crewai_layer else [])
    run = run_crew(providers)

    assert run.result.raw  # the crew ran to its end, answer unchanged
    requests = chat_requests(run.server)
    assert requests == 2  # one model call per task
    expected = requests if (sdk_layer or crewai_layer) else 0
    counted = run.counted()
    assert len(counted) == expected
    assert len(run.recorded.calls) == expected
    assert len(run.ledger_rows()) == expected
    inputs = run.recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input")
    assert sum(point.count for point in inputs) == expected
    assert sum(point.sum for point in inputs) == sum(s.attributes[sc.USAGE_INPUT_TOKENS] for s in counted)
    if crewai_layer:
        # Named by the crew's agent, task and crew, whichever layer counted it.
        names = [(s.attributes[sc.AGENT_NAME], s.attributes[TASK], s.attributes[WORKFLOW]) for s in counted]
        assert names == [(ROLES[0], TASKS[0], CREW_NAME), (ROLES[1], TASKS[1], CREW_NAME)]
        rows = run.ledger_rows()
        assert [(row["agent"], row["task"]) for row in rows] == list(zip(ROLES, TASKS, strict=True))
        assert all(json.loads(row["labels"]) == {"workflow": CREW_NAME} for row in rows)
    else:
        assert all(sc.AGENT_NAME not in s.attributes for s in counted)
        assert not run.spans_named("invoke_agent") and not run.spans_named("workflow")
    for call in run.recorded.calls:
        usage = call.usage
        assert call.provider == "openai" and call.request_model == MODEL
        assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
        cost = expected_cost(
            call.response_model or call.request_model,
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            output_tokens=usage.output_tokens,
        )
        assert call.cost is not None and math.isclose(call.cost.total, cost, rel_tol=1e-9)
    # The SDK layer, when on, is the one that counted (its response model is the provider's).
    if sdk_layer:
        assert all(call.response_model and call.response_model != MODEL for call in run.recorded.calls)
    elif crewai_layer:
        assert all(call.response_model is None for call in run.recorded.calls)


@pytest.mark.parametrize("sdk_layer", [True, False], ids=["sdk-on", "sdk-off"])
def test_agents_and_the_crew_are_roll_up_spans_with_their_totals(run_crew, sdk_layer):
    run = run_crew((["openai"] if sdk_layer else []) + ["crewai"])
    counted = run.counted()
    by_id = {s.context.span_id: s for s in run.recorded.spans()}
    (workflow,) = run.spans_named("workflow ")
    agents = run.spans_named("invoke_agent ")
    assert workflow.name == f"workflow {CREW_NAME}"
    assert [s.name for s in agents] == [f"invoke_agent {role}" for role in ROLES]
    for span, role in zip(agents, ROLES, strict=True):
        attributes = span.attributes
        assert attributes[sc.OPERATION_NAME] == "invoke_agent" and attributes[sc.AGENT_NAME] == role
        assert span.parent.span_id == workflow.context.span_id
        assert not any(key.startswith("gen_ai.usage.") for key in attributes)  # roll-ups are not counted
        (inside,) = [s for s in counted if by_id[s.parent.span_id] is span]  # its call nests under it
        assert attributes[sc.ROLLUP_CALLS] == 1
        assert attributes[sc.ROLLUP_INPUT_TOKENS] == inside.attributes[sc.USAGE_INPUT_TOKENS]
        assert math.isclose(attributes[sc.ROLLUP_COST], inside.attributes[sc.COST_AMOUNT], rel_tol=1e-9)
    totals = workflow.attributes
    assert not any(key.startswith("gen_ai.usage.") for key in totals) and sc.OPERATION_NAME not in totals
    assert totals[sc.ROLLUP_CALLS] == len(counted) == 2
    assert totals[sc.ROLLUP_INPUT_TOKENS] == sum(s.attributes[sc.USAGE_INPUT_TOKENS] for s in counted)
    assert totals[sc.ROLLUP_OUTPUT_TOKENS] == sum(s.attributes[sc.USAGE_OUTPUT_TOKENS] for s in counted)
    cost = sum(s.attributes[sc.COST_AMOUNT] for s in counted)
    assert math.isclose(totals[sc.ROLLUP_COST], cost, rel_tol=1e-9)


def test_report_by_agent_lists_both_agents(run_crew, capsys):
    run = run_crew(["openai", "crewai"])
    capsys.readouterr()  # what CrewAI printed while the crew ran
    code = cli_main(["report", "--ledger", str(run.ledger), "--by", "agent", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    groups = {group["value"]: group for group in report["breakdown"]}
    assert set(groups) == set(ROLES)
    assert report["totals"]["calls"] == 2
    for call in run.recorded.calls:
        group = groups[call.attribution["agent"]]
        assert group["calls"] == 1
        assert math.isclose(group["cost_usd"], call.cost.total, rel_tol=1e-6)
    code = cli_main(["report", "--ledger", str(run.ledger), "--by", "label:workflow", "--format", "json"])
    (crew,) = json.loads(capsys.readouterr().out)["breakdown"]
    assert code == 0 and crew["value"] == CREW_NAME and crew["calls"] == 2


def test_run_summary_shows_the_agents(run_crew):
    tokentrail.reset_summary()
    try:
        run = run_crew(["crewai"])
        summary = tokentrail.summary(format="dict")
    finally:
        tokentrail.reset_summary()
    assert set(summary["agents"]) == set(ROLES)
    for call in run.recorded.calls:
        totals = summary["agents"][call.attribution["agent"]]
        assert totals["calls"] == 1 and math.isclose(totals["cost_usd"], call.cost.total, rel_tol=1e-9)


# --- async kickoffs, streams ------------------------------------------------------------------


@pytest.mark.parametrize("kickoff", ["akickoff", "kickoff_async"])
@pytest.mark.parametrize("sdk_layer", [True, False], ids=["sdk-on", "sdk-off"])
def test_async_kickoffs_are_counted_once_and_named(run_crew, kickoff, sdk_layer):
    run = run_crew((["openai"] if sdk_layer else []) + ["crewai"], kickoff=kickoff)
    counted = run.counted()
    assert len(counted) == chat_requests(run.server) == 2
    assert [s.attributes[sc.AGENT_NAME] for s in counted] == list(ROLES)
    (workflow,) = run.spans_named("workflow ")
    assert workflow.attributes[sc.ROLLUP_CALLS] == 2
    assert len(run.spans_named("invoke_agent ")) == 2


@pytest.mark.parametrize("sdk_layer", [True, False], ids=["sdk-on", "sdk-off"])
def test_streamed_calls_are_counted_once_with_their_usage(run_crew, sdk_layer):
    run = run_crew((["openai"] if sdk_layer else []) + ["crewai"], stream=True)
    assert all(r.body.get("stream") is True for r in run.server.requests)
    counted = run.counted()
    assert len(counted) == chat_requests(run.server) == 2
    assert all(s.attributes[sc.USAGE_OUTPUT_TOKENS] > 0 for s in counted)
    assert [s.attributes[sc.AGENT_NAME] for s in counted] == list(ROLES)


@pytest.mark.parametrize("sdk_layer", [True, False], ids=["sdk-on", "sdk-off"])
def test_an_applications_own_llm_class_making_two_requests_a_call(recorded, tmp_path, sdk_layer):
    # The shape of a native client's tool loop: one `call`, two requests, each response's usage
    # tracked. The class is defined after instrument(): the agent's first task patches it.
    import openai
    from crewai.llms.base_llm import BaseLLM

    class TwoStepLLM(BaseLLM):
        def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
            client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0)
            text = ""
            for _ in range(2):
                reply = client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": "step"}]
                )
                usage = reply.usage
                self._track_token_usage_internal(
                    {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
                )
                text = reply.choices[0].message.content or ""
            return text

    with FakeLLMServer() as server:
        instrument(recorded, server, (["openai"] if sdk_layer else []) + ["crewai"], tmp_path / "l.sqlite")
        llm = TwoStepLLM(model=MODEL, base_url=server.base_url, api_key="sk-test-SECRET")
        agent = Agent(role=ROLES[0], goal="Find the facts", backstory="A careful analyst.", llm=llm)
        task = Task(name=TASKS[0], description="Research.", expected_output="Notes.", agent=agent)
        Crew(agents=[agent], tasks=[task], name=CREW_NAME).kickoff()
        requests = chat_requests(server)
        counted = [s for s in recorded.spans() if sc.USAGE_INPUT_TOKENS in (s.attributes or {})]
    assert requests == len(counted) == len(recorded.calls) == 2  # each request once, not the call once
    assert all(s.attributes[sc.AGENT_NAME] == ROLES[0] for s in counted)
    assert len({s.context.span_id for s in counted}) == 2


# --- through LiteLLM (CrewAI's fallback for the providers it has no native client for) --------
#
# LiteLLM reaches Anthropic and Ollama over its own HTTP client, not their SDKs: with no LiteLLM
# layer, CrewAI's layer reports each call from the usage CrewAI tracks; with tokentrail's LiteLLM
# layer (when instrumented) that layer reports it and covers CrewAI's. Either way: exactly one
# counted call per model call, named by the crew's agent.

CLAUDE = "claude-sonnet-4-5"


def root_url(server: FakeLLMServer) -> str:
    """The server's root: LiteLLM adds the provider's own path (``/v1/messages``, ``/api/...``)."""
    return server.url


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_crew_over_litellm_raw_http_is_counted_once(run_crew, stream):
    pytest.importorskip("litellm", reason="CrewAI's LiteLLM fallback needs crewai[litellm]")
    try:
        routed = LLM(model=f"anthropic/{CLAUDE}", is_litellm=True, api_key="fake").is_litellm
    except ImportError:  # CrewAI 1.15.0 sends anthropic/ to its native client whatever is_litellm says
        routed = False
    if not routed:
        pytest.skip("this CrewAI does not route anthropic/ models through LiteLLM on request")
    # The anthropic SDK layer is on too: LiteLLM does not call the SDK, so it must not matter.
    run = run_crew(
        ["anthropic", "crewai"],
        model=f"anthropic/{CLAUDE}",
        base_url=root_url,
        is_litellm=True,
        stream=stream,
    )
    counted = run.counted()
    assert chat_requests(run.server) == len(counted) == len(run.recorded.calls) == len(run.ledger_rows()) == 2
    assert all(r.path == "/v1/messages" and r.body["model"] == CLAUDE for r in run.server.requests)
    assert [s.attributes[sc.AGENT_NAME] for s in counted] == list(ROLES)
    for call in run.recorded.calls:
        usage = call.usage
        assert call.provider == "anthropic" and call.request_model == CLAUDE
        assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
        cost = expected_cost(
            call.response_model or call.request_model,
            "anthropic",
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
        )
        assert call.cost is not None and math.isclose(call.cost.total, cost, rel_tol=1e-9)


def test_litellms_ollama_route_is_counted_once(run_crew):
    pytest.importorskip("litellm", reason="CrewAI's LiteLLM fallback needs crewai[litellm]")
    run = run_crew(["ollama", "crewai"], model="ollama/llama3.2", base_url=root_url, is_litellm=True)
    counted = run.counted()
    assert chat_requests(run.server) == len(counted) == len(run.recorded.calls) == 2
    assert all(call.provider == "ollama" and call.request_model == "llama3.2" for call in run.recorded.calls)
    assert [s.attributes[sc.AGENT_NAME] for s in counted] == list(ROLES)


# --- precedence, failures, what CrewAI does to the process -------------------------------------


def test_the_applications_names_win(run_crew):
    with tokentrail.attribute(agent="release-bot", task="launch"):
        run = run_crew(["openai", "crewai"])
    counted = run.counted()
    assert len(counted) == 2
    assert {(s.attributes[sc.AGENT_NAME], s.attributes[TASK]) for s in counted} == {("release-bot", "launch")}
    assert all(s.attributes[WORKFLOW] == CREW_NAME for s in counted)


@pytest.mark.parametrize("sdk_layer", [True, False], ids=["sdk-on", "sdk-off"])
def test_a_failing_call_passes_through_and_is_recorded_once(recorded, tmp_path, sdk_layer):
    with FakeLLMServer() as server:
        instrument(recorded, server, (["openai"] if sdk_layer else []) + ["crewai"], tmp_path / "l.sqlite")
        llm = LLM(model=MODEL, base_url=server.base_url, api_key="sk-test-SECRET", max_retries=0)
        server.fail_next(400)
        with pytest.raises(Exception) as raised:
            llm.call("hello")
        calls = recorded.calls
    assert type(raised.value).__name__ == "BadRequestError"  # the SDK's own exception, unchanged
    (call,) = calls
    assert call.error_type is not None
    assert call.usage is None or call.usage.total_tokens == 0


def test_crewai_leaves_the_global_providers_and_the_key_alone(run_crew):
    before = trace.get_tracer_provider()
    run = run_crew(["crewai"])
    assert trace.get_tracer_provider() is before
    assert chat_requests(run.server) == len(run.server.requests)  # nothing but the model calls
    for span in run.recorded.spans():
        assert "sk-test-SECRET" not in repr(dict(span.attributes or {}))
    for row in run.ledger_rows():
        assert "sk-test-SECRET" not in repr(row)


def test_a_bug_in_the_layer_never_reaches_the_application(run_crew, monkeypatch):
    failures: list[Any] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        failures.append(args)
        raise KeyError("tokentrail bug")

    monkeypatch.setattr(cw, "usage_of", broken)
    monkeypatch.setattr(cw, "agent_names", broken)
    run = run_crew(["crewai"])

    assert run.result.raw.startswith("This is a fake answer")  # the crew's answer, as ever
    assert chat_requests(run.server) == 2
    assert _safety.errors_total == len(failures) >= 4  # each agent's start, each response's usage
    assert run.recorded.calls == []  # nothing could be read: nothing made up


def test_nothing_is_imported_from_crewai_until_the_application_does():
    code = textwrap.dedent(
        """
        import sys
        import tokentrail
        tokentrail.instrument(providers=["crewai"], ledger=False)
        assert "crewai" not in sys.modules, "imported crewai"
        import crewai.crew
        assert type(vars(crewai.crew.Crew)["kickoff"]).__name__ == "FunctionWrapper"
        print("ok")
        """
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_uninstrument_removes_the_patches(recorded):
    import crewai.agent.core
    import crewai.crew

    assert type(vars(crewai.crew.Crew)["kickoff"]).__name__ == "FunctionWrapper"
    tokentrail.uninstrument()
    assert type(vars(crewai.crew.Crew)["kickoff"]).__name__ == "function"
    assert type(vars(crewai.agent.core.Agent)["execute_task"]).__name__ == "function"


# --- reading CrewAI's usage (pure) ---------------------------------------------------------------


def test_usage_shapes_crewai_passes():
    openai = cw.usage_of(
        {"prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240, "cached_prompt_tokens": 1024,
         "reasoning_tokens": 10}
    )  # fmt: skip
    assert (openai.input_tokens, openai.output_tokens, openai.cache_read_tokens, openai.reasoning_tokens) == (
        1200, 40, 1024, 10,
    )  # fmt: skip
    gemini = cw.usage_of(
        {"prompt_token_count": 300, "candidates_token_count": 20, "completion_tokens": 50,
         "reasoning_tokens": 30, "cached_prompt_tokens": 100, "total_tokens": 350}
    )  # fmt: skip
    assert (gemini.input_tokens, gemini.output_tokens, gemini.reasoning_tokens) == (300, 50, 30)
    bedrock = cw.usage_of({"inputTokens": 100, "outputTokens": 7, "cacheReadInputTokens": 400})
    assert (bedrock.input_tokens, bedrock.cache_read_tokens, bedrock.output_tokens) == (500, 400, 7)
    assert cw.usage_of({"total_tokens": 0}) is None and cw.usage_of(None) is None


@given(
    uncached=st.integers(0, 10**6),
    read=st.integers(0, 10**6),
    write=st.integers(0, 10**6),
    output=st.integers(1, 10**5),
)
def test_anthropic_usage_reads_the_same_folded_or_raw(uncached, read, write, output):
    # The native client folds the cache into input_tokens; LiteLLM passes Anthropic's raw shape.
    folded = cw.usage_of(
        {"input_tokens": uncached + read + write, "output_tokens": output, "cached_prompt_tokens": read,
         "cache_creation_tokens": write}
    )  # fmt: skip
    raw = cw.usage_of(
        {"input_tokens": uncached, "output_tokens": output, "cache_read_input_tokens": read,
         "cache_creation_input_tokens": write}
    )  # fmt: skip
    assert folded == raw
    assert raw.input_tokens == uncached + read + write and raw.consistent


def test_names_of_a_task_without_a_name():
    class Described:
        name = None
        description = (
            "  Summarise the quarterly figures for the board, then list the three biggest risks found\nmore"
        )

    name = cw.task_name(Described())
    assert name is not None and name.startswith("Summarise the quarterly") and len(name) == 80
    assert name.endswith("…") and "\n" not in name
    assert cw.provider_name("azure") == "azure.ai.openai" and cw.provider_name(None) == "crewai"
