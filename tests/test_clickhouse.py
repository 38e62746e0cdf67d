"""``--source clickhouse``: the ledger's answers from the spans a collector stores in ClickHouse.

Real calls of the real SDKs (openai, anthropic) against the fake provider server, instrumented by
tokentrail, produce real spans; a roll-up span (``attribute(span=True)``) and another library's
GenAI span ride along. The spans are spread over ten days and two services, then written twice:
to a ledger by the ledger's own span exporter (the reference), and into the collector
``clickhouse`` exporter's traces table (its documented DDL) in chdb, row by row as the exporter
writes them (every attribute a string). Every report, trend and export is then asked of both, over
chdb directly and over HTTP through clickhouse-connect, and must agree (cache savings aside: the
spans carry no rates, so a ClickHouse report leaves them unknown).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import tokentrail
from clickhouse_support import ChdbHttpServer, chdb_dir
from tokentrail import semconv as sc
from tokentrail.cli import main
from tokentrail.insights import forecast
from tokentrail.insights.forecast import projections
from tokentrail.insights.whatif import calls_with_usage, reprice
from tokentrail.ledger import open_ledger
from tokentrail.ledger._rows import is_call_span
from tokentrail.ledger.clickhouse import ENV_PASSWORD, ClickHouseError, ClickHouseSource, chdb_session
from tokentrail.ledger.exporter import LedgerSpanExporter
from tokentrail.ledger.query import Filters, export_rows, report, trend
from tokentrail.ledger.source import LedgerSource
from tokentrail.testing import FakeLLMServer
from tokentrail.testing.clickhouse_table import create_table, exporter_row, insert_rows

PASSWORD = "s3cret-pw-never-shown"
TABLE = "otel_traces"  # the exporter's default: the dashboard's queries name it
DAY = 86400


def _workload(server: FakeLLMServer, claude_server: FakeLLMServer) -> None:
    import anthropic
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="sk-fake", max_retries=0)
    claude = anthropic.Anthropic(base_url=claude_server.url, api_key="fake", max_retries=0)
    hi = [{"role": "user", "content": "hi"}]
    guide = "Team conventions: small functions, tests first, errors say what to do. " * 80
    cached_system = [{"type": "text", "text": guide, "cache_control": {"type": "ephemeral"}}]
    plan = [
        ("nightly", "PM", "alice", "search", "gpt-4o"),
        ("nightly", "Dev", "bob", "billing", "gpt-4o-mini"),
        ("adhoc", "QA", None, "search", "gpt-4o-mini"),
        (None, None, "alice", None, "gpt-4o"),
        ("adhoc", "Dev", "carol", None, "gpt-x-unpriced"),
    ]
    for round_ in range(4):
        for pipeline, agent, user, team, model in plan:
            with tokentrail.attribute(
                pipeline=pipeline,
                agent=agent,
                user=user,
                session=f"s{round_ % 2}",
                labels={"team": team} if team else None,
                span="unit of work" if round_ == 0 and pipeline == "nightly" else False,
            ):
                client.chat.completions.create(model=model, messages=hi)
                if round_ % 2 == 0:
                    for _ in client.chat.completions.create(
                        model=model, messages=hi, stream=True, stream_options={"include_usage": True}
                    ):
                        pass
                if agent == "Dev":
                    client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
                if agent == "PM":
                    claude.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=hi)
                    # A cached system prompt: written once, then read (the cache-write panels).
                    claude.messages.create(
                        model="claude-sonnet-4-5", max_tokens=64, messages=hi, system=cached_system
                    )
        with tokentrail.attribute(pipeline="nightly", agent="QA"):
            server.fail_next(429)
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="gpt-4o-mini", messages=hi)
            server.cut_next_stream(2)
            try:
                for _ in client.chat.completions.create(
                    model="gpt-4o", messages=hi, stream=True, stream_options={"include_usage": True}
                ):
                    pass
            except Exception:
                pass


def _moved(span: ReadableSpan, shift_ns: int, service: str) -> ReadableSpan:
    """The span ``shift_ns`` earlier, of ``service``: spreads the calls over days and services."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=Resource({**span.resource.attributes, "service.name": service}),
        attributes=span.attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time - shift_ns,
        end_time=span.end_time - shift_ns,
        instrumentation_scope=span.instrumentation_scope,
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> dict[str, Any]:
    """The same spans in a ledger (by the ledger's span exporter) and in the exporter's table."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource({"service.name": "svc-a"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    with FakeLLMServer() as server, FakeLLMServer() as claude_server:
        port = server.url.rsplit(":", 1)[1]
        tokentrail.instrument(
            tracer_provider=tracer_provider,
            meter_provider=MeterProvider(),
            provider_hosts={f"127.0.0.1:{port}": "openai"},
            setup_otel=False,
            ledger=False,
        )
        try:
            _workload(server, claude_server)
            tokentrail.flush()
        finally:
            tokentrail.uninstrument()
    other = tracer_provider.get_tracer("another-genai-library")
    with other.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                sc.OPERATION_NAME: "chat",
                sc.PROVIDER_NAME: "openai",
                sc.REQUEST_MODEL: "gpt-4o",
                sc.USAGE_INPUT_TOKENS: 1000,
                sc.USAGE_OUTPUT_TOKENS: 100,
                sc.COST_AMOUNT: 9.99,
            }
        )
    spans = list(exporter.get_finished_spans())
    moved = []
    for index, span in enumerate(spans):
        shift = (span.context.trace_id % 997) * 867_000_000_000 % (10 * DAY * 10**9)
        moved.append(_moved(span, shift, "svc-a" if index % 3 else "svc-b"))
    calls = [span for span in moved if is_call_span(span)]
    assert len(calls) > 40 and any(not is_call_span(span) for span in moved)
    assert any(
        span.kind == SpanKind.INTERNAL and span.instrumentation_scope.name == "tokentrail" for span in moved
    )

    ledger = tmp_path_factory.mktemp("ch-ledger") / "ledger.sqlite"
    writer = LedgerSpanExporter(str(ledger))
    writer.export(moved)
    writer.shutdown()

    directory = chdb_dir(tmp_path_factory)
    session = chdb_session(str(directory))
    create_table(session, f"default.{TABLE}")
    assert insert_rows(session, f"default.{TABLE}", [exporter_row(span) for span in moved]) == len(moved)
    times = sorted(span.start_time / 1e9 for span in calls)
    connection = open_ledger(ledger, create=False)
    with ChdbHttpServer(directory, password=PASSWORD) as http:
        yield {
            "ledger": ledger,
            "connection": connection,
            "dir": directory,
            "http": http,
            "calls": calls,
            "times": times,
        }
    connection.close()


@pytest.fixture(params=["chdb", "http"])
def source(request, stored, monkeypatch) -> ClickHouseSource:
    if request.param == "chdb":
        found = ClickHouseSource(f"chdb://{stored['dir']}", table=TABLE)
    else:
        monkeypatch.setenv(ENV_PASSWORD, PASSWORD)
        found = ClickHouseSource(stored["http"].url, table=TABLE)
    yield found
    found.close()


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    """A report's JSON less what differs by source (its name, its time, savings, notes)."""

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: clean(value)
                for key, value in node.items()
                if key not in ("source", "generated_at", "notes", "cache_savings_usd")
            }
        if isinstance(node, list):
            return [clean(item) for item in node]
        return node

    return clean(data)


