"""Pricing: our compiled price cards against genai-prices' own arithmetic, the card cache, overrides.

The reference for every catalogue price is ``genai_prices.calc_price`` itself: the models, tiers,
price variants and time constraints are read from the installed snapshot, so the test follows the
catalogue as it changes instead of naming a few models. Override prices are checked against
figures computed here by hand from the numbers in the override file.
"""

from __future__ import annotations

import math
import textwrap
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices import data_snapshot
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import (
    ClauseAnd,
    ClauseContains,
    ClauseEquals,
    ClauseOr,
    ClauseStartsWith,
    ModelInfo,
    ModelPrice,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokentrail import pricing
from tokentrail.pricing import Cost, PriceOverrideError, Pricer, genai_usage, load_overrides
from tokentrail.usage import COUNT_FIELDS, Usage

SNAPSHOT = data_snapshot.get_snapshot()
GENAI_PROVIDERS = (
    "openai",
    "anthropic",
    "google",
    "x-ai",
    "deepseek",
    "openrouter",
    "aws",
    "mistral",
    "groq",
)
DEFAULT_AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC).timestamp()
# Days on which time-of-day windows are probed (besides the days around every start date).
PROBE_DAYS = (date(2025, 3, 9), date(2026, 11, 3))
EARLIEST = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp())
LATEST = int(datetime(2028, 1, 1, tzinfo=UTC).timestamp())


def close(ours: float | None, theirs: Decimal | float) -> bool:
    return ours is not None and math.isclose(ours, float(theirs), rel_tol=1e-9, abs_tol=1e-15)


# ---------------------------------------------------------------------------------------------
# The catalogue, read from the genai-prices snapshot
# ---------------------------------------------------------------------------------------------


def _our_provider_names() -> dict[str, str]:
    """genai-prices provider id -> the first gen_ai.provider.name of ours that maps to it."""
    ours: dict[str, str] = {}
    for name, genai_id in pricing._GENAI_PROVIDER_IDS.items():
        ours.setdefault(genai_id, name)
    return ours


OUR_PROVIDER = _our_provider_names()


def _clause_strings(clause: Any) -> Iterator[str]:
    if isinstance(clause, ClauseEquals):
        yield clause.equals
    elif isinstance(clause, ClauseStartsWith):
        yield clause.starts_with
    elif isinstance(clause, ClauseContains):
        yield clause.contains
    elif isinstance(clause, ClauseOr):
        for inner in clause.or_:
            yield from _clause_strings(inner)
    elif isinstance(clause, ClauseAnd):
        for inner in clause.and_:
            yield from _clause_strings(inner)


def _model_ref(genai_id: str, model: ModelInfo) -> str | None:
    """A model name that genai-prices resolves to exactly this catalogue entry for this provider."""
    for ref in (model.id, *_clause_strings(model.match)):
        if not model.is_match(ref):
            continue
        try:
            _, found = SNAPSHOT.find_provider_model(ref, None, genai_id, None)
        except LookupError:
            continue
        if found is model:
            return ref
    return None


def _all_prices(model: ModelInfo) -> list[ModelPrice]:
    found = [model.prices] if isinstance(model.prices, ModelPrice) else [c.prices for c in model.prices]
    return found + [variant.prices for variant in model.price_variants or ()]


def _constraints(model: ModelInfo) -> list[Any]:
    found = [] if isinstance(model.prices, ModelPrice) else [c.constraint for c in model.prices]
    found += [variant.constraint for variant in model.price_variants or ()]
    return [c for c in found if c is not None]


def _tier_starts(model: ModelInfo) -> tuple[int, ...]:
    return tuple(
        sorted(
            {
                tier.start
                for prices in _all_prices(model)
                for value in vars(prices).values()
                if isinstance(value, TieredPrices)
                for tier in value.tiers
            }
        )
    )


def _contexts(model: ModelInfo) -> tuple[dict[str, str] | None, ...]:
    contexts: list[dict[str, str] | None] = [None]
    for variant in model.price_variants or ():
        if dict(variant.when) not in contexts:
            contexts.append(dict(variant.when))
    if len(contexts) > 1:
        # A context no variant asks for must change nothing.
        contexts.append({"service_tier": "no-such-tier"})
    return tuple(contexts)


def _utc(day: date, moment: time) -> float:
    stamp = datetime.combine(day, moment)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _instants(model: ModelInfo) -> tuple[float, ...]:
    """Request times on both sides of every date and time-of-day boundary of the model's prices."""
    instants = {DEFAULT_AT}
    days = set(PROBE_DAYS)
    constraints = _constraints(model)
    for constraint in constraints:
        if isinstance(constraint, StartDateConstraint):
            midnight = _utc(constraint.start_date, time(0))
            instants |= {midnight - 86400, midnight - 1, midnight - 1e-6, midnight, midnight + 1}
            days |= {constraint.start_date, constraint.start_date - timedelta(days=1)}
    for constraint in constraints:
        if isinstance(constraint, TimeOfDateConstraint):
            for day in days:
                for edge in (constraint.start_time, constraint.end_time):
                    at = _utc(day, edge)
                    instants |= {at - 1, at - 1e-6, at, at + 1}
    return tuple(sorted(instants))


