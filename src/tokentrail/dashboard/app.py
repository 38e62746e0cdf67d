"""The app ``tokentrail serve`` runs: the ledger API (or the same API over ClickHouse) with the
dashboard on top."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from ..ledger.api import create_app, source_reader
from ..ledger.source import CallSource
from .routes import add_dashboard

__all__ = ["ENV_TRACE_URL", "check_trace_url", "create_dashboard_app"]

ENV_TRACE_URL = "TOKENTRAIL_TRACE_URL"
DEFAULT_REFRESH_S = 5.0


def create_dashboard_app(
    path: str | Path,
    budgets: str | Path | None = None,
    *,
    source: CallSource | None = None,
    trace_url: str | None = None,
    refresh_s: float = DEFAULT_REFRESH_S,
) -> FastAPI:
    """The read-only API over the ledger at ``path`` (or over ``source``, a fleet's ClickHouse) and
    the dashboard at ``/``.

    ``trace_url`` turns a trace id into a link to the user's trace UI (``{trace_id}`` is replaced;
    default ``TOKENTRAIL_TRACE_URL``, else Jaeger's ``http://localhost:16686/trace/{trace_id}``)."""
    app = create_app(path, budgets, source=source)
    ledger = Path(path).expanduser()
    add_dashboard(
        app,
        source_reader(ledger, source),
        budgets_file=budgets or os.environ.get("TOKENTRAIL_BUDGETS"),
        trace_url=trace_url or os.environ.get(ENV_TRACE_URL) or None,
        refresh_s=refresh_s,
    )
    return app


def check_trace_url(template: str | None) -> str | None:
    """``template`` if it can make a trace link (an http(s) URL holding ``{trace_id}``); raises
    ValueError saying what to fix."""
    if template is None:
        return None
    if "{trace_id}" not in template or not template.startswith(("http://", "https://")):
        raise ValueError(
            f"trace URL {template!r}: use an http(s) URL with {{trace_id}} in it, "
            "e.g. http://localhost:16686/trace/{trace_id} (Jaeger)"
        )
    return template
