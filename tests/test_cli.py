"""``tokentrail report | trend | export``: figures equal to the raw rows, every format, clear errors,
and ``report --source prometheus`` against a real Prometheus scraping an instrumented app."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ledger_data import (
    assert_figures_equal,
    expected_groups,
    expected_totals,
    fill,
    matches,
    random_records,
    raw_rows,
)
from prometheus_support import free_port, prometheus_bin_dir, wait_for
from tokentrail.cli import main
from tokentrail.cli.export import Progress
from tokentrail.ledger._schema import COLUMN_NAMES

ROOT = Path(__file__).parent.parent
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "ledger.sqlite"
    fill(path, random_records(2500, seed=5))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report_json(capsys, ledger: Path, *argv: str) -> dict:
    code, out, err = run_cli(capsys, "report", "--ledger", str(ledger), "--format", "json", *argv)
    assert code == 0, err
    return json.loads(out)


def walk(groups: list[dict], prefix: tuple = ()) -> dict[tuple, dict]:
    found = {}
    for group in groups:
        key = (*prefix, group["value"])
        if group.get("breakdown"):
            found.update(walk(group["breakdown"], key))
        else:
            found[key] = group
    return found


# --- report -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, by, where",
    [
        ((), [], {}),
        (("--by", "agent"), ["agent"], {}),
        (("--by", "model", "--by", "day"), ["model", "day"], {}),
        (("--by", "label:team", "--by", "agent", "--by", "task"), ["label:team", "agent", "task"], {}),
        (("--by", "pipeline", "--pipeline", "pip_a"), ["pipeline"], {"pipeline": "pip_a"}),
        (("--by", "hour", "--since", "36h", "--model", "gpt-4o"), ["hour"], {"model": "gpt-4o"}),
        (
            ("--by", "provider", "--where", "agent=QA", "--where", "label:team=search"),
            ["provider"],
            {"agent": "QA", "label:team": "search"},
        ),
        (
            ("--by", "role", "--where", "session=s1", "--provider", "openai"),
            ["role"],
            {"session": "s1", "provider": "openai"},
        ),
        (("--by", "phase", "--by", "user", "--since", "2d", "--until", "1d"), ["phase", "user"], {}),
    ],
)
def test_report_figures_equal_the_raw_rows(capsys, ledger_path, argv, by, where):
    data = report_json(capsys, ledger_path, *argv)
    since = datetime.fromisoformat(data["since"]).timestamp() if data["since"] else None
    until = datetime.fromisoformat(data["until"]).timestamp() if data["until"] else None
    rows = [row for row in raw_rows(ledger_path) if matches(row, since, until, where)]
    assert rows, "the case selects nothing: a vacuous test"
    assert_figures_equal(data["totals"], expected_totals(rows), "totals")
    assert data["by"] == by
    if by:
        expected = expected_groups(rows, by)
        leaves = walk(data["breakdown"])
        assert set(leaves) == set(expected)
        for key, group in leaves.items():
            assert_figures_equal(group, expected[key], str(key))
        costs = [group["cost_usd"] for group in data["breakdown"]]
        if by[0] not in ("day", "hour"):
            assert costs == sorted(costs, reverse=True)  # biggest spenders first


def test_report_formats(capsys, ledger_path, tmp_path):
    data = report_json(capsys, ledger_path, "--by", "agent", "--by", "model")
    code, table, _ = run_cli(capsys, "report", "--ledger", str(ledger_path), "--by", "agent", "--by", "model")
    assert code == 0
    assert "\033[" not in table  # no colour off a terminal
    assert f"${data['totals']['cost_usd']:,.6f}" in table
    assert "by agent > model" in table and "cost USD" in table and "cache savings" in table
    lines = [line for line in table.splitlines() if line.startswith("  QA ")]
    assert lines and f"{next(g for g in data['breakdown'] if g['value'] == 'QA')['calls']:,}" in lines[0]
    # Aligned: every breakdown line is as wide as its header.
    header_at = next(i for i, line in enumerate(table.splitlines()) if line.lstrip().startswith("by agent"))
    widths = {len(line) for line in table.splitlines()[header_at:]}
    assert len(widths) == 1, widths

    code, out, _ = run_cli(
        capsys, "report", "--ledger", str(ledger_path), "--by", "agent", "--by", "model", "--format", "csv"
    )
    parsed = list(csv.DictReader(io.StringIO(out)))
    leaves = walk(data["breakdown"])
    assert len(parsed) == len(leaves)
    for row in parsed:
        group = leaves[(row["agent"] or None, row["model"] or None)]
        assert int(row["calls"]) == group["calls"] and float(row["cost_usd"]) == pytest.approx(
            group["cost_usd"]
        )

    code, out, _ = run_cli(
        capsys, "report", "--ledger", str(ledger_path), "--by", "agent", "--format", "markdown"
    )
    assert out.startswith("## tokentrail report")
    assert "| agent | calls |" in out and "| **total** |" in out
    assert len([line for line in out.splitlines() if line.startswith("| ") and "$" not in line]) >= 5

    target = tmp_path / "report.json"
    code, out, _ = run_cli(
        capsys, "report", "--ledger", str(ledger_path), "--format", "json", "-o", str(target)
    )
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["totals"] == pytest.approx(data["totals"], rel=1e-12)


def test_report_colours_only_on_a_terminal(ledger_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    code, out, _ = run_cli(capsys, "report", "--ledger", str(ledger_path), "--by", "agent")
    assert code == 0 and "\033[1m" in out
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, _ = run_cli(capsys, "report", "--ledger", str(ledger_path), "--by", "agent")
    assert "\033[" not in out


def test_report_reads_the_default_location(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("TOKENTRAIL_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    fill(tmp_path / "tokentrail" / "ledger.sqlite", random_records(10))
    code, out, err = run_cli(capsys, "report", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["totals"]["calls"] == 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (("report", "--ledger", "{missing}"), "no ledger at"),
        (("report", "--by", "colour"), "unknown --by key 'colour'"),
        (("report", "--since", "last tuesday"), "--since 'last tuesday' is not a time"),
        (("report", "--until", "2026-13-45"), "--until '2026-13-45' is not a time"),
        (("report", "--since", "1d", "--until", "2d"), "is not before --until"),
        (("report", "--where", "agent"), "use KEY=VALUE"),
        (("report", "--where", "mood=happy"), "unknown --where key 'mood'"),
        (("report", "--source", "prometheus"), "needs --url"),
        (("report", "--source", "prometheus", "--url", "http://127.0.0.1:{port}"), "cannot reach Prometheus"),
        (("trend", "--daily", "0"), "use a number from 1"),
        (("export", "--where", "day=2026-11-01"), "filter time with --since"),
    ],
)
def test_clear_one_line_errors(capsys, ledger_path, tmp_path, argv, message):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [a.format(missing=tmp_path / "none.sqlite", port=port) for a in argv]
    if "--ledger" not in argv:
        argv[1:1] = ["--ledger", str(ledger_path)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_ledger_off_without_ledger_option(capsys):
    code, _, err = run_cli(capsys, "report")  # the test session runs with TOKENTRAIL_LEDGER=off
    assert code == 1 and "the ledger is off" in err and "--ledger PATH" in err


def test_newer_ledger_is_refused(capsys, tmp_path):
    import sqlite3

    path = tmp_path / "new.sqlite"
    fill(path, random_records(1))
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    code, _, err = run_cli(capsys, "report", "--ledger", str(path))
    assert code == 1 and "newer tokentrail" in err and "schema version 99" in err


# --- trend -------------------------------------------------------------------------------------------------


def test_trend_daily(capsys, ledger_path):
    code, out, err = run_cli(
        capsys, "trend", "--ledger", str(ledger_path), "--daily", "7", "--format", "json"
    )
    assert code == 0, err
    points = json.loads(out)["points"]
    today = datetime.now().date()
    assert [p["day"] for p in points] == [str(today - timedelta(days=i)) for i in range(6, -1, -1)]
    rows = raw_rows(ledger_path)
    for point in points:
        day_rows = [
            r for r in rows if datetime.fromtimestamp(r["start_time"]).strftime("%Y-%m-%d") == point["day"]
        ]
        assert_figures_equal(point, expected_totals(day_rows), point["day"])
    code, table, _ = run_cli(capsys, "trend", "--ledger", str(ledger_path))
    assert code == 0 and len(table.splitlines()) == 1 + 7 + 1
    assert "█" not in table  # the chart is for terminals


def test_trend_chart_on_a_terminal_and_empty_days(capsys, tmp_path, monkeypatch):
    path = tmp_path / "l.sqlite"
    records = random_records(40, days=0.2)  # all today
    fill(path, records)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = run_cli(capsys, "trend", "--ledger", str(path), "--daily", "3")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 5
    assert "█" in lines[3] and "█" not in lines[1] and " 0 calls" in lines[1]
    code, out, _ = run_cli(capsys, "trend", "--ledger", str(path), "--hourly", "24", "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert len(parsed) == 24 and sum(int(r["calls"]) for r in parsed) == 40


# --- export -------------------------------------------------------------------------------------------------


def test_export_csv_and_jsonl_hold_every_raw_row(capsys, ledger_path, tmp_path):
    rows = raw_rows(ledger_path)
    code, out, _ = run_cli(capsys, "export", "--ledger", str(ledger_path), "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(parsed) == len(rows)
    assert list(parsed[0]) == list(COLUMN_NAMES)
    by_id = {row["response_id"]: row for row in rows}
    for exported in parsed[:200]:
        original = by_id[exported["response_id"]]
        assert exported["cost_usd"] == ("" if original["cost_usd"] is None else repr(original["cost_usd"]))
        assert exported["agent"] == (original["agent"] or "")
    target = tmp_path / "calls.jsonl"
    code, _, err = run_cli(
        capsys,
        "export",
        "--ledger",
        str(ledger_path),
        "--format",
        "jsonl",
        "--since",
        "3d",
        "--where",
        "agent=QA",
        "-o",
        str(target),
    )
    assert code == 0 and err == ""  # no progress bar off a terminal
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    since = time.time() - 3 * 86400
    expected = [r for r in rows if r["agent"] == "QA" and r["start_time"] >= since - 5]
    assert abs(len(lines) - len(expected)) <= 1 and lines
    assert all(line["agent"] == "QA" and isinstance(line["labels"], dict) for line in lines)
    assert [line["start_time"] for line in lines] == sorted(line["start_time"] for line in lines)


def test_export_progress_bar():
    stream = io.StringIO()
    progress = Progress(1000, stream)
    for _ in range(1000):
        progress.advance()
    progress.finish()
    text = stream.getvalue()
    assert "100%" in text and "1,000 / 1,000 rows" in text and text.endswith("\n")


# --- report --source prometheus, against a real Prometheus -----------------------------------------------

APP = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import start_http_server
    import tokentrail
    from tokentrail import ledger
    from openai_wire import FakeOpenAI

    server, _ = start_http_server(0, addr="127.0.0.1")
    tokentrail.instrument(
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(metric_readers=[PrometheusMetricReader()]),
        ledger={ledger!r},
        metric_attributes="agent,task,phase,pipeline",
    )
    client = FakeOpenAI().client()
    failing = FakeOpenAI(status=429).client()
    messages = [{{"role": "user", "content": "hi"}}]

    def wave(agents):
        for index, (agent, task) in enumerate(agents):
            with tokentrail.attribute(agent=agent, task=task, pipeline="nightly"):
                client.chat.completions.create(model="gpt-4o-mini", messages=messages)
                if index % 2:
                    list(client.chat.completions.create(model="gpt-4o", messages=messages, stream=True))
                    client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        with tokentrail.attribute(agent="QA"):
            try:
                failing.chat.completions.create(model="gpt-4o-mini", messages=messages)
            except Exception:
                pass
        tokentrail.flush()

    wave([("PM", "plan"), ("Dev", "build"), ("QA", "review")])
    print("PORT", server.server_port, flush=True)
    for line in sys.stdin:
        wave([("Dev", "build"), ("Dev", "fix"), ("Researcher", "search")])
        print("DONE", flush=True)
    """
)


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """Prometheus from Debian's package, unpacked (not installed) into .cache/ on first use."""
    return prometheus_bin_dir() / "prometheus"


