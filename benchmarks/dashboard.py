"""The dashboard's first load over a large ledger (default 1,000,000 calls over 30 days).

    PYTHONPATH=src .venv/bin/python benchmarks/dashboard.py [--calls 1000000] [--json dashboard.json]

Fills a ledger in a temporary directory (OpenAI calls as in ``benchmarks/ledger.py``, plus one
call in five on Anthropic with prompt-cache writes and reads), starts the real ``tokentrail serve``
on it, then measures:

* **server**: the page at ``/`` (the default view: the last 30 days, every provider) fetched over
  HTTP, first (cold) and then median of 5; the same for ``/v1/dashboard`` (its JSON) and
  ``/v1/dashboard/calls`` (the per-call figures the page loads after its first paint).
* **browser**: Debian's headless Chromium (Playwright pointed at ``/usr/bin/chromium``) opening
  the page in a fresh profile: navigation start to the ``load`` event (HTML, CSS and script
  fetched, every rollup panel drawn), first and median of the next 5; and to the per-call figures
  shown.
* **advice**: ``/v1/advice`` once (it prices every call in the range).

Not a timed test: the figures are for the README, measured on demand.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tokentrail.ledger.writer import LedgerWriter
from tokentrail.pricing import Pricer
from tokentrail.records import CallRecord
from tokentrail.usage import Usage

ROOT = Path(__file__).parent.parent
OPENAI_MODELS = ("gpt-4o", "gpt-4o-mini", "o4-mini", "gpt-4.1", "gpt-4.1-mini")
AGENTS = ("PM", "Dev", "QA", "Researcher", "Summarizer", "Reviewer")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def fill(path: Path, count: int, days: float, seed: int = 7) -> None:
    rng = random.Random(seed)
    pricer = Pricer()
    now = time.time()
    writer = LedgerWriter(path, service="bench", flush_interval=3600, queue_size=count + 1)
    records = []
    run_start = 0.0
    attribution: dict[str, str] = {}
    for i in range(count):
        if i % 50 == 0:
            run_start = now - rng.random() * days * 86400
        if i % 10 == 0:
            attribution = {
                "pipeline": f"pip_{i // 50:06d}",
                "user": f"user{(i // 50) % 200}",
                "agent": AGENTS[(i // 10) % len(AGENTS)],
            }
        anthropic = (i // 10) % 5 == 0
        provider = "anthropic" if anthropic else "openai"
        model = "claude-sonnet-4-5" if anthropic else OPENAI_MODELS[(i // 10) % len(OPENAI_MODELS)]
        input_tokens = rng.randint(200, 20_000)
        cached = rng.choice((0, 0, 128, 1024)) if not anthropic else rng.choice((0, input_tokens // 2))
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=rng.randint(10, 2_000),
            cache_read_tokens=cached,
            cache_write_tokens=input_tokens // 4 if anthropic and not cached and rng.random() < 0.5 else 0,
        )
        at = min(now, run_start + (i % 50) * 6 + rng.random() * 6)
        records.append(
            CallRecord(
                start_time=at,
                duration_s=rng.random() * 5,
                operation="chat",
                provider=provider,
                request_model=model,
                response_model=model,
                server_address="api.example.com",
                stream=bool(i % 2),
                usage=usage,
                cost=pricer.price(usage, provider, (model,), at),
                time_to_first_chunk_s=0.2 if i % 2 else None,
                trace_id=f"{rng.getrandbits(128):032x}",
                span_id=f"{rng.getrandbits(64):016x}",
                attribution=attribution,
            )
        )
    records.sort(key=lambda record: record.start_time)
    for record in records:
        writer(record)
    writer.close()
    assert writer.written == count, (writer.written, writer.dropped)


def fetch(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        response.read()
    return time.perf_counter() - start


def browser_loads(url: str, rounds: int) -> tuple[list[float], list[float]]:
    """(navigation to the load event, to the per-call figures shown) of each round, in seconds."""
    from playwright.sync_api import sync_playwright

    found: list[float] = []
    details: list[float] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS
        )
        page = context.new_page()
        # The advice is measured on its own (it prices every call); here only the page and the
        # per-call figures it loads after the first paint.
        page.route("**/dashboard/advice*", lambda route: route.abort())
        for _ in range(rounds):
            page.goto(url, wait_until="load", timeout=600_000)
            timing = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
            entry = json.loads(timing)
            found.append((entry["loadEventEnd"] - entry["startTime"]) / 1000)
            started = time.perf_counter()
            page.wait_for_selector("#top-calls", timeout=600_000)
            details.append(time.perf_counter() - started + found[-1])
        context.close()
    return found, details


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--ledger",
        metavar="PATH",
        help="keep the ledger here (reused if it exists) instead of a temporary one",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.ledger) if args.ledger else Path(folder) / "ledger.sqlite"
        if not path.exists():
            start = time.perf_counter()
            fill(path, args.calls, args.days)
            took = time.perf_counter() - start
            print(f"ledger: {args.calls:,} calls over {args.days:g} days, filled in {took:.0f} s", flush=True)
        server = subprocess.Popen(
            [sys.executable, "-m", "tokentrail.cli", "serve", "--ledger", str(path), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        )
        try:
            url = server.stdout.readline().split()[2]
            deadline = time.monotonic() + 60
            while True:  # the address is printed before the server accepts
                try:
                    fetch(url + "/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            figures: dict[str, float] = {}
            for name, route in (("page", "/"), ("json", "/v1/dashboard"), ("calls", "/v1/dashboard/calls")):
                figures[f"{name}_first_s"] = fetch(url + route)
                figures[f"{name}_median_s"] = statistics.median(fetch(url + route) for _ in range(5))
                first, median = figures[f"{name}_first_s"], figures[f"{name}_median_s"]
                print(f"{name}: first {first:.3f} s, median {median:.3f} s", flush=True)
            loads, details = browser_loads(url + "/", 6)
            figures["browser_load_first_s"] = loads[0]
            figures["browser_load_median_s"] = statistics.median(loads[1:])
            figures["browser_calls_shown_median_s"] = statistics.median(details[1:])
            figures["advice_s"] = fetch(url + "/v1/advice")
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    for name, value in figures.items():
        print(f"{name:<20} {value * 1000:8.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"calls": args.calls, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