def assert_same(actual: Any, expected: Any, where: str = "") -> None:
    """Equal, floats to 1e-9 (sums in another order)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), (where, actual, expected)
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), (where, actual, expected)
        for index, (got, wanted) in enumerate(zip(actual, expected, strict=True)):
            assert_same(got, wanted, f"{where}[{index}]")
    elif isinstance(expected, float) or isinstance(actual, float):
        assert actual is not None and expected is not None, (where, actual, expected)
        assert abs(actual - expected) <= 1e-9 * max(1.0, abs(expected)), (where, actual, expected)
    else:
        assert actual == expected, (where, actual, expected)


BREAKDOWNS = [
    (),
    ("model",),
    ("pipeline",),
    ("user",),
    ("provider", "model"),
    ("label:team",),
    ("service",),
    ("agent", "day"),
    ("day",),
    ("hour",),
    ("request_model",),
    ("operation", "phase"),
]


@pytest.mark.parametrize("by", BREAKDOWNS, ids=lambda by: "+".join(by) or "totals")
def test_report_by_every_key_matches_the_ledger(stored, source, by):
    expected = report(stored["connection"], by, Filters(), use_rollup=False)
    got = source.report(by, Filters())
    assert got.totals.calls == len(stored["calls"]) and got.totals.cache_savings_usd is None
    assert_same(_comparable(got.as_dict()), _comparable(expected.as_dict()), "+".join(by))
    assert got.source.startswith("clickhouse ") and PASSWORD not in got.source


def _filters(times: list[float]) -> list[Filters]:
    middle = times[len(times) // 2]
    quarter = times[len(times) // 4]
    return [
        Filters(since=quarter + 0.5, until=middle + 7.25),  # not on any bucket's edge
        Filters(since=middle),
        Filters(until=quarter),
        Filters(pipeline="nightly"),
        Filters(model="gpt-4o-mini"),
        Filters(provider="anthropic"),
        Filters(where={"user": "alice", "label:team": "search"}),
        Filters(where={"agent": ""}),  # calls without an agent
        Filters(where={"session": "s1"}),
        Filters(where={"error_type": "RateLimitError"}),
        Filters(where={"service": "svc-b"}, model="gpt-4o"),
    ]


@pytest.mark.parametrize("which", range(11))
def test_report_with_filters_matches_the_ledger(stored, source, which):
    filters = _filters(stored["times"])[which]
    for by in ((), ("pipeline", "model"), ("day",)):
        expected = report(stored["connection"], by, filters, use_rollup=False)
        got = source.report(by, filters)
        assert_same(_comparable(got.as_dict()), _comparable(expected.as_dict()), f"{filters} {by}")
    assert expected.totals.calls > 0, filters  # every filter selects something


def test_the_figures_are_the_sums_of_the_call_spans(stored, source):
    """Independently of the ledger: the spans' own attributes, added up here."""
    calls = stored["calls"]
    got = source.report((), Filters()).totals
    attributes = [span.attributes for span in calls]
    assert got.calls == len(calls)
    assert got.cost_usd == pytest.approx(sum(a.get(sc.COST_AMOUNT, 0.0) for a in attributes), rel=1e-12)
    assert got.input_tokens == sum(a.get(sc.USAGE_INPUT_TOKENS, 0) for a in attributes)
    assert got.output_tokens == sum(a.get(sc.USAGE_OUTPUT_TOKENS, 0) for a in attributes)
    assert got.errors == sum(sc.ERROR_TYPE in a for a in attributes) > 0
    assert got.incomplete == sum(bool(a.get(sc.STREAM_INCOMPLETE)) for a in attributes) > 0
    assert got.unpriced_calls > 0 and got.priced_calls == sum(sc.COST_AMOUNT in a for a in attributes)


