"""LangChain and LangGraph: the real libraries, models over mock transports, no network.

A model whose SDK tokentrail does not instrument is reported from LangChain's own usage; one whose
SDK it does (ChatOpenAI over openai) is counted once, by the SDK layer; the graph and its nodes
become roll-up spans that name the agent.
"""

from __future__ import annotations

import json
import math
import operator
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, TypedDict

import genai_prices
import pytest
from langchain_core.callbacks.base import BaseCallbackManager
from langchain_core.callbacks.manager import CallbackManager
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.language_models.llms import BaseLLM
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import Generation, LLMResult
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import tokentrail
from conftest import Recorded, http_module
from openai_wire import MODEL, FakeOpenAI
from tokentrail import _safety
from tokentrail import semconv as sc
from tokentrail.context import current_attribution
from tokentrail.providers import langchain as lc

# Only the SDKs these tests drive: the other providers' imports would only slow every test down.
pytestmark = pytest.mark.tokentrail(providers=["openai", "langchain"])

THIRD_PARTY_MODEL = "claude-sonnet-4-5"
USAGE_METADATA = {
    "input_tokens": 2000,
    "output_tokens": 300,
    "total_tokens": 2300,
    "input_token_details": {"cache_read": 1500, "cache_creation": 200},
    "output_token_details": {"reasoning": 100},
}


def expected_cost(model: str, provider: str, **tokens: int) -> float:
    """What genai-prices computes for these tokens: our figure must equal it."""
    price = genai_prices.calc_price(genai_prices.Usage(**tokens), model, provider_id=provider)
    return float(price.total_price)


class ThirdPartyChat(GenericFakeChatModel):
    """A chat model over an SDK tokentrail does not patch, reporting as LangChain's Anthropic does."""

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {
            **super()._get_ls_params(stop=stop, **kwargs),
            "ls_provider": "anthropic",
            "ls_model_name": THIRD_PARTY_MODEL,
            "ls_temperature": 0.2,
        }


def third_party(count: int = 1) -> ThirdPartyChat:
    replies = [AIMessage(f"reply {i}", usage_metadata=USAGE_METADATA) for i in range(count)]  # type: ignore[arg-type]
    return ThirdPartyChat(messages=iter(replies))


class FailingChat(GenericFakeChatModel):
    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("model backend down")


