"""The demo's workload, checked call by call: what the README's demo command shows is what happened."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pytest

import tokentrail
from tokentrail.testing import FakeLLMServer

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
import openai_pipeline as demo


@pytest.fixture
def demo_run():
    calls: list[tokentrail.CallRecord] = []
    with FakeLLMServer() as server:
        port = server.url.rsplit(":", 1)[1]
        tokentrail.instrument(
            provider_hosts={f"127.0.0.1:{port}": "openai", f"localhost:{port}": "openrouter"},
            sinks=[calls.append],
            setup_otel=False,
        )
        try:
            demo.run_pipeline(server)
        finally:
            tokentrail.uninstrument()
        yield calls, server


def test_demo_pipeline_records_every_call_once(demo_run):
    calls, server = demo_run
    llm_requests = [
        r for r in server.requests if r.path.endswith(("/chat/completions", "/responses", "/embeddings"))
    ]
    # One record per call the application made; the SDK's retry of the rate-limited request is
    # two HTTP requests but one call.
    assert len(llm_requests) == len(calls) + 1
    agents = {call.attribution.get("agent") for call in calls}
    assert agents == {"PM", "Researcher", "Dev", "QA", "Summarizer"}
    assert all(call.attribution.get("pipeline") in ("pip_demo", "nightly") for call in calls)
    openrouter = [call for call in calls if call.provider == "openrouter"]
    assert len(openrouter) == 1 and openrouter[0].cost.source == "provider"
    incomplete = [call for call in calls if call.incomplete]
    assert len(incomplete) == 1 and incomplete[0].usage is None
    assert all(call.error_type is None for call in calls)


def test_demo_report_totals_equal_the_records(demo_run):
    calls, _ = demo_run
    out = io.StringIO()
    demo.report(calls, out)
    total_lines = [line for line in out.getvalue().splitlines() if line.strip().startswith("total")]
    assert len(total_lines) == 2  # by agent, by model
    expected_cost = sum(call.cost.total for call in calls if call.cost is not None)
    expected_input = sum(call.usage.input_tokens for call in calls if call.usage is not None)
    for line in total_lines:
        fields = line.split()
        assert int(fields[1]) == len(calls)
        assert int(fields[2].replace(",", "")) == expected_input
        assert math.isclose(float(fields[-1]), expected_cost, abs_tol=5e-7)
