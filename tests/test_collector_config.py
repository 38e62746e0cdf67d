"""What ``collector-config/`` ships: the collector configuration, the Prometheus config and alert rules,
the compose file; and OTLP end to end through a real collector hop.

No OpenTelemetry Collector binary runs here (none is available on these machines in any form): the
collector YAML is validated structurally. It parses; every ``${env:...}`` placeholder has a default;
with the defaults and with every documented variant, each receiver, processor, exporter, connector
and extension used by a pipeline is defined and exists in the pinned contrib distribution (list
below); pipelines are well-formed; the spanmetrics connector sees every span before any sampling;
and the tail-sampling policies are float-safe: ``numeric_attribute`` (integers only) is used only on
attributes that tokentrail really emits as integers, never on the float cost.

Prometheus's own tools do run: ``promtool check config``, ``check rules`` and ``test rules`` (every
alert has a firing and a quiet case). The collector hop is ``rotel`` (a Rust OTLP collector, PyPI):
SDK -> rotel on loopback -> ``oteltap`` receiver in the test.
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import os
import re
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

import tokentrail
from prometheus_support import free_port, prometheus_bin_dir, wait_for
from promql_support import SCOPE, SCOPE_LABEL, rule_expressions, selectors, tokentrail_series_names
from tokentrail import semconv as sc
from tokentrail.testing import FakeLLMServer

ROOT = Path(__file__).parent.parent
CONFIG_DIR = ROOT / "collector-config"
OTELCOL = CONFIG_DIR / "otelcol.yaml"

# The pinned distribution, and the components of otelcol-contrib 0.144.0 this project relies on or
# documents (names as in the distribution's manifest; otlp_grpc/otlp_http are the 0.144 names of
# the otlp/otlphttp exporters, which stay only as deprecated aliases: DEPRECATED below).
CONTRIB_VERSION = "0.144.0"
CONTRIB_COMPONENTS = {
    "receivers": {"otlp", "prometheus", "hostmetrics", "filelog"},
    "processors": {
        "memory_limiter",
        "batch",
        "tail_sampling",
        "transform",
        "filter",
        "attributes",
        "resource",
        "probabilistic_sampler",
        "redaction",
    },
    "exporters": {
        "otlp_grpc",
        "otlp_http",
        "debug",
        "prometheus",
        "prometheusremotewrite",
        "clickhouse",
    },
    "connectors": {"spanmetrics", "forward", "servicegraph", "count"},
    "extensions": {"health_check", "pprof", "zpages", "basicauth", "bearertokenauth", "headers_setter"},
}
# Connector type -> (pipeline type it exports from, pipeline type it receives into).
CONNECTOR_SIGNALS = {
    "spanmetrics": ("traces", "metrics"),
    "forward": (None, None),
    "servicegraph": ("traces", "metrics"),
}
SAMPLERS = {"tail_sampling", "probabilistic_sampler"}
# Component names the pinned collector accepts only as deprecated aliases (it logs a warning).
DEPRECATED = {"exporters": {"otlp": "otlp_grpc", "otlphttp": "otlp_http"}}

# The environment of every documented variant (otelcol.yaml's header).
VARIANTS = {
    "defaults (Jaeger + Prometheus scrape)": {},
    "Tempo over gRPC + Mimir remote write": {
        "TRACES_OTLP_ENDPOINT": "tempo:4317",
        "TOKENTRAIL_METRICS_EXPORTER": "prometheusremotewrite",
        "PROMETHEUS_REMOTE_WRITE_URL": "http://mimir:9009/api/v1/push",
        "PROMETHEUS_REMOTE_WRITE_AUTHORIZATION": "Basic mimir",
    },
    "Honeycomb": {
        "TOKENTRAIL_TRACES_EXPORTER": "otlp_grpc/honeycomb",
        "HONEYCOMB_API_KEY": "hc-key",
        "TOKENTRAIL_METRICS_EXPORTER": "otlp_grpc/honeycomb",
    },
    "Grafana Cloud over OTLP/HTTP": {
        "TOKENTRAIL_TRACES_EXPORTER": "otlp_http/traces",
        "TRACES_OTLP_HTTP_ENDPOINT": "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp",
        "OTLP_AUTHORIZATION": "Basic abc",
        "TOKENTRAIL_METRICS_EXPORTER": "otlp_http/metrics",
        "METRICS_OTLP_HTTP_ENDPOINT": "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp",
        "TOKENTRAIL_DROP_CONTENT": "false",
    },
    "Datadog over OTLP/HTTP": {
        "TOKENTRAIL_TRACES_EXPORTER": "otlp_http/datadog",
        "TOKENTRAIL_METRICS_EXPORTER": "otlp_http/datadog",
        "DD_API_KEY": "dd-key",
    },
}
# The credentials of the documented backends, each its vendor's.
SECRETS = {
    "OTLP_AUTHORIZATION": "otlp",
    "PROMETHEUS_REMOTE_WRITE_AUTHORIZATION": "remote-write",
    "HONEYCOMB_API_KEY": "honeycomb",
    "DD_API_KEY": "datadog",
}

PLACEHOLDER = re.compile(r"\$\{env:([A-Z0-9_]+)(?::-([^}]*))?\}")


def expand(node, env: dict[str, str]):
    """The collector's env expansion: a scalar that is only a placeholder is typed as YAML."""
    if isinstance(node, dict):
        return {key: expand(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [expand(value, env) for value in node]
    if isinstance(node, str) and "${" in node:
        whole = PLACEHOLDER.fullmatch(node)
        text = PLACEHOLDER.sub(lambda m: env.get(m.group(1), m.group(2) or ""), node)
        return yaml.safe_load(text) if whole and text else text
    return node


def raw() -> dict:
    return yaml.safe_load(OTELCOL.read_text())


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


# --- the collector configuration --------------------------------------------------------------------------


def test_collector_config_pins_the_contrib_distribution():
    text = OTELCOL.read_text()
    assert f"opentelemetry-collector-contrib, pinned to v{CONTRIB_VERSION}" in text
    compose = yaml.safe_load((CONFIG_DIR / "docker-compose.yml").read_text())
    assert (
        compose["services"]["otel-collector"]["image"]
        == f"otel/opentelemetry-collector-contrib:{CONTRIB_VERSION}"
    )


def test_every_placeholder_is_an_env_variable_with_a_default():
    text = OTELCOL.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    found = re.findall(r"\$\{[^}]*\}", body)
    assert found
    for placeholder in found:
        match = PLACEHOLDER.fullmatch(placeholder)
        assert match and match.group(2) is not None, f"{placeholder}: use ${{env:NAME:-default}}"
        assert match.group(1) in text.split("extensions:")[0], (
            f"{match.group(1)} is not documented in the header"
        )
    # Every variable the compose file passes is one the config reads, and vice versa.
    compose = yaml.safe_load((CONFIG_DIR / "docker-compose.yml").read_text())
    passed = set(compose["services"]["otel-collector"]["environment"])
    read = {PLACEHOLDER.fullmatch(p).group(1) for p in found}
    assert passed <= read and read - passed <= {"MEMORY_LIMIT_MIB", "MEMORY_SPIKE_LIMIT_MIB"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_pipelines_are_well_formed(variant):
    check_pipelines(expand(raw(), VARIANTS[variant]))


def check_pipelines(config: dict) -> None:
    service = config["service"]
    for extension in service["extensions"]:
        assert (
            extension in config["extensions"]
            and component_type(extension) in CONTRIB_COMPONENTS["extensions"]
        )
    used: dict[str, set[str]] = {kind: set() for kind in CONTRIB_COMPONENTS}
    connector_in: dict[str, set[str]] = {}
    connector_out: dict[str, set[str]] = {}
    for name, pipeline in service["pipelines"].items():
        signal = component_type(name)
        assert signal in ("traces", "metrics", "logs"), name
        assert set(pipeline) <= {"receivers", "processors", "exporters"}, name
        assert pipeline.get("receivers") and pipeline.get("exporters"), (
            f"{name}: needs receivers and exporters"
        )
        for role in ("receivers", "processors", "exporters"):
            ids = pipeline.get(role, [])
            assert len(ids) == len(set(ids)), f"{name}: duplicate {role}"
            for component in ids:
                kind = role
                if role != "processors" and component in config.get("connectors", {}):
                    kind = "connectors"
                    (connector_out if role == "exporters" else connector_in).setdefault(component, set()).add(
                        signal
                    )
                assert component in config.get(kind, {}), f"{name}: {component} is not defined under {kind}"
                assert component_type(component) in CONTRIB_COMPONENTS[kind], (
                    f"{component}: no such {kind[:-1]} in otelcol-contrib {CONTRIB_VERSION}"
                )
                used[kind].add(component)
        processors = pipeline.get("processors", [])
        if processors:
            assert processors[0] == "memory_limiter", f"{name}: memory_limiter goes first"
            if "batch" in processors:
                assert processors[-1] == "batch", f"{name}: batch goes last"
    # Connectors join pipelines of the right signals.
    for connector in used["connectors"]:
        assert connector in connector_in and connector in connector_out, (
            f"{connector} must join two pipelines"
        )
        exports_from, receives_into = CONNECTOR_SIGNALS[component_type(connector)]
        if exports_from:
            assert connector_out[connector] == {exports_from} and connector_in[connector] == {receives_into}
    # Receivers and health_check listen on every interface inside a container.
    for protocol in config["receivers"]["otlp"]["protocols"].values():
        assert protocol["endpoint"].startswith("0.0.0.0:")
    assert config["extensions"]["health_check"]["endpoint"].startswith("0.0.0.0:")


def test_every_defined_component_is_used_by_some_variant():
    defined = {kind: set(raw().get(kind, {})) for kind in CONTRIB_COMPONENTS}
    used: dict[str, set[str]] = {kind: set() for kind in CONTRIB_COMPONENTS}
    for env in VARIANTS.values():
        config = expand(raw(), env)
        used["extensions"] |= set(config["service"]["extensions"])
        for pipeline in config["service"]["pipelines"].values():
            for role, ids in pipeline.items():
                for component in ids:
                    kind = "connectors" if component in config.get("connectors", {}) else role
                    used[kind].add(component)
    assert used == defined


def test_spanmetrics_sees_every_span_before_sampling():
    config = expand(raw(), {})
    pipelines = config["service"]["pipelines"]
    feeding = [p for p in pipelines.values() if "spanmetrics" in p["exporters"]]
    assert len(feeding) == 1
    assert not SAMPLERS & {component_type(p) for p in feeding[0].get("processors", [])}
    # It receives from every receiver that feeds a sampled traces pipeline.
    sampled = [
        p for p in pipelines.values() if SAMPLERS & {component_type(x) for x in p.get("processors", [])}
    ]
    assert sampled
    for pipeline in sampled:
        assert set(pipeline["receivers"]) <= set(feeding[0]["receivers"])
    assert "spanmetrics" in pipelines["metrics"]["receivers"]
    dimensions = {d["name"] for d in config["connectors"]["spanmetrics"]["dimensions"]}
    assert {sc.PROVIDER_NAME, sc.REQUEST_MODEL, sc.OPERATION_NAME} <= dimensions


def _policies(policies: list[dict]):
    for policy in policies:
        yield policy
        for nested in ("and", "composite"):
            if nested in policy:
                yield from _policies(policy[nested].get(f"{nested}_sub_policy", []))


def test_tail_sampling_keeps_errors_expensive_slow_and_some_of_the_rest(recorded):
    """Float-safety is checked against what tokentrail really emits: a real call's span."""
    import openai

    with FakeLLMServer() as server:
        port = server.url.rsplit(":", 1)[1]
        tokentrail.instrument(
            tracer_provider=recorded.tracer_provider,
            meter_provider=recorded.meter_provider,
            provider_hosts={f"127.0.0.1:{port}": "openai"},
            setup_otel=False,
        )
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-fake")
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    attributes = dict(recorded.span().attributes)
    assert isinstance(attributes[sc.COST_AMOUNT], float)

    config = expand(raw(), {})
    policies = list(_policies(config["processors"]["tail_sampling"]["policies"]))
    types = {p["type"] for p in policies}
    assert {"status_code", "latency", "probabilistic"} <= types
    assert any(p["type"] == "status_code" and p["status_code"]["status_codes"] == ["ERROR"] for p in policies)
    assert (
        0
        < next(p for p in policies if p["type"] == "probabilistic")["probabilistic"]["sampling_percentage"]
        <= 10
    )
    expensive = []
    for policy in policies:
        if policy["type"] == "numeric_attribute":
            key = policy["numeric_attribute"]["key"]
            # numeric_attribute compares integers: a float attribute never matches it.
            value = attributes.get(key)
            assert isinstance(value, int) and not isinstance(value, bool), (
                f"numeric_attribute on {key}, which tokentrail emits as {type(value).__name__}"
            )
            assert isinstance(policy["numeric_attribute"]["min_value"], int)
            expensive.append(key)
        if policy["type"] == "ottl_condition":
            for condition in policy["ottl_condition"].get("span", []):
                match = re.fullmatch(r'attributes\["([^"]+)"\] >=? ([0-9.]+)', condition)
                assert match, condition
                assert match.group(1) in attributes
                expensive.append(match.group(1))
    assert sc.COST_USD_MICROS in expensive or sc.COST_AMOUNT in expensive
    # The $0.05 thresholds agree with each other.
    micros = next(p for p in policies if p["type"] == "numeric_attribute")["numeric_attribute"]["min_value"]
    assert micros == 50_000 and "0.05" in OTELCOL.read_text()


def test_content_is_deleted_for_teams_that_must_never_store_it():
    config = expand(raw(), {})
    transform = config["processors"]["transform/drop_content"]["trace_statements"]
    contexts = {group["context"] for group in transform}
    assert contexts == {"span", "spanevent"}
    for group in transform:
        deleted = set(re.findall(r'delete_key\(attributes, "([^"]+)"\)', " ".join(group["statements"])))
        assert deleted == {sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES, sc.SYSTEM_INSTRUCTIONS}
        assert group["conditions"] == ['"true" == "true"']
    (event_filter,) = config["processors"]["filter/drop_content_event"]["traces"]["spanevent"]
    assert f'name == "{sc.CONTENT_EVENT}"' in event_filter
    for name, pipeline in config["service"]["pipelines"].items():
        if name.startswith("traces"):
            assert "transform/drop_content" in pipeline["processors"]
            assert "filter/drop_content_event" in pipeline["processors"]
    off = expand(raw(), {"TOKENTRAIL_DROP_CONTENT": "false"})
    assert off["processors"]["transform/drop_content"]["trace_statements"][0]["conditions"] == [
        '"false" == "true"'
    ]


def test_metrics_leave_by_prometheus_scrape_or_remote_write():
    config = expand(raw(), {})
    prometheus = config["exporters"]["prometheus"]
    assert prometheus["endpoint"] == "0.0.0.0:8889"
    assert prometheus["resource_to_telemetry_conversion"]["enabled"] is True
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["prometheus"]
    remote = expand(raw(), {"TOKENTRAIL_METRICS_EXPORTER": "prometheusremotewrite"})
    assert remote["service"]["pipelines"]["metrics"]["exporters"] == ["prometheusremotewrite"]
    assert remote["exporters"]["prometheusremotewrite"]["endpoint"].endswith("/api/v1/write")
    assert config["exporters"]["otlp_grpc/traces"]["endpoint"] == "jaeger:4317"
    assert config["exporters"]["otlp_grpc/traces"]["tls"]["insecure"] is True


def test_each_exporter_sends_only_its_own_backends_credentials():
    """Every secret set at once, each to a distinct value: no exporter carries two vendors' keys."""
    sentinels = {name: f"secret-of-{name}" for name in SECRETS}
    config = expand(raw(), sentinels)
    carriers: dict[str, set[str]] = {name: set() for name in SECRETS}
    for exporter, settings in config["exporters"].items():
        headers = " ".join(str(value) for value in (settings.get("headers") or {}).values())
        found = {name for name, value in sentinels.items() if value in headers}
        assert len({SECRETS[name] for name in found}) <= 1, f"{exporter} sends {sorted(found)}"
        for name in found:
            carriers[name].add(exporter)
    assert all(carriers.values()), f"a documented credential reaches no exporter: {carriers}"
    # Each vendor's own exporter carries its key, and only that vendor's exporter does.
    assert carriers["HONEYCOMB_API_KEY"] == {"otlp_grpc/honeycomb"}
    assert carriers["DD_API_KEY"] == {"otlp_http/datadog"}
    assert carriers["PROMETHEUS_REMOTE_WRITE_AUTHORIZATION"] == {"prometheusremotewrite"}


def test_exporters_have_their_current_names():
    for kind, aliases in DEPRECATED.items():
        for variant, env in VARIANTS.items():
            config = expand(raw(), env)
            used = [component_type(c) for c in config[kind]]
            used += [
                component_type(c)
                for pipeline in config["service"]["pipelines"].values()
                for c in pipeline.get(kind, [])
            ]
            stale = sorted({c for c in used if c in aliases})
            assert not stale, f"{variant}: {stale} are deprecated, use {[aliases[c] for c in stale]}"
    compose = (CONFIG_DIR / "docker-compose.yml").read_text()
    assert not re.search(r"\botlp(http)?/", compose)


@pytest.mark.parametrize("variant", VARIANTS)
def test_metric_series_carry_no_per_process_labels(variant):
    """The exporters that copy resource attributes onto series get them after the per-process ones
    (service.instance.id first: the series' instance) are deleted."""
    config = expand(raw(), VARIANTS[variant])
    per_process = {"service.instance.id", "process.pid"}
    for name, pipeline in config["service"]["pipelines"].items():
        if not name.startswith("metrics"):
            continue
        deleted: set[str] = set()
        for processor in pipeline.get("processors", []):
            if component_type(processor) == "resource":
                actions = config["processors"][processor]["attributes"]
                deleted |= {a["key"] for a in actions if a["action"] == "delete"}
        assert per_process <= deleted, f"{name}: {sorted(per_process - deleted)} reach the series"
    copying = [
        e for e, settings in config["exporters"].items() if "resource_to_telemetry_conversion" in settings
    ]
    assert copying  # the prometheus exporters do copy resource attributes (service_name)


def test_compose_file_starts_the_stack():
    compose = yaml.safe_load((CONFIG_DIR / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"otel-collector", "jaeger", "prometheus", "grafana"}
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    for service in services.values():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), image
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (CONFIG_DIR / source).exists(), f"{image} mounts missing {source}"
    published = {port.split(":")[0] for service in services.values() for port in service.get("ports", [])}
    assert {"4317", "4318", "16686", "3000", "9090", "13133"} <= published
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]


# --- Prometheus: promtool ---------------------------------------------------------------------------------


def promtool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(prometheus_bin_dir() / "promtool"), *argv],
        cwd=CONFIG_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_promtool_check_config_and_rules():
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules_covers_every_alert():
    done = promtool("test", "rules", "alerts.test.yml")
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((CONFIG_DIR / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert len(alerts) >= 6
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load((CONFIG_DIR / "alerts.test.yml").read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts == firing == quiet


def test_every_rule_counts_only_tokentrail_s_own_series():
    """Beside another GenAI instrumentation (same gen_ai_* metric names, another scope), a rule
    without the scope matcher would count both: every selector of a tokentrail metric has it. The
    other selectors name this file's own recording rules or the collector's own metrics."""
    rules = yaml.safe_load((CONFIG_DIR / "alerts.yml").read_text())
    recorded = {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}
    scoped = 0
    for name, expr in rule_expressions(rules):
        for selector in selectors(expr):
            if selector.name in tokentrail_series_names():
                assert selector.matchers.get(SCOPE_LABEL) == ("=", SCOPE), f"{name}: {selector.name}"
                scoped += 1
            elif selector.name is not None:
                assert selector.name in recorded, f"{name}: {selector.name} is not a tokentrail series"
            else:
                operator, pattern = selector.matchers["__name__"]
                assert operator == "=~" and pattern.startswith("otelcol_"), f"{name}: {selector}"
    assert scoped >= 6
    # The unit tests feed tokentrail's series with its scope, and others' beside them (alerts.test.yml).
    tests = (CONFIG_DIR / "alerts.test.yml").read_text()
    assert f'{SCOPE_LABEL}="{SCOPE}"' in tests and re.search(rf'{SCOPE_LABEL}="(?!{SCOPE}")', tests)


# --- OTLP through a real collector hop ---------------------------------------------------------------------

ROTEL_APP = textwrap.dedent(
    """
    import openai
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    import tokentrail
    from tokentrail.testing import FakeLLMServer

    endpoint = {endpoint!r}
    resource = Resource.create({{"service.name": "rotel-hop"}})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint + "/v1/metrics"), 60000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    with FakeLLMServer() as server:
        port = server.url.rsplit(":", 1)[1]
        tokentrail.instrument(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            provider_hosts={{f"127.0.0.1:{{port}}": "openai"}},
            ledger=False,
            setup_otel=False,
        )
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-fake")
        with tokentrail.attribute(agent="Hop", task="forward"):
            client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
    tracer_provider.shutdown()
    meter_provider.shutdown()
    print("SENT", flush=True)
    """
)


class GunzipRelay:
    """rotel 0.0.1a15's agent gzips its OTLP/HTTP export whatever ``--otlp-exporter-compression``
    says, and oteltap 1.0.0 cannot decode gzip (it answers 400 "Failed to decode request body"):
    this relay, on loopback, only inflates each request body and passes it on unchanged otherwise."""

    def __init__(self, target: str) -> None:
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                    relay.inflated += 1
                request = urllib.request.Request(
                    target + self.path,
                    data=body,
                    headers={"content-type": self.headers.get("content-type", "application/x-protobuf")},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, reply = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, reply = error.code, error.read()
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.inflated = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rotel_binary() -> Path:
    try:
        import rotel
    except ImportError:
        pytest.skip("rotel is not installed (pip install rotel; it is in the test extra)")
    binary = Path(rotel.__file__).parent / "rotel-agent"
    if not binary.exists():
        pytest.skip(f"the rotel wheel has no agent binary at {binary} (no wheel for this platform?)")
    return binary


async def test_otlp_through_rotel_reaches_a_receiver(tmp_path):
    oteltap = pytest.importorskip("oteltap", reason="oteltap is not installed (it is in the test extra)")
    binary = rotel_binary()
    tap_port, grpc_port, http_port = free_port(), free_port(), free_port()
    settings = oteltap.OtelTapHttpProtobufReceiverSettings(http_port=tap_port)
    relay = GunzipRelay(f"http://127.0.0.1:{tap_port}")
    async with oteltap.OtelTapHttpProtobufReceiver(settings) as tap:
        rotel = subprocess.Popen(
            [
                str(binary),
                "start",
                f"--otlp-grpc-endpoint=127.0.0.1:{grpc_port}",
                f"--otlp-http-endpoint=127.0.0.1:{http_port}",
                "--exporter=otlp",
                f"--otlp-exporter-endpoint=http://127.0.0.1:{relay.port}",
                "--otlp-exporter-protocol=http",
                f"--pid-file={tmp_path / 'rotel.pid'}",
                f"--log-file={tmp_path / 'rotel.log'}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        span_wanted = metric_wanted = tokens_wanted = asyncio.get_running_loop().create_future()
        try:

            def listening() -> bool:
                import socket

                with socket.create_connection(("127.0.0.1", http_port), timeout=0.5):
                    return True

            await asyncio.to_thread(wait_for, listening, "rotel to listen", 15.0)
            # Awaiters exist before anything is sent: oteltap does not buffer.
            span_wanted = asyncio.ensure_future(
                tap.await_trace(lambda s: any(a.key == sc.COST_AMOUNT for a in s.attributes), timeout=20)
            )
            metric_wanted = asyncio.ensure_future(
                tap.await_metric(lambda m: m.name == "gen_ai.client.operation.cost", timeout=20)
            )
            tokens_wanted = asyncio.ensure_future(
                tap.await_metric(lambda m: m.name == "gen_ai.client.token.usage", timeout=20)
            )
            await asyncio.sleep(0.05)
            app = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", ROTEL_APP.format(endpoint=f"http://127.0.0.1:{http_port}")],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "TOKENTRAIL_LEDGER": "off"},
            )
            assert app.returncode == 0 and "SENT" in app.stdout, app.stderr[-3000:]
            span = await span_wanted
            cost_metric = await metric_wanted
            tokens_metric = await tokens_wanted
        finally:
            for pending in (span_wanted, metric_wanted, tokens_wanted):
                pending.cancel()
            rotel.terminate()
            try:
                rotel.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rotel.kill()
            relay.close()
    assert relay.inflated  # the data did go through rotel

    def value(any_value):
        return getattr(any_value, any_value.WhichOneof("value"))

    attributes = {a.key: value(a.value) for a in span.attributes}
    assert span.name == "chat gpt-4o"
    assert attributes[sc.COST_AMOUNT] > 0 and isinstance(attributes[sc.COST_AMOUNT], float)
    assert attributes[sc.COST_USD_MICROS] == round(attributes[sc.COST_AMOUNT] * 1_000_000)
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.agent.name"] == "Hop"
    (point,) = cost_metric.histogram.data_points
    assert point.count == 1 and point.sum == pytest.approx(attributes[sc.COST_AMOUNT])
    assert cost_metric.unit == "USD"
    types = {
        value(a.value): p.sum
        for p in tokens_metric.histogram.data_points
        for a in p.attributes
        if a.key == "gen_ai.token.type"
    }
    assert types == {
        "input": attributes["gen_ai.usage.input_tokens"],
        "output": attributes["gen_ai.usage.output_tokens"],
    }


# --- the ClickHouse profile (otelcol-clickhouse.yaml over otelcol.yaml) ----------------------------------

CLICKHOUSE_PROFILE = CONFIG_DIR / "otelcol-clickhouse.yaml"
CLICKHOUSE_COMPOSE = CONFIG_DIR / "docker-compose.clickhouse.yml"


def merged(base, overlay):
    """The collector's merge of several --config files: maps merge key by key, the rest is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {
            key: merged(base[key], overlay[key])
            if key in base and key in overlay
            else overlay.get(key, base.get(key))
            for key in {**base, **overlay}
        }
    return overlay


def test_clickhouse_profile_is_well_formed_on_top_of_every_variant():
    overlay = yaml.safe_load(CLICKHOUSE_PROFILE.read_text())
    for env in VARIANTS.values():
        config = expand(merged(raw(), overlay), env)
        check_pipelines(config)
        pipelines = config["service"]["pipelines"]
        assert set(expand(raw(), env)["service"]["pipelines"]) < set(pipelines)  # the others stay
        clickhouse = pipelines["traces/clickhouse"]
        assert clickhouse["exporters"] == ["clickhouse"]
        # Every call of every service: nothing sampled away; content dropped as elsewhere.
        assert not SAMPLERS & {component_type(p) for p in clickhouse["processors"]}
        assert {"transform/drop_content", "filter/drop_content_event", "filter/genai_spans"} <= set(
            clickhouse["processors"]
        )
        exporter = config["exporters"]["clickhouse"]
        assert exporter["traces_table_name"] == "otel_traces" and exporter["create_schema"] is True
        assert exporter["database"] == "default"  # what `tokentrail ... --source clickhouse` reads by default


def test_clickhouse_profile_keeps_genai_client_spans_and_tokentrails_own():
    (condition,) = yaml.safe_load(CLICKHOUSE_PROFILE.read_text())["processors"]["filter/genai_spans"][
        "traces"
    ]["span"]
    # A filter drops what its condition matches: the condition is "neither of the kept kinds".
    assert condition.startswith("not (")
    assert (
        f'attributes["{sc.OPERATION_NAME}"] != nil' in condition and "kind == SPAN_KIND_CLIENT" in condition
    )
    assert 'instrumentation_scope.name == "tokentrail"' in condition  # calls and roll-ups


def test_clickhouse_profile_placeholders_have_defaults_and_the_compose_file_passes_them():
    text = CLICKHOUSE_PROFILE.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    found = re.findall(r"\$\{[^}]*\}", body)
    assert found
    read = set()
    for placeholder in found:
        match = PLACEHOLDER.fullmatch(placeholder)
        assert match and match.group(2) is not None, f"{placeholder}: use ${{env:NAME:-default}}"
        assert match.group(1) in text.split("processors:")[0], f"{match.group(1)} is not documented"
        read.add(match.group(1))
    compose = yaml.safe_load(CLICKHOUSE_COMPOSE.read_text())
    collector = compose["services"]["otel-collector"]
    assert set(collector["environment"]) == read
    configs = [arg.split("=", 1)[1] for arg in collector["command"]]
    base = yaml.safe_load((CONFIG_DIR / "docker-compose.yml").read_text())["services"]["otel-collector"]
    mounted = {
        volume.split(":")[1]: volume.split(":")[0] for volume in [*base["volumes"], *collector["volumes"]]
    }
    assert [mounted[path] for path in configs] == ["./otelcol.yaml", "./otelcol-clickhouse.yaml"]
    clickhouse = compose["services"]["clickhouse"]
    image, tag = clickhouse["image"].split(":")
    assert image == "clickhouse/clickhouse-server" and tag != "latest"
    assert "clickhouse" in collector["depends_on"]
    grafana = compose["services"]["grafana"]
    assert grafana["environment"]["GF_INSTALL_PLUGINS"] == "grafana-clickhouse-datasource"
    for volume in grafana["volumes"]:
        assert (CONFIG_DIR / volume.split(":")[0]).is_file(), volume
    datasource = yaml.safe_load((CONFIG_DIR / "grafana" / "clickhouse" / "datasource.yml").read_text())
    assert datasource["datasources"][0]["type"] == "grafana-clickhouse-datasource"
    assert datasource["datasources"][0]["uid"] == "clickhouse"