@dataclass(frozen=True)
class Case:
    genai_id: str
    provider: str  # ours
    ref: str
    model: ModelInfo
    tier_starts: tuple[int, ...]
    contexts: tuple[dict[str, str] | None, ...]
    instants: tuple[float, ...]

    @property
    def timed(self) -> bool:
        return bool(_constraints(self.model))

    def __repr__(self) -> str:  # keeps hypothesis' failure reports readable
        return f"Case({self.genai_id!r}, {self.ref!r})"


def _cases() -> list[Case]:
    cases = []
    for genai_id in GENAI_PROVIDERS:
        provider = next(p for p in SNAPSHOT.providers if p.id == genai_id)
        for model in provider.models:
            ref = _model_ref(genai_id, model)
            assert ref is not None, f"no model name resolves to {genai_id}/{model.id}"
            cases.append(
                Case(
                    genai_id,
                    OUR_PROVIDER[genai_id],
                    ref,
                    model,
                    _tier_starts(model),
                    _contexts(model),
                    _instants(model),
                )
            )
    return cases


CASES = _cases()
TIERED = [case for case in CASES if case.tier_starts]
TIMED = [case for case in CASES if case.timed]
WITH_VARIANTS = [case for case in CASES if len(case.contexts) > 1]


def test_catalogue_coverage() -> None:
    """The property below really sees many models, tiers, variants and time constraints."""
    assert {case.genai_id for case in CASES} == set(GENAI_PROVIDERS)
    assert len(CASES) > 500
    assert len(TIERED) > 20
    assert {case.genai_id for case in TIERED} >= {"openai", "anthropic", "google"}
    kinds = {type(c).__name__ for case in TIMED for c in _constraints(case.model)}
    assert kinds == {"StartDateConstraint", "TimeOfDateConstraint"}
    assert any(case.genai_id == "deepseek" for case in TIMED)
    contexts = {tuple(sorted(c.items())) for case in WITH_VARIANTS for c in case.contexts if c}
    assert {
        (("service_tier", "flex"),),
        (("service_tier", "priority"),),
        (("processing", "batch"),),
    } <= contexts


# ---------------------------------------------------------------------------------------------
# Exactness: our price == genai-prices' price
# ---------------------------------------------------------------------------------------------

# Our Usage field -> genai-prices usage key, written out independently of pricing._USAGE_KEYS.
GENAI_KEYS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
    "reasoning_tokens": "output_reasoning_tokens",
    "input_audio_tokens": "input_audio_tokens",
    "output_audio_tokens": "output_audio_tokens",
    "input_image_tokens": "input_image_tokens",
    "web_searches": "web_searches",
}


def reference_usage(usage: Usage) -> genai_prices.Usage:
    return genai_prices.Usage(**{theirs: getattr(usage, ours) for ours, theirs in GENAI_KEYS.items()})


def compare(
    pricer: Pricer, case: Case, usage: Usage, at: float, context: dict[str, str] | None, provider: str = ""
) -> bool:
    """Assert our price equals genai-prices'; False if genai-prices itself refuses the usage."""
    assert usage.consistent, usage.problems
    assert genai_usage(usage) == reference_usage(usage)
    try:
        expected = genai_prices.calc_price(
            reference_usage(usage),
            case.ref,
            provider_id=case.genai_id,
            genai_request_timestamp=datetime.fromtimestamp(at, UTC),
            price_context=context,
        )
    except ValueError:  # e.g. "Missing usage for cache_audio_read_tokens": no such field in our record
        return False
    cost = pricer.price(usage, provider or case.provider, (case.ref,), at, context)
    where = (case, usage, datetime.fromtimestamp(at, UTC).isoformat(), context, cost, expected)
    assert cost is not None, where
    assert close(cost.total, expected.total_price), where
    assert close(cost.input, expected.input_price), where
    assert close(cost.output, expected.output_price), where
    assert cost.source == "local" and cost.local_estimate is None
    assert cost.priced_model == expected.model.id
    assert cost.price_source == f"genai-prices {genai_prices.__version__}"
    return True


