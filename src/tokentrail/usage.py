"""The normal usage record: what one LLM call consumed, with one meaning per field.

Every provider reports tokens differently (Anthropic's ``input_tokens`` excludes the cache,
xAI's reasoning is extra, Gemini's thoughts sit beside the candidates). Provider modules translate
their SDK's usage object into this record once, at the edge; nothing after them ever needs to know
which provider a record came from.

Totals contain their parts:

* ``input_tokens`` is every billed input token, cache reads and writes included;
* ``output_tokens`` is every billed output token, reasoning included.

A payload that breaks an invariant is still recorded as the provider reported it; the record
carries the reasons in ``problems`` so the span can be flagged instead of the call crashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter, le
from typing import Any

from . import semconv as sc

__all__ = ["COUNT_FIELDS", "USAGE_FIELDS", "Usage", "UsageField", "count", "usage_given"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one LLM call in the normal form.

    Build it with :meth:`Usage.of`, which coerces SDK values and checks the invariants; the plain
    constructor trusts its arguments.
    """

    input_tokens: int = 0
    """Every billed input token, cached or not."""
    output_tokens: int = 0
    """Every billed output token, reasoning included."""
    cache_read_tokens: int = 0
    """Part of ``input_tokens`` served from the prompt cache."""
    cache_write_tokens: int = 0
    """Part of ``input_tokens`` written to the prompt cache (all TTLs)."""
    cache_write_1h_tokens: int = 0
    """Part of ``cache_write_tokens`` written with a one-hour TTL (priced higher by Anthropic)."""
    reasoning_tokens: int = 0
    """Part of ``output_tokens`` spent on reasoning / thinking."""
    input_audio_tokens: int = 0
    """Part of ``input_tokens`` that was audio."""
    output_audio_tokens: int = 0
    """Part of ``output_tokens`` that was audio."""
    input_image_tokens: int = 0
    """Part of ``input_tokens`` that was images."""
    web_searches: int = 0
    """Server-side web search requests billed per request."""
    provider_cost_usd: float | None = None
    """The cost the provider itself reported for this call (OpenRouter, xAI), in USD."""
    reported_total_tokens: int | None = None
    """The provider's own total, kept to reconcile against."""
    problems: tuple[str, ...] = field(default=(), compare=False)
    """Why this record cannot be fully trusted; empty when every invariant holds."""

    @property
    def consistent(self) -> bool:
        """True when every invariant held for the payload this record came from."""
        return not self.problems

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def of(cls, *, total_check: bool = True, **values: Any) -> Usage:
        """Build a record from raw SDK values, coercing types and checking invariants.

        ``None`` means "not reported" and becomes 0. Anything that is not a non-negative whole
        number is recorded as well as it can be and named in ``problems``. Never raises for bad
        values: provider payloads are not ours to trust.
        """
        problems: list[str] = []
        clean: dict[str, Any] = {}
        counts = _COUNT_NAMES
        for name, raw in values.items():
            if name in counts:
                if type(raw) is int and raw >= 0:  # the usual value, taken as it is
                    clean[name] = raw
                elif raw is not None:  # None is "not reported": the field's default, 0
                    clean[name] = count(raw, name, problems)
            elif name == "provider_cost_usd":
                clean[name] = _cost(raw, problems)
            elif name == "reported_total_tokens":
                clean[name] = None if raw is None else count(raw, name, problems)
            else:
                raise TypeError(f"Usage has no field {name!r}")
        record = cls(**clean)
        if not record._holds(total_check):
            problems.extend(record._invariant_problems(total_check))
        if problems:
            record = _replace_problems(record, tuple(problems))
        return record

    def _holds(self, total_check: bool) -> bool:
        """Every invariant of :meth:`_invariant_problems` at once: the cheap answer for the usual
        record. The parts are compared to their wholes from :data:`_PARTS` (in C), each on its own
        as counts may be negative; then the shares of the input and the reported total."""
        inputs = self.input_tokens
        total = self.reported_total_tokens
        return (
            all(map(le, _PART_VALUES(self), _WHOLE_VALUES(self)))
            and self.cache_read_tokens + self.cache_write_tokens <= inputs
            and self.input_audio_tokens + self.input_image_tokens <= inputs
            and (not total_check or total is None or total == inputs + self.output_tokens)
        )

    def _invariant_problems(self, total_check: bool) -> list[str]:
        found: list[str] = []
        for part, whole in _PARTS:
            part_value, whole_value = getattr(self, part), getattr(self, whole)
            if part_value > whole_value:
                found.append(f"{part} ({_show(part_value)}) exceeds {whole} ({_show(whole_value)})")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            found.append(
                f"cache reads + writes ({_show(self.cache_read_tokens + self.cache_write_tokens)}) "
                f"exceed input_tokens ({_show(self.input_tokens)})"
            )
        if self.input_audio_tokens + self.input_image_tokens > self.input_tokens:
            # Modalities are disjoint: a token is audio or image, never both.
            found.append(
                f"input audio + image ({_show(self.input_audio_tokens + self.input_image_tokens)}) "
                f"exceed input_tokens ({_show(self.input_tokens)})"
            )
        if (
            total_check
            and self.reported_total_tokens is not None
            and self.reported_total_tokens != self.total_tokens
        ):
            found.append(
                f"reported total {_show(self.reported_total_tokens)} "
                f"!= input + output {_show(self.total_tokens)}"
            )
        return found

    def __add__(self, other: Usage) -> Usage:
        """Sum two records (several requests merged into one call); problems are kept."""
        if not isinstance(other, Usage):
            return NotImplemented
        summed: dict[str, Any] = {name: getattr(self, name) + getattr(other, name) for name in COUNT_FIELDS}
        costs = [c for c in (self.provider_cost_usd, other.provider_cost_usd) if c is not None]
        summed["provider_cost_usd"] = sum(costs) if costs else None
        totals = (self.reported_total_tokens, other.reported_total_tokens)
        summed["reported_total_tokens"] = None if None in totals else sum(totals)  # type: ignore[arg-type]
        summed["problems"] = self.problems + other.problems
        return Usage(**summed)


