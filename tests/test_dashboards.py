"""The Grafana cost dashboard against a real Prometheus holding real data.

The demo's workloads (``examples/multi_agent.py`` and ``examples/openai_pipeline.py``, plus a call to
a model without a price and a failing call) run instrumented by tokentrail and expose their metrics
through ``opentelemetry-exporter-prometheus``; Debian's Prometheus scrapes them. Then EVERY query of
EVERY panel, with the template variables substituted as Grafana would, must return data: a panel
whose query returns nothing (a wrong metric or label name, a filter on a label that does not exist)
fails. Every template variable's ``label_values`` query must offer values too.

The scrape gives the series the ``service_name`` label that the collector's prometheus exporter adds
with ``resource_to_telemetry_conversion`` (the dashboard's service variable reads it).
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest

from prometheus_support import next_round, running_prometheus, running_workload, wait_for
from promql_support import (
    SCOPE,
    dashboard_queries,
    semconv_metric_names,
    tokentrail_instruments,
    tokentrail_series_names,
    unscoped,
)

ROOT = Path(__file__).parent.parent
DASHBOARDS = ROOT / "collector-config" / "grafana" / "dashboards"
DASHBOARD = DASHBOARDS / "tokentrail-cost.json"
PROVISIONING = ROOT / "collector-config" / "grafana" / "provisioning"
SERVICE = "tokentrail-demo"


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict]) -> list[dict]:
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(all_panels(panel.get("panels", [])))  # collapsed rows hold their panels
    return [p for p in found if p.get("type") != "row"]


def variables() -> dict[str, dict]:
    return {v["name"]: v for v in load()["templating"]["list"]}


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's interpolation: ``$name`` / ``${name}`` / ``[[name]]``, longest names first."""
    for name in sorted(values, key=len, reverse=True):
        value = values[name]
        expr = expr.replace("${" + name + "}", value).replace("[[" + name + "]]", value)
        expr = re.sub(r"\$" + re.escape(name) + r"(?![A-Za-z0-9_])", lambda _m, v=value: v, expr)
    assert "$" not in expr.replace("$__", ""), f"unsubstituted variable in {expr}"
    return expr


# --- static checks -----------------------------------------------------------------------------------------


def test_dashboard_structure():
    dashboard = load()
    assert dashboard["uid"] == "tokentrail-cost"
    names = [v["name"] for v in dashboard["templating"]["list"]]
    for wanted in ("datasource", "service", "provider", "model", "agent", "attribution", "daily_budget"):
        assert wanted in names
    assert variables()["datasource"]["type"] == "datasource"
    panels = all_panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    titles = " | ".join(p["title"].lower() for p in panels)
    for wanted in (
        "spend per hour by model",
        "spend per hour by provider",
        "total spend in range",
        "average cost per call",
        "tokens per second by type",
        "cache hit ratio",
        "caching saved",
        "latency p50 / p95",
        "time to first chunk",
        "error rate",
        "top spenders",
        "unpriced models",
        "projected daily spend",
    ):
        assert wanted in titles, wanted
    for panel in panels:
        assert panel["targets"], panel["title"]
        # Every query goes through the datasource variable: the dashboard works on any Prometheus.
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    assert "$__range" in json.dumps(dashboard)  # total spend is an increase over the range
    # Latency panels ask for exemplars, and the Prometheus datasource links them to Jaeger.
    assert any(t.get("exemplar") for p in panels for t in p["targets"])
    datasources = (PROVISIONING / "datasources" / "datasources.yml").read_text()
    assert "type: jaeger" in datasources and "exemplarTraceIdDestinations" in datasources
    assert "datasourceUid: jaeger" in datasources
    assert "path: /var/lib/grafana/dashboards" in (PROVISIONING / "dashboards" / "tokentrail.yml").read_text()


def test_the_series_names_come_from_tokentrail_s_own_instruments():
    """The names the queries are held to: every instrument instrument() creates (ledger on, so its
    drop counter too), each named in tokentrail.semconv, under the scope the matcher selects."""
    instruments = tokentrail_instruments()
    assert {i["name"] for i in instruments} <= semconv_metric_names()
    assert {i["scope"] for i in instruments} == {SCOPE}
    assert len(tokentrail_series_names()) > len(instruments)  # histograms: _bucket, _sum, _count


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.name)
def test_every_query_names_only_tokentrail_series_of_tokentrail_s_scope(path):
    """Every panel and variable query of every shipped dashboard reads only series tokentrail
    emits (derived from semconv and the Prometheus naming rules), each with the
    otel_scope_name="tokentrail" matcher: beside another GenAI instrumentation, which emits the same
    gen_ai_* metrics under its own scope, nothing is counted twice."""
    queries = dashboard_queries(json.loads(path.read_text()))
    assert queries
    for where, expr in queries:
        assert not unscoped(expr), f"{path.name}, {where}: {unscoped(expr)} in {expr}"
    assert tokentrail_series_names()