@pytest.mark.parametrize("hourly, periods", [(False, 12), (True, 300)])
def test_trend_matches_the_ledger(stored, source, hourly, periods):
    now = stored["times"][-1] + 60
    filters = Filters(pipeline="nightly")
    expected = trend(stored["connection"], periods, hourly=hourly, filters=filters, now=now)
    got = source.trend(periods, hourly=hourly, filters=filters, now=now)
    assert [label for label, _ in got] == [label for label, _ in expected]
    for (label, mine), (_, theirs) in zip(got, expected, strict=True):
        wanted = theirs.as_dict()
        wanted.pop("cache_savings_usd")
        assert_same({k: v for k, v in mine.as_dict().items() if k != "cache_savings_usd"}, wanted, label)
    assert sum(totals.calls for _, totals in got) > 0


@pytest.mark.parametrize("which", [None, 0, 3, 6])
def test_export_rows_match_the_ledgers(stored, source, which):
    """Row for row, every column: the spans typed back and priced as the ledger's exporter does."""
    filters = Filters() if which is None else _filters(stored["times"])[which]
    count, rows = export_rows(stored["connection"], filters)
    expected = sorted(rows, key=lambda row: (row[0], row[4]))
    got_count, got_rows = source.export_rows(filters)
    got = sorted(got_rows, key=lambda row: (row[0], row[4]))
    assert got_count == count == len(got) > 0
    assert_same(got, expected)


