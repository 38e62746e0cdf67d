"""What a call cost, in USD: one pure function of (usage, provider, model, time, price context).

Prices are data. The bundled ``genai-prices`` catalogue is the source; nothing is fetched from the
network. A full ``genai_prices.calc_price`` costs 30-100 microseconds because it re-resolves the
model and re-derives the unit hierarchy on every call, so we resolve each
(provider, model, price context) once, compile its prices into a flat *price card* of floats, and
price every later call from the card in a few microseconds. The card reproduces genai-prices'
arithmetic exactly (leaf decomposition of nested units, the cliff rule for long-context tiers); a
property test holds the two to 1e-9 relative.

Prices that change over time (a new price from a date, off-peak hours) are handled by keying the
compiled card on which time constraints are active at the request's timestamp.

User overrides (a TOML or YAML file) add or replace prices and are consulted first.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from itertools import compress
from operator import attrgetter
from pathlib import Path
from typing import Any

from . import _fork
from .usage import USAGE_FIELDS, Usage

__all__ = [
    "PROVIDER_ALIASES",
    "Cost",
    "PriceCard",
    "PriceOverrideError",
    "Pricer",
    "canonical_provider",
    "genai_provider_id",
    "load_overrides",
]

log = logging.getLogger("tokentrail.pricing")

# gen_ai.provider.name -> genai-prices provider id. A provider not listed here is priced only
# through the user's overrides (self-hosted servers have no list price).
_GENAI_PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "x_ai": "x-ai",
    "openrouter": "openrouter",
    "deepseek": "deepseek",
    "groq": "groq",
    "together": "together",
    "fireworks": "fireworks",
    "mistral_ai": "mistral",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "cerebras": "cerebras",
    "moonshot_ai": "moonshotai",
    "moonshotai": "moonshotai",  # the name before the conventions registered moonshot_ai
}

# Our Usage field -> genai-prices usage key. Tokens we do not list are priced inside their parent
# (e.g. reasoning is output unless a model prices reasoning separately).
_USAGE_KEYS: tuple[tuple[str, str], ...] = tuple((f.name, f.price_key) for f in USAGE_FIELDS)
_GENAI_KEY_TO_FIELD = {genai: ours for ours, genai in _USAGE_KEYS}


# Short names a user may type for a gen_ai.provider.name: every command and estimate() take them.
PROVIDER_ALIASES: dict[str, str] = {
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertex": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "xai": "x_ai",
}


def canonical_provider(name: str) -> str:
    """The ``gen_ai.provider.name`` for a provider name or one of :data:`PROVIDER_ALIASES`."""
    return PROVIDER_ALIASES.get(name.strip().lower(), name.strip())


def genai_provider_id(provider: str) -> str | None:
    """The genai-prices provider id for a ``gen_ai.provider.name``, if it has list prices."""
    return _GENAI_PROVIDER_IDS.get(provider)


def genai_usage(usage: Usage) -> Any:
    """The same usage as a ``genai_prices.Usage`` (used to check our arithmetic against theirs)."""
    from genai_prices import Usage as GenaiUsage

    return GenaiUsage(**{genai: getattr(usage, ours) for ours, genai in _USAGE_KEYS})


@dataclass(frozen=True, slots=True)
class Cost:
    """What one call cost, in USD."""

    total: float
    """The cost to report: the provider's own figure where it gave one, else ours."""
    input: float | None
    """Input side of our computation (None when only the provider's figure is known)."""
    output: float | None
    """Output side of our computation."""
    source: str
    """``provider`` when the provider reported the cost, ``local`` when computed here."""
    local_estimate: float | None
    """Our own computation, kept beside a provider-reported ``total``."""
    priced_model: str | None
    """The catalogue model id the price came from."""
    price_source: str | None
    """Where the prices came from: ``genai-prices <version>`` or ``override``."""
    card: PriceCard | None = field(default=None, compare=False, repr=False)
    """The price card the call was priced with (its rates; read off the hot path by the ledger)."""


@dataclass(frozen=True, slots=True)
class _Line:
    usage_field: str | None  # None: the per-request unit
    per: float
    direction: str | None
    base: float
    tiers: tuple[tuple[int, float], ...]  # ascending (start, price)
    descendants: tuple[int, ...]  # indices of more specific priced lines inside this one


