"""The demo's LangGraph pipeline (three agents, three providers) against the fake server."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

import tokentrail
from tokentrail import semconv as sc
from tokentrail.testing import FakeLLMServer

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
import multi_agent

LLM_OPERATIONS = ("chat", "generate_content")


@pytest.fixture
def pipeline_run(recorded):
    tokentrail.reset_summary()
    with FakeLLMServer() as server:
        port = server.url.rsplit(":", 1)[1]
        # Re-instrument onto the same in-memory providers, with the fake server's OpenAI face mapped.
        tokentrail.instrument(
            tracer_provider=recorded.tracer_provider,
            meter_provider=recorded.meter_provider,
            provider_hosts={f"127.0.0.1:{port}": "openai"},
            sinks=[recorded.calls.append],
            setup_otel=False,
        )
        final = multi_agent.run(server, "CSV export")
    yield recorded, final
    tokentrail.reset_summary()


def test_every_agent_is_recorded_once_per_model_call(pipeline_run):
    recorded, final = pipeline_run
    assert final["rounds"] == 2 and final["code"]
    by_agent: dict[str, list[str]] = {}
    for call in recorded.calls:
        by_agent.setdefault(call.attribution["agent"], []).append(call.provider)
    # PM once (OpenAI through LangChain), Dev and QA twice each (the review loop).
    assert by_agent == {"PM": ["openai"], "Dev": ["anthropic"] * 2, "QA": ["gcp.gemini"] * 2}
    assert all(call.cost is not None and call.cost.total > 0 for call in recorded.calls)
    assert len({call.attribution["pipeline"] for call in recorded.calls}) == 1
    # The second Dev round reads the cached team guide.
    dev = [call for call in recorded.calls if call.attribution["agent"] == "Dev"]
    assert dev[0].usage.cache_write_tokens > 0 and dev[1].usage.cache_read_tokens > 0


def test_llm_spans_nest_under_their_langgraph_nodes(pipeline_run):
    recorded, _ = pipeline_run
    spans = recorded.spans()
    by_id = {span.context.span_id: span for span in spans}
    llm = [s for s in spans if s.attributes.get(sc.OPERATION_NAME) in LLM_OPERATIONS]
    assert len(llm) == 5
    for span in llm:
        parent = by_id[span.parent.span_id]
        assert parent.name == span.attributes[sc.AGENT_NAME]  # the node span, named after the node


def test_summary_totals_equal_the_sum_of_the_spans(pipeline_run):
    recorded, _ = pipeline_run
    llm = [s for s in recorded.spans() if s.attributes.get(sc.OPERATION_NAME) in LLM_OPERATIONS]
    summary = tokentrail.summary(format="dict")
    assert summary["totals"]["calls"] == len(llm)
    for field, attribute in (
        ("input_tokens", sc.USAGE_INPUT_TOKENS),
        ("output_tokens", sc.USAGE_OUTPUT_TOKENS),
    ):
        assert summary["totals"][field] == sum(s.attributes[attribute] for s in llm)
    assert math.isclose(summary["totals"]["cost_usd"], sum(s.attributes[sc.COST_AMOUNT] for s in llm))
    for agent, totals in summary["agents"].items():
        mine = [s for s in llm if s.attributes[sc.AGENT_NAME] == agent]
        assert totals["calls"] == len(mine)
        assert math.isclose(totals["cost_usd"], sum(s.attributes[sc.COST_AMOUNT] for s in mine))