def test_the_cli_over_clickhouse_answers_as_over_the_ledger(stored, capsys, monkeypatch):
    """report, trend and export: same JSON shape and keys, same figures, same CSV."""
    monkeypatch.setenv(ENV_PASSWORD, PASSWORD)
    ledger = ["--ledger", str(stored["ledger"])]
    over_http = ["--source", "clickhouse", "--url", stored["http"].url, "--table", TABLE]
    over_chdb = ["--source", "clickhouse", "--url", f"chdb://{stored['dir']}", "--table", TABLE]

    def run(*argv: str) -> str:
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert code == 0, err
        assert PASSWORD not in out + err
        return out

    for command in (
        ["report", "--format", "json", "--by", "pipeline", "--by", "model"],
        ["report", "--format", "json", "--by", "label:team", "--where", "user=alice"],
        ["trend", "--daily", "12", "--format", "json"],
    ):
        expected = json.loads(run(*command, *ledger))
        for where in (over_http, over_chdb):
            got = json.loads(run(*command, *where))
            assert_same(_comparable(got), _comparable(expected), " ".join(command))
            if command[0] == "report":
                assert got.keys() == expected.keys() and got["source"].startswith("clickhouse ")
    expected_csv = list(csv.reader(io.StringIO(run("export", "--format", "csv", *ledger))))
    got_csv = list(csv.reader(io.StringIO(run("export", "--format", "csv", *over_http))))
    assert got_csv[0] == expected_csv[0]
    assert sorted(got_csv[1:]) == sorted(expected_csv[1:])
    lines = run("export", "--format", "jsonl", "--pipeline", "adhoc", *over_chdb).splitlines()
    assert lines and all(json.loads(line)["pipeline"] == "adhoc" for line in lines)


def test_forecast_over_clickhouse_equals_the_ledgers(stored, source):
    """The same spend model and projections, read from the stored spans as from the ledger."""
    now = time.time()
    ledger = LedgerSource(stored["connection"], stored["ledger"])
    for filters in (Filters(), Filters(where={"user": "alice"}), Filters(model="gpt-4o-mini")):
        expected_model, expected = projections(ledger, filters, now=now)
        got_model, got = projections(source, filters, now=now)
        assert expected_model.level_usd_per_day > 0
        assert_same(got_model.describe(), expected_model.describe(), str(filters))
        assert_same([p.as_dict() for p in got], [p.as_dict() for p in expected], str(filters))


def test_whatif_over_clickhouse_reprices_the_same_calls(stored, source):
    """The same calls, with the same token mix and times, priced at the same candidates."""
    candidates = [("openai", "gpt-4.1-mini"), ("anthropic", "claude-haiku-4-5")]
    for filters in (Filters(), Filters(pipeline="nightly"), Filters(where={"agent": "QA"})):
        expected = reprice(
            calls_with_usage(LedgerSource(stored["connection"], stored["ledger"]), filters), candidates
        )
        got = reprice(calls_with_usage(source, filters), candidates)
        assert expected.mix.calls > 0
        assert_same(got.as_dict(), expected.as_dict(), str(filters))


