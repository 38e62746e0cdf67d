"""``tokentrail serve``: a read-only HTTP JSON API over the ledger (FastAPI; OpenAPI at
``/openapi.json``, interactive docs at ``/docs``).

Every endpoint is a GET and every request opens the ledger read-only: the API can answer while
applications write, and can never change what they wrote. Every answer other than 200 is
documented in the OpenAPI description (a 4xx says which parameter to fix, a 503 what is wrong with
the ledger or the budgets file); ``tests/test_serve_fuzz.py`` holds the API to it with schemathesis.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from .._version import __version__
from ..budgets import budget_statuses
from ..config import ConfigError
from ._schema import SCHEMA_VERSION, LedgerError, open_ledger
from .clickhouse import ClickHouseError
from .query import _LABEL as LABEL_KEY
from .query import BY_KEYS, Filters, Group, Report, Totals, UnknownKeyError, report, trend
from .source import CallSource, LedgerSource, spend_reader
from .spend import spend

__all__ = ["create_app", "ledger_reader", "source_reader"]


class Usage(BaseModel):
    """What a set of calls added up to."""

    calls: int
    calls_with_usage: int = Field(description="calls that reported token usage")
    priced_calls: int = Field(description="calls with a known cost")
    unpriced_calls: int = Field(description="calls with usage but no known price (cost not counted)")
    errors: int
    incomplete: int | None = Field(description="streams that ended before their usage arrived")
    input_tokens: int = Field(description="every input token, cache reads and writes included")
    output_tokens: int = Field(description="every output token, reasoning included")
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: float
    cache_savings_usd: float | None = Field(
        description="cache reads at the input rate minus at the cache-read rate"
    )
    avg_cost_per_call_usd: float | None = Field(description="cost over the priced calls")
    avg_tokens_per_call: float | None = Field(description="input + output tokens over the calls with usage")


class UsageGroup(Usage):
    key: str
    value: str | None = Field(description="null: calls without this key")
    breakdown: list[UsageGroup] = []


class UsageReport(BaseModel):
    since: str | None
    until: str | None
    filters: dict[str, str]
    by: list[str]
    totals: Usage
    breakdown: list[UsageGroup]


class TrendPoint(Usage):
    day: str = Field(description="local date, YYYY-MM-DD")


class Trend(BaseModel):
    days: int
    filters: dict[str, str]
    points: list[TrendPoint]


class BudgetStatus(BaseModel):
    pipeline: str
    budget_usd: float
    spent_usd: float
    remaining_usd: float = Field(description="budget minus spent, never below 0")
    percent_used: float
    over_budget: bool
    calls: int


class ConfiguredBudget(BaseModel):
    name: str
    usd: float = Field(description="the limit in USD")
    spent_usd: float = Field(description="spend in scope within the current window, from the ledger")
    remaining_usd: float = Field(description="limit minus spent, never below 0")
    percent_used: float
    over_budget: bool
    mode: str = Field(description="raise (hard stop) or warn")
    window: str = Field(description="per_run, a period such as 1h or 1d, or day (a calendar day)")
    timezone: str | None
    window_start: float | None = Field(description="epoch seconds; null for per_run")
    window_end: float | None = Field(description="epoch seconds; null for per_run")
    scope: dict[str, str] = Field(description="the attribution a call must carry to count; {}: every call")
    note: str


class ParameterProblem(BaseModel):
    loc: list[str | int] = Field(description="where: ['query', 'days'], ['path', 'pipeline'], ...")
    msg: str = Field(description="what is wrong with it and what is accepted")
    type: str


class InvalidRequest(BaseModel):
    """A 422: the request named a parameter the API cannot use; nothing was read."""

    detail: str | list[ParameterProblem] = Field(
        description="one message, or one entry per bad parameter (its loc names it)"
    )


class Unavailable(BaseModel):
    """A 404 or 503: what is missing or broken (the ledger, the budgets file) and how to fix it."""

    detail: str


class Health(BaseModel):
    status: str
    ledger: str
    schema_version: int
    tokentrail: str


MIN_BUDGET_USD = 1e-6
"""The smallest budget ``/v1/pipelines/{pipeline}/budget`` takes: one micro-dollar."""

# The answers other than 200, documented on every operation so clients (and the fuzz test) know them.
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": InvalidRequest, "description": "a query or path parameter to fix (the detail says which)"}
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Unavailable, "description": "the ledger is missing or unreadable (the detail says why)"}
}
NO_BUDGETS: dict[int | str, dict[str, Any]] = {
    404: {"model": Unavailable, "description": "serve was started without a budgets file"},
    503: {"model": Unavailable, "description": "the budgets file or the ledger cannot be read"},
}

# Query parameters several endpoints share (module level: FastAPI resolves them by name).
Days = Annotated[int | None, Query(ge=1, le=36500, description="only the last DAYS days (default: all time)")]
RecentDays = Annotated[int, Query(ge=1, le=36500, description="the last DAYS days")]
# The keys are checked by the report itself (its message lists them); the description says the
# same rule, so clients and the fuzz test know which values are accepted.
By = Annotated[
    list[str],
    Query(
        description="break down by these keys, outermost first (agent, model, day, ..., or label:KEY)",
        json_schema_extra={
            "items": {
                "anyOf": [
                    {"type": "string", "enum": list(BY_KEYS)},
                    {"type": "string", "pattern": LABEL_KEY.pattern},
                ]
            }
        },
    ),
]


def _usage(totals: Totals) -> dict[str, Any]:
    return totals.as_dict()


def _group(group: Group) -> dict[str, Any]:
    return {
        "key": group.key,
        "value": group.value,
        **_usage(group.totals),
        "breakdown": [_group(child) for child in group.children],
    }


def _report_body(result: Report) -> dict[str, Any]:
    data = result.as_dict()
    return {
        "since": data["since"],
        "until": data["until"],
        "filters": data["filters"],
        "by": data["by"],
        "totals": _usage(result.totals),
        "breakdown": [_group(group) for group in result.groups],
    }


def _unreadable(ledger: Path, exc: sqlite3.DatabaseError) -> HTTPException:
    return HTTPException(
        status_code=503, detail=f"cannot read the ledger at {ledger}: {exc} (is it a tokentrail ledger?)"
    )


def ledger_reader(ledger: Path) -> Callable[[], AbstractContextManager[sqlite3.Connection]]:
    """Opens the ledger read-only for one request: a missing or unreadable ledger is a 503, an
    unknown filter key a 422."""

    @contextmanager
    def reading() -> Iterator[sqlite3.Connection]:
        try:
            connection = open_ledger(ledger, create=False, readonly=True)
        except LedgerError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        try:
            yield connection
        except UnknownKeyError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except sqlite3.DatabaseError as exc:  # opened, but not a ledger tokentrail can read
            raise _unreadable(ledger, exc) from None
        finally:
            connection.close()

    return reading


def source_reader(
    ledger: Path, source: CallSource | None = None
) -> Callable[[], AbstractContextManager[CallSource]]:
    """The source one request reads: the ledger, opened read-only for it (as :func:`ledger_reader`
    opens it), or ``source`` (a fleet's ClickHouse), shared. A source that cannot answer is a 503,
    an unknown filter key a 422."""
    if source is None:
        reading = ledger_reader(ledger)

        @contextmanager
        def from_ledger() -> Iterator[CallSource]:
            with reading() as connection:
                yield LedgerSource(connection, ledger)

        return from_ledger

    @contextmanager
    def from_source() -> Iterator[CallSource]:
        try:
            yield source
        except UnknownKeyError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except ClickHouseError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None

    return from_source


def create_app(
    path: str | Path | None, budgets: str | Path | None = None, *, source: CallSource | None = None
) -> FastAPI:
    """The API over the ledger at ``path`` (opened read-only on every request), or over ``source``
    (a fleet's ClickHouse table: same endpoints and answers; ``/v1/budgets`` reads the ledger only).

    ``budgets`` is a budgets TOML file (default ``TOKENTRAIL_BUDGETS``) for ``/v1/budgets``."""
    budgets_file = budgets or os.environ.get("TOKENTRAIL_BUDGETS")
    ledger = Path(path or "").expanduser()
    app = FastAPI(
        title="tokentrail ledger API",
        version=__version__,
        description=(
            "Read-only usage, cost, trend and budget figures from the local tokentrail ledger. "
            "Days are local days of the machine serving the API."
        ),
    )

    def unreadable(exc: sqlite3.DatabaseError) -> HTTPException:
        return _unreadable(ledger, exc)

    reading = ledger_reader(ledger)

    def ask_report(by: list[str], filters: Filters) -> Report:
        if source is None:
            with reading() as connection:
                return report(connection, by, filters)
        try:
            return source.report(by, filters)
        except UnknownKeyError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except ClickHouseError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None

    def ask_trend(days: int, filters: Filters) -> list[tuple[str, Totals]]:
        if source is None:
            with reading() as connection:
                return trend(connection, days, filters=filters)
        try:
            return source.trend(days, filters=filters)
        except ClickHouseError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None

    def since(days: int | None) -> float | None:
        return None if days is None else time.time() - days * 86400

    answers = {**INVALID, **UNAVAILABLE}

    @app.get(
        "/v1/usage",
        response_model=UsageReport,
        responses=answers,
        summary="Usage and cost, filtered and broken down",
    )
    def usage(
        days: Days = None,
        pipeline: str | None = None,
        agent: str | None = None,
        role: str | None = None,
        task: str | None = None,
        phase: str | None = None,
        user: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        by: By = [],  # noqa: B006 - FastAPI copies query defaults
    ) -> dict[str, Any]:
        where = {
            key: value
            for key, value in (
                ("agent", agent),
                ("role", role),
                ("task", task),
                ("phase", phase),
                ("user", user),
            )
            if value is not None
        }
        filters = Filters(since(days), None, pipeline, model, provider, where)
        return _report_body(ask_report(by, filters))

    @app.get(
        "/v1/pipelines/{pipeline}/usage",
        response_model=UsageReport,
        responses=answers,
        summary="Usage and cost of one pipeline",
    )
    def pipeline_usage(pipeline: str, days: Days = None, by: By = []) -> dict[str, Any]:  # noqa: B006
        return _report_body(ask_report(by, Filters(since(days), pipeline=pipeline)))

    @app.get(
        "/v1/agents/{agent}/usage",
        response_model=UsageReport,
        responses=answers,
        summary="Usage and cost of one agent",
    )
    def agent_usage(
        agent: str,
        days: Annotated[int, Query(ge=1, le=36500)] = 7,
        by: By = [],  # noqa: B006
    ) -> dict[str, Any]:
        return _report_body(ask_report(by, Filters(since(days), where={"agent": agent})))

    @app.get(
        "/v1/roles/{role}/usage",
        response_model=UsageReport,
        responses=answers,
        summary="Usage and cost of one role",
    )
    def role_usage(
        role: str,
        days: Annotated[int, Query(ge=1, le=36500)] = 7,
        by: By = [],  # noqa: B006
    ) -> dict[str, Any]:
        return _report_body(ask_report(by, Filters(since(days), where={"role": role})))

    @app.get(
        "/v1/trend", response_model=Trend, responses=answers, summary="Spend per local day, today included"
    )
    def daily_trend(
        days: Annotated[int, Query(ge=1, le=3650)] = 7,
        pipeline: str | None = None,
        agent: str | None = None,
        role: str | None = None,
        model: str | None = None,
        provider: str | None = None,
    ) -> dict[str, Any]:
        where = {key: value for key, value in (("agent", agent), ("role", role)) if value is not None}
        filters = Filters(None, None, pipeline, model, provider, where)
        points = ask_trend(days, filters)
        return {
            "days": days,
            "filters": filters.describe(),
            "points": [{"day": day, **_usage(totals)} for day, totals in points],
        }

    @app.get(
        "/v1/pipelines/{pipeline}/budget",
        response_model=BudgetStatus,
        responses=answers,
        summary="A pipeline's spend against a budget",
    )
    def budget(
        pipeline: Annotated[str, PathParam(description="the pipeline id")],
        # Finite and at least a micro-dollar: an infinite budget, or one so small that spent / budget
        # overflows, would answer an infinite remaining_usd or percent_used, which JSON cannot carry.
        budget_usd: Annotated[
            float,
            Query(
                ge=MIN_BUDGET_USD,
                allow_inf_nan=False,
                description=f"the budget in USD (a finite number, at least {MIN_BUDGET_USD:f})",
            ),
        ],
    ) -> dict[str, Any]:
        totals = ask_report([], Filters(pipeline=pipeline)).totals
        spent = totals.cost_usd
        return {
            "pipeline": pipeline,
            "budget_usd": budget_usd,
            "spent_usd": spent,
            "remaining_usd": max(0.0, budget_usd - spent),
            "percent_used": spent / budget_usd * 100,
            "over_budget": spent > budget_usd,
            "calls": totals.calls,
        }

    @app.get(
        "/v1/budgets",
        response_model=list[ConfiguredBudget],
        responses=NO_BUDGETS,
        summary="The configured budgets: spend, remaining and percent used in their window",
    )
    def configured_budgets() -> list[dict[str, Any]]:

        if not budgets_file:
            raise HTTPException(
                status_code=404,
                detail="no budgets configured: start serve with --budgets FILE or TOKENTRAIL_BUDGETS",
            )
        try:
            if source is None:
                return budget_statuses(str(budgets_file), ledger, spend)
            return budget_statuses(str(budgets_file), source.name, spend_reader(source))
        except (ConfigError, LedgerError, ClickHouseError) as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        except sqlite3.DatabaseError as exc:
            raise unreadable(exc) from None

    @app.get(
        "/healthz",
        response_model=Health,
        responses=UNAVAILABLE,
        summary="The API is up and can read the ledger",
    )
    def health() -> dict[str, Any]:
        if source is not None:
            try:
                source.check()
            except ClickHouseError as exc:
                raise HTTPException(status_code=503, detail=str(exc)) from None
        else:
            with reading() as connection:  # opening is not enough: a file without the tables opens too
                connection.execute("SELECT 1 FROM calls LIMIT 1").fetchall()
        return {
            "status": "ok",
            "ledger": source.name if source is not None else str(ledger),
            "schema_version": SCHEMA_VERSION,
            "tokentrail": __version__,
        }

    return app