class PriceCard:
    """Flat, precompiled prices of one model in one price context: priced in microseconds."""

    __slots__ = ("_counted", "_lines", "_read_all", "_reads", "lines", "model_id", "source")

    def __init__(self, lines: tuple[_Line, ...], model_id: str, source: str) -> None:
        self.lines = lines
        self.model_id = model_id
        self.source = source
        # What pricing reads of each line, as plain tuples (the tiers highest first), and how each
        # line's amount is read: a getter of its count (zero for a unit the record does not carry),
        # None for the per-request unit.
        self._lines = tuple(
            (line.per, line.direction, line.base, tuple(reversed(line.tiers)), line.descendants)
            for line in lines
        )
        self._reads = tuple(
            None
            if line.usage_field is None
            else attrgetter(line.usage_field)
            if line.usage_field
            else _no_such_field
            for line in lines
        )
        # The fast path of price(): the lines of token counts the record has (a unit it does not
        # carry, "", counts zero: no cost, and nothing to take from the lines it is part of), all
        # read in one call; None when a line is per request (its amount is one, not a count).
        counted = [index for index, line in enumerate(lines) if line.usage_field]
        self._read_all: Any = None
        self._counted: tuple[tuple[Any, ...], ...] = ()
        if counted and all(line.usage_field is not None for line in lines):
            position = {index: place for place, index in enumerate(counted)}
            names = [lines[index].usage_field for index in counted]
            self._read_all = (
                attrgetter(*names)
                if len(names) > 1
                else (lambda usage, read=attrgetter(names[0]): (read(usage),))
            )
            self._counted = tuple(
                (
                    *self._lines[index][:4],
                    tuple(position[child] for child in lines[index].descendants if child in position),
                )
                for index in counted
            )

    @classmethod
    def compile(cls, prices: Mapping[str, Any], model_id: str, source: str) -> PriceCard:
        """Compile ``{price_key: Decimal | TieredPrices}`` (genai-prices' ModelPrice items)."""
        from genai_prices.units import _get_registry

        registry = _get_registry()
        units = []
        for price_key, value in prices.items():
            if value is None or price_key.startswith("_"):
                continue
            unit = registry.unit_for_price_key(price_key)
            units.append((unit, value))
        # Most specific units first, as genai-prices decomposes them: a parent's leaf is its
        # count minus the leaves of every priced unit nested in it.
        units.sort(key=lambda item: (-len(item[0].dimensions), item[0].usage_key))
        lines: list[_Line] = []
        for index, (unit, value) in enumerate(units):
            descendants = tuple(
                other_index
                for other_index, (other, _) in enumerate(units)
                if other_index != index
                and other.usage_key != "requests"
                and unit.dimensions.items() <= other.dimensions.items()
            )
            if hasattr(value, "tiers"):
                base = float(value.base)
                tiers = tuple((int(t.start), float(t.price)) for t in value.tiers)
            else:
                base, tiers = float(value), ()
            if unit.usage_key == "requests":
                usage_field = None
            else:
                usage_field = _GENAI_KEY_TO_FIELD.get(unit.usage_key, "")
            lines.append(
                _Line(
                    usage_field=usage_field,
                    per=float(unit.per),
                    direction=unit.dimensions.get("direction"),
                    base=base,
                    tiers=tiers,
                    descendants=descendants if unit.usage_key != "requests" else (),
                )
            )
        return cls(tuple(lines), model_id, source)

    def rate_per_million(self, usage_field: str, input_tokens: int) -> float | None:
        """USD per million tokens of ``usage_field`` for a call of ``input_tokens`` input tokens
        (a long-context tier applies past its threshold), or None if this card has no such line."""
        for line in self.lines:
            if line.usage_field == usage_field:
                rate = line.base
                for start, tier_price in reversed(line.tiers):
                    if input_tokens > start:  # the cliff rule, as in price()
                        rate = tier_price
                        break
                return rate * 1_000_000 / line.per
        return None

    def price(self, usage: Usage) -> tuple[float, float, float]:
        """(input, output, total) USD of ``usage`` at these prices."""
        read_all = self._read_all
        if read_all is None:
            return self._price_line_by_line(usage)
        # No line per request: every count read in one C call, and only the lines with a count
        # (most are zero in a call: cache writes, audio, ...) cost any Python. A line of zero
        # costs nothing; the sums add the same terms in the same order as line by line.
        amounts = read_all(usage)
        return _summed(amounts, self._counted, usage.input_tokens, compress(range(len(amounts)), amounts))

    def _price_line_by_line(self, usage: Usage) -> tuple[float, float, float]:
        """:meth:`price` for any card (one with a per-request unit, or a unit the record does not
        carry): every line, its amount read on its own."""
        amounts = [1 if read is None else read(usage) for read in self._reads]
        return _summed(amounts, self._lines, usage.input_tokens, range(len(amounts)))