@dataclass(frozen=True, slots=True)
class UsageField:
    """One token count of :class:`Usage`, and every name it goes by downstream."""

    name: str
    """The :class:`Usage` field, and the ledger column of the same name."""
    span_attribute: str
    """The span attribute it is recorded as (set only when non-zero, except the two totals)."""
    price_key: str
    """The ``genai_prices.Usage`` field it is priced as."""
    token_type: str | None = None
    """``gen_ai.token.type`` of the parts counter (``tokentrail.client.token.parts``), if counted there."""
    summed: bool = False
    """Added up by roll-up spans, the run summary and report totals."""
    previous_attribute: str | None = None
    """The previous release's name for ``span_attribute``, still set beside it for one release."""


# The token counts, in a stable order: the ledger's columns follow it. The one table from which
# the span attributes, the pricing map, the ledger columns and the totals derive.
USAGE_FIELDS: tuple[UsageField, ...] = (
    UsageField("input_tokens", sc.USAGE_INPUT_TOKENS, "input_tokens", summed=True),
    UsageField("output_tokens", sc.USAGE_OUTPUT_TOKENS, "output_tokens", summed=True),
    UsageField(
        "cache_read_tokens", sc.USAGE_CACHE_READ_INPUT_TOKENS, "cache_read_tokens", "cache_read", summed=True
    ),
    UsageField(
        "cache_write_tokens",
        sc.USAGE_CACHE_WRITE_INPUT_TOKENS,
        "cache_write_tokens",
        "cache_creation",
        summed=True,
        previous_attribute=sc.USAGE_CACHE_CREATION_INPUT_TOKENS,
    ),
    UsageField(
        "cache_write_1h_tokens",
        sc.USAGE_CACHE_WRITE_1H_INPUT_TOKENS,
        "cache_write_1h_tokens",
        previous_attribute=sc.USAGE_CACHE_CREATION_1H_INPUT_TOKENS,
    ),
    UsageField(
        "reasoning_tokens",
        sc.USAGE_REASONING_OUTPUT_TOKENS,
        "output_reasoning_tokens",
        "reasoning",
        summed=True,
    ),
    UsageField(
        "input_audio_tokens",
        sc.USAGE_AUDIO_INPUT_TOKENS,
        "input_audio_tokens",
        previous_attribute=sc.USAGE_INPUT_AUDIO_TOKENS,
    ),
    UsageField(
        "output_audio_tokens",
        sc.USAGE_AUDIO_OUTPUT_TOKENS,
        "output_audio_tokens",
        previous_attribute=sc.USAGE_OUTPUT_AUDIO_TOKENS,
    ),
    UsageField(
        "input_image_tokens",
        sc.USAGE_IMAGE_INPUT_TOKENS,
        "input_image_tokens",
        previous_attribute=sc.USAGE_INPUT_IMAGE_TOKENS,
    ),
    UsageField("web_searches", sc.USAGE_WEB_SEARCHES, "web_searches"),
)
COUNT_FIELDS = tuple(f.name for f in USAGE_FIELDS)
_COUNT_NAMES = frozenset(COUNT_FIELDS)
SUMMED_FIELDS = tuple(f.name for f in USAGE_FIELDS if f.summed)
"""The token counts every total adds up (the rest are details of these)."""
assert set(COUNT_FIELDS) | {"provider_cost_usd", "reported_total_tokens", "problems"} == {
    f.name for f in fields(Usage)
}