class LegacyCompletionLLM(BaseLLM):
    """An old-style text LLM that reports usage only in ``llm_output["token_usage"]``."""

    @property
    def _llm_type(self) -> str:
        return "legacy-completion"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {**super()._get_ls_params(stop=stop, **kwargs), "ls_provider": "openai",
                "ls_model_name": "gpt-3.5-turbo-instruct"}  # fmt: skip

    def _generate(self, prompts: list[str], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        return LLMResult(
            generations=[[Generation(text=" world")] for _ in prompts],
            llm_output={"token_usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}},
        )


def chat_openai(fake: FakeOpenAI, **kwargs: Any) -> ChatOpenAI:
    httpx = http_module()
    transport = httpx.MockTransport(fake.handler)
    return ChatOpenAI(
        model=MODEL,
        api_key="sk-test-SECRET",
        max_retries=0,
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )


class State(TypedDict):
    text: str


def linear_graph(**nodes: Callable[[State], Any]) -> Any:
    """START -> each node in order -> END."""
    builder = StateGraph(State)
    previous = START
    for name, function in nodes.items():
        builder.add_node(name, function)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile()


def llm_spans(recorded: Recorded) -> list[Any]:
    return [s for s in recorded.spans() if sc.OPERATION_NAME in (s.attributes or {})]


def by_name(recorded: Recorded) -> dict[str, Any]:
    return {s.name: s for s in recorded.spans()}


def token_points(recorded: Recorded, token_type: str) -> list[Any]:
    return recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type=token_type)


# --- models tokentrail does not instrument ------------------------------------------------------


def test_uninstrumented_chat_model_is_recorded_once_and_priced(recorded):
    reply = third_party().invoke("hello")

    assert reply.content == "reply 0"
    span = recorded.span()
    attributes = span.attributes
    assert span.name == f"chat {THIRD_PARTY_MODEL}"
    assert span.kind.name == "CLIENT"
    assert attributes[sc.OPERATION_NAME] == "chat"
    assert attributes[sc.PROVIDER_NAME] == "anthropic"
    assert attributes[sc.REQUEST_MODEL] == THIRD_PARTY_MODEL
    assert attributes[sc.REQUEST_TEMPERATURE] == 0.2
    assert attributes[sc.USAGE_INPUT_TOKENS] == 2000
    assert attributes[sc.USAGE_OUTPUT_TOKENS] == 300
    assert attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 1500
    assert attributes[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == 200
    assert attributes[sc.USAGE_REASONING_OUTPUT_TOKENS] == 100
    cost = expected_cost(
        THIRD_PARTY_MODEL, "anthropic",
        input_tokens=2000, cache_read_tokens=1500, cache_write_tokens=200, output_tokens=300,
    )  # fmt: skip
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)
    (call,) = recorded.calls
    assert call.provider == "anthropic" and call.request_model == THIRD_PARTY_MODEL
    assert call.usage is not None and call.usage.input_tokens == 2000 and call.usage.consistent
    assert call.cost is not None and math.isclose(call.cost.total, cost, rel_tol=1e-9)
    assert call.error_type is None
    # The span covers the model run: it started when LangChain started the run.
    assert span.start_time < span.end_time
    assert call.duration_s >= 0
    (inputs,) = token_points(recorded, "input")
    assert (inputs.count, inputs.sum) == (1, 2000)


def test_legacy_llm_token_usage_fallback(recorded):
    assert LegacyCompletionLLM().invoke("hello") == " world"

    attributes = recorded.span().attributes
    assert attributes[sc.OPERATION_NAME] == "text_completion"
    assert attributes[sc.PROVIDER_NAME] == "openai"
    assert (attributes[sc.USAGE_INPUT_TOKENS], attributes[sc.USAGE_OUTPUT_TOKENS]) == (20, 7)
    cost = expected_cost("gpt-3.5-turbo-instruct", "openai", input_tokens=20, output_tokens=7)
    assert math.isclose(attributes[sc.COST_AMOUNT], cost, rel_tol=1e-9)


def test_failing_uninstrumented_model_yields_a_failed_call(recorded):
    model = FailingChat(messages=iter([]))
    with pytest.raises(RuntimeError, match="model backend down"):
        model.invoke("hello")

    span = recorded.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "RuntimeError"
    assert span.attributes[sc.USAGE_MISSING] is True
    (call,) = recorded.calls
    assert call.error_type == "RuntimeError" and call.usage is None and call.cost is None


def test_batch_of_prompts_records_each_prompt_once(recorded):
    result = third_party(2).generate([[HumanMessage("a")], [HumanMessage("b")]])

    assert [g[0].text for g in result.generations] == ["reply 0", "reply 1"]
    assert len(llm_spans(recorded)) == 2
    assert [c.usage.input_tokens for c in recorded.calls] == [2000, 2000]


@pytest.mark.parametrize(
    ("ls_provider", "expected"),
    [
        ("openai", "openai"), ("anthropic", "anthropic"), ("google_genai", "gcp.gemini"),
        ("google_vertexai", "gcp.vertex_ai"), ("bedrock", "aws.bedrock"), ("amazon_bedrock", "aws.bedrock"),
        ("xai", "x_ai"), ("groq", "groq"), ("mistralai", "mistral_ai"), ("deepseek", "deepseek"),
        ("ollama", "ollama"), ("azure", "azure.ai.openai"), ("together", "together"), (None, "langchain"),
        ("", "langchain"),
    ],
)  # fmt: skip
def test_provider_names(ls_provider, expected):
    assert lc.provider_name(ls_provider) == expected


# --- ChatOpenAI over the instrumented openai SDK, in a LangGraph graph -----------------------


def test_chat_openai_in_a_node_is_counted_once_under_its_node(recorded):
    llm = chat_openai(FakeOpenAI())
    graph = linear_graph(writer=lambda state: {"text": llm.invoke("hello").content})

    assert graph.invoke({"text": ""}) == {"text": "Hello there!"}

    (llm_span,) = llm_spans(recorded)
    (call,) = recorded.calls
    spans = by_name(recorded)
    node, root = spans["writer"], spans["LangGraph"]
    assert llm_span.name == f"chat {MODEL}" and call.provider == "openai"
    assert llm_span.attributes[sc.AGENT_NAME] == "writer"
    assert call.attribution == {"agent": "writer"}
    # The trace: graph -> node -> LLM call, the graph at the root.
    assert llm_span.parent.span_id == node.context.span_id
    assert node.parent.span_id == root.context.span_id
    assert root.parent is None
    assert len(recorded.spans()) == 3
    # Token metrics once; the node and the graph add up the one call.
    (inputs,) = token_points(recorded, "input")
    assert (inputs.count, inputs.sum) == (1, 1200)
    for unit in (node, root):
        assert unit.attributes[sc.ROLLUP_CALLS] == 1
        assert unit.attributes[sc.ROLLUP_INPUT_TOKENS] == 1200
        assert math.isclose(unit.attributes[sc.ROLLUP_COST], call.cost.total)
    assert node.attributes[sc.AGENT_NAME] == "writer"
    assert sc.AGENT_NAME not in root.attributes


def test_nodes_name_their_own_calls(recorded):
    llm = chat_openai(FakeOpenAI())
    model = third_party()
    graph = linear_graph(
        writer=lambda state: {"text": llm.invoke("draft").content},
        reviewer=lambda state: {"text": model.invoke(state["text"]).content},
    )
    graph.invoke({"text": ""})

    assert [(c.provider, c.attribution["agent"]) for c in recorded.calls] == [
        ("openai", "writer"),
        ("anthropic", "reviewer"),
    ]
    root = by_name(recorded)["LangGraph"]
    assert root.attributes[sc.ROLLUP_CALLS] == 2
    assert root.attributes[sc.ROLLUP_INPUT_TOKENS] == 1200 + 2000


def test_the_applications_agent_wins_over_node_names(recorded):
    llm = chat_openai(FakeOpenAI())
    graph = linear_graph(writer=lambda state: {"text": llm.invoke("hello").content})

    with tokentrail.attribute(agent="Boss", pipeline="p1"):
        graph.invoke({"text": ""})

    (call,) = recorded.calls
    assert call.attribution == {"agent": "Boss", "pipeline": "p1"}
    spans = by_name(recorded)
    assert spans["writer"].attributes[sc.AGENT_NAME] == "Boss"
    assert llm_spans(recorded)[0].attributes[sc.AGENT_NAME] == "Boss"


def test_subgraph_nodes_name_the_calls_inside_them(recorded):
    model = third_party()
    inner = linear_graph(critic=lambda state: {"text": model.invoke("x").content})
    graph = linear_graph(review=inner)
    graph.invoke({"text": ""})

    (call,) = recorded.calls
    assert call.attribution == {"agent": "critic"}
    spans = by_name(recorded)
    assert spans["critic"].parent.span_id == spans["review"].context.span_id
    assert spans["review"].attributes[sc.ROLLUP_CALLS] == 1


class Notes(TypedDict):
    notes: Annotated[list[str], operator.add]  # parallel nodes may all write (LangGraph 0.2: must)


async def test_async_graph_with_parallel_nodes(recorded):
    llm = chat_openai(FakeOpenAI())

    async def node(state: Notes) -> dict:
        return {"notes": ["joined"]}

    async def ask(state: Notes) -> dict:
        return {"notes": [(await llm.ainvoke("hello")).content]}

    builder = StateGraph(Notes)
    builder.add_node("left", ask)
    builder.add_node("right", ask)
    builder.add_node("join", node)
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    builder.add_edge(["left", "right"], "join")
    builder.add_edge("join", END)
    await builder.compile().ainvoke({"notes": []})

    assert sorted(c.attribution["agent"] for c in recorded.calls) == ["left", "right"]
    spans = by_name(recorded)
    node_ids = {spans[name].context.span_id: name for name in ("left", "right")}
    for span in llm_spans(recorded):
        assert node_ids[span.parent.span_id] == span.attributes[sc.AGENT_NAME]
    assert spans["join"].attributes[sc.ROLLUP_CALLS] == 0
    assert spans["LangGraph"].attributes[sc.ROLLUP_CALLS] == 2
    per_agent = {p.attributes[sc.AGENT_NAME]: (p.count, p.sum) for p in token_points(recorded, "input")}
    assert per_agent == {"left": (1, 1200), "right": (1, 1200)}


async def test_async_nodes_follow_each_other_under_the_graph_and_leave_no_trace(recorded):
    # LangChain ends async runs in a copy of the context: nothing may stay behind in the caller's.
    llm = chat_openai(FakeOpenAI())

    async def write(state: State) -> dict:
        return {"text": (await llm.ainvoke("draft")).content}

    async def review(state: State) -> dict:
        return {"text": (await third_party().ainvoke(state["text"])).content}

    await linear_graph(writer=write, reviewer=review).ainvoke({"text": ""})

    assert current_attribution().values == {}
    assert not trace.get_current_span().is_recording()
    spans = by_name(recorded)
    root = spans["LangGraph"]
    assert spans["writer"].parent.span_id == spans["reviewer"].parent.span_id == root.context.span_id
    assert [c.attribution for c in recorded.calls] == [{"agent": "writer"}, {"agent": "reviewer"}]
    for span in llm_spans(recorded):
        assert span.parent.span_id == spans[span.attributes[sc.AGENT_NAME]].context.span_id
    assert spans["writer"].attributes[sc.ROLLUP_CALLS] == spans["reviewer"].attributes[sc.ROLLUP_CALLS] == 1


def test_sdk_called_directly_in_a_node_is_attributed_to_it(recorded):
    client = FakeOpenAI().client()

    def draft(state: State) -> dict:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        return {"text": "drafted"}  # LangGraph 0.2 refuses a node that writes nothing

    linear_graph(drafter=draft).invoke({"text": ""})

    (span,) = llm_spans(recorded)
    assert span.parent.span_id == by_name(recorded)["drafter"].context.span_id
    assert recorded.calls[0].attribution == {"agent": "drafter"}


async def test_sdk_called_directly_in_an_async_node_is_attributed_to_it(recorded):
    client = FakeOpenAI().client(is_async=True)

    async def draft(state: State) -> dict:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        return {"text": "drafted"}

    await linear_graph(drafter=draft).ainvoke({"text": ""})

    (span,) = llm_spans(recorded)
    assert span.parent.span_id == by_name(recorded)["drafter"].context.span_id
    assert recorded.calls[0].attribution == {"agent": "drafter"}


def test_attribution_set_inside_a_node_and_tools_called_there(recorded):
    @tool
    def look_up(query: str) -> str:
        """Look something up with a model."""
        return str(third_party().invoke(query).content)

    def research(state: State) -> dict:
        look_up.invoke("q")
        with tokentrail.attribute(agent="Editor"):
            third_party().invoke("edit")
        return {"text": "researched"}

    linear_graph(research=research).invoke({"text": ""})

    assert [c.attribution["agent"] for c in recorded.calls] == ["research", "Editor"]
    node = by_name(recorded)["research"]
    assert all(s.parent.span_id == node.context.span_id for s in llm_spans(recorded))
    assert node.attributes[sc.ROLLUP_CALLS] == 2


def test_a_streamed_graph_leaves_the_callers_context_alone(recorded):
    graph = linear_graph(
        first=lambda state: {"text": third_party().invoke("a").content},
        second=lambda state: {"text": third_party().invoke("b").content},
    )
    steps = []
    for step in graph.stream({"text": ""}):
        steps.append(next(iter(step)))
        # The application's own code between chunks is outside the graph.
        assert current_attribution().values == {}
        assert not trace.get_current_span().is_recording()
        break
    assert steps == ["first"]
    assert [c.attribution for c in recorded.calls] == [{"agent": "first"}]
    assert {s.name for s in recorded.spans()} == {"LangGraph", "first", f"chat {THIRD_PARTY_MODEL}"}


async def test_model_calls_still_nest_without_the_child_context_hook(recorded, monkeypatch):
    # If LangChain's private _set_config_context moves, LLM runs enter their scope themselves.
    for module in (sys.modules[name] for name in lc._CHILD_CONTEXT_MODULES if name in sys.modules):
        hook = module._set_config_context
        monkeypatch.setattr(module, "_set_config_context", getattr(hook, "__wrapped__", hook))
    llm = chat_openai(FakeOpenAI())

    async def write(state: State) -> dict:
        return {"text": (await llm.ainvoke("draft")).content}

    graph = linear_graph(writer=write, reviewer=lambda state: {"text": third_party().invoke("x").content})
    await graph.ainvoke({"text": ""})

    assert current_attribution().values == {}
    spans = by_name(recorded)
    assert [c.attribution for c in recorded.calls] == [{"agent": "writer"}, {"agent": "reviewer"}]
    for span in llm_spans(recorded):
        assert span.parent.span_id == spans[span.attributes[sc.AGENT_NAME]].context.span_id


def test_streaming_chat_openai_is_counted_once(recorded):
    llm = chat_openai(FakeOpenAI())
    streamed = "".join(chunk.content for chunk in llm.stream("hello"))
    reply = chat_openai(FakeOpenAI(), streaming=True).invoke("hello")

    assert streamed == reply.content == "Hello there!"
    spans = llm_spans(recorded)
    assert len(spans) == 2 and len(recorded.calls) == 2
    assert all(s.attributes[sc.REQUEST_STREAM] is True for s in spans)
    assert [c.usage.input_tokens for c in recorded.calls] == [1200, 1200]
    (inputs,) = token_points(recorded, "input")
    assert (inputs.count, inputs.sum) == (2, 2400)


# langchain-openai's own warning about the openai 3.x usage shape (seen without tokentrail too).
@pytest.mark.filterwarnings("ignore:Unexpected type for token usage")
def test_batch_generate_over_openai_is_counted_once_per_prompt(recorded):
    fake = FakeOpenAI()
    chat_openai(fake).generate([[HumanMessage("a")], [HumanMessage("b")]])

    assert len(fake.sent) == 2
    assert len(llm_spans(recorded)) == 2 and len(recorded.calls) == 2


# --- failures, safety, removal -------------------------------------------------------------


def test_exception_in_a_node_passes_through_and_marks_the_node(recorded):
    problem = ValueError("bad input")

    def broken(state: State) -> dict:
        raise problem

    with pytest.raises(ValueError) as raised:
        linear_graph(broken=broken).invoke({"text": ""})

    assert raised.value is problem
    spans = by_name(recorded)
    for name in ("broken", "LangGraph"):
        assert spans[name].attributes[sc.ERROR_TYPE] == "ValueError"
        assert spans[name].status.status_code is StatusCode.ERROR
    # Nothing of the failed run is left in the context.
    assert current_attribution().values == {}


def test_an_interrupt_is_not_an_error(recorded):
    from langgraph.checkpoint.memory import InMemorySaver

    interrupt = getattr(pytest.importorskip("langgraph.types"), "interrupt", None)
    if interrupt is None:
        pytest.skip("this LangGraph has no interrupt()")

    builder = StateGraph(State)
    builder.add_node("approve", lambda state: {"text": interrupt("ok?")})
    builder.add_edge(START, "approve")
    graph = builder.compile(checkpointer=InMemorySaver())

    result = graph.invoke({"text": ""}, {"configurable": {"thread_id": "t1"}})

    assert [i.value for i in result["__interrupt__"]] == ["ok?"]
    for span in recorded.spans():
        assert span.status.status_code is StatusCode.UNSET, span.name
        assert sc.ERROR_TYPE not in span.attributes
    assert {s.name for s in recorded.spans()} == {"LangGraph", "approve"}


def test_a_bug_in_the_handler_never_reaches_the_application(recorded, monkeypatch):
    failures = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        failures.append(args)
        raise KeyError("tokentrail bug")

    monkeypatch.setattr(lc, "request_info", broken)
    monkeypatch.setattr(lc, "_is_node_run", broken)
    graph = linear_graph(writer=lambda state: {"text": third_party().invoke("x").content})

    assert graph.invoke({"text": ""}) == {"text": "reply 0"}
    # Each failure counted once: the graph's and the node's starts, the model's end (LangGraph 0.2
    # starts more named runs of its own, each one more).
    assert _safety.errors_total == len(failures) >= 3
    assert recorded.calls == []


def test_uninstrument_removes_the_hook(recorded):
    assert isinstance(CallbackManager(handlers=[]).handlers[0], lc.TokentrailCallbackHandler)
    tokentrail.uninstrument()

    assert "__wrapped__" not in dir(BaseCallbackManager.__init__)
    assert CallbackManager(handlers=[]).handlers == []
    llm = chat_openai(FakeOpenAI())
    graph = linear_graph(
        writer=lambda state: {"text": llm.invoke("x").content},
        reviewer=lambda state: {"text": third_party().invoke("y").content},
    )
    assert graph.invoke({"text": ""}) == {"text": "reply 0"}
    assert recorded.spans() == [] and recorded.calls == []


def test_handler_is_added_once_and_leaves_the_callers_lists_alone(recorded):
    mine: list[Any] = []
    manager = CallbackManager(handlers=mine)
    child = manager.copy()
    merged = manager.merge(CallbackManager(handlers=[]))

    assert mine == []
    for each in (manager, child, merged):
        ours = [h for h in each.handlers if isinstance(h, lc.TokentrailCallbackHandler)]
        inherited = [h for h in each.inheritable_handlers if isinstance(h, lc.TokentrailCallbackHandler)]
        assert len(ours) == len(inherited) == 1


# --- opentelemetry-instrument ------------------------------------------------------------------

APP = textwrap.dedent(
    """
    import json, sys
    from typing import TypedDict
    sys.path.insert(0, {tests!r})
    import tokentrail
    from langgraph.graph import END, START, StateGraph
    from test_langchain import chat_openai, third_party
    from openai_wire import FakeOpenAI

    records = []
    tokentrail.add_sink(records.append)
    llm = chat_openai(FakeOpenAI())

    class State(TypedDict):
        text: str

    builder = StateGraph(State)
    builder.add_node("writer", lambda state: {{"text": llm.invoke("hi").content}})
    builder.add_node("reviewer", lambda state: {{"text": third_party().invoke("hi").content}})
    builder.add_edge(START, "writer")
    builder.add_edge("writer", "reviewer")
    builder.add_edge("reviewer", END)
    builder.compile().invoke({{"text": ""}})
    tokentrail.flush()  # sinks run on tokentrail's recorder thread
    print("RESULT " + json.dumps({{
        "instrumented": sorted(tokentrail.instrumented()),
        "calls": [[r.provider, r.attribution.get("agent"), r.usage.input_tokens, r.cost.total > 0]
                  for r in records],
    }}))
    """
)


NEEDED = ("tokentrail_langchain", "tokentrail_openai")  # what the LangGraph app below calls through


def test_opentelemetry_instrument_runs_a_langgraph_app(tmp_path: Path):
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    if not launcher.exists():
        pytest.fail(f"{launcher} missing: tokentrail must be installed with its dependencies")
    app = tmp_path / "app.py"
    app.write_text(APP.format(tests=str(Path(__file__).parent)))
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "langgraph-test",
        # Only the instrumentors this app needs (the others import their heavy SDKs for nothing).
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join(
            entry.name
            for entry in entry_points(group="opentelemetry_instrumentor")
            if entry.name.startswith("tokentrail_") and entry.name not in NEEDED
        ),
        "TOKENTRAIL_WARM_PRICES": "0",
    }
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result_line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(result_line.removeprefix("RESULT "))
    assert result["instrumented"] == ["langchain", "openai"]
    assert result["calls"] == [["openai", "writer", 1200, True], ["anthropic", "reviewer", 2000, True]]
    assert '"tokentrail.rollup.calls": 2' in done.stdout  # the graph's span, from the console exporter
    assert "sk-test-SECRET" not in done.stdout + done.stderr


@pytest.fixture(autouse=True)
def _no_leftover_runs() -> Iterator[None]:
    """Every run the handler followed in a test is forgotten by its end (no state leaks)."""
    yield
    handler = lc.patches.made.handler if lc.patches.made is not None else None
    if handler is not None:
        assert handler._owners == {} and handler._scopes == {}
        assert handler._llm_runs == {} and handler._batches == {}
