"""Adding up calls: the one aggregate behind roll-up spans, the run summary and report totals.

In-process sums (a roll-up span's calls, the run summary) add calls one by one with
:meth:`Totals.add_call`; the ledger's reports build the same record from SQL sums (its columns
follow :data:`FIELDS`) and merge groups with :meth:`Totals.add`. Either way the same rules hold:
a call without usage adds no tokens, a call with usage and no price is *unpriced* (never $0).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .usage import SUMMED_FIELDS

__all__ = ["FIELDS", "SUMMARY_FIELDS", "Totals"]


@dataclass(slots=True)
class Totals:
    """What a set of calls added up to."""

    calls: int = 0
    calls_with_usage: int = 0
    priced_calls: int = 0
    unpriced_calls: int = 0
    """Calls with usage but no known price."""
    errors: int = 0
    incomplete: int | None = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    cache_savings_usd: float | None = 0.0
    """Cache reads at the input rate minus their cost at the cache-read rate; None when unknown."""

    def add_call(self, usage: Any, cost_usd: float | None, *, failed: bool, incomplete: bool = False) -> None:
        """Count one call: its :class:`~tokentrail.usage.Usage` (or None), its cost (None: unpriced)."""
        self.calls += 1
        if failed:
            self.errors += 1
        if incomplete and self.incomplete is not None:
            self.incomplete += 1
        if usage is not None:
            self.calls_with_usage += 1
            self.input_tokens += usage.input_tokens
            self.output_tokens += usage.output_tokens
            self.cache_read_tokens += usage.cache_read_tokens
            self.cache_write_tokens += usage.cache_write_tokens
            self.reasoning_tokens += usage.reasoning_tokens
            if cost_usd is None:
                self.unpriced_calls += 1
        if cost_usd is not None:
            self.priced_calls += 1
            self.cost_usd += cost_usd

    def add(self, other: Totals) -> None:
        """Merge another set of calls into this one (an unknown figure stays unknown)."""
        for name in FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, None if mine is None or theirs is None else mine + theirs)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def avg_cost_per_call(self) -> float | None:
        """Cost over the calls that have a cost (unpriced calls would understate it)."""
        return self.cost_usd / self.priced_calls if self.priced_calls else None

    @property
    def avg_tokens_per_call(self) -> float | None:
        """Input plus output tokens over the calls that reported usage."""
        return self.total_tokens / self.calls_with_usage if self.calls_with_usage else None

    def as_dict(self) -> dict[str, Any]:
        """Every figure, with the derived ones (what reports print and export)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in FIELDS}
        values["total_tokens"] = self.total_tokens
        values["avg_cost_per_call_usd"] = self.avg_cost_per_call
        values["avg_tokens_per_call"] = self.avg_tokens_per_call
        return values

    def summary(self) -> dict[str, Any]:
        """The figures of the run summary and of a roll-up span (:data:`SUMMARY_FIELDS`)."""
        return {name: getattr(self, name) for name in SUMMARY_FIELDS}


FIELDS = tuple(f.name for f in fields(Totals))
SUMMARY_FIELDS = ("calls", *SUMMED_FIELDS, "cost_usd", "unpriced_calls", "errors")
# Every token count the usage table says is summed has its column here, and nothing else does.
assert set(SUMMED_FIELDS) == {name for name in FIELDS if name.endswith("_tokens")}