# (part, whole): the part is contained in the whole.
_PARTS = (
    ("cache_read_tokens", "input_tokens"),
    ("cache_write_tokens", "input_tokens"),
    ("cache_write_1h_tokens", "cache_write_tokens"),
    ("input_audio_tokens", "input_tokens"),
    ("input_image_tokens", "input_tokens"),
    ("reasoning_tokens", "output_tokens"),
    ("output_audio_tokens", "output_tokens"),
)

_PART_VALUES = attrgetter(*(part for part, _ in _PARTS))
_WHOLE_VALUES = attrgetter(*(whole for _, whole in _PARTS))

# What a usage payload cannot be: a server that sends "usage": true, [..], 12 or "n/a" reported no
# usage we can read. Read field by field it would be a call of 0 tokens, free and unflagged.
_NOT_A_USAGE_OBJECT = (bool, int, float, str, bytes, list, tuple, set, frozenset)


def usage_given(raw: Any) -> bool:
    """True if ``raw`` (a response's usage member) is something usage can be read from: a mapping
    or an SDK object. None and values of the wrong type make the call's usage missing instead."""
    return raw is not None and not isinstance(raw, _NOT_A_USAGE_OBJECT)


def count(raw: Any, name: str, problems: list[str]) -> int:
    """A token count from an untrusted payload value; notes in ``problems`` what was wrong."""
    if raw is None:
        return 0
    if type(raw) is int:
        if raw < 0:
            problems.append(f"{name} is negative ({_show(raw)})")
        return raw
    if isinstance(raw, bool):
        problems.append(f"{name} is a boolean")
        return 0
    if isinstance(raw, int):  # int subclasses (enums, numpy-like)
        return count(int(raw), name, problems)
    if isinstance(raw, float) and raw.is_integer():
        return count(int(raw), name, problems)
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        try:
            value = int(raw)
        except ValueError:  # digits int() refuses: "²", "--5", more than 4300 of them
            pass
        else:
            problems.append(f"{name} is a string ({raw[:40]!r})")
            return value
    problems.append(f"{name} is not a whole number ({type(raw).__name__})")
    return 0


def _cost(raw: Any, problems: list[str]) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        problems.append(f"provider cost is not a number ({type(raw).__name__})")
        return None
    try:
        value = float(raw)
    except OverflowError:  # an int beyond float range
        value = float("inf")
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        problems.append(f"provider cost is not a finite non-negative number ({_show(raw)})")
        return None
    return value


def _show(value: Any) -> str:
    """``repr`` for a problem message; never raises (Python refuses to print ints of 4300+ digits)."""
    try:
        return repr(value)
    except ValueError:
        return f"<{value.bit_length()}-bit {type(value).__name__}>"


def _replace_problems(record: Usage, problems: tuple[str, ...]) -> Usage:
    object.__setattr__(record, "problems", problems)
    return record
