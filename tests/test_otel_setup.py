"""``tokentrail.instrument(setup_otel=True)`` in an application that configured no OpenTelemetry SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

APP = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import tokentrail
    tokentrail.instrument(setup_otel=True)  # asked for: tokentrail never sets up an SDK on its own
    from openai_wire import FakeOpenAI
    messages = [{{"role": "user", "content": "hi"}}]
    FakeOpenAI().client().chat.completions.create(model="gpt-4o-mini", messages=messages)
    """
)


class _Collector(BaseHTTPRequestHandler):
    received: dict[str, list[bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_instrument_sets_up_otlp_export_from_the_standard_variables(tmp_path: Path):
    received: dict[str, list[bytes]] = {}
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = tmp_path / "app.py"
        app.write_text(APP.format(tests=str(Path(__file__).parent)))
        env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")} | {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            "OTEL_SERVICE_NAME": "otlp-test",
        }
        done = subprocess.run(
            [sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
        server.server_close()
    traces = ExportTraceServiceRequest.FromString(received["/v1/traces"][0])
    (span,) = [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
    attributes = {kv.key: kv.value for kv in span.attributes}
    assert span.name == "chat gpt-4o-mini"
    assert attributes["gen_ai.usage.input_tokens"].int_value == 1200
    assert attributes["gen_ai.usage.cost.amount"].double_value > 0
    resource = {kv.key: kv.value.string_value for kv in traces.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "otlp-test"
    metrics = ExportMetricsServiceRequest.FromString(received["/v1/metrics"][-1])
    names = {m.name for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.cost",
        "gen_ai.client.operation.duration",
    } <= names