def _summed(
    amounts: Sequence[Any], lines: Sequence[tuple[Any, ...]], total_input: int, indices: Iterable[int]
) -> tuple[float, float, float]:
    """(input, output, total) USD of the ``lines`` at ``indices`` (most specific first), each with
    its amount: a line's leaf is its amount less the leaves of the lines inside it."""
    leaves = [0.0] * len(amounts)
    input_cost = output_cost = total = 0.0
    for index in indices:
        per, direction, base, tiers, descendants = lines[index]
        amount = float(amounts[index])
        for child in descendants:
            amount -= leaves[child]
        if amount <= 0.0:
            # Nothing of this unit, or less than its parts (only for inconsistent usage, flagged
            # elsewhere): it costs nothing.
            continue
        leaves[index] = amount
        rate = base
        for start, tier_price in tiers:  # highest threshold first
            # The cliff rule: past a threshold the whole call pays the tier's rate.
            if total_input > start:
                rate = tier_price
                break
        cost = rate * amount / per
        total += cost
        if direction == "input":
            input_cost += cost
        elif direction == "output":
            output_cost += cost
    return input_cost, output_cost, total


def _no_such_field(usage: Usage) -> int:
    return 0  # a unit the record does not carry ("") counts as zero, as in genai-prices


class _TimedPrices:
    """A catalogue model whose prices depend on the request time: one card per active set."""

    __slots__ = ("_cards", "_checks", "_context", "_model", "_provider", "_source")

    def __init__(self, model: Any, provider: Any, context: Mapping[str, str] | None, source: str):
        self._model = model
        self._provider = provider
        # genai-prices ignores the price context for models found through a fallback provider.
        in_provider = any(model is candidate for candidate in provider.models)
        self._context = dict(context) if context and in_provider else None
        constraints = []
        if isinstance(model.prices, list):
            constraints.extend(c.constraint for c in model.prices if c.constraint is not None)
        if self._context:
            constraints.extend(v.constraint for v in model.price_variants or () if v.constraint is not None)
        self._checks = tuple(_compile_constraint(c) for c in constraints)
        self._cards: dict[tuple[bool, ...], PriceCard] = {}
        self._source = source

    def card_at(self, epoch: float) -> PriceCard:
        key = tuple(check(epoch) for check in self._checks)
        card = self._cards.get(key)
        if card is None:
            moment = datetime.fromtimestamp(epoch, UTC)
            model_price = self._model.get_prices(moment, self._context)
            card = PriceCard.compile(vars(model_price), self._model.id, self._source)
            self._cards[key] = card
        return card


def _compile_constraint(constraint: Any) -> Any:
    """A constraint as a fast predicate over epoch seconds, same answers as ``.active()``."""
    start_date = getattr(constraint, "start_date", None)
    if isinstance(start_date, date):
        threshold = datetime.combine(start_date, time(0), UTC).timestamp()
        return lambda epoch: epoch >= threshold
    start_time, end_time = constraint.start_time, constraint.end_time
    start = _utc_seconds_of_day(start_time)
    end = _utc_seconds_of_day(end_time)
    if end < start:
        return lambda epoch: (epoch % 86400) >= start or (epoch % 86400) < end
    return lambda epoch: start <= (epoch % 86400) < end


def _utc_seconds_of_day(value: time) -> float:
    if value.tzinfo is not None:
        offset = value.utcoffset()
        seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
        return (seconds - (offset.total_seconds() if offset else 0.0)) % 86400
    return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6


class _Unpriced:
    __slots__ = ()


_UNPRICED = _Unpriced()


