"""Budgets: alerts before the bill, and hard stops before the request.

A :class:`budget` is a USD limit over the calls whose attribution matches its ``scope`` (all calls
when the scope is empty), within a window: ``per_run`` (the life of the budget object), a fixed
period (``30m``, ``1h``, ``1d``: aligned to the epoch) or ``day`` (a calendar day in a time zone).

Before each call the lifecycle asks :func:`check` for the call's *worst case* (estimated input
tokens plus their margin, plus the request's ``max_tokens`` or
:data:`~tokentrail.estimate.DEFAULT_MAX_OUTPUT_TOKENS`, at the model's prices) and reserves it on
every budget that applies. In ``raise`` mode a reservation that would take spend + reservations
over the limit is refused with :class:`BudgetExceeded`, before any request is sent. When the call
has ended, tokentrail's recorder thread prices it and replaces its reservation by its real cost
(:func:`settle_budgets`); thresholds crossed then fire once each, from that thread: a span event
on that call, a warning log, and the ``on_alert`` callback.

Until then the call's reservation, its worst case, stands in for its cost, so a decision can only
be more cautious than one made on real spend. It is never more cautious than that: before it
refuses a call, :func:`check` has every ended call settled and decides again; and reading a
budget (``spent_usd``, ``status()``) settles ended calls first. Pricing at the end of the call on
the application's thread instead would cost every budgeted call about 25 microseconds.

Budgets declared with ``shared=True`` add the ledger's spend for the window (other processes'
calls), re-read at most every ``refresh_s`` seconds; other budgets keep their spend in memory.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import _fork, _safety
from . import semconv as sc
from .config import ConfigError, shown
from .estimation import DEFAULT_MAX_OUTPUT_TOKENS
from .usage import Usage

__all__ = [
    "BudgetAlert",
    "BudgetExceeded",
    "Reservation",
    "budget",
    "check",
    "configure",
    "settle_budgets",
    "statuses",
]

EVENT_THRESHOLD = sc.BUDGET_THRESHOLD_EVENT
METRIC_SPEND = sc.METRIC_BUDGET_SPEND
METRIC_REMAINING = sc.METRIC_BUDGET_REMAINING
MODES = ("raise", "warn")
UNKNOWN_POLICIES = ("allow", "refuse")
_PERIOD = re.compile(r"^(\d+)\s*([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class BudgetExceeded(Exception):
    """A call was refused before it was sent: its worst case would take a budget over its limit."""

    def __init__(
        self, budget: budget, spent_usd: float, reserved_usd: float, estimate_usd: float | None
    ) -> None:
        self.budget = budget
        self.limit_usd = budget.usd
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        """Worst cases of calls still in flight on this budget."""
        self.estimate_usd = estimate_usd
        """This call's worst case; ``None`` when it could not be estimated (``unknown="refuse"``)."""
        if estimate_usd is None:
            why = "its cost could not be estimated and the budget refuses unknown calls (unknown='refuse')"
        else:
            why = f"its worst case ${estimate_usd:.6f} would exceed the limit"
        super().__init__(
            f"budget {budget.name!r} (${budget.usd:.4f}): spent ${spent_usd:.6f}, "
            f"${reserved_usd:.6f} in flight; call refused before sending: {why}"
        )


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A threshold crossed: what ``on_alert`` receives."""

    budget: str
    threshold: float
    spent_usd: float
    limit_usd: float
    window_start: float | None

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.limit_usd - self.spent_usd)


@dataclass(slots=True)
class Reservation:
    budget: budget
    amount: float
    window: float | None


def _nothing_pending() -> None:
    return None


# Settles the calls that have ended and are not yet recorded (the lifecycle's recorder registers
# its flush here: budgets sit below the lifecycle and do not import it).
_settle_ended: Callable[[], None] = _nothing_pending


def settle_ended_with(settle: Callable[[], None]) -> None:
    """Register how to settle every call that has ended (the recorder's synchronous drain)."""
    global _settle_ended
    _settle_ended = settle


def _settle_ended_now() -> None:
    try:
        _settle_ended()
    except Exception as exc:
        _safety.internal_error("budget.settle_ended", exc)


# --- windows ----------------------------------------------------------------------------------


class _Window:
    def __init__(self, spec: str, timezone: str | None) -> None:
        self.spec = spec
        self.seconds: int | None = None
        self.zone: Any = None
        if timezone is not None and not isinstance(timezone, str):
            raise ValueError(
                f"budget: timezone must be an IANA name such as 'Europe/Paris', not {shown(timezone)}"
            )
        if spec == "per_run":
            if timezone:
                raise ValueError("budget: timezone applies only to window='day'")
            return
        if spec == "day":
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                self.zone = ZoneInfo(timezone or "UTC")
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"budget: unknown timezone {shown(timezone)} (use an IANA name)") from exc
            return
        # fullmatch: "$" alone would also accept a trailing newline ("1h\n").
        match = _PERIOD.fullmatch(spec) if isinstance(spec, str) else None
        if match is None or int(match.group(1)) <= 0:
            raise ValueError(
                f"budget: window {shown(spec)} is not valid; use 'per_run', a period like '30m', '1h', '1d', "
                "or 'day' (a calendar day, with timezone=...)"
            )
        if timezone:
            raise ValueError("budget: timezone applies only to window='day'")
        self.seconds = int(match.group(1)) * _SECONDS[match.group(2)]

    def start(self, now: float) -> float | None:
        """The start of the window holding ``now`` (epoch seconds); ``None`` for per_run."""
        if self.seconds is not None:
            return now - now % self.seconds
        if self.zone is not None:
            local = datetime.fromtimestamp(now, self.zone)
            return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        return None

    def end(self, start: float | None) -> float | None:
        if start is None:
            return None
        if self.seconds is not None:
            return start + self.seconds
        day = datetime.fromtimestamp(start, self.zone)
        return (day.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=self.zone).timestamp()