def test_forecast_and_whatif_cli_take_the_clickhouse_source(stored, capsys, monkeypatch):
    monkeypatch.setenv(ENV_PASSWORD, PASSWORD)
    over_http = ["--source", "clickhouse", "--url", stored["http"].url, "--table", TABLE]
    code = main(["whatif", "--model", "openai:gpt-4.1-mini", "--format", "json", *over_http])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = json.loads(out)
    code = main(
        ["whatif", "--model", "openai:gpt-4.1-mini", "--format", "json", "--ledger", str(stored["ledger"])]
    )
    expected = json.loads(capsys.readouterr().out)
    assert code == 0
    assert_same(got, expected)
    code = main(["forecast", "--format", "json", *over_http])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert PASSWORD not in out + err
    forecast = json.loads(out)
    assert {p["period"] for p in forecast["projections"]} >= {"day", "week", "month"}
    assert forecast["daily_rate_usd"] > 0
    code = main(["forecast", "--ledger", str(stored["ledger"]), "--url", "http://localhost:8123"])
    assert code != 0
    assert "--url is for --source clickhouse" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "--source", "clickhouse"], "needs --url"),
        (["report", "--source", "clickhouse", "--url", "ftp://x"], "use ClickHouse's HTTP address"),
        (["report", "--table", "t"], "--table is for --source clickhouse"),
        (["trend", "--source", "clickhouse", "--url", "chdb:///no/such/dir"], "is not a directory"),
        (
            ["report", "--source", "clickhouse", "--url", "{dir}", "--table", "x;drop"],
            "plain ClickHouse name",
        ),
        (["export", "--source", "clickhouse", "--url", "{dir}", "--table", "missing"], "cannot answer"),
        (["report", "--source", "clickhouse", "--url", "{http}", "--table", TABLE], "did not answer"),
    ],
)
def test_clear_one_line_errors_that_never_show_the_password(stored, capsys, monkeypatch, argv, message):
    # The wrong password is in the environment: the answer is a refusal that must not echo it.
    monkeypatch.setenv(ENV_PASSWORD, "wrong-" + PASSWORD)
    argv = [arg.format(dir=f"chdb://{stored['dir']}", http=stored["http"].url) for arg in argv]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert PASSWORD not in err


def test_credentials_in_the_url_are_used_and_never_shown(stored, monkeypatch):
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    url = stored["http"].url.replace("http://", f"http://default:{PASSWORD}@")
    source = ClickHouseSource(url, table=TABLE)
    try:
        result = source.report(("model",))
    finally:
        source.close()
    assert result.totals.calls == len(stored["calls"])
    assert PASSWORD not in result.source and PASSWORD not in json.dumps(result.as_dict())
    with pytest.raises(ClickHouseError) as refused:
        ClickHouseSource(url.replace(PASSWORD, "nope"), table=TABLE).report()
    assert "nope" not in str(refused.value)


def test_serve_answers_from_clickhouse(stored):
    """``tokentrail serve --source clickhouse``: a separate process reading over HTTP."""
    env = {
        **os.environ,
        ENV_PASSWORD: PASSWORD,
        "PYTHONPATH": str(Path(__file__).parent.parent / "src"),
    }
    server = subprocess.Popen(
        [
            sys.executable, "-m", "tokentrail.cli", "serve", "--port", "0",
            "--source", "clickhouse", "--url", stored["http"].url, "--table", TABLE,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.startswith("tokentrail serve: http://127.0.0.1:"), line + server.stderr.read()
        assert PASSWORD not in line and "clickhouse" in line
        url = line.split()[2]
        deadline = time.monotonic() + 20
        while True:
            try:
                health = _get(url, "/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert health["status"] == "ok"
        got = _get(url, "/v1/usage?by=pipeline&by=model")
        expected = report(stored["connection"], ["pipeline", "model"], Filters(), use_rollup=False)
        assert_same(got["totals"]["calls"], expected.totals.calls)
        assert_same(got["totals"]["cost_usd"], expected.totals.cost_usd)
        assert [group["value"] for group in got["breakdown"]] == [g.value for g in expected.groups]
        budget = _get(url, "/v1/pipelines/nightly/budget?budget_usd=0.01")
        nightly = report(stored["connection"], (), Filters(pipeline="nightly")).totals
        assert_same(budget["spent_usd"], nightly.cost_usd)
        assert budget["calls"] == nightly.calls
        with urllib.request.urlopen(url + "/", timeout=30) as response:  # the dashboard, over ClickHouse
            assert response.status == 200 and b"<table" in response.read()
    finally:
        server.terminate()
        server.wait(timeout=10)


class _FrozenClock:
    """The ``time`` module, with ``time()`` stopped at one instant."""

    def __init__(self, at: float) -> None:
        self.at = at

    def time(self) -> float:
        return self.at

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture(scope="module")
def dashboards(stored):
    """The dashboard app over the ledger and over the same spans in ClickHouse (chdb)."""
    from fastapi.testclient import TestClient

    from tokentrail.dashboard.app import create_dashboard_app

    source = ClickHouseSource(f"chdb://{stored['dir']}", table=TABLE)
    over_ledger = TestClient(create_dashboard_app(stored["ledger"]))
    over_clickhouse = TestClient(create_dashboard_app("", source=source))
    yield over_ledger, over_clickhouse
    source.close()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/dashboard",
        "/v1/dashboard?stack=agent&user=alice",
        "/v1/dashboard/calls",
        "/v1/dashboard/calls?pipeline=nightly",
        "/v1/advice",
        "/v1/whatif?candidate=openai:gpt-4.1-mini&candidate=anthropic:claude-haiku-4-5",
        "/v1/forecast",
    ],
)
def test_the_dashboard_over_clickhouse_shows_the_ledgers_figures(dashboards, path, monkeypatch):
    over_ledger, over_clickhouse = dashboards
    # A forecast projects to the end of the day from "now": both answers at the same instant (the
    # second request comes a fraction of a second later, which moves the projection by ~1e-9 USD).
    monkeypatch.setattr(forecast, "time", _FrozenClock(time.time()))
    expected, got = over_ledger.get(path), over_clickhouse.get(path)
    assert expected.status_code == got.status_code == 200, (expected.text, got.text)
    expected_data, got_data = expected.json(), got.json()
    if path.startswith("/v1/dashboard?") or path == "/v1/dashboard":
        assert expected_data["totals"]["calls"] > 0
        # Cache savings need the price card's rates, which spans do not carry (the report's rule).
        for data in (expected_data, got_data):
            data["cache"].pop("savings_usd", None)
    if path == "/v1/dashboard/calls":  # the per-call panels have something to compare
        assert expected_data["top_calls"] and expected_data["latency"]
        assert all(call["trace_url"] for call in got_data["top_calls"])
        writes = expected_data["cache_writes"]
        assert writes["writes_read"] + writes["writes_never_read"] > 0
    assert_same(_comparable(got_data), _comparable(expected_data), path)


def test_the_dashboard_page_renders_over_clickhouse(dashboards):
    _, over_clickhouse = dashboards
    page = over_clickhouse.get("/")
    assert page.status_code == 200 and "<table" in page.text
    assert over_clickhouse.get("/dashboard/details").status_code == 200


def _get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=10) as response:
        return json.loads(response.read())


