"""Ledgers with known spend shapes (flat, weekly cycle, trend, spikes) and a backtest of the
forecast over them: shared by ``tests/test_forecast.py`` and ``benchmarks/forecast_backtest.py``.

Each ledger holds one call per hour whose cost is the scenario's rate for that hour times
log-normal noise; a backtest stands at many past moments, forecasts the end of that day, week and
month from what was in the ledger then, and compares with what the ledger says was spent.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ledger_data import fill
from tokentrail.insights.forecast import fit, period_bounds, project
from tokentrail.ledger import open_ledger
from tokentrail.ledger.query import Filters, report
from tokentrail.ledger.source import LedgerSource
from tokentrail.pricing import Cost
from tokentrail.records import CallRecord
from tokentrail.usage import Usage

HOUR = 3600.0


def _office(moment: datetime) -> float:
    """More spend in working hours: 2x from 9:00 to 18:00, 0.4x at night (mean about 1)."""
    return 2.0 if 9 <= moment.hour < 18 else 0.4 if moment.hour < 7 or moment.hour >= 22 else 1.0


def flat(moment: datetime, day: float, rng: random.Random) -> float:
    return 10.0 / 24


def weekly(moment: datetime, day: float, rng: random.Random) -> float:
    daily = 3.0 if moment.weekday() >= 5 else 12.0
    return daily / 24 * _office(moment) / 1.1


def trend(moment: datetime, day: float, rng: random.Random) -> float:
    return (5.0 + day * 0.15) / 24  # +$0.15 a day, every day


def spikes(moment: datetime, day: float, rng: random.Random) -> float:
    # One day in twenty, a runaway job spends eight times the usual.
    spiking = random.Random(int(day)).random() < 0.05
    return 10.0 / 24 * (8.0 if spiking else 1.0)


SCENARIOS: dict[str, Callable[[datetime, float, random.Random], float]] = {
    "flat": flat,
    "weekly cycle": weekly,
    "trend": trend,
    "spikes": spikes,
}
NOISE_SIGMA = 0.3


def generate(path: Path, scenario: str, start: float, days: int, seed: int = 1) -> None:
    """``days`` days of hourly calls from ``start`` shaped by ``scenario``."""
    rng = random.Random(seed)
    shape = SCENARIOS[scenario]
    records = []
    for hour in range(days * 24):
        at = start + hour * HOUR + rng.random() * HOUR * 0.9
        moment = datetime.fromtimestamp(at)
        cost = shape(moment, hour / 24, rng) * math.exp(rng.gauss(-(NOISE_SIGMA**2) / 2, NOISE_SIGMA))
        records.append(
            CallRecord(
                start_time=at,
                duration_s=1.0,
                operation="chat",
                provider="openai",
                request_model="gpt-4o",
                response_model="gpt-4o",
                server_address="api.example.com",
                stream=False,
                usage=Usage(input_tokens=1000, output_tokens=100),
                cost=Cost(cost, None, None, "local", None, "gpt-4o", "test"),
                trace_id=f"{rng.getrandbits(128):032x}",
            )
        )
    fill(path, records)


@dataclass
class Score:
    period: str
    forecasts: int
    mape: float
    """Mean absolute error of the projected total, as a share of the actual total."""
    coverage: float
    """Share of the actual totals inside the 80% interval."""


def backtest(path: Path, cutoffs: list[float]) -> list[Score]:
    """Forecast from each cutoff to the end of its day, week and month; score against the ledger."""
    connection = open_ledger(path, create=False)
    errors: dict[str, list[float]] = {"day": [], "week": [], "month": []}
    inside: dict[str, list[bool]] = {"day": [], "week": [], "month": []}
    try:
        for now in cutoffs:
            model = fit(LedgerSource(connection, path), Filters(), now=now)
            for period, (start, end) in period_bounds(now).items():
                spent = report(connection, (), Filters(start, now)).totals.cost_usd
                actual = report(connection, (), Filters(start, end)).totals.cost_usd
                found = project(model, period, start, end, spent)
                errors[period].append(abs(found.projected_usd - actual) / actual)
                inside[period].append(found.low_usd <= actual <= found.high_usd)
    finally:
        connection.close()
    return [
        Score(period, len(errors[period]), statistics.fmean(errors[period]), statistics.fmean(inside[period]))
        for period in errors
    ]


def cutoffs(start: float, days: int, first_day: int, step_days: float = 1.0) -> list[float]:
    """Moments from ``first_day`` on, every ``step_days``, at varied times of day, leaving a whole
    month after each inside the ledger."""
    found = []
    day = float(first_day)
    base = datetime.fromtimestamp(start)
    while True:
        moment = base + timedelta(days=day, hours=(day * 7.3) % 24)
        if moment.timestamp() > start + (days - 32) * 86400:
            return found
        found.append(moment.timestamp())
        day += step_days