# --- the budget ------------------------------------------------------------------------------

_in_context: contextvars.ContextVar[tuple[budget, ...]] = contextvars.ContextVar(
    "tokentrail_budgets", default=()
)
_configured: tuple[budget, ...] = ()
_by_name: dict[str, budget] = {}
"""The latest budget of each name: what metrics and ``budget status`` report (bounded by names)."""
_names_lock = threading.Lock()
_fork.renew_locks(sys.modules[__name__], "_names_lock")
_counter = 0


class budget:
    """A USD limit on the calls made in a block or function, or (configured) on every call whose
    attribution matches ``scope``::

        with tokentrail.budget(usd=1.00, scope={"pipeline": "pip_123"}, mode="raise"):
            ...

        @tokentrail.budget(usd=0.25, mode="warn", on_alert=print)
        def summarize(text): ...

    A budget of 0 or less, an unknown mode or a bad window raise ``ValueError`` here.

    ``on_alert`` is called once per threshold and window, from tokentrail's recorder thread, when
    the call that crossed it has been priced (within about 0.1 s of its end; ``tokentrail.flush()``
    delivers it at once): keep it short, or hand the work to a thread of your own.
    """

    def __init__(
        self,
        usd: float,
        *,
        scope: Mapping[str, str] | None = None,
        mode: str = "raise",
        thresholds: Iterable[float] = (0.5, 0.8, 1.0),
        on_alert: Callable[[BudgetAlert], Any] | None = None,
        name: str | None = None,
        window: str = "per_run",
        timezone: str | None = None,
        unknown: str = "allow",
        max_output_tokens: int | None = None,
        shared: bool = False,
        ledger: str | Path | None = None,
        refresh_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(usd, bool) or not isinstance(usd, int | float) or not _finite(usd):
            raise ValueError(f"budget: usd must be a positive number of US dollars, not {shown(usd)}")
        if usd <= 0:
            raise ValueError(
                f"budget: usd must be greater than 0 (got {usd}); a budget of 0 would refuse every call"
            )
        if mode not in MODES:
            raise ValueError(f"budget: mode must be 'raise' or 'warn', not {shown(mode)}")
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"budget: unknown must be 'allow' or 'refuse', not {shown(unknown)}")
        levels = _thresholds(thresholds)
        if scope is not None:
            from .context import validate

            if not isinstance(scope, Mapping):
                raise ValueError(
                    "budget: scope is a mapping of attribution keys, e.g. {'pipeline': 'pip_123'}"
                )
            try:
                scope = validate({str(k): v for k, v in scope.items()})
            except ValueError as exc:
                raise ValueError(f"budget: scope: {exc}") from None
        if on_alert is not None and not callable(on_alert):
            raise ValueError("budget: on_alert must be callable")
        if max_output_tokens is not None and (
            not isinstance(max_output_tokens, int)
            or isinstance(max_output_tokens, bool)
            or max_output_tokens <= 0
        ):
            raise ValueError(
                f"budget: max_output_tokens must be a positive integer, not {shown(max_output_tokens)}"
            )
        if name is not None and not isinstance(name, str):
            raise ValueError(f"budget: name must be a string, not {shown(name)}")
        if not isinstance(shared, bool):  # a TOML shared = "false" would otherwise mean True
            raise ValueError(f"budget: shared must be true or false, not {shown(shared)}")
        if ledger is not None and (not isinstance(ledger, str | os.PathLike) or "\0" in str(ledger)):
            raise ValueError(f"budget: ledger must be the path of a ledger file, not {shown(ledger)}")
        if isinstance(refresh_s, bool) or not isinstance(refresh_s, int | float) or not _finite(refresh_s):
            raise ValueError(f"budget: refresh_s must be a number of seconds, not {shown(refresh_s)}")
        if refresh_s < 0:
            raise ValueError(
                f"budget: refresh_s must be 0 (read the ledger before every call) or more, not {refresh_s}"
            )
        if not callable(clock):
            raise ValueError("budget: clock must be callable (it returns epoch seconds)")
        self._window = _Window(window, timezone)
        if shared and self._window.spec == "per_run":
            raise ValueError("budget: shared=True (spend from the ledger) needs a window such as '1d'")
        global _counter
        with _names_lock:
            _counter += 1
            self.name = name or f"budget-{_counter}"
        self.usd = float(usd)
        self.scope: Mapping[str, str] = dict(scope or {})
        self.mode = mode
        self.thresholds = levels
        self.on_alert = on_alert
        self.window = window
        self.timezone = timezone
        self.unknown = unknown
        self.max_output_tokens = max_output_tokens
        self.shared = shared
        self.ledger = ledger
        self.refresh_s = refresh_s
        self.clock = clock
        self._lock = threading.Lock()
        _fork.renew_locks(self, "_lock")  # checked on the application's threads
        self._window_start: float | None = None
        self._spent = 0.0
        self._reserved = 0.0
        self._fired: set[float] = set()
        self._ledger_spent = 0.0
        self._ledger_read_at = -math.inf
        if name:  # only named budgets become metric series: names are few, anonymous ones unbounded
            with _names_lock:
                _by_name[self.name] = self
        _warm_tokenizer()

    # --- state ----------------------------------------------------------------------------

    def _roll(self, now: float) -> float | None:
        """Move to the window holding ``now`` (under the lock); returns its start."""
        start = self._window.start(now)
        if start != self._window_start:
            self._window_start = start
            self._spent = 0.0
            self._fired = set()
            self._ledger_read_at = -math.inf
            self._ledger_spent = 0.0
        if self.shared and now - self._ledger_read_at >= self.refresh_s:
            self._ledger_read_at = now
            self._refresh_from_ledger(start, now)
        return start

    def _refresh_from_ledger(self, start: float | None, now: float) -> None:
        try:
            spent = ledger_spend(self.ledger, self.scope, start, now)
        except Exception as exc:
            _safety.warn_once(
                ("budget-ledger", self.name),
                "tokentrail: budget %r cannot read the ledger: %s",
                self.name,
                exc,
            )
            return
        # The ledger now holds what this process settled so far (it writes off-thread; a call
        # settled in the last instant may be missed until the next refresh).
        self._ledger_spent = spent
        self._spent = 0.0

    @property
    def spent_usd(self) -> float:
        """USD spent in the current window, every call that has ended included."""
        _settle_ended_now()
        return self._current_spend()

    def _current_spend(self) -> float:  # without settling first: for the metric reader's gauges
        with self._lock:
            self._roll(self.clock())
            return self._spent + self._ledger_spent

    @property
    def reserved_usd(self) -> float:
        """USD held for calls still running (their worst case)."""
        _settle_ended_now()
        return self._reserved

    def status(self) -> dict[str, Any]:
        _settle_ended_now()
        with self._lock:
            start = self._roll(self.clock())
            spent = self._spent + self._ledger_spent
            reserved = self._reserved
        return {
            "name": self.name,
            "usd": self.usd,
            "spent_usd": spent,
            "reserved_usd": reserved,
            "remaining_usd": max(0.0, self.usd - spent),
            "percent_used": spent / self.usd * 100,
            "over_budget": spent > self.usd,
            "mode": self.mode,
            "window": self.window,
            "timezone": self.timezone,
            "window_start": start,
            "window_end": self._window.end(start),
            "scope": dict(self.scope),
        }

    def applies(self, values: Mapping[str, str]) -> bool:
        return all(values.get(key) == value for key, value in self.scope.items())

    def reserve(self, amount: float | None, *, enforce: bool = True) -> Reservation:
        """Reserve a call's worst case (``None``: unknown); raises :class:`BudgetExceeded`."""
        with self._lock:
            start = self._roll(self.clock())
            spent = self._spent + self._ledger_spent
            if enforce and self.mode == "raise":
                if amount is None:
                    if self.unknown == "refuse":
                        raise BudgetExceeded(self, spent, self._reserved, None)
                elif spent + self._reserved + amount > self.usd:
                    raise BudgetExceeded(self, spent, self._reserved, amount)
            held = amount or 0.0
            self._reserved += held
        return Reservation(self, held, start)

    def settle(self, reservation: Reservation, actual: float) -> list[BudgetAlert]:
        """Replace a reservation by the call's real cost; returns the thresholds it crossed."""
        alerts = []
        with self._lock:
            self._reserved = max(0.0, self._reserved - reservation.amount)
            start = self._roll(self.clock())
            # A call that started in an earlier window counts in the window it ends in.
            self._spent += actual
            spent = self._spent + self._ledger_spent
            for level in self.thresholds:
                if level not in self._fired and spent >= level * self.usd:
                    self._fired.add(level)
                    alerts.append(BudgetAlert(self.name, level, spent, self.usd, start))
        return alerts

    # --- context manager and decorator -------------------------------------------------------

    # One budget object may be entered by many threads and tasks at once: each context adds and
    # removes it in its own value (no shared token stack).
    def __enter__(self) -> budget:
        _in_context.set((*_in_context.get(), self))
        return self

    def __exit__(self, *exc: Any) -> None:
        current = _in_context.get()
        for index in range(len(current) - 1, -1, -1):
            if current[index] is self:
                _in_context.set(current[:index] + current[index + 1 :])
                break

    async def __aenter__(self) -> budget:
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)

    def _for_run(self) -> budget:
        """A per_run budget spends afresh on each call of a decorated function."""
        if self.window != "per_run":
            return self
        return budget(
            self.usd, scope=self.scope, mode=self.mode, thresholds=self.thresholds, on_alert=self.on_alert,
            name=self.name, unknown=self.unknown, max_output_tokens=self.max_output_tokens, clock=self.clock,
        )  # fmt: skip

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self._for_run():
                    return await function(*args, **kwargs)

            return run_async

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self._for_run():
                return function(*args, **kwargs)

        return run

    def __repr__(self) -> str:
        return f"budget(name={self.name!r}, usd={self.usd}, mode={self.mode!r}, window={self.window!r})"


