"""The local ledger: every LLM call kept in a SQLite file, answerable without any infrastructure.

``tokentrail.instrument()`` writes every call to ``$XDG_DATA_HOME/tokentrail/ledger.sqlite``
(``~/.local/share/tokentrail/ledger.sqlite``) unless told otherwise: ``TOKENTRAIL_LEDGER=/path``
or ``instrument(ledger="/path")`` moves it, ``off`` / ``ledger=False`` disables it. The
``tokentrail report | trend | export | serve`` commands read it.

* :mod:`._schema`: tables, versions, migrations; :mod:`.spend`: spend for budgets;
  :mod:`.writer`: the background writer (the sink);
  :mod:`.exporter`: the same rows from finished spans (``OTEL_TRACES_EXPORTER=tokentrail``);
  :mod:`.query`: reports; :mod:`.prometheus`: the same reports from Prometheus;
  :mod:`.logsink`: one JSON log record per call; :mod:`.api`: ``tokentrail serve``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from opentelemetry import trace

from .. import _fork
from ..lifecycle import remove_sink
from ._rows import service_name
from ._schema import SCHEMA_VERSION, LedgerError, LedgerVersionError, open_ledger
from .logsink import CallLogSink
from .spend import spend
from .writer import LedgerWriter

__all__ = [
    "SCHEMA_VERSION",
    "LedgerError",
    "LedgerVersionError",
    "LedgerWriter",
    "active_writer",
    "exporter_active",
    "flush",
    "open_ledger",
    "spend",
]

_lock = threading.RLock()
_fork.renew_locks(sys.modules[__name__], "_lock")
_writer: LedgerWriter | None = None
_call_log: Any = None
_live_exporters = 0


def active_writer() -> LedgerWriter | None:
    """The writer ``instrument()`` installed, if the ledger is on in this process."""
    return _writer


def flush() -> None:
    """Write every call queued so far (the writer does this by itself every half second)."""
    writer = _writer
    if writer is not None:
        writer.flush()
    call_log = _call_log
    if call_log is not None:
        call_log.flush()


def exporter_active() -> bool:
    """True while a :class:`~tokentrail.ledger.exporter.LedgerSpanExporter` is alive: the ledger
    is then written from spans, and ``instrument()`` adds no sink of its own."""
    return _live_exporters > 0


def sinks_for(settings: Any, *, tracer_provider: Any = None, meter_provider: Any = None) -> list[Any]:
    """The sinks ``instrument()`` adds for these settings: the ledger writer (unless the ledger is
    off or written by the span exporter) and the call log (if on). One writer per process: a
    repeated ``instrument()`` keeps the writer of the same path."""
    global _writer, _call_log
    service = service_name(tracer_provider if tracer_provider is not None else trace.get_tracer_provider())
    sinks: list[Any] = []
    with _lock:
        path = settings.ledger if not exporter_active() else None
        if _writer is not None and (path is None or _writer.path != path):
            _writer.close()
            _writer = None
        if path is not None:
            if _writer is None:
                _writer = LedgerWriter(path, service=service, meter_provider=meter_provider)
            _writer.service = service
            sinks.append(_writer)
        if settings.log_calls:
            if _call_log is None:
                _call_log = CallLogSink(service=service)
            _call_log.service = service
            sinks.append(_call_log)
        elif _call_log is not None:
            _call_log.close()
            _call_log = None
    return sinks


def close() -> None:
    """Flush and close the ledger writer and the call log (``tokentrail.uninstrument()``)."""
    global _writer, _call_log
    with _lock:
        writer, _writer = _writer, None
        call_log, _call_log = _call_log, None
    if writer is not None:
        writer.close()
    if call_log is not None:
        call_log.close()


def _exporter_started() -> None:
    """A span exporter now writes the ledger: stop the sink that an earlier instrument() added."""
    global _live_exporters, _writer
    with _lock:
        _live_exporters += 1
        writer, _writer = _writer, None
    if writer is None:
        return
    remove_sink(writer)
    writer.close()


def _exporter_stopped() -> None:
    global _live_exporters
    with _lock:
        _live_exporters -= 1
