"""Structured call logs: one JSON record per call through the ``tokentrail.calls`` logger.

For teams that ship logs rather than traces. Off by default (``TOKENTRAIL_LOG_CALLS=1`` or
``instrument(log_calls=True)``). The record's message is a JSON object with the same fields as a
ledger row (labels as an object); the same mapping is on the record as ``tokentrail_call``, and
the trace and span ids as ``otelTraceID`` / ``otelSpanID`` (the names OpenTelemetry's logging
integration uses), so a JSON formatter or a log pipeline can correlate the call with its trace.

The sink only queues; a background thread formats and logs, so a slow log handler never delays
the application's call.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .. import _safety
from .._batcher import Batcher
from ..records import CallRecord
from ._rows import row_dict, row_from_record

__all__ = ["CALL_LOGGER", "CallLogSink"]

CALL_LOGGER = "tokentrail.calls"
log = logging.getLogger(CALL_LOGGER)


class CallLogSink:
    """A sink (``CallRecord -> None``) logging each call as one JSON record."""

    def __init__(self, *, service: str = "python", flush_interval: float = 0.2, queue_size: int = 10_000):
        self.service = service
        self._batcher = Batcher(
            "tokentrail-call-log",
            self._log,
            on_drop=self._drop,
            queue_size=queue_size,
            flush_interval=flush_interval,
        )

    def __call__(self, record: CallRecord) -> None:
        if log.isEnabledFor(logging.INFO):
            self._batcher.submit(record)

    def flush(self) -> None:
        self._batcher.flush()

    def close(self) -> None:
        self._batcher.close()

    def _log(self, batch: list[Any]) -> None:
        for record in batch:
            fields = row_dict(row_from_record(record, self.service))
            log.info(
                json.dumps(fields, ensure_ascii=False, separators=(",", ":")),
                extra={
                    "tokentrail_call": fields,
                    "otelTraceID": record.trace_id or "0" * 32,
                    "otelSpanID": record.span_id or "0" * 16,
                },
            )

    @staticmethod
    def _drop(count: int, reason: str) -> None:
        _safety.warn_once(
            ("call-log", reason),
            "tokentrail: call log records dropped (%s): the tokentrail.calls handlers cannot keep up",
            reason,
        )