def _finite(number: float) -> bool:
    """``math.isfinite``, and False for an integer too large for a float (not OverflowError)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _thresholds(thresholds: Any) -> tuple[float, ...]:
    """Alert levels as sorted fractions of the budget; ValueError naming ``thresholds`` otherwise."""
    problem = (
        "budget: thresholds are fractions of the budget in (0, 10], e.g. (0.5, 0.8, 1.0); "
        f"got {shown(thresholds)}"
    )
    if isinstance(thresholds, str | bytes | Mapping) or not isinstance(thresholds, Iterable):
        raise ValueError(problem)
    levels = []
    for level in thresholds:
        if isinstance(level, bool) or not isinstance(level, int | float | str):
            raise ValueError(problem)
        try:
            number = float(level)
        except (ValueError, OverflowError):
            raise ValueError(problem) from None
        if not 0 < number <= 10:
            raise ValueError(problem)
        levels.append(number)
    return tuple(sorted(levels))


_warmed = False


def _warm_tokenizer() -> None:
    """Load the o200k encoding off-thread once a budget exists, so the first call it checks does
    not pay the ~0.5 s load at the call site."""
    global _warmed
    if _warmed:
        return
    _warmed = True

    def load() -> None:
        try:
            from .estimation import encoder

            encoder("o200k_base")
        except Exception as exc:
            _safety.warn_once("budget-tokenizer", "tokentrail: no offline tokenizer for budgets: %s", exc)

    threading.Thread(target=load, name="tokentrail-tokenizer", daemon=True).start()


# --- the lifecycle's side ------------------------------------------------------------------------


def active_budgets() -> tuple[budget, ...]:
    context = _in_context.get()
    return _configured + context if context else _configured


def check(
    request: Any, values: Mapping[str, str], pricer: Any, *, enforce: bool = True
) -> tuple[Reservation, ...]:
    """Reserve a call's worst case on every budget that applies to it; raises BudgetExceeded
    (after releasing what it reserved) when one refuses. Anything else goes wrong: allowed."""
    budgets = [b for b in active_budgets() if b.applies(values)]
    if not budgets:
        return ()
    try:
        worst = worst_case(request, pricer, budgets)
    except Exception as exc:
        _safety.internal_error("budget.estimate", exc)
        worst = None
    try:
        return _reserve_all(budgets, worst, enforce)
    except BudgetExceeded:
        # Calls that have ended may still hold their worst case: settle them, then decide again,
        # so that no call is refused that the real spend allows.
        _settle_ended_now()
    try:
        return _reserve_all(budgets, worst, enforce)
    except BudgetExceeded as refused:
        _safety.log.warning("tokentrail: %s", refused)
        raise


def _reserve_all(budgets: list[budget], worst: float | None, enforce: bool) -> tuple[Reservation, ...]:
    """One reservation on each budget, or none (released again) if one refuses."""
    reservations: list[Reservation] = []
    try:
        for each in budgets:
            reservations.append(each.reserve(worst, enforce=enforce))
    except BudgetExceeded:
        for reservation in reservations:
            reservation.budget.settle(reservation, 0.0)
        raise
    return tuple(reservations)


def worst_case(request: Any, pricer: Any, budgets: Iterable[budget]) -> float | None:
    """USD of the request's worst case, or None when its input or its price is unknown."""
    estimator = getattr(request, "input_estimate", None)
    if estimator is None:
        return None
    tokens, margin = estimator()
    if tokens is None:
        return None
    cap = request.parameters().get(sc.REQUEST_MAX_TOKENS)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
        caps = [b.max_output_tokens for b in budgets if b.max_output_tokens]
        cap = max(caps) if caps else DEFAULT_MAX_OUTPUT_TOKENS
    usage = Usage(input_tokens=math.ceil(tokens * (1 + margin)), output_tokens=cap)
    models = (request.price_model, request.request_model)
    cost = pricer.price(usage, request.provider, models, time.time())
    return None if cost is None else cost.total


