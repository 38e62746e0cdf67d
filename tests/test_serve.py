"""``tokentrail serve``: the read-only HTTP JSON API, run as the real command and asked over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ledger_data import assert_figures_equal, expected_totals, fill, random_records, raw_rows

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("serve") / "ledger.sqlite"
    fill(path, random_records(1500, seed=9))
    before = path.stat().st_mtime_ns, path.stat().st_size
    server = subprocess.Popen(
        [sys.executable, "-m", "tokentrail.cli", "serve", "--ledger", str(path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")},
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("tokentrail serve: http://127.0.0.1:"), line + server.stderr.read()
        url = line.split()[2]
        deadline = time.monotonic() + 20
        while True:
            try:
                get(url, "/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url, path
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert (path.stat().st_mtime_ns, path.stat().st_size) == before  # read-only: never written


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=10) as response:
        assert response.headers["content-type"].startswith("application/json")
        return json.loads(response.read())


def status_of(url: str, path: str, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_binds_loopback_and_describes_itself(served):
    url, path = served
    assert url.startswith("http://127.0.0.1:")
    health = get(url, "/healthz")
    assert health["status"] == "ok" and health["ledger"] == str(path)
    spec = get(url, "/openapi.json")
    assert spec["openapi"].startswith("3.")
    assert {
        "/v1/usage",
        "/v1/pipelines/{pipeline}/usage",
        "/v1/agents/{agent}/usage",
        "/v1/roles/{role}/usage",
        "/v1/trend",
        "/v1/pipelines/{pipeline}/budget",
    } <= set(spec["paths"])
    for operations in spec["paths"].values():
        assert set(operations) == {"get"}  # read-only
    assert "BudgetStatus" in spec["components"]["schemas"]
    code, _ = status_of(url, "/v1/usage", method="POST")
    assert code == 405


def test_usage_for_a_pipeline(served):
    url, path = served
    rows = raw_rows(path)
    data = get(url, "/v1/pipelines/pip_a/usage?by=agent")
    selected = [r for r in rows if r["pipeline"] == "pip_a"]
    assert_figures_equal(data["totals"], expected_totals(selected))
    assert data["filters"] == {"pipeline": "pip_a"}
    qa = next(group for group in data["breakdown"] if group["value"] == "QA")
    assert_figures_equal(qa, expected_totals([r for r in selected if r["agent"] == "QA"]))


@pytest.mark.parametrize("kind, column", [("agents", "agent"), ("roles", "role")])
def test_usage_for_an_agent_or_role_over_the_last_days(served, kind, column):
    url, path = served
    value = "QA" if column == "agent" else "lead"
    since = time.time() - 3 * 86400
    data = get(url, f"/v1/{kind}/{value}/usage?days=3")
    selected = [r for r in raw_rows(path) if r[column] == value and r["start_time"] >= since]
    # The request ran a moment after `since` was taken here: allow a call on the boundary.
    assert abs(data["totals"]["calls"] - len(selected)) <= 1
    assert data["totals"]["cost_usd"] == pytest.approx(expected_totals(selected)["cost_usd"], rel=0.05)
    default = get(url, f"/v1/{kind}/{value}/usage")  # 7 days unless told
    assert datetime.fromisoformat(default["since"]) < datetime.now().astimezone() - timedelta(days=6.99)


def test_daily_trend(served):
    url, path = served
    data = get(url, "/v1/trend?days=5&pipeline=pip_b")
    today = datetime.now().date()
    assert [p["day"] for p in data["points"]] == [str(today - timedelta(days=i)) for i in range(4, -1, -1)]
    rows = [r for r in raw_rows(path) if r["pipeline"] == "pip_b"]
    for point in data["points"]:
        day = [
            r for r in rows if datetime.fromtimestamp(r["start_time"]).strftime("%Y-%m-%d") == point["day"]
        ]
        assert_figures_equal(point, expected_totals(day), point["day"])


def test_budget_status(served):
    url, path = served
    spent = expected_totals([r for r in raw_rows(path) if r["pipeline"] == "pip_c"])["cost_usd"]
    assert spent > 1
    under = get(url, f"/v1/pipelines/pip_c/budget?budget_usd={spent * 2}")
    assert under["spent_usd"] == pytest.approx(spent, rel=1e-12)
    assert under["remaining_usd"] == pytest.approx(spent, rel=1e-9)
    assert under["percent_used"] == pytest.approx(50.0)
    assert under["over_budget"] is False
    over = get(url, f"/v1/pipelines/pip_c/budget?budget_usd={spent / 4}")
    assert over["over_budget"] is True and over["remaining_usd"] == 0.0
    assert over["percent_used"] == pytest.approx(400.0)
    nothing = get(url, "/v1/pipelines/never-ran/budget?budget_usd=5")
    assert (nothing["spent_usd"], nothing["percent_used"], nothing["calls"]) == (0.0, 0.0, 0)
    code, body = status_of(url, "/v1/pipelines/pip_c/budget?budget_usd=-1")
    assert code == 422 and "budget_usd" in json.dumps(body)
    code, body = status_of(url, "/v1/usage?by=colour")
    assert code == 422 and "unknown --by key" in body["detail"]


def test_serve_errors_are_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tokentrail.cli", "serve", "--ledger", str(tmp_path / "none.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        done.returncode == 1
        and done.stderr.startswith("error: no ledger at")
        and done.stderr.count("\n") == 1
    )
