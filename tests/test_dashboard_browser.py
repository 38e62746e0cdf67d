"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright, against the
real ``tokentrail serve`` over a generated ledger. Every panel's figures are held against
``tokentrail report`` (and ``tokentrail budget status``) run as commands with the same filters."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from chromium_support import browser_context
from ledger_data import fill, random_records, raw_rows

pytest.importorskip("fastapi")
pytest.importorskip("playwright")

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
TRACE_URL = "http://jaeger.example.invalid/trace/{trace_id}"
BUDGETS = """
[[budget]]
name = "all-daily"
usd = 20.0
window = "1d"
mode = "warn"

[[budget]]
name = "pip-a-weekly"
usd = 5.0
window = "7d"
mode = "warn"
scope = { pipeline = "pip_a" }
"""


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tokentrail.cli", *args], capture_output=True, text=True, env=ENV, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def usd(value: float) -> str:
    """How ``tokentrail report --format table`` prints dollars (six decimals), written out here."""
    return f"${value:,.6f}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard")
    path = folder / "ledger.sqlite"
    fill(path, random_records(1500, seed=17, days=20))
    budgets = folder / "budgets.toml"
    budgets.write_text(BUDGETS)
    server = subprocess.Popen(
        [
            sys.executable, "-m", "tokentrail.cli", "serve", "--ledger", str(path), "--port", "0",
            "--budgets", str(budgets), "--trace-url", TRACE_URL, "--refresh", "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.startswith("tokentrail serve: http://127.0.0.1:"), line + server.stderr.read()
        yield line.split()[2], path, budgets
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def browser(tmp_path):
    """(page, requests seen, console errors) in a fresh profile."""
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        requests: list[str] = []
        errors: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page, requests, errors
        # No request leaves this machine's server, and the page logged no error.
        for url in requests:
            parsed = urllib.parse.urlsplit(url)
            assert parsed.scheme == "data" or parsed.hostname == "127.0.0.1", url
        assert errors == []


def bounds() -> tuple[str, str]:
    """An explicit range the page and the report both use: 21 local days back to an hour ahead."""
    now = datetime.now().replace(microsecond=0)
    since = (now - timedelta(days=21)).replace(hour=0, minute=0, second=0)
    return since.isoformat(), (now + timedelta(hours=1)).isoformat()


def report(path: Path, since: str, until: str, *args: str) -> dict:
    return json.loads(
        cli("report", "--ledger", str(path), "--format", "json", "--since", since, "--until", until, *args)
    )


def nearest_rank(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def table(page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => Array.from(r.children).map(c => c.textContent.trim()))"
    )


def headers(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{selector} thead th", "cells => cells.map(c => c.textContent.trim())")


def test_every_panel_equals_the_report(served, browser):
    url, path, budgets = served
    page, requests, _ = browser
    since, until = bounds()
    page.goto(f"{url}/?{urllib.parse.urlencode({'since': since, 'until': until})}")
    # The per-call figures and the advice arrive after the first paint.
    page.wait_for_selector("#top-calls")
    page.wait_for_selector("#advice article")
    expected = report(path, since, until)["totals"]

    # Spend: the total, per day, and per day and model (the stacked series).
    assert page.text_content("#total-cost") == usd(expected["cost_usd"])
    assert page.text_content("#total-calls") == f"{expected['calls']:,}"
    assert f"{expected['unpriced_calls']:,} unpriced" in page.text_content("#total-unpriced")
    by_day = {g["value"]: g for g in report(path, since, until, "--by", "day", "--by", "model")["breakdown"]}
    names = headers(page, "#spend-table")[3:]
    rows = table(page, "#spend-table")
    assert rows and {row[0] for row in rows} >= set(by_day)
    for row in rows:
        day = by_day.get(row[0])
        total = day["cost_usd"] if day else 0.0
        assert row[1].split(" + ")[0] == usd(total), row
        models = {
            ("(none)" if g["value"] is None else g["value"]): g["cost_usd"]
            for g in (day or {}).get("breakdown", [])
        }
        for name, cell in zip(names, row[3:], strict=True):
            assert cell == usd(models.get(name, 0.0)), (row[0], name)

    # Tokens by kind, per day: the report's counts split into the five kinds.
    for row in table(page, "#tokens-table"):
        day = by_day.get(row[0])
        t = day or {
            key: 0
            for key in (
                "input_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "output_tokens",
                "reasoning_tokens",
            )
        }
        kinds = [
            t["input_tokens"] - t["cache_read_tokens"] - t["cache_write_tokens"],
            t["cache_read_tokens"],
            t["cache_write_tokens"],
            t["output_tokens"] - t["reasoning_tokens"],
            t["reasoning_tokens"],
        ]
        assert row[1:] == [f"{k:,}" for k in kinds], row[0]

    # The cache: tokens and dollars saved, as the report has them.
    assert page.text_content("#cache-read") == f"{expected['cache_read_tokens']:,}"
    assert page.text_content("#cache-write") == f"{expected['cache_write_tokens']:,}"
    assert page.text_content("#cache-saved") == usd(expected["cache_savings_usd"])
    ratio = expected["cache_read_tokens"] / expected["input_tokens"] * 100
    assert page.text_content("#cache-hit-ratio") == f"{ratio:.1f}%"

    # The model table: calls and cost per model, unpriced calls said as such.
    models = {g["value"]: g for g in report(path, since, until, "--by", "model")["breakdown"]}
    for row in table(page, "#models-table"):
        group = models[row[0]]
        assert row[1] == f"{group['calls']:,}"
        assert row[2].startswith(usd(group["cost_usd"]))
        if group["unpriced_calls"]:
            assert f"+ {group['unpriced_calls']:,} unpriced" in row[2]
        if group["priced_calls"] == 0:
            assert row[3] == "unpriced"  # never $0 for a model without a price
    assert "genai-prices" in page.text_content("#catalogue")

    # Top pipelines and agents: the report's breakdown, most expensive first.
    for key, selector in (("pipeline", "#top-pipelines"), ("agent", "#top-agents")):
        groups = report(path, since, until, "--by", key)["breakdown"][:10]
        shown = [(row[0], row[1], row[2].split(" + ")[0]) for row in table(page, selector)]
        assert shown == [
            ("(none)" if g["value"] is None else g["value"], f"{g['calls']:,}", usd(g["cost_usd"]))
            for g in groups
        ]

    # The most expensive call links to its trace with its own trace id.
    low, high = datetime.fromisoformat(since).timestamp(), datetime.fromisoformat(until).timestamp()
    priced = [r for r in raw_rows(path) if r["cost_usd"] is not None and low <= r["start_time"] < high]
    dearest = max(priced, key=lambda r: (r["cost_usd"], r["start_time"]))
    link = page.get_attribute("#top-calls tbody tr:first-child a", "href")
    assert link == TRACE_URL.replace("{trace_id}", dearest["trace_id"])

    # Latency per model: nearest-rank percentiles of the raw rows, computed here.
    in_range = [r for r in raw_rows(path) if low <= r["start_time"] < high]
    for row in table(page, "#latency-table"):
        durations = sorted(r["duration_s"] for r in in_range if (r["model"] or "(none)") == row[0])
        firsts = sorted(
            r["ttfc_s"] for r in in_range if (r["model"] or "(none)") == row[0] and r["ttfc_s"] is not None
        )
        expected_cells = [nearest_rank(durations, 0.5), nearest_rank(durations, 0.95)]
        expected_cells += [nearest_rank(firsts, 0.5), nearest_rank(firsts, 0.95)]
        assert row[1:] == ["-" if v is None else f"{v:.3f} s" for v in expected_cells], row

    # Cache writes never read: no later call of that provider and model read the cache in 5 minutes.
    ordered = sorted(raw_rows(path), key=lambda r: r["start_time"])
    writes = [r for r in in_range if r["cache_write_tokens"]]
    unread = [
        w
        for w in writes
        if not any(
            r["provider"] == w["provider"] and r["model"] == w["model"] and r["cache_read_tokens"]
            and w["start_time"] < r["start_time"] <= w["start_time"] + 300
            for r in ordered
        )
    ]  # fmt: skip
    assert page.text_content("#cache-unread") == f"{len(unread):,}"
    assert page.text_content("#cache-read-again") == f"{len(writes) - len(unread):,}"
    assert page.text_content("#cache-unread-tokens") == f"{sum(w['cache_write_tokens'] for w in unread):,}"

    # Budgets: spent equals `tokentrail budget status`.
    statuses = {
        b["name"]: b
        for b in json.loads(
            cli("budget", "status", "--budgets", str(budgets), "--ledger", str(path), "--format", "json")
        )
    }
    for row in table(page, "#budgets-table"):
        assert row[3] == usd(statuses[row[0]]["spent_usd"])
        assert row[4].startswith(f"{statuses[row[0]]['percent_used']:.1f}%")

    # Advice: each kind's dollars at stake equal `tokentrail advise` for the same range.
    advised = json.loads(
        cli("advise", "--ledger", str(path), "--since", since, "--until", until, "--format", "json")
    )
    shown_advice = page.eval_on_selector_all(
        "#advice article", "items => items.map(a => [a.dataset.kind, a.querySelector('h3 span').textContent])"
    )
    assert shown_advice == [[a["kind"], usd(a["usd_at_stake"])] for a in advised["advice"]]
    stakes = page.eval_on_selector_all(
        "#advice tbody tr td:last-child", "cells => cells.map(c => c.textContent)"
    )
    assert stakes and all(cell.startswith("$") for cell in stakes)

    # Every chart has a table a screen reader can read, and the page's JSON is the API's.
    charts = page.eval_on_selector_all("svg.chart", "svgs => svgs.map(s => s.getAttribute('role'))")
    assert charts == ["img", "img"]
    assert page.eval_on_selector_all("table caption", "c => c.length") >= 6
    embedded = json.loads(page.text_content("#dashboard-data"))
    assert embedded["totals"]["cost_usd"] == pytest.approx(expected["cost_usd"], rel=1e-12)
    assert any(u.startswith(url + "/dashboard/advice") for u in requests)


def test_filters_live_in_the_url_and_change_the_figures(served, browser):
    url, path, _ = served
    page, _, _ = browser
    since, until = bounds()
    page.goto(f"{url}/?{urllib.parse.urlencode({'since': since, 'until': until})}")
    page.fill("input[name=model]", "gpt-4o")
    page.fill("input[name=agent]", "QA")
    with page.expect_navigation():
        page.press("input[name=agent]", "Enter")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    assert query["model"] == ["gpt-4o"] and query["agent"] == ["QA"] and "provider" not in query
    expected = report(path, since, until, "--model", "gpt-4o", "--where", "agent=QA")["totals"]
    assert page.text_content("#total-cost") == usd(expected["cost_usd"])
    assert page.text_content("#total-calls") == f"{expected['calls']:,}"

    # The stack selector is in the URL too, and the columns follow it.
    with page.expect_navigation():
        page.select_option("select[name=stack]", "pipeline")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["stack"] == ["pipeline"]
    by_pipeline = report(path, since, until, "--model", "gpt-4o", "--where", "agent=QA", "--by", "pipeline")
    expected_names = {"(none)" if g["value"] is None else g["value"] for g in by_pipeline["breakdown"]}
    assert set(headers(page, "#spend-table")[3:]) == expected_names

    # A bookmarked view opens as it was saved.
    saved = page.url
    page.goto(saved)
    assert page.input_value("input[name=model]") == "gpt-4o"
    assert page.text_content("#total-cost") == usd(expected["cost_usd"])


def test_keyboard_dark_mode_and_a_bad_filter(served, browser):
    url, _, _ = served
    page, _, errors = browser
    page.goto(url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "since"
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light
    response = page.goto(url + "/?since=last+tuesday")
    assert response.status == 422
    assert "since: 'last tuesday' is not a time" in page.text_content("[role=alert]")
    # The browser logs the 422 itself: the one error this test expects.
    assert [e for e in errors if "422" in e] == [errors[-1]]
    errors.pop()


def test_whatif_view_reprices_the_selected_calls(served, browser):
    url, path, _ = served
    page, _, _ = browser
    since, until = bounds()
    page.goto(f"{url}/?{urllib.parse.urlencode({'since': since, 'until': until, 'provider': 'openai'})}")
    page.fill("input[name=whatif]", "openai:gpt-4o-mini, anthropic:claude-haiku-4-5")
    with page.expect_navigation():
        page.press("input[name=whatif]", "Enter")
    assert "whatif=" in page.url and "provider=openai" in page.url
    page.wait_for_selector("#whatif-table")
    found = json.loads(
        cli("whatif", "--ledger", str(path), "--since", since, "--until", until, "--where", "provider=openai",
            "--model", "openai:gpt-4o-mini", "--model", "anthropic:claude-haiku-4-5", "--format", "json")
    )  # fmt: skip
    rows = table(page, "#whatif-table")
    assert rows[0][2] == usd(found["actual_usd"])
    assert [row[2] for row in rows[1:]] == [usd(c["cost_of_priced_calls_usd"]) for c in found["candidates"]]


def test_the_page_refreshes_while_calls_arrive(served, browser):
    url, path, _ = served
    page, _, _ = browser
    page.goto(url + "/")  # the default view: the last 30 days up to now
    before = int(page.text_content("#total-calls").replace(",", ""))
    fill(path, random_records(1, seed=99, days=0.0001))  # a call made seconds ago
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if int(page.text_content("#total-calls").replace(",", "")) == before + 1:
            break
        page.wait_for_timeout(200)
    assert int(page.text_content("#total-calls").replace(",", "")) == before + 1