def _promql(url: str, query: str) -> list:
    target = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(target, timeout=5) as response:
        return json.loads(response.read())["data"]["result"]


def test_report_from_prometheus_answers_like_the_ledger(capsys, tmp_path, prometheus_binary):
    import urllib.parse  # noqa: F401 - used by _promql

    ledger = tmp_path / "app.sqlite"
    started = time.time()
    app = subprocess.Popen(
        [sys.executable, "-c", APP.format(tests=str(TESTS), ledger=str(ledger))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OTEL_SERVICE_NAME": "prom-app"},
    )
    prometheus = None
    try:
        line = app.stdout.readline()
        assert line.startswith("PORT "), app.stderr.read()
        app_port = int(line.split()[1])
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: app\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{app_port}']\n"
        )
        prometheus = subprocess.Popen(
            [
                str(prometheus_binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        wave1 = len(raw_rows(ledger))
        count = "sum(gen_ai_client_operation_duration_seconds_count)"
        wait_for(
            lambda: _promql(url, count) and float(_promql(url, count)[0]["value"][1]) == wave1,
            "the first scrape",
        )
        time.sleep(1.2)  # a scrape strictly inside the first quiet period, then the range starts
        between = time.time()
        time.sleep(0.05)
        app.stdin.write("wave 2\n")
        app.stdin.flush()
        assert app.stdout.readline().strip() == "DONE"
        total = len(raw_rows(ledger))
        assert total > wave1
        wait_for(
            lambda: float(_promql(url, count)[0]["value"][1]) == total, "the scrape after the second wave"
        )
        time.sleep(1.2)  # one more scrape: the last values are in the range whatever its end

        def both(*argv: str) -> tuple[dict, dict]:
            code, out, err = run_cli(
                capsys, "report", "--source", "prometheus", "--url", url, "--format", "json", *argv
            )
            assert code == 0, err
            return json.loads(out), report_json(capsys, ledger, *argv)

        figures = (
            "calls",
            "calls_with_usage",
            "priced_calls",
            "unpriced_calls",
            "errors",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "cost_usd",
            "total_tokens",
            "avg_cost_per_call_usd",
            "avg_tokens_per_call",
        )

        def same(prom: dict, local: dict, where: str) -> None:
            assert_figures_equal({k: prom[k] for k in figures}, {k: local[k] for k in figures}, where)

        # The whole life of the app: every series was born inside the range.
        since_start = datetime.fromtimestamp(started - 5).isoformat()
        prom, local = both("--since", since_start, "--by", "agent", "--by", "task")
        assert prom["totals"]["calls"] == total
        same(prom["totals"], local["totals"], "all: totals")
        assert set(walk(prom["breakdown"])) == set(walk(local["breakdown"]))
        for key, group in walk(local["breakdown"]).items():
            same(walk(prom["breakdown"])[key], group, f"all: {key}")
        assert prom["totals"]["cache_savings_usd"] is None and local["totals"]["cache_savings_usd"] > 0

        # Only the second wave: series that existed at the range's start count from their value then.
        since_between = datetime.fromtimestamp(between).isoformat()
        prom, local = both("--since", since_between, "--by", "model")
        assert local["totals"]["calls"] == total - wave1
        same(prom["totals"], local["totals"], "wave 2: totals")
        for key, group in walk(local["breakdown"]).items():
            same(walk(prom["breakdown"])[key], group, f"wave 2: {key}")

        # Filters become label matchers.
        prom, local = both(
            "--since", since_start, "--where", "agent=Dev", "--model", "gpt-4o", "--by", "operation"
        )
        assert local["totals"]["calls"] > 0
        same(prom["totals"], local["totals"], "filtered")
        prom, local = both("--since", since_start, "--pipeline", "nightly", "--by", "day")
        same(prom["totals"], local["totals"], "by day")
        assert [g["value"] for g in prom["breakdown"]] == [g["value"] for g in local["breakdown"]]
        # A key the metrics do not carry says so.
        code, out, _ = run_cli(
            capsys, "report", "--source", "prometheus", "--url", url, "--since", since_start, "--by", "user"
        )
        assert code == 0 and "no series carry user" in out
    finally:
        app.stdin.close()
        app.terminate()
        app.wait(timeout=10)
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=10)
