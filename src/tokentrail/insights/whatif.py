"""What-if repricing: the ledger's exact token mix priced at other models' prices.

Every selected call keeps its own token counts (uncached input, cache reads and writes, output,
reasoning, audio, images, web searches) and its own time, and is priced with the candidate's
price card at that time, call by call: long-context tiers apply per call, as they would have.
The comparison is with what the same calls cost (the calls that had a known cost).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..ledger.query import Filters
from ..ledger.source import CallSource
from ..pricing import PriceCard, Pricer
from ..usage import Usage

__all__ = [
    "CALL_COLUMNS",
    "CAVEATS",
    "Candidate",
    "CandidateUnpriced",
    "Repricing",
    "TokenMix",
    "calls_with_usage",
    "reprice",
    "usage_rows",
]

CAVEATS = (
    "Another model has another tokenizer: the same text is a different number of tokens on it.",
    "Another model writes more or less (output and reasoning length differ); these are today's counts.",
    "Prices are per call at each call's time: long-context tiers apply per call, as they would have.",
    "Cache reads and writes keep their counts: another provider may cache differently or not at all.",
)

# Ledger columns that make up a call's usage (Usage field = column name).
USAGE_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "web_searches",
)
# What repricing reads of each call, in this order (the advice reads the rest).
CALL_COLUMNS = (
    "start_time",
    "provider",
    "model",
    "cost_usd",
    "price_model",
    "request_model",
    "stream",
    "pipeline",
    "agent",
    *USAGE_COLUMNS,
)
_USAGE_AT = len(CALL_COLUMNS) - len(USAGE_COLUMNS)
assert tuple(f.name for f in fields(Usage))[: len(USAGE_COLUMNS)] == USAGE_COLUMNS  # Usage(*row) takes them


class CandidateUnpriced(ValueError):
    """The price catalogue (and the overrides) has no price for a candidate model."""


@dataclass(frozen=True, slots=True)
class Call:
    """One ledger call with usage: what repricing needs of it."""

    at: float
    provider: str
    model: str | None
    usage: Usage
    cost_usd: float | None
    names: tuple[str | None, ...] = ()
    """The model ids its own prices are found by: the catalogue model that priced it, the response
    model, the request model."""


def own_card(pricer: Pricer, call: Call, context: Mapping[str, str] | None = None) -> PriceCard | None:
    """The price card of the model the call ran on, at its time (None: unpriced)."""
    for name in call.names or (call.model,):
        if name:
            card = pricer.card(call.provider, name, call.at, context)
            if card is not None:
                return card
    return None


def usage_rows(source: CallSource, filters: Filters) -> Iterator[tuple[Call, tuple[Any, ...]]]:
    """(call, its row of :data:`CALL_COLUMNS`) for the calls matching ``filters`` that reported
    usage, in time order."""
    for row in source.select_calls(filters, CALL_COLUMNS, with_usage=True):
        usage = Usage(*(value or 0 for value in row[_USAGE_AT:]))
        yield Call(row[0], row[1], row[2], usage, row[3], (row[4], row[2], row[5])), row


def calls_with_usage(source: CallSource, filters: Filters) -> Iterator[Call]:
    """The calls matching ``filters`` in ``source`` that reported usage, in time order."""
    return (call for call, _ in usage_rows(source, filters))


@dataclass(slots=True)
class TokenMix:
    """The token kinds of a set of calls (each kind once: the parts add up to every token)."""

    calls: int = 0
    uncached_input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    """Output tokens other than reasoning."""
    reasoning: int = 0

    def add(self, usage: Usage) -> None:
        self.calls += 1
        self.uncached_input += usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
        self.cache_read += usage.cache_read_tokens
        self.cache_write += usage.cache_write_tokens
        self.output += usage.output_tokens - usage.reasoning_tokens
        self.reasoning += usage.reasoning_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "uncached_input_tokens": self.uncached_input,
            "cache_read_tokens": self.cache_read,
            "cache_write_tokens": self.cache_write,
            "output_tokens": self.output,
            "reasoning_tokens": self.reasoning,
        }


@dataclass(slots=True)
class Candidate:
    provider: str
    model: str
    priced_model: str | None = None
    """The catalogue model whose prices applied."""
    cost_usd: float = 0.0
    """Every selected call with usage at this model's prices."""
    cost_of_priced_calls_usd: float = 0.0
    """Only the calls that had a known cost: the like-for-like figure."""

    def as_dict(self, actual_usd: float) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "priced_model": self.priced_model,
            "cost_usd": self.cost_usd,
            "cost_of_priced_calls_usd": self.cost_of_priced_calls_usd,
            "difference_usd": self.cost_of_priced_calls_usd - actual_usd,
            "ratio": self.cost_of_priced_calls_usd / actual_usd if actual_usd else None,
        }


@dataclass
class Repricing:
    mix: TokenMix
    actual_usd: float
    """What the calls with a known cost cost."""
    priced_calls: int
    unpriced_calls: int
    candidates: list[Candidate] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mix": self.mix.as_dict(),
            "actual_usd": self.actual_usd,
            "priced_calls": self.priced_calls,
            "unpriced_calls": self.unpriced_calls,
            "candidates": [c.as_dict(self.actual_usd) for c in self.candidates],
            "caveats": list(CAVEATS),
        }


def reprice(
    calls: Iterable[Call], candidates: Sequence[tuple[str, str]], pricer: Pricer | None = None
) -> Repricing:
    """``calls`` priced at each candidate ``(provider, model)``; raises :class:`CandidateUnpriced`
    for a candidate without prices (at the first call's time)."""
    pricer = pricer or Pricer()
    found = [Candidate(provider, model) for provider, model in candidates]
    result = Repricing(TokenMix(), 0.0, 0, 0, found)
    for call in calls:
        result.mix.add(call.usage)
        if call.cost_usd is None:
            result.unpriced_calls += 1
        else:
            result.priced_calls += 1
            result.actual_usd += call.cost_usd
        for candidate in found:
            card = pricer.card(candidate.provider, candidate.model, call.at)
            if card is None:
                raise CandidateUnpriced(
                    f"no price for {candidate.model!r} at provider {candidate.provider!r}: check the name "
                    f"with `tokentrail prices {candidate.model} --provider {candidate.provider}`"
                )
            candidate.priced_model = card.model_id
            cost = card.price(call.usage)[2]
            candidate.cost_usd += cost
            if call.cost_usd is not None:
                candidate.cost_of_priced_calls_usd += cost
    return result