@st.composite
def consistent_usages(draw: st.DrawFn, tier_starts: tuple[int, ...] = ()) -> Usage:
    """Usage records whose parts never exceed their wholes, near tier boundaries when given."""
    boundaries = sorted({max(0, start + delta) for start in tier_starts for delta in (-1, 0, 1)})
    input_choices = [st.integers(0, 3_000_000), st.integers(0, 2_000)]
    if boundaries:
        input_choices.insert(0, st.sampled_from(boundaries))
    input_tokens = draw(st.one_of(input_choices))
    cache = draw(st.sampled_from(["none", "read", "write", "both"]))
    cache_read = draw(st.integers(0, input_tokens)) if cache in ("read", "both") else 0
    cache_write = draw(st.integers(0, input_tokens - cache_read)) if cache in ("write", "both") else 0
    write_1h = draw(st.one_of(st.just(0), st.just(cache_write), st.integers(0, cache_write)))
    audio = draw(st.one_of(st.just(0), st.just(0), st.integers(0, input_tokens)))
    image = draw(st.one_of(st.just(0), st.just(0), st.integers(0, input_tokens - audio)))
    output_tokens = draw(st.one_of(st.integers(0, 300_000), st.integers(0, 500)))
    reasoning = draw(st.one_of(st.just(0), st.integers(0, output_tokens)))
    output_audio = draw(st.one_of(st.just(0), st.just(0), st.integers(0, output_tokens)))
    web_searches = draw(st.one_of(st.just(0), st.integers(0, 30)))
    return Usage.of(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=write_1h,
        reasoning_tokens=reasoning,
        input_audio_tokens=audio,
        output_audio_tokens=output_audio,
        input_image_tokens=image,
        web_searches=web_searches,
    )


@st.composite
def pricing_cases(draw: st.DrawFn) -> tuple[Case, Usage, float, dict[str, str] | None]:
    # Every model is a candidate; the interesting ones (tiers, time constraints, variants) are
    # drawn more often than their share of the catalogue.
    case = draw(
        st.one_of(
            st.sampled_from(CASES),
            st.sampled_from(TIERED),
            st.sampled_from(TIMED),
            st.sampled_from(WITH_VARIANTS),
        )
    )
    context = draw(st.sampled_from(case.contexts))
    at = draw(
        st.one_of(
            st.sampled_from(case.instants),
            st.integers(EARLIEST * 1_000_000, LATEST * 1_000_000).map(lambda micros: micros / 1e6),
        )
    )
    usage = draw(consistent_usages(case.tier_starts))
    return case, usage, at, context


def test_price_equals_genai_prices_for_generated_calls() -> None:
    pricer = Pricer()  # one pricer throughout: its cached cards must serve every later call right
    outcomes: Counter[str] = Counter()

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(pricing_cases())
    def check(drawn: tuple[Case, Usage, float, dict[str, str] | None]) -> None:
        case, usage, at, context = drawn
        outcomes["compared" if compare(pricer, case, usage, at, context) else "refused"] += 1

    check()
    total = outcomes["compared"] + outcomes["refused"]
    assert outcomes["compared"] >= 400
    assert outcomes["refused"] <= 0.05 * total, outcomes


_ANY_COUNT = st.one_of(st.just(0), st.just(0), st.integers(-5, 3_000_000))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.one_of(st.sampled_from(CASES), st.sampled_from(TIERED)),
    counts=st.fixed_dictionaries({name: _ANY_COUNT for name in COUNT_FIELDS}),
)
def test_the_one_read_price_is_the_line_by_line_price_to_the_last_bit(
    case: Case, counts: dict[str, int]
) -> None:
    # PriceCard.price reads every count at once and skips the lines of zero; the line-by-line loop
    # (cards with a per-request unit) walks every line: for every card of the catalogue, any
    # usage (inconsistent and negative counts included), the same three sums, bit for bit.
    pricer = Pricer()
    card = pricer.card(case.provider, case.ref, case.instants[0], case.contexts[0])
    assert card is not None, case
    usage = Usage(**counts)
    assert card.price(usage) == card._price_line_by_line(usage)


def test_the_one_read_price_on_every_catalogue_card() -> None:
    # Every card, every price context and active price set, with usages where every count is
    # given (so every line, nested ones too, has something to take from its parent), consistent
    # and not: the one-read price and the line-by-line price agree bit for bit.
    usages = [
        Usage(**{name: 1_000 * (index + 1) + 7 for index, name in enumerate(COUNT_FIELDS)}),
        Usage(**dict.fromkeys(COUNT_FIELDS, 250_001)),
        Usage(input_tokens=9_000, output_tokens=600, cache_read_tokens=4_000, cache_write_tokens=3_000,
              cache_write_1h_tokens=1_000, input_audio_tokens=2_000, output_audio_tokens=100,
              input_image_tokens=500, reasoning_tokens=200, web_searches=2),
    ]  # fmt: skip
    pricer = Pricer()
    compared = 0
    for case in CASES:
        for context in case.contexts:
            for at in case.instants:
                card = pricer.card(case.provider, case.ref, at, context)
                assert card is not None, case
                for usage in usages:
                    assert card.price(usage) == card._price_line_by_line(usage), (case, context, at, usage)
                    compared += 1
    assert compared >= 3 * len(CASES)


