"""Spend forecasts: where the spend of the current day, week, month and budget window will end,
with an interval, and when a budget runs out at the current rate.

The method, in three parts, all read from the ledger's hourly spend before ``now``:

* **Level and trend.** Complete 24-hour days counted back from the current hour (day 0 is the
  last 24 hours). A spike day is clipped to the median plus four median absolute deviations, so
  one runaway job does not become the rate. The daily rate is a weighted least-squares line
  through the last 28 such days, weights halving every 7 days back (recent days count most); with
  fewer than 14 days the line has no slope (the recent-weighted mean).
* **Shape.** Spend is not flat over a week: each future hour gets the daily rate / 24 times the
  factor of its hour of the week (from 14 days of history on) or of its hour of the day (from 2
  days on), the mean spend of that slot over the mean hourly spend.
* **Interval.** The daily standard deviation is measured by forecasting each of the last 14 days
  from the history before it; the remainder of a period of ``n`` days gets ``1.28 * 1.25 * sd *
  sqrt(n)`` either side, plus the level's and the trend's uncertainty (the 1.25: the error of the
  estimates themselves, measured on the backtests).

With less than a day of history the forecast is the rate so far (spend over the time since the
first call, at least 15 minutes), flat, and is marked ``low`` confidence with an interval from
nothing more to three times the projected remainder.

Days and hours are local to the machine, as in reports. ``benchmarks/forecast_backtest.py``
measures the method's error on ledgers generated with known trends, weekly cycles and spikes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..ledger.query import Filters
from ..ledger.source import CallSource

__all__ = [
    "Projection",
    "SpendModel",
    "exhaustion_time",
    "fit",
    "hourly_spend",
    "period_bounds",
    "projections",
]

HISTORY_DAYS = 56
HALF_LIFE_DAYS = 7.0
TREND_DAYS = 28
Z80 = 1.2816
SHRINK_WEEKS = 4
CALIBRATION_DAYS = 14
# The formula's interval leaves out the error of its own estimates (the shape's factors, the level,
# the spread itself, measured from 14 days): on the backtests (benchmarks/forecast_backtest.py) the
# errors came out 1.2-1.3 times the formula's standard deviation, for flat, weekly and trending
# spend alike. Widened by that measured factor, the 80% interval holds about 80% of the time.
INTERVAL_WIDENING = 1.25
MIN_CALIBRATION_HISTORY = 7
METHOD = (
    "recent-weighted daily rate (weights halve every 7 days; a linear trend from 14 days of history) "
    "of days adjusted for their share of the week, spike days clipped at median + 4 MAD and their excess "
    "spread back as an allowance; hour-of-week shape (hour-of-day under 14 days); 80% interval from the "
    "daily spread and the rate's own uncertainty"
)


@dataclass
class SpendModel:
    """What the history says about the spend ahead."""

    now: float
    level_usd_per_day: float
    """The daily rate at ``now``."""
    slope_usd_per_day2: float
    """How much the daily rate grows per day (0 without a trend)."""
    daily_sd_usd: float
    shape: Mapping[tuple[int, int], float] | None
    """(weekday or -1, hour) -> factor; None: flat."""
    history_days: float
    confidence: str
    """``high`` (28+ days), ``medium`` (1-28 days) or ``low`` (under a day: the rate so far)."""
    spent_so_far_usd: float
    level_sd_usd: float = 0.0
    """How uncertain the daily rate itself is."""
    slope_sd_usd: float = 0.0
    """How uncertain the trend is (0 without a trend)."""

    def hourly_usd(self, at: float) -> float:
        """The expected spend of the hour starting at ``at``."""
        days_ahead = max(0.0, (at - self.now) / 86400)
        rate = max(0.0, self.level_usd_per_day + self.slope_usd_per_day2 * days_ahead) / 24
        if self.shape is None:
            return rate
        moment = datetime.fromtimestamp(at)
        factor = self.shape.get((moment.weekday(), moment.hour))
        if factor is None:
            factor = self.shape.get((-1, moment.hour), 1.0)
        return rate * factor

    def expected_between(self, start: float, end: float) -> float:
        """Expected spend in [start, end), hour by hour (partial hours pro rata)."""
        total = 0.0
        at = start
        while at < end:
            hour_start = at - at % 3600
            step_end = min(end, hour_start + 3600)
            total += self.hourly_usd(hour_start) * (step_end - at) / 3600
            at = step_end
        return total

    def describe(self) -> dict[str, Any]:
        return {
            "method": METHOD,
            "confidence": self.confidence,
            "history_days": round(self.history_days, 3),
            "daily_rate_usd": self.level_usd_per_day,
            "daily_trend_usd": self.slope_usd_per_day2,
            "daily_sd_usd": self.daily_sd_usd,
        }


@dataclass
class Projection:
    """Where the spend of one period will end."""

    period: str
    start: float
    end: float
    spent_usd: float
    projected_usd: float
    low_usd: float
    high_usd: float
    confidence: str
    limit_usd: float | None = None
    exhausted_at: float | None = None
    """When the limit is reached at the expected rate (None: not within the period)."""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "spent_usd": self.spent_usd,
            "projected_usd": self.projected_usd,
            "low_usd": self.low_usd,
            "high_usd": self.high_usd,
            "confidence": self.confidence,
            "limit_usd": self.limit_usd,
            "exhausted_at": _iso(self.exhausted_at),
            "notes": self.notes,
        }


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def hourly_spend(source: CallSource, filters: Filters, since: float, until: float) -> dict[float, float]:
    """Spend per local hour (keyed by the hour's start, epoch seconds) in [since, until)."""
    scoped = Filters(since, until, filters.pipeline, filters.model, filters.provider, filters.where)
    found = source.report(["hour"], scoped)
    spend: dict[float, float] = {}
    for group in found.groups:
        if group.value is None:
            continue
        start = datetime.strptime(group.value, "%Y-%m-%d %H:%M").timestamp()
        spend[start] = spend.get(start, 0.0) + group.totals.cost_usd
    return spend


def fit(
    source: CallSource,
    filters: Filters | None = None,
    *,
    now: float | None = None,
    history_days: int = HISTORY_DAYS,
) -> SpendModel:
    """The spend model of the calls matching ``filters`` (their time range aside), from the
    ``history_days`` before ``now``."""
    filters = filters or Filters()
    now = time.time() if now is None else now
    since = now - history_days * 86400
    hours = hourly_spend(source, filters, since, now)
    return fit_hours(hours, now, first_call=_first_call_time(source, filters, now, hours))


def _first_call_time(
    source: CallSource, filters: Filters, now: float, hours: Mapping[float, float]
) -> float | None:
    if not hours:
        return None
    first_hour = min(hours)
    if now - first_hour > 2 * 86400:
        return first_hour  # a long history: the hour is precise enough
    # A short history: the exact time of the first call sets the rate so far.
    scoped = Filters(first_hour, now, filters.pipeline, filters.model, filters.provider, filters.where)
    _, rows = source.export_rows(scoped)
    first = next(iter(rows), None)
    return first_hour if first is None else max(first_hour, first[0])


def fit_hours(
    hours: Mapping[float, float], now: float, *, first_call: float | None = None, calibrate: bool = True
) -> SpendModel:
    """The spend model from spend per hour start (the pure part of :func:`fit`). ``calibrate``:
    measure the daily spread by forecasting each of the last days from the days before it."""
    total = sum(hours.values())
    if not hours:
        return SpendModel(now, 0.0, 0.0, 0.0, None, 0.0, "low", 0.0)
    first = first_call if first_call is not None else min(hours)
    span_days = max(0.0, (now - first) / 86400)
    if span_days < 1:
        elapsed = max(now - first, 900.0)
        return SpendModel(now, total / elapsed * 86400, 0.0, 0.0, None, span_days, "low", total)
    current_hour = now - now % 3600
    whole_days = int(span_days)
    days = [0.0] * whole_days  # days[k]: the 24 hours ending k days before the current hour
    for start, cost in hours.items():
        age = (current_hour - start - 1) // 86400 if start < current_hour else -1
        if 0 <= age < whole_days:
            days[int(age)] += cost
    shape = _shape(hours, current_hour, weekly=whole_days >= 14) if whole_days >= 2 else None
    recent = days[:TREND_DAYS]
    # Each day over its share of the week (a Sunday is not a slump), then spikes clipped; what the
    # clipping took off, spread over every day, comes back as an allowance for the next spike.
    factors = [_day_factor(shape, current_hour - (k + 1) * 86400) for k in range(len(recent))]
    adjusted = [day / factor if factor > 0 else day for day, factor in zip(recent, factors, strict=True)]
    clipped = _clip_spikes(adjusted)
    allowance = (sum(adjusted) - sum(clipped)) / len(adjusted)
    level, slope, sd, level_sd, slope_sd = _weighted_line(clipped, adjusted, with_trend=whole_days >= 14)
    confidence = "high" if whole_days >= 28 else "medium"
    model = SpendModel(
        now, max(level + allowance, 0.0), slope, sd, shape, span_days, confidence, total, level_sd, slope_sd
    )
    if calibrate:
        # The spread of the days around the fitted line understates the error of a forecast: the
        # shape and the level were fitted to those same days (each day is divided by a factor its
        # own noise helped set). The errors of real one-day-ahead forecasts, each made from the
        # history before its day, measure it: in backtests the 80% interval held 52-72% of the
        # time with the in-sample spread.
        errors = _one_day_errors(hours, current_hour, whole_days)
        measured = math.sqrt(statistics.fmean(e * e for e in errors)) if errors else 0.0
        if measured > sd:
            # The level's and the trend's errors were estimated from the same in-sample spread.
            scale = measured / sd if sd > 0 else 1.0
            model.daily_sd_usd = measured
            model.level_sd_usd *= scale
            model.slope_sd_usd *= scale
    return model


def _one_day_errors(hours: Mapping[float, float], current_hour: float, whole_days: int) -> list[float]:
    """Actual minus forecast spend of each of the last CALIBRATION_DAYS days, each forecast from the
    history before it (at least MIN_CALIBRATION_HISTORY days of it)."""
    errors = []
    for back in range(1, min(CALIBRATION_DAYS, whole_days - MIN_CALIBRATION_HISTORY) + 1):
        cutoff = current_hour - back * 86400
        before = {start: cost for start, cost in hours.items() if start < cutoff}
        if not before:
            break
        past = fit_hours(before, cutoff, first_call=min(before), calibrate=False)
        actual = sum(cost for start, cost in hours.items() if cutoff <= start < cutoff + 86400)
        errors.append(actual - past.expected_between(cutoff, cutoff + 86400))
    return errors


def _day_factor(shape: Mapping[tuple[int, int], float] | None, start: float) -> float:
    """The mean shape factor of the 24 hours from ``start``: that day's share of a mean day."""
    if not shape:
        return 1.0
    total = 0.0
    for hour in range(24):
        moment = datetime.fromtimestamp(start + hour * 3600)
        factor = shape.get((moment.weekday(), moment.hour))
        total += shape.get((-1, moment.hour), 1.0) if factor is None else factor
    return total / 24


def _clip_spikes(days: list[float]) -> list[float]:
    if len(days) < 3:
        return list(days)
    median = statistics.median(days)
    mad = statistics.median(abs(d - median) for d in days)
    ceiling = median + 4 * max(mad, 0.05 * median)
    return [min(d, ceiling) for d in days]


def _weighted_line(
    days: list[float], raw: list[float], *, with_trend: bool
) -> tuple[float, float, float, float, float]:
    """(level at now, slope per day, daily sd, sd of the level, sd of the slope) of a
    recent-weighted line through ``days`` (index = days back; day k is centred k + 0.5 days before
    now); the spread is that of the ``raw`` (unclipped) days around it."""
    weights = [0.5 ** (k / HALF_LIFE_DAYS) for k in range(len(days))]
    xs = [-(k + 0.5) for k in range(len(days))]
    weight_sum = sum(weights)
    mean_x = sum(w * x for w, x in zip(weights, xs, strict=True)) / weight_sum
    mean_y = sum(w * y for w, y in zip(weights, days, strict=True)) / weight_sum
    slope = 0.0
    spread = sum(w * (x - mean_x) ** 2 for w, x in zip(weights, xs, strict=True))
    if with_trend and spread > 0:
        slope = (
            sum(w * (x - mean_x) * (y - mean_y) for w, x, y in zip(weights, xs, days, strict=True)) / spread
        )
    level = mean_y - slope * mean_x
    if len(days) < 2:
        return level, slope, abs(level) * 0.5, abs(level) * 0.5, 0.0
    residuals = [y - (level + slope * x) for x, y in zip(xs, raw, strict=True)]
    variance = sum(w * r * r for w, r in zip(weights, residuals, strict=True)) / weight_sum
    # The level is a weighted mean: its error shrinks with the effective number of days.
    effective_days = weight_sum**2 / sum(w * w for w in weights)
    slope_sd = math.sqrt(variance / spread) if with_trend and spread > 0 else 0.0
    return level, slope, math.sqrt(variance), math.sqrt(variance / effective_days), slope_sd


def _shape(
    hours: Mapping[float, float], current_hour: float, *, weekly: bool
) -> dict[tuple[int, int], float]:
    """Each slot's mean spend over the mean spend around it. An hour of the week has a few samples
    only: it is pulled towards its weekday's factor times its hour's factor (which have 24 and 7
    times as many) with the weight of SHRINK_WEEKS weeks, so one noisy Tuesday 3pm is not a rule.

    Each hour is compared with the mean hour of the week (or day) around it, not with the mean of
    the whole history: under a trend, the slots seen most recently (one sample more, at the newest
    level) would otherwise come out larger than the others, and the hours still to come, in the
    other slots, smaller - a forecast that lags every trend."""
    first = min(hours)
    start = first - first % 3600
    count = int((current_hour - start) // 3600)
    if count <= 0:
        return {}
    values = [hours.get(start + index * 3600, 0.0) for index in range(count)]
    cumulative = [0.0]
    for value in values:
        cumulative.append(cumulative[-1] + value)
    window = min(count, 168 if weekly else 24)
    sums: dict[tuple[int, int], float] = {}
    counts: dict[tuple[int, int], int] = {}
    for index, value in enumerate(values):
        low = min(max(0, index - window // 2), count - window)
        local = (cumulative[low + window] - cumulative[low]) / window
        if local <= 0:
            continue
        moment = datetime.fromtimestamp(start + index * 3600)
        slot = (moment.weekday() if weekly else -1, moment.hour)
        sums[slot] = sums.get(slot, 0.0) + value / local
        counts[slot] = counts.get(slot, 0) + 1
    if not sums:
        return {}
    if not weekly:
        return {slot: sums[slot] / counts[slot] for slot in sums}

    def factor(index: int) -> dict[int, float]:
        part_sums: dict[int, float] = {}
        part_counts: dict[int, int] = {}
        for slot, value in sums.items():
            part_sums[slot[index]] = part_sums.get(slot[index], 0.0) + value
            part_counts[slot[index]] = part_counts.get(slot[index], 0) + counts[slot]
        return {key: part_sums[key] / part_counts[key] for key in part_sums}

    by_day, by_hour = factor(0), factor(1)
    found = {}
    for slot, value in sums.items():
        n = counts[slot]
        prior = by_day[slot[0]] * by_hour[slot[1]]
        found[slot] = (value + SHRINK_WEEKS * prior) / (n + SHRINK_WEEKS)
    return found


def period_bounds(now: float) -> dict[str, tuple[float, float]]:
    """The local day, week (Monday first) and month holding ``now``: (start, end)."""
    current = datetime.fromtimestamp(now)
    day = current.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return {
        "day": (day.timestamp(), (day + timedelta(days=1)).timestamp()),
        "week": (week.timestamp(), (week + timedelta(days=7)).timestamp()),
        "month": (month.timestamp(), next_month.timestamp()),
    }


def project(
    model: SpendModel, period: str, start: float, end: float, spent: float, limit: float | None = None
) -> Projection:
    """Where the spend of [start, end) ends, ``spent`` of it already spent by ``model.now``."""
    remainder = model.expected_between(model.now, end) if end > model.now else 0.0
    days_left = max(0.0, end - model.now) / 86400
    if model.confidence == "low":
        low, high = spent, spent + 3 * remainder
    else:
        # Days vary around the rate (sd * sqrt(n)); the rate itself is uncertain (n * its sd), and
        # so is the trend, whose error grows with the square of the time ahead (n^2 / 2 * its sd).
        spread = (
            Z80
            * INTERVAL_WIDENING
            * math.sqrt(
                days_left * model.daily_sd_usd**2
                + (days_left * model.level_sd_usd) ** 2
                + (days_left**2 / 2 * model.slope_sd_usd) ** 2
            )
        )
        low, high = spent + max(0.0, remainder - spread), spent + remainder + spread
    found = Projection(period, start, end, spent, spent + remainder, low, high, model.confidence, limit)
    if limit is not None:
        found.exhausted_at = exhaustion_time(model, spent, limit, end)
    if model.confidence == "low":
        found.notes.append(
            f"low confidence: {model.history_days * 24:.1f} hours of history; the rate so far, flat"
        )
    return found


def exhaustion_time(model: SpendModel, spent: float, limit: float, end: float) -> float | None:
    """When spend reaches ``limit`` at the expected rate, before ``end``; ``model.now`` if it
    already has; None if it will not."""
    if spent >= limit:
        return model.now
    at, total = model.now, spent
    while at < end:
        hour_start = at - at % 3600
        step_end = min(end, hour_start + 3600)
        hourly = model.hourly_usd(hour_start)
        step = hourly * (step_end - at) / 3600
        if total + step >= limit:
            return at + (limit - total) / hourly * 3600 if hourly > 0 else None
        total += step
        at = step_end
    return None


def projections(
    source: CallSource, filters: Filters | None = None, *, now: float | None = None
) -> tuple[SpendModel, list[Projection]]:
    """The model and the projections to the end of the local day, week and month."""
    filters = filters or Filters()
    now = time.time() if now is None else now
    model = fit(source, filters, now=now)
    found = []
    for period, (start, end) in period_bounds(now).items():
        scoped = Filters(start, now, filters.pipeline, filters.model, filters.provider, filters.where)
        spent = source.report((), scoped).totals.cost_usd
        found.append(project(model, period, start, end, spent))
    return model, found
