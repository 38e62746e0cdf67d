"""The dashboard's routes on the serve app: the page at ``/``, the fragments it refreshes and loads
after the first paint, its two static files, and the JSON behind them (``/v1/dashboard``,
``/v1/forecast``, ``/v1/whatif``, ``/v1/advice``), described in the OpenAPI document.

Every route reads the ledger read-only (or, ``serve --source clickhouse``, a fleet's ClickHouse),
like the rest of the API, and answers a filter it cannot use with a 422 naming the setting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from ..insights.advise import advise
from ..insights.forecast import projections
from ..insights.overview import DEFAULT_SINCE, DEFAULT_TRACE_URL, STACK_KEYS, View, call_details, overview
from ..insights.whatif import CandidateUnpriced, calls_with_usage, reprice
from ..ledger.api import INVALID, UNAVAILABLE
from ..ledger.source import CallSource
from ..pricing import Pricer
from ..timespec import PATTERN
from .fragments import render_advice, render_details, render_whatif
from .page import render_error, render_main, render_page

__all__ = ["add_dashboard", "parse_candidates"]

STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
# The page loads only its own files and talks only to this server.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": POLICY, "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

Since = Annotated[
    str,
    Query(
        description=f"from: 30m, 24h, 7d, a date or a date and time (default, or empty: {DEFAULT_SINCE})",
        json_schema_extra={"anyOf": [{"pattern": PATTERN.pattern}, {"maxLength": 0}]},
    ),
]
Until = Annotated[
    str,
    Query(
        description="up to (exclusive); same forms as since (default, or empty: now)",
        json_schema_extra={"anyOf": [{"pattern": PATTERN.pattern}, {"maxLength": 0}]},
    ),
]
Stack = Annotated[
    str,
    Query(
        # Empty is what the page's form sends for the default: it means model, and says so.
        description=f"spend stacked by: {', '.join(STACK_KEYS)} (empty: model)",
        json_schema_extra={"enum": ["", *STACK_KEYS]},
    ),
]
Candidates = Annotated[
    list[str],
    Query(description="a candidate model as PROVIDER:MODEL (e.g. openai:gpt-4o-mini); repeatable"),
]


def parse_candidates(texts: list[str]) -> list[tuple[str, str]]:
    """``provider:model`` items (also comma-separated) as pairs; raises ValueError naming the bad one."""
    found = []
    for text in texts:
        for item in text.split(","):
            provider, sep, model = item.strip().partition(":")
            if not item.strip():
                continue
            if not sep or not provider or not model:
                raise ValueError(f"candidate {item.strip()!r}: use PROVIDER:MODEL, e.g. openai:gpt-4o-mini")
            found.append((provider, model))
    return found


def add_dashboard(
    app: FastAPI,
    reading: Callable[[], AbstractContextManager[CallSource]],
    *,
    budgets_file: str | Path | None,
    trace_url: str | None,
    refresh_s: float,
) -> None:
    """Add the dashboard's routes to ``app``; ``reading`` gives the source one request reads (the
    ledger, opened read-only, or a fleet's ClickHouse)."""
    pricer = Pricer()
    template = trace_url or DEFAULT_TRACE_URL

    def view_of(
        since: str, until: str, provider: str, model: str, agent: str, pipeline: str, user: str, stack: str
    ) -> View:
        return View(since or DEFAULT_SINCE, until, provider, model, agent, pipeline, user, stack or "model")

    def figures(view: View) -> dict[str, Any]:
        with reading() as source:
            try:
                return overview(
                    source,
                    view,
                    budgets_file=budgets_file,
                    pricer=pricer,
                    alongside=reading,
                )
            except ValueError as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from None

    def details_of(view: View) -> dict[str, Any]:
        bounded(view)
        with reading() as source:
            try:
                return call_details(source, view, trace_url=template, pricer=pricer)
            except ValueError as exc:  # a bad view: the client's to fix, whichever check found it
                raise HTTPException(status_code=422, detail=str(exc)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(
        since: str = DEFAULT_SINCE,
        until: str = "",
        provider: str = "",
        model: str = "",
        agent: str = "",
        pipeline: str = "",
        user: str = "",
        stack: str = "model",
        whatif: str = "",
    ) -> HTMLResponse:
        view = view_of(since, until, provider, model, agent, pipeline, user, stack)
        try:
            data = figures(view)
        except HTTPException as exc:
            if exc.status_code != 422:
                raise
            return HTMLResponse(render_error(str(exc.detail), view), status_code=422, headers=HEADERS)
        return HTMLResponse(render_page(data, view, refresh_s=refresh_s, whatif=whatif), headers=HEADERS)

    @app.get("/dashboard/main", response_class=HTMLResponse, include_in_schema=False)
    def main(
        since: str = DEFAULT_SINCE,
        until: str = "",
        provider: str = "",
        model: str = "",
        agent: str = "",
        pipeline: str = "",
        user: str = "",
        stack: str = "model",
        whatif: str = "",
    ) -> HTMLResponse:
        view = view_of(since, until, provider, model, agent, pipeline, user, stack)
        return HTMLResponse(render_main(figures(view), view, whatif=whatif), headers=HEADERS)

    @app.get("/dashboard/details", response_class=HTMLResponse, include_in_schema=False)
    def details_fragment(
        since: str = DEFAULT_SINCE,
        until: str = "",
        provider: str = "",
        model: str = "",
        agent: str = "",
        pipeline: str = "",
        user: str = "",
        stack: str = "model",
        whatif: str = "",
    ) -> HTMLResponse:
        view = view_of(since, until, provider, model, agent, pipeline, user, stack)
        parts = render_details(details_of(view))
        body = "".join(f'<div data-slot="{slot}">{html}</div>' for slot, html in parts.items())
        return HTMLResponse(body, headers=HEADERS)

    @app.get("/dashboard/advice", response_class=HTMLResponse, include_in_schema=False)
    def advice_fragment(
        since: str = DEFAULT_SINCE,
        until: str = "",
        provider: str = "",
        model: str = "",
        agent: str = "",
        pipeline: str = "",
        user: str = "",
        stack: str = "model",
        whatif: str = "",
    ) -> HTMLResponse:
        view = view_of(since, until, provider, model, agent, pipeline, user, stack)
        return HTMLResponse(render_advice(advice_of(view)), headers=HEADERS)

    @app.get("/dashboard/whatif", response_class=HTMLResponse, include_in_schema=False)
    def whatif_fragment(
        since: str = DEFAULT_SINCE,
        until: str = "",
        provider: str = "",
        model: str = "",
        agent: str = "",
        pipeline: str = "",
        user: str = "",
        stack: str = "model",
        whatif: str = "",
    ) -> HTMLResponse:
        view = view_of(since, until, provider, model, agent, pipeline, user, stack)
        try:
            return HTMLResponse(render_whatif(whatif_of(view, [whatif])), headers=HEADERS)
        except HTTPException as exc:
            return HTMLResponse(render_whatif({"error": str(exc.detail)}), headers=HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(status_code=404, detail=f"no static file {name!r}")
        body = files("tokentrail.dashboard").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    def bounded(view: View) -> tuple[float, float]:
        try:
            return view.bounds(time.time())
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None

    def advice_of(view: View) -> list[dict[str, Any]]:
        since, until = bounded(view)
        with reading() as source:
            return [item.as_dict() for item in advise(source, view.filters(since, until), pricer)]

    def whatif_of(view: View, candidates: list[str]) -> dict[str, Any]:
        since, until = bounded(view)
        try:
            pairs = parse_candidates(candidates)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        if not pairs:
            raise HTTPException(status_code=422, detail="candidate: name at least one PROVIDER:MODEL")
        with reading() as source:
            try:
                found = reprice(calls_with_usage(source, view.filters(since, until)), pairs, pricer)
            except CandidateUnpriced as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from None
        return found.as_dict()

    answers = {**INVALID, **UNAVAILABLE}

    @app.get("/v1/dashboard", responses=answers, summary="Every dashboard panel's figures for one view")
    def dashboard_json(
        since: Since = DEFAULT_SINCE,
        until: Until = "",
        provider: str = "",
        model: str = "",
        agent: str = "",
        pipeline: str = "",
        user: str = "",
        stack: Stack = "model",
    ) -> dict[str, Any]:
        """What the page at ``/`` shows first: spend and tokens over time, the cache, budgets with
        forecasts, the most expensive pipelines and agents, the model table. Empty filters: any.
        The per-call figures are at ``/v1/dashboard/calls``."""
        return figures(view_of(since, until, provider, model, agent, pipeline, user, stack))

    @app.get(
        "/v1/dashboard/calls",
        responses=answers,
        summary="The dashboard's per-call figures: the most expensive calls, latency, unread cache writes",
    )
    def dashboard_calls_json(
        since: Since = DEFAULT_SINCE,
        until: Until = "",
        provider: str = "",
        model: str = "",
        agent: str = "",
        pipeline: str = "",
        user: str = "",
    ) -> dict[str, Any]:
        """What the page loads after its first paint: the most expensive calls (with links to their
        traces), nearest-rank p50 / p95 latency and time to first chunk per model, and the
        prompt-cache writes no later call read."""
        return details_of(view_of(since, until, provider, model, agent, pipeline, user, "model"))

    @app.get(
        "/v1/forecast", responses=answers, summary="Projected spend to the end of the day, week and month"
    )
    def forecast_json(
        provider: str = "", model: str = "", agent: str = "", pipeline: str = "", user: str = ""
    ) -> dict[str, Any]:
        view = view_of(DEFAULT_SINCE, "", provider, model, agent, pipeline, user, "model")
        with reading() as source:
            fitted, found = projections(source, view.filters(None, None))
        return {**fitted.describe(), "projections": [p.as_dict() for p in found]}

    @app.get("/v1/whatif", responses=answers, summary="The selected calls' token mix priced at other models")
    def whatif_json(
        candidate: Candidates,
        since: Since = DEFAULT_SINCE,
        until: Until = "",
        provider: str = "",
        model: str = "",
        agent: str = "",
        pipeline: str = "",
        user: str = "",
    ) -> dict[str, Any]:
        return whatif_of(view_of(since, until, provider, model, agent, pipeline, user, "model"), candidate)

    @app.get("/v1/advice", responses=answers, summary="Savings advice, each item with the dollars at stake")
    def advice_json(
        since: Since = DEFAULT_SINCE,
        until: Until = "",
        provider: str = "",
        model: str = "",
        agent: str = "",
        pipeline: str = "",
        user: str = "",
    ) -> list[dict[str, Any]]:
        return advice_of(view_of(since, until, provider, model, agent, pipeline, user, "model"))
