"""The second demo's pipeline (LiteLLM to Bedrock and through the openai SDK, Agents SDK agents with a
handoff) against the fake server: each model call counted once, named, priced by tokentrail."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import genai_prices
import pytest

import tokentrail
from tokentrail import semconv as sc
from tokentrail.testing import FakeLLMServer

pytest.importorskip("litellm")
pytest.importorskip("agents")

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import gateway_agents  # noqa: E402


@pytest.fixture
def pipeline_run(recorded, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    tokentrail.reset_summary()
    with FakeLLMServer() as server:
        tokentrail.instrument(
            tracer_provider=recorded.tracer_provider,
            meter_provider=recorded.meter_provider,
            provider_hosts={server.url.removeprefix("http://"): "openai"},
            sinks=[recorded.finished.append],
            setup_otel=False,
        )
        produced = gateway_agents.run(server, "the cost of LLM calls")
        requests = list(server.requests)
    yield recorded, produced, requests
    tokentrail.reset_summary()


def test_every_model_call_is_counted_once_and_named_by_its_step(pipeline_run):
    recorded, produced, requests = pipeline_run
    assert produced["agent"] == "Writer"  # the handoff happened
    model_requests = [r for r in requests if r.path.endswith(("/converse", "/chat/completions"))]
    counted = [span for span in recorded.spans() if sc.USAGE_INPUT_TOKENS in span.attributes]
    assert len(counted) == len(model_requests) == len(recorded.calls) == 4
    by_agent = {call.attribution["agent"]: call for call in recorded.calls}
    assert set(by_agent) == {"Researcher", "Editor", "Triage", "Writer"}
    assert by_agent["Researcher"].provider == "aws.bedrock"  # LiteLLM's own HTTP: its layer reports
    assert by_agent["Researcher"].usage.cache_write_tokens > 0
    assert {by_agent[name].provider for name in ("Editor", "Triage", "Writer")} == {"openai"}
    assert len({call.attribution["pipeline"] for call in recorded.calls}) == 1


def test_costs_are_the_price_catalogues(pipeline_run):
    recorded, _, _ = pipeline_run
    for call in recorded.calls:
        usage = call.usage
        model = call.response_model or call.request_model
        provider = "aws" if call.provider == "aws.bedrock" else call.provider
        price = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            ),
            model,
            provider_id=provider,
        )
        assert call.cost is not None
        assert math.isclose(call.cost.total, float(price.total_price), rel_tol=1e-9), call.attribution


def test_agents_are_rollup_spans_under_the_pipeline(pipeline_run):
    recorded, _, _ = pipeline_run
    spans = recorded.spans()
    by_name = {span.name: span for span in spans}
    pipeline = by_name["pipeline brief"]
    assert pipeline.attributes[sc.ROLLUP_CALLS] == 4
    for agent in ("Triage", "Writer"):
        rollup = by_name[f"invoke_agent {agent}"]
        assert rollup.attributes[sc.ROLLUP_CALLS] == 1
        assert sc.USAGE_INPUT_TOKENS not in rollup.attributes
    total = sum(span.attributes[sc.COST_AMOUNT] for span in spans if sc.USAGE_INPUT_TOKENS in span.attributes)
    assert math.isclose(pipeline.attributes[sc.ROLLUP_COST], total, rel_tol=1e-9)


def test_the_demo_runs_with_one_command_and_leaks_no_key(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "TOKENTRAIL_"))}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "gateway_agents.py"),
            "--ledger",
            str(ledger),
            "--runs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert "brief by Writer" in done.stdout
    for agent in ("Researcher", "Editor", "Triage", "Writer"):
        assert agent in done.stdout
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokentrail.cli",
            "report",
            "--ledger",
            str(ledger),
            "--by",
            "agent",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
    )
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["totals"]["calls"] == 4
    assert {group["value"] for group in data["breakdown"]} == {"Researcher", "Editor", "Triage", "Writer"}
    for secret in gateway_agents.FAKE_KEYS.values():
        assert secret not in done.stdout + done.stderr + report.stdout
        assert secret.encode() not in ledger.read_bytes()