def test_every_tier_boundary_of_every_tiered_model() -> None:
    """input_tokens = start - 1, start, start + 1 for every tier, in every price context."""
    pricer = Pricer()
    compared = 0
    for case in TIERED:
        for start in case.tier_starts:
            for input_tokens in (start - 1, start, start + 1):
                cache_write = input_tokens // 10
                usage = Usage.of(
                    input_tokens=input_tokens,
                    cache_read_tokens=input_tokens // 5,
                    cache_write_tokens=cache_write,
                    cache_write_1h_tokens=cache_write // 3,
                    output_tokens=4321,
                    reasoning_tokens=1000,
                    web_searches=1,
                )
                for context in case.contexts:
                    compared += compare(pricer, case, usage, DEFAULT_AT, context)
    assert compared >= 3 * len(TIERED)


def test_cliff_rule_by_hand_on_catalogue_tiers() -> None:
    """Past a tier's start the WHOLE input pays the tier price (computed here from the catalogue)."""
    pricer = Pricer()
    checked = 0
    for case in TIERED:
        prices = case.model.get_prices(datetime.fromtimestamp(DEFAULT_AT, UTC))
        tiered = prices.input_mtok
        if not isinstance(tiered, TieredPrices) or prices.requests_kcount is not None:
            continue
        for index, tier in enumerate(tiered.tiers):
            below = tiered.base if index == 0 else tiered.tiers[index - 1].price
            for tokens, rate in ((tier.start, below), (tier.start + 1, tier.price)):
                cost = pricer.price(Usage.of(input_tokens=tokens), case.provider, (case.ref,), DEFAULT_AT)
                assert cost is not None
                assert close(cost.total, Decimal(tokens) * rate / 1_000_000), (case, tokens)
                assert close(cost.input, Decimal(tokens) * rate / 1_000_000)
                assert cost.output == 0
                checked += 1
    assert checked >= 20


def test_every_time_boundary_of_every_timed_model() -> None:
    """Both sides of every start date and every time-of-day window edge, in every price context."""
    pricer = Pricer()
    usage = Usage.of(
        input_tokens=250_000,
        cache_read_tokens=60_000,
        cache_write_tokens=30_000,
        cache_write_1h_tokens=10_000,
        output_tokens=9_000,
        reasoning_tokens=3_000,
        web_searches=2,
    )
    compared = 0
    for case in TIMED:
        for at in case.instants:
            for context in case.contexts:
                compared += compare(pricer, case, usage, at, context)
    assert compared >= len(TIMED) * 4


def test_deepseek_off_peak_window_by_hand() -> None:
    """DeepSeek's daily window: start inclusive, end exclusive, prices read from the catalogue."""
    provider = next(p for p in SNAPSHOT.providers if p.id == "deepseek")
    model = next(m for m in provider.models if m.id == "deepseek-chat")
    assert isinstance(model.prices, list)
    standard = model.prices[0].prices
    window = next(c for c in model.prices if isinstance(c.constraint, TimeOfDateConstraint))
    start, end = window.constraint.start_time, window.constraint.end_time
    usage = Usage.of(input_tokens=1_000_000, cache_read_tokens=400_000, output_tokens=200_000)

    def by_hand(prices: ModelPrice) -> float:
        return float(
            (600_000 * prices.input_mtok + 400_000 * prices.cache_read_mtok + 200_000 * prices.output_mtok)
            / 1_000_000
        )

    pricer = Pricer()
    day = date(2026, 2, 3)
    one_second = timedelta(seconds=1)
    start_at = datetime.combine(day, start).astimezone(UTC)
    end_at = datetime.combine(day, end).astimezone(UTC)
    for moment, prices in (
        (start_at - one_second, standard),
        (start_at, window.prices),
        (end_at - one_second, window.prices),
        (end_at, standard),
    ):
        cost = pricer.price(usage, "deepseek", ("deepseek-chat",), moment.timestamp())
        assert cost is not None
        assert close(cost.total, by_hand(prices)), moment
    assert by_hand(standard) != by_hand(window.prices)


def test_fallback_providers_price_like_genai_prices() -> None:
    """Azure falls back to OpenAI's models, Google to Anthropic's: genai-prices then ignores the
    price context (the variants belong to the other provider), and so must we."""
    pricer = Pricer()
    usage = Usage.of(input_tokens=300_000, cache_read_tokens=50_000, output_tokens=2_000)
    compared = with_context = 0
    for via, genai_id, source in (
        ("azure.ai.openai", "azure", "openai"),
        ("gcp.gemini", "google", "anthropic"),
    ):
        own = {m.id for m in next(p for p in SNAPSHOT.providers if p.id == genai_id).models}
        for case in CASES:
            if case.genai_id != source or case.model.id in own:
                continue
            borrowed = Case(genai_id, via, case.ref, case.model, (), case.contexts, ())
            for context in case.contexts:
                if compare(pricer, borrowed, usage, DEFAULT_AT, context):
                    compared += 1
                    with_context += context is not None
    assert compared > 20 and with_context > 10


# ---------------------------------------------------------------------------------------------
# Unknown models, provider-reported cost
# ---------------------------------------------------------------------------------------------