class Pricer:
    """Prices usage records. Thread-safe; resolves each (provider, model, context) once."""

    def __init__(self, overrides: Iterable[OverrideEntry] = ()) -> None:
        self._overrides = list(overrides)
        self._resolved: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._catalogue_version: str | None = None
        _fork.renew_locks(self, "_lock")

    @property
    def catalogue_version(self) -> str:
        """``genai-prices <version>``: which price data priced the calls."""
        if self._catalogue_version is None:
            from importlib.metadata import version

            self._catalogue_version = f"genai-prices {version('genai-prices')}"
        return self._catalogue_version

    def warm(self) -> None:
        """Load the catalogue now (call from a background thread to keep start-up fast)."""
        from genai_prices import data_snapshot

        data_snapshot.get_snapshot()
        self.catalogue_version  # noqa: B018

    def price(
        self,
        usage: Usage,
        provider: str,
        models: tuple[str | None, ...],
        at: float,
        context: Mapping[str, str] | None = None,
    ) -> Cost | None:
        """The cost of ``usage``; ``None`` if neither the catalogue nor the provider knows it.

        ``models`` are tried in order (the response model first: it names the exact snapshot that
        ran). ``at`` is the request time in epoch seconds; ``context`` selects price variants
        (``service_tier``, ``processing=batch``, ...).
        """
        card = None
        for model in models:
            if model:
                card = self.card(provider, model, at, context)
                if card is not None:
                    break
        provider_cost = usage.provider_cost_usd
        if card is None:
            if provider_cost is None:
                return None
            return Cost(provider_cost, None, None, "provider", None, None, None)
        input_cost, output_cost, total = card.price(usage)
        if provider_cost is not None:
            return Cost(
                provider_cost, input_cost, output_cost, "provider", total, card.model_id, card.source, card
            )
        return Cost(total, input_cost, output_cost, "local", None, card.model_id, card.source, card)

    def card(
        self, provider: str, model: str, at: float, context: Mapping[str, str] | None = None
    ) -> PriceCard | None:
        """The price card for a model at a time, or ``None`` if unpriced."""
        context_key = tuple(sorted(context.items())) if context else ()
        key = (provider, model, context_key)
        resolved = self._resolved.get(key)
        if resolved is None:
            with self._lock:
                resolved = self._resolved.get(key)
                if resolved is None:
                    resolved = self._resolve(provider, model, context)
                    self._resolved[key] = resolved
        if resolved is _UNPRICED:
            return None
        if isinstance(resolved, PriceCard):
            return resolved
        return resolved.card_at(at)

    def _resolve(self, provider: str, model: str, context: Mapping[str, str] | None) -> Any:
        override = self._find_override(provider, model)
        if override is not None:
            return override.card
        genai_id = genai_provider_id(provider)
        if genai_id is not None:
            from genai_prices import data_snapshot

            try:
                found_provider, found_model = data_snapshot.get_snapshot().find_provider_model(
                    model, None, genai_id, None
                )
            except LookupError:
                pass
            else:
                return _TimedPrices(found_model, found_provider, context, self.catalogue_version)
        return _UNPRICED

    def _find_override(self, provider: str, model: str) -> OverrideEntry | None:
        """The most specific override for a model: exact id over prefix, longer prefix over
        shorter, provider-specific over any-provider."""
        lowered = model.lower()
        best: OverrideEntry | None = None
        best_rank: tuple[int, int, int] = (-1, -1, -1)
        for entry in self._overrides:
            if entry.provider is not None and entry.provider != provider:
                continue
            if entry.model is not None:
                if entry.model != lowered:
                    continue
                rank = (1, 0, entry.provider is not None)
            elif entry.prefix is not None and lowered.startswith(entry.prefix):
                rank = (0, len(entry.prefix), entry.provider is not None)
            else:
                continue
            if rank > best_rank:
                best, best_rank = entry, rank
        return best

    def context_window(self, provider: str, model: str) -> int | None:
        """The model's context window from the catalogue, where it says."""
        genai_id = genai_provider_id(provider)
        if genai_id is None:
            return None
        from genai_prices import data_snapshot

        try:
            _, found = data_snapshot.get_snapshot().find_provider_model(model, None, genai_id, None)
        except LookupError:
            return None
        return found.context_window

    def first_unpriced(self, provider: str, model: str) -> bool:
        """True the first time a (provider, model) turns out unpriced: warn once, not per call."""
        key = (provider, model)
        if key in self._warned:
            return False
        with self._lock:
            if key in self._warned:
                return False
            self._warned.add(key)
            return True

    def providers_for(self, model: str) -> tuple[str, ...]:
        """The ``gen_ai.provider.name`` values that price ``model``, most likely first, for a
        caller that was not told the provider: one name when the answer is unambiguous.

        Overrides naming a provider come first. Then the catalogue: the provider whose model
        pattern genai-prices itself matches the id against (``claude-*`` is Anthropic's), else
        every provider whose model list holds it. Each catalogue provider is named by the first
        ``gen_ai.provider.name`` mapped to it."""
        lowered = model.strip().lower()
        from_overrides = tuple(
            dict.fromkeys(
                entry.provider
                for entry in self._overrides
                if entry.provider is not None
                and (
                    entry.model == lowered or (entry.prefix is not None and lowered.startswith(entry.prefix))
                )
            )
        )
        if from_overrides:
            return from_overrides
        from genai_prices import data_snapshot

        names: dict[str, str] = {}
        for name, genai_id in _GENAI_PROVIDER_IDS.items():
            names.setdefault(genai_id, name)
        snapshot = data_snapshot.get_snapshot()
        ours = [provider for provider in snapshot.providers if provider.id in names]
        found = [p for p in ours if p.model_match is not None and p.model_match.is_match(lowered)]
        if not found:
            found = [p for p in ours if any(m.id == lowered or m.is_match(lowered) for m in p.models)]
        return tuple(dict.fromkeys(names[provider.id] for provider in found))


