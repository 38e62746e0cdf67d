"""The lifecycle's side of budgets: reserve a call's worst case before it is sent, settle its real
cost when it has been priced, announce the thresholds crossed."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .. import _safety
from .. import semconv as sc
from ..usage import Usage
from .budget import BudgetAlert, BudgetExceeded, Reservation, active_budgets, budget, settle_ended_now

__all__ = ["announce", "check", "settle_budgets", "worst_case"]


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
        settle_ended_now()
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
    from ..estimation import DEFAULT_MAX_OUTPUT_TOKENS  # loaded when a budget first asks, not at start-up

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


def settle_budgets(reservations: Iterable[Reservation], actual: float) -> list[BudgetAlert]:
    """A call ended: its real cost replaces its reservations. Each threshold it crossed is
    announced (:func:`announce`) and returned, for the lifecycle to put on the call's span."""
    crossed: list[BudgetAlert] = []
    for reservation in reservations:
        try:
            alerts = reservation.budget.settle(reservation, actual)
        except Exception as exc:
            _safety.internal_error("budget.settle", exc)
            continue
        for alert in alerts:
            announce(reservation.budget, alert)
        crossed.extend(alerts)
    return crossed


def announce(owner: budget, alert: BudgetAlert) -> None:
    """A threshold crossed: a warning log line, and the budget's ``on_alert``."""
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