def settle_budgets(reservations: Iterable[Reservation], actual: float, span: Any = None) -> None:
    """A call ended: its real cost replaces its reservations; crossed thresholds alert."""
    for reservation in reservations:
        try:
            alerts = reservation.budget.settle(reservation, actual)
        except Exception as exc:
            _safety.internal_error("budget.settle", exc)
            continue
        for alert in alerts:
            _alert(reservation.budget, alert, span)


def _alert(owner: budget, alert: BudgetAlert, span: Any) -> None:
    attributes = {
        sc.BUDGET_NAME: alert.budget,
        sc.BUDGET_THRESHOLD: alert.threshold,
        sc.BUDGET_SPENT_USD: alert.spent_usd,
        sc.BUDGET_LIMIT_USD: alert.limit_usd,
    }
    try:
        if span is not None and span.is_recording():
            span.add_event(EVENT_THRESHOLD, attributes)
    except Exception as exc:
        _safety.internal_error("budget.event", exc)
    _safety.log.warning(
        "tokentrail: budget %r reached %d%%: $%.6f of $%.4f spent",
        alert.budget,
        round(alert.threshold * 100),
        alert.spent_usd,
        alert.limit_usd,
    )
    if owner.on_alert is not None:
        try:
            owner.on_alert(alert)
        except Exception as exc:  # the user's callback must not break the call that crossed
            _safety.internal_error("budget.on_alert", exc)