# --- every panel against real data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """A real Prometheus that has scraped two rounds of the instrumented demo workload."""
    tmp_path = tmp_path_factory.mktemp("dashboards")
    with running_workload() as (app, port):
        started = time.time()
        config_targets = [f"127.0.0.1:{port}"]
        with running_prometheus(tmp_path, config_targets, target_labels={"service_name": SERVICE}) as prom:
            count = "sum(gen_ai_client_operation_duration_seconds_count)"
            wait_for(lambda: prom.query(count), "the first scrape")
            first = float(prom.query(count)[0]["value"][1])
            time.sleep(2.2)  # a few scrapes of the first round, so rates see the second one
            next_round(app)
            wait_for(lambda: float(prom.query(count)[0]["value"][1]) > first, "the second round's scrape")
            time.sleep(1.5)
            yield prom, time.time() - started


def values_for(prom, elapsed: float, **chosen: str) -> dict[str, str]:
    values = {
        "__range": f"{math.ceil(elapsed) + 10}s",
        "__rate_interval": "30s",
        "__interval": "1s",
        "attribution": "gen_ai_agent_name",
    }
    for name, variable in variables().items():
        if variable["type"] == "query":
            values[name] = chosen.get(name, variable["allValue"])
        elif variable["type"] in ("textbox", "constant"):
            values[name] = variable["query"]
    return values


def test_every_variable_offers_values(scraped):
    prom, elapsed = scraped
    values = values_for(prom, elapsed)
    for name, variable in variables().items():
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        selector, label = substitute(match.group(1), values), match.group(2)
        found = {r["metric"].get(label) for r in prom.query(f"count by ({label}) ({selector})")} - {None}
        assert found, f"variable {name} offers nothing"
        if name == "service":
            assert found == {SERVICE}
        if name == "model":
            assert {"gpt-4o-mini", "claude-sonnet-4-6", "gemini-2.5-flash"} <= found


def panel_queries() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in all_panels(load()["panels"])
        for target in panel["targets"]
    ]


@pytest.mark.parametrize("chosen", [{}, {"service": SERVICE}], ids=["all", "one-service"])
@pytest.mark.parametrize("where, expr", panel_queries(), ids=[q[0] for q in panel_queries()])
def test_every_panel_query_returns_data(scraped, chosen, where, expr):
    prom, elapsed = scraped
    query = substitute(expr, values_for(prom, elapsed, **chosen))
    result = prom.query(query)
    assert result, f"{where}: no data for {query}"
    numbers = [float(r["value"][1]) for r in result]
    assert any(math.isfinite(n) for n in numbers), f"{where}: only NaN/Inf for {query}: {numbers}"


def test_attribution_breakdowns_return_data(scraped):
    prom, elapsed = scraped
    (expr,) = [
        t["expr"] for p in all_panels(load()["panels"]) if "Top spenders" in p["title"] for t in p["targets"]
    ]
    options = [o["value"] for o in variables()["attribution"]["options"]]
    for label in options:
        values = values_for(prom, elapsed)
        values["attribution"] = label
        result = prom.query(substitute(expr, values))
        assert {r["metric"].get(label) for r in result} - {None}, f"nothing by {label}"


def test_the_figures_are_right(scraped):
    """Spot checks that the panels say what the data says, not just something."""
    prom, elapsed = scraped
    values = values_for(prom, elapsed)
    queries = dict(panel_queries())
    unpriced = prom.query(substitute(queries["Calls to unpriced models [A]"], values))
    assert "acme-private-finetune-7" in {r["metric"]["gen_ai_request_model"] for r in unpriced}
    ratio = float(prom.query(substitute(queries["Cache hit ratio [A]"], values))[0]["value"][1])
    assert 0 < ratio < 1
    errors = prom.query(substitute(queries["Error rate by provider [A]"], values))
    assert {r["metric"]["gen_ai_provider_name"] for r in errors if float(r["value"][1]) > 0} == {"openai"}
    by_provider = prom.query(substitute(queries["Spend per hour by provider [A]"], values))
    assert {r["metric"]["gen_ai_provider_name"] for r in by_provider} == {
        "openai",
        "openrouter",
        "anthropic",
        "gcp.gemini",
    }
    by_model = prom.query(substitute(queries["Spend per hour by model [A]"], values))
    assert "acme-private-finetune-7" not in {r["metric"].get("gen_ai_request_model") for r in by_model}