# ---------------------------------------------------------------------------------------------
# User price overrides
# ---------------------------------------------------------------------------------------------


class PriceOverrideError(ValueError):
    """A price override file or entry is malformed; the message names the file, key and problem."""


@dataclass(frozen=True, slots=True)
class OverrideEntry:
    provider: str | None
    model: str | None
    prefix: str | None
    card: PriceCard


_ENTRY_KEYS = {"provider", "model", "prefix"}


def load_overrides(source: str | Path | Iterable[Mapping[str, Any]]) -> list[OverrideEntry]:
    """Parse price overrides from a TOML/YAML file path or from a list of entry mappings.

    File shape (TOML)::

        [[models]]
        provider = "openai"          # optional: gen_ai.provider.name; omitted = any provider
        model = "ft:gpt-4o-mini:acme:support:abc123"   # or: prefix = "ft:gpt-4o-mini:"
        input_mtok = 0.30            # USD per million tokens
        output_mtok = 1.20
        cache_read_mtok = 0.15
        # long-context tiers: the whole call pays the tier rate once input passes `start`
        # input_mtok = { base = 1.25, tiers = [{ start = 200000, price = 2.5 }] }

    Raises :class:`PriceOverrideError` naming the file, the entry and what is wrong.
    """
    if isinstance(source, str | os.PathLike):
        if not str(source).strip():
            raise PriceOverrideError(f"price overrides: the file path is empty ({str(source)!r})")
        path = Path(source)
        label = _short(str(path))
        data = _read_override_file(path, label)
        if not isinstance(data, Mapping) or not isinstance(data.get("models"), list):
            raise PriceOverrideError(
                f"{label}: expected a top-level 'models' list of price entries "
                f"(TOML: [[models]] tables; YAML: models: [...])"
            )
        entries = data["models"]
    elif isinstance(source, Iterable) and not isinstance(source, bytes | Mapping):
        label = "price overrides"
        entries = list(source)
    else:
        raise PriceOverrideError(
            "price overrides: expected a TOML/YAML file path or a list of price entries, "
            f"got {_shown(source)}"
        )
    parsed = [_parse_entry(entry, f"{label}: models[{index}]") for index, entry in enumerate(entries)]
    _refuse_duplicates(parsed, label)
    return parsed


def _refuse_duplicates(entries: list[OverrideEntry], label: str) -> None:
    """Two entries for one model (or prefix) and provider: which one wins would be an accident."""
    seen: dict[tuple[str | None, str | None, str | None], int] = {}
    for index, entry in enumerate(entries):
        key = (entry.provider, entry.model, entry.prefix)
        if key in seen:
            what = f"model {entry.model!r}" if entry.model else f"prefix {entry.prefix!r}"
            raise PriceOverrideError(
                f"{label}: models[{index}] repeats models[{seen[key]}] ({_short(what)}"
                f"{f' of provider {entry.provider!r}' if entry.provider else ''}): keep one"
            )
        seen[key] = index


def _short(text: str, limit: int = 160) -> str:
    """A path for a message, cut short (a real path stays whole): an error never echoes 100 KB."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _read_override_file(path: Path, label: str) -> Any:
    try:
        # A FIFO or a device would block the application's instrument() on its read, for ever.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise PriceOverrideError(f"{label}: cannot read price override file: not a regular file")
        raw = path.read_bytes()
    except OSError as exc:
        raise PriceOverrideError(f"{label}: cannot read price override file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Binary garbage, a file saved in another encoding, or one cut in the middle of a character.
        raise PriceOverrideError(
            f"{label}: not a UTF-8 text file (byte {exc.start} is {raw[exc.start : exc.start + 1]!r}); "
            "price override files are TOML or YAML text"
        ) from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PriceOverrideError(f"{label}: invalid TOML: {exc}") from None
        except RecursionError:
            raise PriceOverrideError(f"{label}: invalid TOML: nested too deeply") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise PriceOverrideError(
                f"{label}: YAML price files need PyYAML (pip install 'tokentrail[yaml]'), or use TOML"
            ) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PriceOverrideError(f"{label}: invalid YAML{_yaml_problem(exc)}") from None
        except RecursionError:
            raise PriceOverrideError(f"{label}: invalid YAML: nested too deeply") from None
    raise PriceOverrideError(f"{label}: price override files must end in .toml, .yaml or .yml")


def _yaml_problem(exc: Exception) -> str:
    """PyYAML's error on one line (its own message spans several, with a caret under the spot)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return ": " + " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}"
    return f"{where}: {problem}" + (f" ({context})" if context else "")