USAGE = Usage.of(input_tokens=12_000, cache_read_tokens=2_000, output_tokens=3_000)


def test_unknown_model_or_provider_is_unpriced() -> None:
    pricer = Pricer()
    assert pricer.price(USAGE, "openai", ("no-such-model-zz9",), DEFAULT_AT) is None
    assert pricer.card("openai", "no-such-model-zz9", DEFAULT_AT) is None
    # A provider with no list prices is priced only by overrides, even for a well-known model name.
    assert pricer.price(USAGE, "my-gateway.internal", ("gpt-4o",), DEFAULT_AT) is None
    assert pricer.card("my-gateway.internal", "gpt-4o", DEFAULT_AT) is None
    assert pricer.price(USAGE, "openai", (None, ""), DEFAULT_AT) is None
    assert pricer.price(USAGE, "openai", (), DEFAULT_AT) is None


def test_models_are_tried_in_order() -> None:
    pricer = Pricer()
    first = pricer.price(USAGE, "openai", ("no-such-model-zz9", None, "gpt-4o-mini", "gpt-4o"), DEFAULT_AT)
    expected = genai_prices.calc_price(
        reference_usage(USAGE), "gpt-4o-mini", provider_id="openai",
        genai_request_timestamp=datetime.fromtimestamp(DEFAULT_AT, UTC),
    )  # fmt: skip
    assert first is not None and first.priced_model == expected.model.id
    assert close(first.total, expected.total_price)


def test_provider_reported_cost_wins_and_keeps_our_estimate() -> None:
    pricer = Pricer()
    reported = Usage.of(
        input_tokens=12_000, cache_read_tokens=2_000, output_tokens=3_000, provider_cost_usd=0.0123
    )
    ours = pricer.price(USAGE, "openrouter", ("openai/gpt-4o",), DEFAULT_AT)
    expected = genai_prices.calc_price(
        reference_usage(USAGE), "openai/gpt-4o", provider_id="openrouter",
        genai_request_timestamp=datetime.fromtimestamp(DEFAULT_AT, UTC),
    )  # fmt: skip
    cost = pricer.price(reported, "openrouter", ("openai/gpt-4o",), DEFAULT_AT)
    assert ours is not None and cost is not None
    assert cost.source == "provider"
    assert cost.total == 0.0123
    assert cost.local_estimate == ours.total
    assert close(cost.local_estimate, expected.total_price)
    assert cost.input == ours.input and cost.output == ours.output
    assert cost.priced_model == expected.model.id


def test_provider_reported_cost_of_an_unknown_model() -> None:
    reported = Usage.of(input_tokens=100, output_tokens=10, provider_cost_usd=0.0123)
    cost = Pricer().price(reported, "openrouter", ("someone/unreleased-model-zz9",), DEFAULT_AT)
    assert cost == Cost(0.0123, None, None, "provider", None, None, None)
    assert Pricer().price(reported, "my-gateway.internal", ("x",), DEFAULT_AT) == cost


# ---------------------------------------------------------------------------------------------
# The card cache
# ---------------------------------------------------------------------------------------------


