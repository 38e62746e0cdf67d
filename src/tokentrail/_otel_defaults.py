"""An OpenTelemetry SDK set-up, for applications that ask tokentrail for one.

``tokentrail.instrument()`` never installs global providers on its own: it uses the application's
(the API's proxy providers bind to the application's SDK whenever it is configured, before or after
``instrument()``), or those ``opentelemetry-instrument`` sets up. ``instrument(setup_otel=True)``
asks for this set-up instead; it only fills what is still the API's no-op proxy. Exporters follow the
standard variables and are loaded, as the SDK's own configurator loads them, from the SDK's
entry-point groups (``opentelemetry_traces_exporter``, ``opentelemetry_metrics_exporter``,
``opentelemetry_logs_exporter``): ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` /
``OTEL_LOGS_EXPORTER`` name them (``otlp``, ``console``, ``prometheus``, ``zipkin``, ``tokentrail``,
...; default ``otlp`` when an OTLP endpoint is configured, else none); ``otlp`` is the HTTP exporter
unless ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or the per-signal variable) says ``grpc``
(``pip install 'tokentrail[grpc]'``). A name no installed package provides is named in one warning.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import metrics, trace

from ._safety import log
from .config import ConfigError

__all__ = ["Configurator", "ensure_providers", "exporter_classes"]

_PROTOCOLS = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


def _exporter_names(signal: str) -> list[str]:
    configured = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER")
    if configured is None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    return [name.strip().lower() for name in configured.split(",") if name.strip() not in ("", "none")]


def _protocol(signal: str) -> str:
    protocol = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in _PROTOCOLS:
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: tokentrail's set-up supports "
            "'http/protobuf' and 'grpc'"
        )
    return protocol


def exporter_classes(signal: str) -> list[type]:
    """The exporter (or metric reader) classes ``OTEL_<SIGNAL>_EXPORTER`` names, loaded from the SDK's
    entry points; each name that no installed package provides, or that fails to load, is warned about."""
    found = []
    group = f"opentelemetry_{signal}_exporter"
    for name in _exporter_names(signal):
        registered = _PROTOCOLS[_protocol(signal)] if name == "otlp" else name
        candidates = entry_points(group=group, name=registered)
        if not candidates:
            hint = " (pip install 'tokentrail[grpc]')" if registered == "otlp_proto_grpc" else ""
            log.warning(
                "tokentrail: OTEL_%s_EXPORTER names %r, but no installed package provides it (entry point "
                "%s:%s)%s; that exporter is not set up",
                signal.upper(),
                name,
                group,
                registered,
                hint,
            )
            continue
        try:
            found.append(next(iter(candidates)).load())
        except Exception as exc:
            log.warning("tokentrail: cannot load the %r %s exporter: %s", name, signal, exc)
    return found


def ensure_providers() -> None:
    """Install SDK tracer, meter and logger providers where the application has none."""
    from opentelemetry._logs import NoOpLoggerProvider, get_logger_provider, set_logger_provider
    from opentelemetry._logs._internal import ProxyLoggerProvider
    from opentelemetry.metrics._internal import _ProxyMeterProvider
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create()
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider = TracerProvider(resource=resource)
        for exporter in exporter_classes("traces"):
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter()))
        trace.set_tracer_provider(tracer_provider)

    if isinstance(metrics.get_meter_provider(), _ProxyMeterProvider):
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

        readers: list[Any] = []
        for exporter in exporter_classes("metrics"):
            # Some packages register a reader (prometheus), most an exporter to read periodically.
            is_reader = isinstance(exporter, type) and issubclass(exporter, MetricReader)
            readers.append(exporter() if is_reader else PeriodicExportingMetricReader(exporter()))
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))

    if isinstance(get_logger_provider(), ProxyLoggerProvider | NoOpLoggerProvider):
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        logger_provider = LoggerProvider(resource=resource)
        for exporter in exporter_classes("logs"):
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter()))
        set_logger_provider(logger_provider)


class Configurator:
    """The ``opentelemetry_configurator`` entry point ``tokentrail``: ``opentelemetry-instrument``
    sets up the SDK through it when no other configurator (``opentelemetry-distro``) is installed,
    or when ``OTEL_PYTHON_CONFIGURATOR=tokentrail`` chooses it."""

    def configure(self, **kwargs: object) -> None:
        ensure_providers()