def _parse_entry(entry: Any, where: str) -> OverrideEntry:
    from genai_prices.units import _get_registry
    from genai_prices.validation import validate_model_price

    if not isinstance(entry, Mapping):
        raise PriceOverrideError(f"{where}: expected a table of prices, got {type(entry).__name__}")
    model, prefix, provider = entry.get("model"), entry.get("prefix"), entry.get("provider")
    for key, value in (("model", model), ("prefix", prefix), ("provider", provider)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise PriceOverrideError(f"{where}.{key}: expected a non-empty string, got {_shown(value)}")
    if (model is None) == (prefix is None):
        raise PriceOverrideError(f"{where}: give exactly one of 'model' (exact id) or 'prefix'")
    registry = _get_registry()
    known = sorted(unit.price_key for unit in registry.units.values())
    prices: dict[str, Any] = {}
    for key, value in entry.items():
        if key in _ENTRY_KEYS:
            continue
        try:
            registry.unit_for_price_key(key)
        except KeyError:
            hint = ", ".join(k for k in known if k.endswith("_mtok"))[:200]
            raise PriceOverrideError(
                f"{where}.{key}: unknown price key (prices are per million tokens, e.g. {hint}...)"
            ) from None
        prices[key] = _parse_price(value, f"{where}.{key}")
    if "input_mtok" not in prices and "output_mtok" not in prices:
        raise PriceOverrideError(f"{where}: give at least input_mtok or output_mtok")
    try:
        validate_model_price(set(prices), registry)
    except ValueError as exc:
        raise PriceOverrideError(f"{where}: {exc}") from None
    name = model or f"{prefix}*"
    card = PriceCard.compile(prices, name, "override")
    return OverrideEntry(
        provider=provider,
        model=model.lower() if model else None,
        prefix=prefix.lower() if prefix else None,
        card=card,
    )


def _parse_price(value: Any, where: str) -> Any:
    from decimal import Decimal

    from genai_prices.types import Tier, TieredPrices

    if isinstance(value, Mapping):
        unknown = set(value) - {"base", "tiers"}
        if unknown or "base" not in value:
            raise PriceOverrideError(
                f"{where}: a tiered price is {{ base = N, tiers = [{{ start = TOKENS, price = N }}] }}"
            )
        tiers_raw = value.get("tiers") or []
        if not isinstance(tiers_raw, list):
            raise PriceOverrideError(f"{where}.tiers: expected a list of {{ start, price }} tables")
        tiers = []
        previous = -1
        for index, tier in enumerate(tiers_raw):
            here = f"{where}.tiers[{index}]"
            if not isinstance(tier, Mapping) or set(tier) != {"start", "price"}:
                raise PriceOverrideError(f"{here}: expected {{ start = TOKENS, price = N }}")
            start = tier["start"]
            if type(start) is not int or start < 0:
                raise PriceOverrideError(f"{here}.start: expected a whole number of tokens, got {start!r}")
            if start <= previous:
                raise PriceOverrideError(f"{here}.start: tiers must be in increasing order of start")
            previous = start
            tiers.append(Tier(start=start, price=Decimal(str(_number(tier["price"], f"{here}.price")))))
        return TieredPrices(base=Decimal(str(_number(value["base"], f"{where}.base"))), tiers=tiers)
    return Decimal(str(_number(value, where)))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PriceOverrideError(f"{where}: expected a price in USD (a number), got {_shown(value)}")
    try:
        number = float(value)  # a YAML integer can be too large for a float
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise PriceOverrideError(
            f"{where}: a price must be a finite, non-negative number, got {_shown(value)}"
        )
    return number


def _shown(value: Any) -> str:
    """``repr(value)``, cut short: a corrupt file can hold a huge value, the message stays one line."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."