def observe_budgets(meter: Any) -> None:
    """Spend and remaining budget as gauges, one series per budget name."""
    from opentelemetry.metrics import Observation

    # On the metric reader's thread: what is settled so far (the recorder is not drained from
    # inside a metrics collection, which its own records would wait on).
    def spend(_options: Any) -> list[Any]:
        return [Observation(b._current_spend(), {sc.BUDGET_NAME: b.name}) for b in list(_by_name.values())]

    def remaining(_options: Any) -> list[Any]:
        return [
            Observation(max(0.0, b.usd - b._current_spend()), {sc.BUDGET_NAME: b.name})
            for b in list(_by_name.values())
        ]

    meter.create_observable_gauge(
        METRIC_SPEND, [spend], unit="USD", description="Spend in the budget's window"
    )
    meter.create_observable_gauge(
        METRIC_REMAINING, [remaining], unit="USD", description="Budget left in the window (never below 0)"
    )


# --- configuration ------------------------------------------------------------------------------

_FIELDS = {
    "usd", "scope", "mode", "thresholds", "name", "window", "timezone", "unknown",
    "max_output_tokens", "shared", "ledger", "refresh_s",
}  # fmt: skip


def load(source: str | Path | Iterable[Any]) -> tuple[budget, ...]:
    """Budgets from a TOML file (``[[budget]]`` tables) or a list of budgets / mappings."""
    if isinstance(source, str | os.PathLike):
        import tomllib

        path = Path(source)
        named = shown(str(path))  # cut short: the message stays one line whatever the value
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block instrument() for ever
                raise ConfigError(f"budgets file {named}: not a regular file; give a TOML file")
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"budgets file {named}: {exc.strerror or type(exc).__name__}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"budgets file {named}: invalid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"budgets file {named}: invalid TOML: nested too deeply") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"budgets file {named}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        # Only [[budget]] tables: a misspelt [[budgets]] would otherwise load no budget, silently.
        unexpected = sorted(set(data) - {"budget"})
        if unexpected:
            raise ConfigError(
                f"budgets file {named}: unknown top-level key(s) {shown(unexpected)}; "
                "each budget is a [[budget]] table"
            )
        entries = data.get("budget", [])
        where = named
        if not isinstance(entries, list):
            raise ConfigError(
                f"{where}: budget must be [[budget]] tables (an array of tables), not {shown(entries)}"
            )
    elif isinstance(source, Iterable) and not isinstance(source, bytes | Mapping):
        entries, where = list(source), "instrument(budgets=...)"
    else:
        raise ConfigError(
            f"instrument(budgets={shown(source)}): use the path of a TOML file of [[budget]] tables, "
            "or a list of tokentrail.budget(...) objects or mappings"
        )
    found = []
    for index, entry in enumerate(entries):
        if isinstance(entry, budget):
            found.append(entry)
            continue
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: budget #{index + 1} must be a table/mapping")
        unknown = set(entry) - _FIELDS
        if unknown:
            raise ConfigError(
                f"{where}: budget #{index + 1}: unknown field(s) {sorted(map(str, unknown))}; "
                f"use {', '.join(sorted(_FIELDS))}"
            )
        if "usd" not in entry:
            raise ConfigError(f"{where}: budget #{index + 1} needs usd = <limit in US dollars>")
        try:
            found.append(budget(**{"name": f"budget-{index + 1}", **entry}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: budget #{index + 1}: {exc}") from None
    return tuple(found)


def configure(budgets: tuple[budget, ...]) -> None:
    """Make ``budgets`` apply to every call (replacing the configured ones)."""
    global _configured
    _configured = tuple(budgets)


def configured() -> tuple[budget, ...]:
    return _configured


def statuses() -> list[dict[str, Any]]:
    return [b.status() for b in _configured]


def ledger_spend(
    ledger: str | Path | None, scope: Mapping[str, str], since: float | None, until: float
) -> float:
    """The ledger's spend for ``scope`` in [since, until); 0 when there is no ledger yet."""
    from .ledger import open_ledger
    from .ledger.query import Filters, report

    path = Path(ledger).expanduser() if ledger else default_ledger()
    if path is None or not path.exists():
        return 0.0
    connection = open_ledger(path, create=False)
    try:
        filters = Filters(since=since, until=until, where=dict(scope))
        return report(connection, (), filters).totals.cost_usd or 0.0
    finally:
        connection.close()


def default_ledger() -> Path | None:
    import os

    from .config import ENV_LEDGER, ledger_location

    return ledger_location(os.environ.get(ENV_LEDGER))


def budget_statuses(path: str, ledger: Any, now: float | None = None) -> list[dict[str, Any]]:
    """Each budget configured in ``path`` with its spend in its current window, from the ledger.

    What ``tokentrail budget status`` prints and ``tokentrail serve`` answers on ``/v1/budgets``."""
    now = time.time() if now is None else now
    found = []
    for each in load(path):
        start = each._window.start(now)
        per_run = each.window == "per_run"
        # A per_run budget lives in one process; the ledger can show only all-time spend in scope.
        spent = ledger_spend(ledger, each.scope, start, now + 1)
        found.append(
            {
                "name": each.name,
                "usd": each.usd,
                "spent_usd": spent,
                "remaining_usd": max(0.0, each.usd - spent),
                "percent_used": spent / each.usd * 100,
                "over_budget": spent > each.usd,
                "mode": each.mode,
                "window": each.window,
                "timezone": each.timezone,
                "window_start": start,
                "window_end": each._window.end(start),
                "scope": dict(each.scope),
                "note": "per_run: in-process only; the ledger shows all-time spend in scope"
                if per_run
                else "",
            }
        )
    return found