# --- the Grafana dashboard over ClickHouse --------------------------------------------------------------

DASHBOARD = (
    Path(__file__).parent.parent
    / "collector-config"
    / "grafana"
    / "clickhouse"
    / "tokentrail-cost-clickhouse.json"
)
INTERVAL_S = 3600


def _macro_calls(sql: str, name: str) -> list[tuple[int, int, list[str]]]:
    """(start, end, top-level arguments) of each ``$__name(...)`` in ``sql``."""
    found = []
    for match in re.finditer(re.escape(f"$__{name}("), sql):
        depth, args, start = 1, [], match.end()
        index = start
        while depth:
            char = sql[index]
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            elif char == "," and depth == 1:
                args.append(sql[start:index].strip())
                start = index + 1
            index += 1
        args.append(sql[start : index - 1].strip())
        found.append((match.start(), index, args))
    return found


def grafana_sql(sql: str, values: dict[str, str | None], since: float, until: float) -> str:
    """The ClickHouse data source plugin's macros and variable formats, as it expands them.
    A variable whose value is None is "All"."""
    for start, end, (condition, variable) in reversed(_macro_calls(sql, "conditionalAll")):
        chosen = values[variable.lstrip("$")]
        sql = sql[:start] + ("1=1" if chosen is None else condition) + sql[end:]
    for start, end, (column,) in reversed(_macro_calls(sql, "timeFilter")):
        sql = (
            sql[:start]
            + f"{column} >= toDateTime64({since}, 9) AND {column} <= toDateTime64({until}, 9)"
            + sql[end:]
        )
    for start, end, (column,) in reversed(_macro_calls(sql, "timeInterval")):
        sql = sql[:start] + f"toStartOfInterval({column}, INTERVAL {INTERVAL_S} second)" + sql[end:]
    sql = sql.replace("$__fromTime", f"toDateTime({int(since)})").replace(
        "$__toTime", f"toDateTime({int(until)})"
    )
    sql = sql.replace("$__interval_s", str(INTERVAL_S))
    for name, value in values.items():
        if value is not None:
            quoted = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
            sql = sql.replace("${" + name + ":singlequote}", quoted)
            sql = re.sub(r"\$" + name + r"(?![A-Za-z0-9_])", lambda _m, v=value: v, sql)
    assert "$" not in sql, f"unexpanded macro or variable in {sql}"
    return sql