def test_card_resolves_once_per_provider_model_and_context(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[tuple[str, str | None]] = []
    find = DataSnapshot.find_provider_model

    def counting(self: DataSnapshot, model_ref: str, provider: Any, provider_id: Any, url: Any) -> Any:
        lookups.append((model_ref, provider_id))
        return find(self, model_ref, provider, provider_id, url)

    monkeypatch.setattr(DataSnapshot, "find_provider_model", counting)
    pricer = Pricer()
    day = date(2026, 2, 3)
    times = [_utc(day, time(hour)) for hour in range(24)]  # both sides of DeepSeek's window
    for at in times:
        assert pricer.card("deepseek", "deepseek-chat", at) is not None
        pricer.price(USAGE, "deepseek", ("deepseek-chat",), at)
    assert lookups == [("deepseek-chat", "deepseek")]

    for at in times:
        pricer.card("openai", "gpt-4o", at, {"service_tier": "flex"})
        pricer.card("openai", "gpt-4o", at, dict([("service_tier", "flex")]))  # equal, not identical
        pricer.price(USAGE, "openai", ("gpt-4o",), at, {"service_tier": "flex"})
    assert len(lookups) == 2
    pricer.card("openai", "gpt-4o", DEFAULT_AT, {"service_tier": "priority"})
    pricer.card("openai", "gpt-4o", DEFAULT_AT)
    assert len(lookups) == 4

    # An unknown model is remembered as unknown.
    for at in times:
        assert pricer.card("openai", "no-such-model-zz9", at) is None
    assert len(lookups) == 5
    # A provider without list prices never reaches the catalogue.
    assert pricer.card("my-gateway.internal", "gpt-4o", DEFAULT_AT) is None
    assert len(lookups) == 5


def test_timed_cards_are_compiled_once_per_active_price(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[datetime] = []
    get_prices = ModelInfo.get_prices

    def counting(self: ModelInfo, moment: datetime, context: Any = None) -> ModelPrice:
        compiled.append(moment)
        return get_prices(self, moment, context)

    monkeypatch.setattr(ModelInfo, "get_prices", counting)
    pricer = Pricer()
    peak = [_utc(date(2026, 2, day), time(12)) for day in range(1, 8)]
    off_peak = [_utc(date(2026, 2, day), time(20)) for day in range(1, 8)]
    peak_card = pricer.card("deepseek", "deepseek-chat", peak[0])
    off_card = pricer.card("deepseek", "deepseek-chat", off_peak[0])
    assert peak_card is not off_card
    assert all(pricer.card("deepseek", "deepseek-chat", at) is peak_card for at in peak)
    assert all(pricer.card("deepseek", "deepseek-chat", at) is off_card for at in off_peak)
    assert len(compiled) == 2
    assert peak_card.price(USAGE) != off_card.price(USAGE)


# ---------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------

OVERRIDES_TOML = """\
[[models]]
provider = "vllm"
model = "my-llama"
input_mtok = 0.20
cache_read_mtok = 0.05
output_mtok = 0.60

[[models]]
provider = "openai"
model = "gpt-4o"
input_mtok = 1.0
cache_read_mtok = 0.25
output_mtok = 3.0

[[models]]
model = "My-Long-Context"
input_mtok = { base = 1.25, tiers = [{ start = 200000, price = 2.5 }, { start = 1000000, price = 4.0 }] }
output_mtok = { base = 10.0, tiers = [{ start = 200000, price = 15.0 }, { start = 1000000, price = 20.0 }] }

[[models]]
prefix = "ft:gpt-4o-mini:"
input_mtok = 0.30
output_mtok = 1.20

[[models]]
prefix = "ft:gpt-4o-mini:acme:"
input_mtok = 0.35
output_mtok = 1.40
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _entry(data: dict[str, Any], **match: str) -> dict[str, Any]:
    return next(e for e in data["models"] if all(e.get(k) == v for k, v in match.items()))


def _rate(price: Any, input_tokens: int) -> float:
    """The cliff rule by hand: the last tier whose start the input exceeds, else the base."""
    if not isinstance(price, dict):
        return price
    rate = price["base"]
    for tier in price["tiers"]:
        if input_tokens > tier["start"]:
            rate = tier["price"]
    return rate


def _check_overrides(pricer: Pricer, data: dict[str, Any]) -> None:
    # A self-hosted model the catalogue has never heard of.
    llama = _entry(data, model="my-llama")
    usage = Usage.of(input_tokens=50_000, cache_read_tokens=20_000, output_tokens=7_000)
    cost = pricer.price(usage, "vllm", ("my-llama",), DEFAULT_AT)
    assert cost is not None and cost.source == "local"
    expected_in = (30_000 * llama["input_mtok"] + 20_000 * llama["cache_read_mtok"]) / 1e6
    expected_out = 7_000 * llama["output_mtok"] / 1e6
    assert math.isclose(cost.input, expected_in, rel_tol=1e-12)
    assert math.isclose(cost.output, expected_out, rel_tol=1e-12)
    assert math.isclose(cost.total, expected_in + expected_out, rel_tol=1e-12)
    assert cost.priced_model == "my-llama" and cost.price_source == "override"
    # ... only for the provider it names.
    assert pricer.price(usage, "ollama", ("my-llama",), DEFAULT_AT) is None

    # A catalogue price replaced for one provider, left alone for the others.
    gpt = _entry(data, model="gpt-4o")
    cost = pricer.price(usage, "openai", ("gpt-4o",), DEFAULT_AT)
    expected = (
        30_000 * gpt["input_mtok"] + 20_000 * gpt["cache_read_mtok"] + 7_000 * gpt["output_mtok"]
    ) / 1e6
    assert cost is not None and math.isclose(cost.total, expected, rel_tol=1e-12)
    catalogue = genai_prices.calc_price(
        reference_usage(usage), "gpt-4o", provider_id="azure",
        genai_request_timestamp=datetime.fromtimestamp(DEFAULT_AT, UTC),
    )  # fmt: skip
    assert not math.isclose(expected, float(catalogue.total_price))
    azure = pricer.price(usage, "azure.ai.openai", ("gpt-4o",), DEFAULT_AT)
    assert azure is not None and close(azure.total, catalogue.total_price)
    assert azure.price_source.startswith("genai-prices ")

    # Long-context tiers, by the cliff rule; the model id matches case-insensitively.
    long = _entry(data, model="My-Long-Context")
    for input_tokens in (199_999, 200_000, 200_001, 999_999, 1_000_000, 1_000_001, 3_000_000):
        cost = pricer.price(
            Usage.of(input_tokens=input_tokens, output_tokens=5_000),
            "anyone",
            ("my-long-CONTEXT",),
            DEFAULT_AT,
        )
        in_rate = _rate(long["input_mtok"], input_tokens)
        out_rate = _rate(long["output_mtok"], input_tokens)
        assert cost is not None
        assert math.isclose(cost.input, input_tokens * in_rate / 1e6, rel_tol=1e-12), input_tokens
        assert math.isclose(cost.output, 5_000 * out_rate / 1e6, rel_tol=1e-12), input_tokens
    # 200_001 tokens pay the tier rate on every token, not only on the one past the threshold.
    over = pricer.price(Usage.of(input_tokens=200_001), "x", ("my-long-context",), DEFAULT_AT)
    assert over is not None
    assert math.isclose(over.total, 200_001 * long["input_mtok"]["tiers"][0]["price"] / 1e6, rel_tol=1e-12)

    # Prefixes: fine-tunes of a base model; the longer prefix wins.
    short = _entry(data, prefix="ft:gpt-4o-mini:")
    longer = _entry(data, prefix="ft:gpt-4o-mini:acme:")
    tokens = Usage.of(input_tokens=1_000_000, output_tokens=1_000_000)
    cost = pricer.price(tokens, "openai", ("ft:gpt-4o-mini:other:support:abc123",), DEFAULT_AT)
    assert cost is not None and math.isclose(cost.total, short["input_mtok"] + short["output_mtok"])
    assert cost.priced_model == "ft:gpt-4o-mini:*"
    cost = pricer.price(tokens, "openai", ("FT:GPT-4o-mini:acme:support:abc123",), DEFAULT_AT)
    assert cost is not None and math.isclose(cost.total, longer["input_mtok"] + longer["output_mtok"])


def test_toml_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "prices.toml", OVERRIDES_TOML)
    _check_overrides(Pricer(load_overrides(path)), tomllib.loads(OVERRIDES_TOML))
    _check_overrides(Pricer(load_overrides(str(path))), tomllib.loads(OVERRIDES_TOML))


def test_yaml_overrides_are_equivalent(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    data = tomllib.loads(OVERRIDES_TOML)
    for suffix in (".yaml", ".yml"):
        path = _write(tmp_path, f"prices{suffix}", yaml.safe_dump(data, sort_keys=False))
        _check_overrides(Pricer(load_overrides(path)), data)


def test_list_of_mappings(tmp_path: Path) -> None:
    data = tomllib.loads(OVERRIDES_TOML)
    _check_overrides(Pricer(load_overrides(data["models"])), data)
    _check_overrides(Pricer(load_overrides(iter(data["models"]))), data)
    with pytest.raises(PriceOverrideError, match=r"models\[1\].*exactly one of 'model'"):
        load_overrides([{"model": "a", "input_mtok": 1}, {"input_mtok": 1}])


def test_exact_model_beats_prefix_and_provider_specific_beats_any(tmp_path: Path) -> None:
    entries = [
        {"prefix": "acme-", "input_mtok": 1.0},
        {"model": "acme-7b", "input_mtok": 2.0},
        {"model": "acme-7b", "provider": "vllm", "input_mtok": 3.0},
    ]
    usage = Usage.of(input_tokens=1_000_000)
    for ordered in (entries, entries[::-1]):
        pricer = Pricer(load_overrides(ordered))
        assert pricer.price(usage, "vllm", ("acme-7b",), DEFAULT_AT).total == 3.0
        assert pricer.price(usage, "ollama", ("acme-7b",), DEFAULT_AT).total == 2.0
        assert pricer.price(usage, "ollama", ("acme-13b",), DEFAULT_AT).total == 1.0


def test_overrides_take_precedence_over_the_catalogue() -> None:
    usage = Usage.of(input_tokens=1_000_000, output_tokens=1_000_000)
    overrides = load_overrides([{"model": "claude-sonnet-4-5", "input_mtok": 0.5, "output_mtok": 0.25}])
    cost = Pricer(overrides).price(usage, "anthropic", ("claude-sonnet-4-5",), DEFAULT_AT)
    assert cost is not None and cost.total == 0.75 and cost.price_source == "override"
    catalogue = Pricer().price(usage, "anthropic", ("claude-sonnet-4-5",), DEFAULT_AT)
    assert catalogue is not None and catalogue.total != 0.75


def test_inconsistent_usage_is_flagged_and_never_priced_negative() -> None:
    """A part larger than its whole is flagged on the record; its price has no negative share."""
    entry = {"model": "m", "input_mtok": 1.0, "cache_read_mtok": 0.1, "output_mtok": 2.0}
    usage = Usage.of(input_tokens=100, cache_read_tokens=300, output_tokens=10)
    assert not usage.consistent
    cost = Pricer(load_overrides([entry])).price(usage, "p", ("m",), DEFAULT_AT)
    assert cost is not None
    # Uncached input = max(0, 100 - 300): the 300 cached tokens are billed, nothing below zero.
    assert math.isclose(cost.input, 300 * entry["cache_read_mtok"] / 1e6)
    assert math.isclose(cost.total, cost.input + 10 * entry["output_mtok"] / 1e6)


@given(
    base=st.decimals(0, 50, places=3),
    tier_price=st.decimals(0, 50, places=3),
    start=st.integers(0, 400_000),
    cache_read_price=st.decimals(0, 5, places=4),
    output_price=st.decimals(0, 80, places=3),
    usage=consistent_usages((0, 200_000)),
)
@settings(max_examples=150, deadline=None)
def test_override_prices_equal_genai_arithmetic(
    base: Decimal,
    tier_price: Decimal,
    start: int,
    cache_read_price: Decimal,
    output_price: Decimal,
    usage: Usage,
) -> None:
    """An override card prices like genai-prices' ModelPrice with the same numbers."""
    entry = {
        "model": "m",
        "input_mtok": {"base": float(base), "tiers": [{"start": start, "price": float(tier_price)}]},
        "cache_read_mtok": float(cache_read_price),
        "output_mtok": float(output_price),
    }
    cost = Pricer(load_overrides([entry])).price(usage, "p", ("m",), DEFAULT_AT)
    reference = ModelPrice(
        input_mtok=TieredPrices(base=base, tiers=[genai_prices.types.Tier(start=start, price=tier_price)]),
        cache_read_mtok=cache_read_price,
        output_mtok=output_price,
    ).calc_price(reference_usage(usage))
    assert cost is not None
    assert close(cost.total, reference["total_price"])
    assert close(cost.input, reference["input_price"])
    assert close(cost.output, reference["output_price"])


# Malformed override files: (file name, content, fragments the error message must contain).
MALFORMED = [
    ("syntax.toml", "[[models]\nmodel = 'x'\n", ["invalid TOML"]),
    ("empty.toml", "title = 'prices'\n", ["'models'"]),
    ("nomodel.toml", "[[models]]\ninput_mtok = 1.0\n", ["models[0]", "'model'", "'prefix'"]),
    ("both.toml", "[[models]]\nmodel = 'a'\nprefix = 'a'\ninput_mtok = 1.0\n", ["models[0]", "exactly one"]),
    (
        "typo.toml",
        "[[models]]\nmodel = 'a'\ninput_mtok = 1.0\n[[models]]\nmodel = 'b'\ninptu_mtok = 1.0\n",
        ["models[1].inptu_mtok", "unknown price key"],
    ),
    ("negative.toml", "[[models]]\nmodel = 'a'\ninput_mtok = -1.5\n", ["models[0].input_mtok", "-1.5"]),
    ("string.toml", "[[models]]\nmodel = 'a'\noutput_mtok = '0.60'\n", ["models[0].output_mtok", "'0.60'"]),
    (
        "order.toml",
        "[[models]]\nmodel = 'a'\n"
        "input_mtok = { base = 1, tiers = [{ start = 200000, price = 2 }, { start = 100000, price = 3 }] }\n",
        ["models[0].input_mtok.tiers[1].start", "increasing"],
    ),
    (
        "start.toml",
        "[[models]]\nmodel = 'a'\ninput_mtok = { base = 1, tiers = [{ start = '200k', price = 2 }] }\n",
        ["models[0].input_mtok.tiers[0].start", "'200k'"],
    ),
    (
        "float_start.yaml",
        "models:\n  - model: a\n    input_mtok: {base: 1, tiers: [{start: 250000.0, price: 2}]}\n",
        ["models[0].input_mtok.tiers[0].start"],
    ),
    ("entry.yaml", "models:\n  - just-a-name\n", ["models[0]", "str"]),
    ("badyaml.yaml", "models: [\n", ["invalid YAML"]),
    ("ext.json", '{"models": []}', ["must end in .toml, .yaml or .yml"]),
    ("nameless.toml", "[[models]]\nmodel = ''\ninput_mtok = 1.0\n", ["models[0].model"]),
    ("noprice.toml", "[[models]]\nmodel = 'a'\ncache_read_mtok = 1.0\n", ["models[0]", "input_mtok"]),
]


@pytest.mark.parametrize(("name", "content", "fragments"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_override_files(tmp_path: Path, name: str, content: str, fragments: list[str]) -> None:
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PriceOverrideError) as raised:
        load_overrides(path)
    message = str(raised.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_override_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "prices.toml"
    with pytest.raises(PriceOverrideError, match="cannot read") as raised:
        load_overrides(path)
    assert str(path) in str(raised.value)


def test_override_errors_are_value_errors() -> None:
    """Callers that catch ValueError (config loaders) see override problems too."""
    with pytest.raises(ValueError, match=r"price overrides: models\[0\]\.input_mtok"):
        load_overrides([{"model": "a", "input_mtok": float("nan")}])
    with pytest.raises(ValueError, match=r"models\[0\]\.input_mtok"):
        load_overrides([{"model": "a", "input_mtok": True}])
