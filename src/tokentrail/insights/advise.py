"""Savings advice: where the ledger says money could be saved, each item with the dollars at
stake computed call by call from the calls' own token counts and the price catalogue.

* **Large inputs never cached**: groups of calls (same provider, model, pipeline and agent) with
  large inputs (1,024 tokens or more, the smallest prompt providers cache) that neither read nor
  wrote the cache. At stake: the group's smallest input, as a prefix every call but the first
  could have read from the cache at the cache-read rate. The ledger holds no prompts, so whether
  the inputs really share that prefix is for the reader to check.
* **Cache writes never read**: writes no later call read within the entry's lifetime
  (:func:`~tokentrail.ledger.details.cache_writes`). At stake: what they cost above plain input.
* **Batch prices**: pipelines whose calls were not streamed (nobody watched them arrive), priced
  at the model's batch prices. At stake: the difference.
* **Reasoning share**: per model, the share of output spent on reasoning and what it cost.
* **A cheaper model of the same family** (``gpt-4o`` → ``gpt-4o-mini``, ``claude-sonnet-4-5`` →
  ``claude-haiku-4-5``, ``gemini-2.5-pro`` → ``gemini-2.5-flash``) at the same token mix. At
  stake: the difference; the what-if caveats apply (quality is not measured here).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..ledger.query import Filters
from ..ledger.source import CallSource
from ..pricing import Pricer
from .overview import write_premium_usd
from .whatif import CALL_COLUMNS, Call, own_card, usage_rows

__all__ = ["Advice", "advise", "cheaper_relatives"]

CACHEABLE_TOKENS = 1024
MIN_REPEATS = 3
BATCH = {"processing": "batch"}
# Tiers from dearest to cheapest within a family, as they appear in model ids.
_LADDERS = (("opus", "sonnet", "haiku"), ("pro", "flash", "flash-lite"))
_SIZES = ("", "-mini", "-nano")


@dataclass
class Advice:
    kind: str
    title: str
    usd_at_stake: float
    detail: str
    items: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cheaper_relatives(model: str) -> list[str]:
    """Model ids of the same family below ``model`` (names only: the catalogue decides which exist)."""
    found: list[str] = []
    for ladder in _LADDERS:
        for index, tier in enumerate(ladder):
            pattern = re.compile(rf"(^|-){re.escape(tier)}($|-)")
            if pattern.search(model) and not any(
                re.search(rf"(^|-){re.escape(t)}($|-)", model) for t in ladder[index + 1 :]
            ):
                for cheaper in ladder[index + 1 :]:
                    found.append(
                        pattern.sub(lambda m, c=cheaper: f"{m.group(1)}{c}{m.group(2)}", model, count=1)
                    )
    for index, size in enumerate(_SIZES):
        if (size and model.endswith(size)) or (not size and not any(model.endswith(s) for s in _SIZES[1:])):
            base = model[: len(model) - len(size)] if size else model
            found.extend(base + smaller for smaller in _SIZES[index + 1 :])
            break
    return [m for m in dict.fromkeys(found) if m != model]


@dataclass
class _Group:
    calls: int = 0
    cost: float = 0.0
    alternative: float = 0.0
    tokens: int = 0
    extra: int = 0
    smallest: int | None = None
    members: list[Call] = field(default_factory=list)


def _price(pricer: Pricer, call: Call, context: Any = None) -> float | None:
    card = own_card(pricer, call, context)
    return None if card is None else card.price(call.usage)[2]


def _uncached(calls: list[Call], pricer: Pricer) -> Advice:
    groups: dict[tuple[Any, ...], _Group] = {}
    for call in calls:
        usage = call.usage
        if usage.input_tokens < CACHEABLE_TOKENS or usage.cache_read_tokens or usage.cache_write_tokens:
            continue
        group = groups.setdefault(call.key, _Group())  # type: ignore[attr-defined]
        group.members.append(call)
        group.smallest = (
            usage.input_tokens if group.smallest is None else min(group.smallest, usage.input_tokens)
        )
    items = []
    for key, group in groups.items():
        if len(group.members) < MIN_REPEATS or group.smallest is None:
            continue
        stake = 0.0
        for call in sorted(group.members, key=lambda c: c.at)[1:]:
            card = own_card(pricer, call)
            if card is None or card.rate_per_million("cache_read_tokens", call.usage.input_tokens) is None:
                continue
            cached = replace(call.usage, cache_read_tokens=group.smallest)
            stake += card.price(call.usage)[2] - card.price(cached)[2]
        if stake > 0:
            items.append(
                _keyed(key, calls=len(group.members), prefix_tokens=group.smallest, usd_at_stake=stake)
            )
    items.sort(key=lambda item: -item["usd_at_stake"])
    return Advice(
        "uncached_inputs",
        "Large repeated inputs never cached",
        sum(item["usd_at_stake"] for item in items),
        f"Calls with {CACHEABLE_TOKENS:,}+ input tokens, at least {MIN_REPEATS} per provider, model, "
        "pipeline and "
        "agent, that never read or wrote the prompt cache. At stake: each group's smallest input read from "
        "the "
        "cache on every call but the first (check that the prompts share that prefix: put the fixed part "
        "first).",
        items,
    )


def _keyed(key: tuple[Any, ...], **figures: Any) -> dict[str, Any]:
    provider, model, pipeline, agent = key
    return {"provider": provider, "model": model, "pipeline": pipeline, "agent": agent, **figures}


def _unread(source: CallSource, filters: Filters, pricer: Pricer) -> Advice:
    unread, _ = source.cache_writes(filters)
    by_model: dict[tuple[str, str | None], list[float]] = {}
    for row in unread:
        premium = write_premium_usd(pricer, row)
        entry = by_model.setdefault((row["provider"], row["model"]), [0, 0.0, 0])
        entry[0] += 1
        entry[1] += premium or 0.0
        entry[2] += row["cache_write_tokens"]
    items = [
        {"provider": p, "model": m, "writes": n, "tokens": tokens, "usd_at_stake": usd}
        for (p, m), (n, usd, tokens) in by_model.items()
    ]
    items.sort(key=lambda item: -item["usd_at_stake"])
    return Advice(
        "unread_cache_writes",
        "Cache writes never read",
        sum(item["usd_at_stake"] for item in items),
        "Prompt-cache writes that no later call of the same provider and model read within the entry's "
        "lifetime. "
        "At stake: what they cost above the same tokens as plain input. Cache only prompts that repeat "
        "within "
        "minutes, or drop the cache breakpoint.",
        items,
    )


def _batch(calls: list[Call], pricer: Pricer) -> Advice:
    groups: dict[str | None, _Group] = {}
    for call in calls:
        if call.stream or call.cost_usd is None:  # type: ignore[attr-defined]
            continue
        normal = _price(pricer, call)
        batch = _price(pricer, call, context=BATCH)
        if normal is None or batch is None or batch >= normal:
            continue
        group = groups.setdefault(call.pipeline, _Group())  # type: ignore[attr-defined]
        group.calls += 1
        group.cost += normal
        group.alternative += batch
    items = [
        {
            "pipeline": pipeline,
            "calls": g.calls,
            "cost_usd": g.cost,
            "batch_usd": g.alternative,
            "usd_at_stake": g.cost - g.alternative,
        }
        for pipeline, g in groups.items()
    ]
    items.sort(key=lambda item: -item["usd_at_stake"])
    return Advice(
        "batch",
        "Pipelines that could use batch prices",
        sum(item["usd_at_stake"] for item in items),
        "Calls that were not streamed, priced at their model's batch prices (results within hours, not "
        "seconds): "
        "worth it for pipelines nobody waits on.",
        items,
    )


def _reasoning(calls: list[Call], pricer: Pricer) -> Advice:
    groups: dict[tuple[str, str | None], _Group] = {}
    for call in calls:
        if not call.usage.output_tokens:
            continue
        group = groups.setdefault((call.provider, call.model), _Group())
        group.tokens += call.usage.output_tokens
        group.extra += call.usage.reasoning_tokens
        if call.usage.reasoning_tokens:
            card = own_card(pricer, call)
            if card is not None:
                without = replace(
                    call.usage,
                    output_tokens=call.usage.output_tokens - call.usage.reasoning_tokens,
                    reasoning_tokens=0,
                )
                group.cost += card.price(call.usage)[2] - card.price(without)[2]
    items = [
        {
            "provider": p,
            "model": m,
            "output_tokens": g.tokens,
            "reasoning_tokens": g.extra,
            "reasoning_share": g.extra / g.tokens,
            "usd_at_stake": g.cost,
        }
        for (p, m), g in groups.items()
        if g.extra
    ]
    items.sort(key=lambda item: -item["usd_at_stake"])
    return Advice(
        "reasoning",
        "Reasoning share by model",
        sum(item["usd_at_stake"] for item in items),
        "Output tokens spent on reasoning and what they cost. A lower reasoning effort (or a budget for "
        "thinking "
        "tokens) cuts it where the answers do not need it.",
        items,
    )


def _cheaper(calls: list[Call], pricer: Pricer) -> Advice:
    by_model: dict[tuple[str, str], list[Call]] = {}
    for call in calls:
        if call.model and call.cost_usd is not None:
            by_model.setdefault((call.provider, call.model), []).append(call)
    items = []
    for (provider, model), members in by_model.items():
        first = members[0]
        own = own_card(pricer, first)
        best: dict[str, Any] | None = None
        for relative in cheaper_relatives(model):
            card = pricer.card(provider, relative, first.at)
            if card is None or own is None or card.model_id == own.model_id:
                continue
            actual = sum(c.cost_usd or 0.0 for c in members)
            repriced = 0.0
            for call in members:
                at = pricer.card(provider, relative, call.at)
                repriced += at.price(call.usage)[2] if at is not None else 0.0
            if repriced < actual and (best is None or actual - repriced > best["usd_at_stake"]):
                best = {
                    "provider": provider,
                    "model": model,
                    "cheaper_model": card.model_id,
                    "calls": len(members),
                    "cost_usd": actual,
                    "cheaper_usd": repriced,
                    "usd_at_stake": actual - repriced,
                }
        if best is not None:
            items.append(best)
    items.sort(key=lambda item: -item["usd_at_stake"])
    return Advice(
        "cheaper_model",
        "A cheaper model of the same family",
        sum(item["usd_at_stake"] for item in items),
        "The same calls (same token counts, same times) at a smaller model of the same family. Its "
        "tokenizer, "
        "verbosity and quality differ: try it on a sample first (tokentrail whatif prices any candidate).",
        items,
    )


@dataclass(frozen=True, slots=True)
class _Call(Call):
    stream: bool = False
    pipeline: str | None = None
    agent: str | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.provider, self.model, self.pipeline, self.agent)


def _calls(source: CallSource, filters: Filters) -> Iterator[_Call]:
    stream, pipeline, agent = (CALL_COLUMNS.index(name) for name in ("stream", "pipeline", "agent"))
    for call, row in usage_rows(source, filters):
        yield _Call(
            call.at,
            call.provider,
            call.model,
            call.usage,
            call.cost_usd,
            call.names,
            bool(row[stream]),
            row[pipeline],
            row[agent],
        )


def advise(source: CallSource, filters: Filters, pricer: Pricer | None = None) -> list[Advice]:
    """Every kind of advice for the calls matching ``filters`` in ``source`` (the ledger or a
    fleet's ClickHouse), the most at stake first."""
    pricer = pricer or Pricer()
    calls: list[Any] = list(_calls(source, filters))
    found = [
        _uncached(calls, pricer),
        _unread(source, filters, pricer),
        _batch(calls, pricer),
        _reasoning(calls, pricer),
        _cheaper(calls, pricer),
    ]
    found.sort(key=lambda advice: -advice.usd_at_stake)
    return found