def _panels() -> list[dict]:
    return [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel.get("type") != "row"]


def test_dashboard_has_the_prometheus_dashboards_panels_and_more():
    dashboard = json.loads(DASHBOARD.read_text())
    prometheus = json.loads((DASHBOARD.parent.parent / "dashboards" / "tokentrail-cost.json").read_text())

    def titles(panels: list[dict]) -> set[str]:
        found = set()
        for panel in panels:
            found.add(panel["title"])
            found |= titles(panel.get("panels", []))
        return found

    assert titles(prometheus["panels"]) - {""} <= titles(dashboard["panels"])
    assert {"Cost per pipeline", "Cost per user"} <= titles(dashboard["panels"])
    names = [variable["name"] for variable in dashboard["templating"]["list"]]
    assert names[0] == "datasource" and {"service", "provider", "model", "agent", "attribution"} <= set(names)
    for panel in _panels():
        assert panel["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
        for target in panel["targets"]:
            # The plugin's SQL query: its query types, and sqlds' formats (0 time series, 1 table).
            assert target["editorType"] == "sql" and target["rawSql"]
            assert (target["queryType"], target["format"]) in (("timeSeries", 0), ("table", 1))
            assert (target["queryType"] == "timeSeries") == (panel["type"] == "timeseries"), panel["title"]
    assert len({panel["id"] for panel in _panels()}) == len(_panels())


def test_every_dashboard_query_runs_on_the_exporters_table_and_returns_data(stored):
    """With every variable at All, then at a value its own query offers: each panel has rows."""
    session = chdb_session(str(stored["dir"]))
    dashboard = json.loads(DASHBOARD.read_text())
    since, until = stored["times"][0] - 3600, stored["times"][-1] + 3600

    def rows(sql: str) -> list[list]:
        return json.loads(session.query(sql, "JSONCompact").bytes() or b'{"data": []}')["data"]

    values: dict[str, str | None] = {}
    offered: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            values[variable["name"]] = None
            offered[variable["name"]] = [
                row[0] for row in rows(grafana_sql(variable["query"], {}, since, until))
            ]
            assert offered[variable["name"]], variable["name"]
        elif variable["type"] in ("custom", "textbox"):
            values[variable["name"]] = variable["current"]["value"]
    choices = [dict(values)]
    # One value of each, from a streamed call of an agent (every panel then has data to show).
    streamed = next(
        span
        for span in stored["calls"]
        if sc.RESPONSE_TIME_TO_FIRST_CHUNK in span.attributes and sc.AGENT_NAME in span.attributes
    )
    picked = {
        "service": streamed.resource.attributes["service.name"],
        "provider": streamed.attributes[sc.PROVIDER_NAME],
        "model": streamed.attributes[sc.REQUEST_MODEL],
        "agent": streamed.attributes[sc.AGENT_NAME],
    }
    for name, value in picked.items():
        assert value in offered[name], (name, value, offered[name])
    choices.append({**values, **picked})
    for index, chosen in enumerate(choices):
        for panel in _panels():
            for target in panel["targets"]:
                found = rows(grafana_sql(target["rawSql"], chosen, since, until))
                if index and panel["title"] == "Calls to unpriced models":
                    continue  # the picked model has a price: nothing to list, rightly
                assert found, (panel["title"], chosen)
                first = found[0][-1]
                assert first is not None and not (isinstance(first, float) and math.isnan(first)), panel[
                    "title"
                ]
    # The stat panels agree with tokentrail's own report.
    total = rows(grafana_sql(_panels()[0]["targets"][0]["rawSql"], values, since, until))[0][0]
    expected = report(stored["connection"], (), Filters(), use_rollup=False).totals.cost_usd
    assert total == pytest.approx(expected, rel=1e-9)
