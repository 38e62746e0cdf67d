"""The budget and its state: limits, reservations, spend, thresholds."""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _fork, _safety
from .._safety import shown
from ..context import validate
from .window import Window

__all__ = [
    "BudgetAlert",
    "BudgetExceeded",
    "Reservation",
    "active_budgets",
    "budget",
    "configure",
    "configured",
    "named_budgets",
    "read_spend_with",
    "settle_ended_with",
]

MODES = ("raise", "warn")
UNKNOWN_POLICIES = ("allow", "refuse")


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


# Settles the calls that have ended and are not yet recorded: the lifecycle's recorder registers its
# flush here while tokentrail is instrumented (budgets sit below the lifecycle and do not import it).
_settle_ended: Callable[[], None] | None = None


def settle_ended_with(settle: Callable[[], None] | None) -> None:
    """Register how to settle every call that has ended (the recorder's synchronous drain)."""
    global _settle_ended
    _settle_ended = settle


def settle_ended_now() -> None:
    settle = _settle_ended
    if settle is None:
        return
    try:
        settle()
    except Exception as exc:
        _safety.internal_error("budget.settle_ended", exc)


SpendReader = Callable[[str | os.PathLike[str] | None, Mapping[str, str], float | None, float], float]
"""``(ledger path or None for the default, scope, since, until) -> USD`` spent in the ledger."""
_spend_reader: SpendReader | None = None


def read_spend_with(reader: SpendReader) -> None:
    """Where ``shared=True`` budgets read other processes' spend: the ledger's reader, handed in
    by ``instrument()`` (budgets sit below the ledger and do not import it)."""
    global _spend_reader
    _spend_reader = reader


def _read_spend(
    ledger: str | os.PathLike[str] | None, scope: Mapping[str, str], since: float | None, until: float
) -> float:
    if _spend_reader is None:
        raise RuntimeError(
            "no ledger reader: shared budgets read the ledger once tokentrail.instrument() ran"
        )
    return _spend_reader(ledger, scope, since, until)


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
        self._window = Window(window, timezone)
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
            spent = _read_spend(self.ledger, self.scope, start, now)
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
        settle_ended_now()
        return self.settled_spend()

    def settled_spend(self) -> float:
        """USD spent in the current window without settling ended calls first (the metric
        reader's gauges: its thread must not wait on the recorder)."""
        with self._lock:
            self._roll(self.clock())
            return self._spent + self._ledger_spent

    @property
    def reserved_usd(self) -> float:
        """USD held for calls still running (their worst case)."""
        settle_ended_now()
        return self._reserved

    def status(self) -> dict[str, Any]:
        """This budget now: spent, reserved, remaining, percent used, its window and scope."""
        settle_ended_now()
        with self._lock:
            start = self._roll(self.clock())
            spent = self._spent + self._ledger_spent
            reserved = self._reserved
        return {**self.status_row(spent, start), "reserved_usd": reserved}

    def status_row(self, spent: float, window_start: float | None) -> dict[str, Any]:
        """The figures of a status row for ``spent`` USD in the window starting at ``window_start``:
        what ``status()``, ``tokentrail budget status`` and ``/v1/budgets`` show, alike."""
        return {
            "name": self.name,
            "usd": self.usd,
            "spent_usd": spent,
            "remaining_usd": max(0.0, self.usd - spent),
            "percent_used": spent / self.usd * 100,
            "over_budget": spent > self.usd,
            "mode": self.mode,
            "window": self.window,
            "timezone": self.timezone,
            "window_start": window_start,
            "window_end": self._window.end(window_start),
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
            from ..estimation import encoder  # loaded when the first budget exists, not at start-up

            encoder("o200k_base")
        except Exception as exc:
            _safety.warn_once("budget-tokenizer", "tokentrail: no offline tokenizer for budgets: %s", exc)

    threading.Thread(target=load, name="tokentrail-tokenizer", daemon=True).start()


def active_budgets() -> tuple[budget, ...]:
    """The budgets that apply here: the configured ones and those entered in this context."""
    context = _in_context.get()
    return _configured + context if context else _configured


def named_budgets() -> list[budget]:
    """The latest budget of each name (what the spend gauges report)."""
    return list(_by_name.values())


def configure(budgets: tuple[budget, ...]) -> None:
    """Make ``budgets`` apply to every call (replacing the configured ones)."""
    global _configured
    _configured = tuple(budgets)


def configured() -> tuple[budget, ...]:
    return _configured
