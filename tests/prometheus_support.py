"""A real Prometheus for tests: Debian's package unpacked (not installed) into ``.cache/prometheus``,
started on loopback, queried over its HTTP API; and the demo workload exposing its metrics through
``opentelemetry-exporter-prometheus`` for it to scrape.

Shared by the dashboard and collector-config tests (``tests/test_cli.py`` keeps its own copy).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
CACHE = ROOT / ".cache" / "prometheus"


def prometheus_bin_dir() -> Path:
    """``.../usr/bin`` holding ``prometheus`` and ``promtool``, fetched from Debian's package.

    Skips only off Debian (no apt-get/dpkg). On Debian a failed download or unpack FAILS the test:
    a skipped Prometheus test would let an untested dashboard or report pass CI."""
    bin_dir = CACHE / "root" / "usr" / "bin"
    if (bin_dir / "prometheus").exists() and (bin_dir / "promtool").exists():
        return bin_dir
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("a real Prometheus needs Debian's apt-get and dpkg (not found)")
    CACHE.mkdir(parents=True, exist_ok=True)

    def download() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["apt-get", "download", "prometheus"], cwd=CACHE, capture_output=True, text=True, timeout=300
        )

    done = download()
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=300)
        done = download()
    packages = sorted(CACHE.glob("prometheus_*.deb"))
    if done.returncode != 0 or not packages:
        pytest.fail(f"cannot download Debian's prometheus package: {done.stderr.strip()[-300:]}")
    unpacked = subprocess.run(
        ["dpkg", "-x", str(packages[-1]), str(CACHE / "root")], capture_output=True, text=True, timeout=300
    )
    if unpacked.returncode != 0 or not (bin_dir / "prometheus").exists():
        pytest.fail(f"cannot unpack {packages[-1].name}: {unpacked.stderr.strip()[-300:]}")
    return bin_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Prometheus:
    """A running Prometheus's query API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        target = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(target, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{promql!r}: {error.read().decode(errors='replace')}") from None
        assert body["status"] == "success", body
        return body["data"]["result"]

    def metric_names(self) -> set[str]:
        with urllib.request.urlopen(f"{self.url}/api/v1/label/__name__/values", timeout=10) as response:
            return set(json.loads(response.read())["data"])


@contextmanager
def running_prometheus(
    tmp_path: Path, targets: list[str], target_labels: dict[str, str] | None = None
) -> Iterator[Prometheus]:
    """Prometheus on a free loopback port scraping ``targets`` every second (with ``target_labels``)."""
    bin_dir = prometheus_bin_dir()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + "scrape_configs:\n  - job_name: tokentrail\n    static_configs:\n"
        + f"      - targets: {json.dumps(targets)}\n"
        + f"        labels: {json.dumps(target_labels or {})}\n"
    )
    process = subprocess.Popen(
        [
            str(bin_dir / "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        prometheus = Prometheus(f"http://127.0.0.1:{port}")
        # /-/ready answers 503 while the TSDB loads (an HTTPError, an OSError: wait_for retries it),
        # where a query would fail the test on a loaded machine.

        def ready() -> bool:
            with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=5) as response:
                return response.status == 200

        wait_for(ready, "Prometheus to start")
        yield prometheus
    finally:
        process.terminate()
        process.wait(timeout=10)


# The demo's workloads (examples/multi_agent.py and examples/openai_pipeline.py) plus one call to a
# model without a price and one failing call, exposed on a Prometheus scrape endpoint. Prints
# "PORT <n>" when ready, then runs one more round per line read on stdin, answering "DONE".
WORKLOAD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {examples!r})
    import openai
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import start_http_server
    import tokentrail
    from tokentrail.testing import FakeLLMServer
    import multi_agent
    import openai_pipeline

    http, _ = start_http_server(0, addr="127.0.0.1")
    resource = Resource.create({{"service.name": "tokentrail-demo"}})
    # Two fake servers: the pipeline's reaches OpenRouter as localhost, while the multi-agent demo
    # reaches its Anthropic face as localhost (which must stay Anthropic).
    fake = FakeLLMServer().__enter__()
    agents = FakeLLMServer().__enter__()
    port = fake.url.rsplit(":", 1)[1]
    agents_port = agents.url.rsplit(":", 1)[1]
    tokentrail.instrument(
        tracer_provider=TracerProvider(resource=resource),
        meter_provider=MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()]),
        provider_hosts={{
            f"127.0.0.1:{{port}}": "openai",
            f"localhost:{{port}}": "openrouter",
            f"127.0.0.1:{{agents_port}}": "openai",
        }},
        ledger=False,
        setup_otel=False,
    )
    client = openai.OpenAI(base_url=fake.base_url, api_key="sk-fake", max_retries=0)

    def round_():
        multi_agent.run(agents, "CSV export")
        openai_pipeline.run_pipeline(fake)
        with tokentrail.attribute(agent="Experimenter", task="tryout"):
            client.chat.completions.create(
                model="acme-private-finetune-7", messages=[{{"role": "user", "content": "hi"}}]
            )
            fake.fail_next(status=500)
            try:
                messages = [{{"role": "user", "content": "x"}}]
                client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            except openai.APIError:
                pass

    round_()
    print("PORT", http.server_port, flush=True)
    for line in sys.stdin:
        round_()
        print("DONE", flush=True)
    """
)


@contextmanager
def running_workload() -> Iterator[tuple[subprocess.Popen, int]]:
    """The workload in a subprocess; yields it and its metrics port."""
    app = subprocess.Popen(
        [sys.executable, "-c", WORKLOAD.format(examples=str(ROOT / "examples"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OTEL_SERVICE_NAME": "tokentrail-demo", "TOKENTRAIL_LEDGER": "off"},
    )
    try:
        line = app.stdout.readline()
        if not line.startswith("PORT "):
            app.kill()
            raise AssertionError(f"the workload did not start: {app.stderr.read()[-3000:]}")
        yield app, int(line.split()[1])
    finally:
        app.stdin.close()
        app.terminate()
        app.wait(timeout=10)


def next_round(app: subprocess.Popen) -> None:
    app.stdin.write("go\n")
    app.stdin.flush()
    assert app.stdout.readline().strip() == "DONE"
