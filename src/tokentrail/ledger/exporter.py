"""The ledger as an OpenTelemetry span exporter, selectable by name: ``OTEL_TRACES_EXPORTER=tokentrail``.

Registered under the ``opentelemetry_traces_exporter`` entry point ``tokentrail``, so the SDK's
configurator (``opentelemetry-instrument`` with a distro) builds it next to ``otlp``:
``OTEL_TRACES_EXPORTER=otlp,tokentrail``. tokentrail's own default set-up (no distro) honours
the same name. It writes one ledger row per finished tokentrail call span (CLIENT spans of the
``tokentrail`` tracer; roll-up spans and other libraries' spans are skipped) to the ledger that
``TOKENTRAIL_LEDGER`` names (the per-user default when unset; nothing with ``off``).

While such an exporter is alive, ``tokentrail.instrument()`` does not add its own ledger sink,
so each call is written once. Unlike the sink, the exporter sees only sampled spans.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .. import _safety
from ..config import ENV_LEDGER, ENV_PRICES, ledger_location
from ..pricing import Pricer, load_overrides
from . import _exporter_started, _exporter_stopped
from ._rows import is_call_span, row_from_span
from .writer import LedgerWriter

__all__ = ["LedgerSpanExporter"]


class LedgerSpanExporter(SpanExporter):
    """Writes tokentrail's call spans to the local ledger."""

    def __init__(self, path: str | None = None, **writer_options: Any) -> None:
        self._writer = None
        self._shutdown = False
        location = ledger_location(path) if path is not None else ledger_location(_env_ledger())
        if location is not None:
            self._writer = LedgerWriter(location, **writer_options)
        self._pricer = Pricer(_overrides())
        # An instrument() that ran before this exporter existed added a sink: one row per call.
        _exporter_started()

    @property
    def writer(self) -> Any:
        return self._writer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        writer = self._writer
        if writer is None or self._shutdown:
            return SpanExportResult.SUCCESS
        for span in spans:
            try:
                if is_call_span(span):
                    writer.submit_row(row_from_span(span, self._pricer))
            except Exception as exc:
                _safety.internal_error("ledger.exporter", exc)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if self._writer is not None:
            self._writer.flush()
        return True

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        _exporter_stopped()
        if self._writer is not None:
            self._writer.close()


def _env_ledger() -> str | None:
    return os.environ.get(ENV_LEDGER)


def _overrides() -> list[Any]:
    source = os.environ.get(ENV_PRICES)
    if not source:
        return []
    try:
        return load_overrides(source)
    except Exception as exc:  # instrument() reports a bad file; here it only costs the rates
        _safety.internal_error("ledger.exporter.prices", exc)
        return []
