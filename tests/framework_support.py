"""What the agent-framework tests share: tokentrail on in-memory providers with a ledger of the
test's own, and the checks every framework's model calls must pass (one counted span, one set of
token metrics, one ledger row, the agent's name, the pricer's cost)."""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import genai_prices
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail
from conftest import Recorded
from ledger_data import raw_rows
from tokentrail import _safety
from tokentrail import semconv as sc
from tokentrail.cli import main as cli_main

COST = sc.COST_AMOUNT


@contextmanager
def instrumented(
    ledger: Path, providers: list[str], server: Any, anthropic_server: Any = None, **options: Any
) -> Iterator[Recorded]:
    """tokentrail on fresh in-memory providers, writing ``ledger``; uninstrumented (flushed) after.

    The fake ``server``'s address is OpenAI's (as tests/test_openai_pipeline.py names it), the
    ``anthropic_server``'s Anthropic's.
    """
    hosts = {f"127.0.0.1:{urlsplit(server.url).port}": "openai"}
    if anthropic_server is not None:
        hosts[f"127.0.0.1:{urlsplit(anthropic_server.url).port}"] = "anthropic"
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    recorded = Recorded(exporter, reader, tracer_provider, meter_provider)
    _safety.reset_for_tests()
    tokentrail.reset_summary()
    tokentrail.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        sinks=[recorded.finished.append],
        providers=providers,
        ledger=ledger,
        provider_hosts=hosts,
        **options,
    )
    try:
        yield recorded
    finally:
        tokentrail.uninstrument()
        gc.collect()


def counted(recorded: Recorded) -> list[Any]:
    """tokentrail's spans that carry a call's usage (roll-up spans carry only rollup totals)."""
    return [span for span in recorded.spans() if sc.USAGE_INPUT_TOKENS in (span.attributes or {})]


def rollups(recorded: Recorded) -> dict[str, Any]:
    """The ``invoke_agent`` roll-up spans by name (the last of each name)."""
    return {
        span.name: span
        for span in recorded.spans()
        if (span.attributes or {}).get(sc.OPERATION_NAME) == "invoke_agent"
    }


def pricer_cost(provider: str, model: str, span: Any) -> float:
    """What genai-prices gives for the tokens the span reports: the cost must be exactly it."""
    attributes = span.attributes
    usage = genai_prices.Usage(
        input_tokens=attributes[sc.USAGE_INPUT_TOKENS],
        output_tokens=attributes[sc.USAGE_OUTPUT_TOKENS],
        cache_read_tokens=attributes.get(sc.USAGE_CACHE_READ_INPUT_TOKENS, 0),
        cache_write_tokens=attributes.get(sc.USAGE_CACHE_CREATION_INPUT_TOKENS, 0),
    )
    # Priced as the lifecycle prices it: the model the provider answered with, if it named one.
    priced = attributes.get(sc.RESPONSE_MODEL) or model
    return float(genai_prices.calc_price(usage, priced, provider_id=provider).total_price)


def token_points(recorded: Recorded) -> list[Any]:
    """The token-usage histogram's input-token points (one per counted call, summed by count)."""
    return recorded.points("gen_ai.client.token.usage", gen_ai__token__type="input")


def assert_each_call_once(recorded: Recorded, ledger: Path, agents: list[str], model: str | None) -> None:
    """One counted span, one set of token metrics and one ledger row per model call, named by
    ``agents`` (in call order), each priced as genai-prices prices its tokens (``model`` None: the
    span's own provider and model)."""
    spans = sorted(counted(recorded), key=lambda span: span.start_time)
    assert [span.attributes.get(sc.AGENT_NAME) for span in spans] == agents
    for span in spans:
        provider = span.attributes[sc.PROVIDER_NAME]
        priced = model or span.attributes[sc.REQUEST_MODEL]
        assert math.isclose(span.attributes[COST], pricer_cost(provider, priced, span), rel_tol=1e-9)
    assert sum(point.count for point in token_points(recorded)) == len(agents)
    assert len(recorded.calls) == len(agents)
    rows = raw_rows(ledger) if agents else []
    assert sorted(row["agent"] for row in rows) == sorted(agents)


def assert_rollup_totals(recorded: Recorded) -> None:
    """Each agent's roll-up span adds up exactly the counted calls inside it: those in its trace
    named by its agent (each agent runs once in these tests). Inside, not always its children:
    another instrumentation's span may sit between (the previous-majors run has peers installed)."""
    spans = counted(recorded)
    for name, rollup in rollups(recorded).items():
        agent = rollup.attributes[sc.AGENT_NAME]
        inside = [
            s
            for s in spans
            if s.context.trace_id == rollup.context.trace_id and s.attributes.get(sc.AGENT_NAME) == agent
        ]
        assert inside, name
        assert all(rollup.start_time <= s.start_time and s.end_time <= rollup.end_time for s in inside)
        attributes = rollup.attributes
        assert sc.USAGE_INPUT_TOKENS not in attributes  # a roll-up span is never a counted one
        assert attributes[f"{sc.ROLLUP_PREFIX}calls"] == len(inside)
        assert attributes[f"{sc.ROLLUP_PREFIX}input_tokens"] == sum(
            s.attributes[sc.USAGE_INPUT_TOKENS] for s in inside
        )
        assert math.isclose(
            attributes[f"{sc.ROLLUP_PREFIX}cost_usd"], sum(s.attributes[COST] for s in inside)
        )


def report_by_agent(capsys: Any, ledger: Path) -> dict[str, int]:
    """``tokentrail report --by agent`` over the ledger: agent -> calls."""
    code = cli_main(["report", "--ledger", str(ledger), "--format", "json", "--by", "agent"])
    out = capsys.readouterr().out
    assert code == 0
    return {group["value"]: group["calls"] for group in json.loads(out)["breakdown"]}
