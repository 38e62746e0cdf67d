"""OpenTelemetry SDK providers for applications that configured none.

Only used when the global tracer or meter provider is still the API's no-op proxy: an
application (or ``opentelemetry-instrument`` with a distro) that set its own keeps it. Exporters
follow the standard variables: ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``
(``otlp``, ``console``, ``none``; default ``otlp`` when an OTLP endpoint is configured, else none),
``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the per-signal variants), ``OTEL_EXPORTER_OTLP_PROTOCOL``
(``http/protobuf`` by default, or ``grpc``), ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``.
Exporter modules are imported only when used: gRPC alone takes longer to import than all of
tokentrail.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

from opentelemetry import metrics, trace

from .config import ConfigError


def _exporter_names(signal: str) -> list[str]:
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    configured = os.environ.get(variable)
    if configured is None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [name.strip().lower() for name in configured.split(",") if name.strip()]
    # Names other exporters register are not ours to build; "tokentrail" (the ledger) is.
    ours = ("otlp", "console", "tokentrail") if signal == "traces" else ("otlp", "console")
    return [name for name in names if name in ours]


def _protocol(signal: str) -> str:
    protocol = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: tokentrail's default set-up supports "
            "'http/protobuf' and 'grpc'"
        )
    return protocol


def ensure_providers() -> None:
    """Install SDK tracer and meter providers if the application has none."""
    from opentelemetry.metrics._internal import _ProxyMeterProvider
    from opentelemetry.sdk.resources import Resource

    resource = None
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        resource = Resource.create()
        provider = TracerProvider(resource=resource)
        for name in _exporter_names("traces"):
            if name == "console":
                provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            elif name == "tokentrail":  # the ledger, through its own entry point (as the SDK loads it)
                (ledger_exporter,) = entry_points(group="opentelemetry_traces_exporter", name="tokentrail")
                provider.add_span_processor(BatchSpanProcessor(ledger_exporter.load()()))
            elif _protocol("traces") == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter as HTTPSpanExporter,
                )

                provider.add_span_processor(BatchSpanProcessor(HTTPSpanExporter()))
        trace.set_tracer_provider(provider)

    if isinstance(metrics.get_meter_provider(), _ProxyMeterProvider):
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

        readers = []
        for name in _exporter_names("metrics"):
            if name == "console":
                readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
            elif _protocol("metrics") == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

                readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
            else:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                    OTLPMetricExporter as HTTPMetricExporter,
                )

                readers.append(PeriodicExportingMetricReader(HTTPMetricExporter()))
        metrics.set_meter_provider(
            MeterProvider(resource=resource or Resource.create(), metric_readers=readers)
        )
