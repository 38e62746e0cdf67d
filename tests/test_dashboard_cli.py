"""``tokentrail dashboard`` and the dashboard's settings on ``tokentrail serve``, run as commands:
the browser it opens, the page and its JSON, and one clear line for a setting to fix."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ledger_data import fill, random_records

pytest.importorskip("fastapi")

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dashboard-cli") / "ledger.sqlite"
    fill(path, random_records(300, seed=31, days=5))
    return path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tokentrail.cli", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--trace-url", "http://jaeger/trace/"), {}, "error: --trace-url: trace URL 'http://jaeger/trace/'"),
        (
            ("--trace-url", "jaeger:{trace_id}"),
            {},
            "error: --trace-url: trace URL 'jaeger:{trace_id}': use an http(s)",
        ),
        ((), {"TOKENTRAIL_TRACE_URL": "nope"}, "error: TOKENTRAIL_TRACE_URL: trace URL 'nope'"),
        (("--refresh", "0"), {}, "error: --refresh 0: use a number of seconds from 0.5 to 3600"),
    ],
)
def test_a_bad_setting_is_one_line(ledger, args, env, message):
    done = run("serve", "--ledger", str(ledger), "--port", "0", *args, env={**ENV, **env})
    assert done.returncode == 1
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_dashboard_opens_the_page_in_a_browser(ledger, tmp_path):
    # $BROWSER is the browser Python's webbrowser module runs: here, a script noting the address.
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    server = subprocess.Popen(
        [sys.executable, "-m", "tokentrail.cli", "dashboard", "--ledger", str(ledger), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, "BROWSER": str(browser), "DISPLAY": ""},
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("tokentrail serve: http://127.0.0.1:"), line + server.stderr.read()
        url = line.split()[2]
        wait_up(url)
        deadline = time.monotonic() + 20
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert opened.read_text().strip() == url + "/"
        with urllib.request.urlopen(url + "/", timeout=30) as response:
            page = response.read().decode()
            policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        assert '<main id="main"' in page and 'id="dashboard-data"' in page
        embedded = json.loads(page.split('id="dashboard-data">', 1)[1].split("</script>", 1)[0])
        with urllib.request.urlopen(url + "/v1/dashboard", timeout=30) as response:
            served = json.loads(response.read())
        assert embedded["totals"] == served["totals"]
        with urllib.request.urlopen(url + "/openapi.json", timeout=30) as response:
            paths = set(json.loads(response.read())["paths"])
        assert {"/v1/dashboard", "/v1/dashboard/calls", "/v1/forecast", "/v1/whatif", "/v1/advice"} <= paths
        assert "/" not in paths  # HTML, not part of the API
    finally:
        server.terminate()
        server.wait(timeout=30)
