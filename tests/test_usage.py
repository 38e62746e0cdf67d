"""The normal usage record: coercion of untrusted values, invariants, and the OpenAI-family readers."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types import CompletionUsage, CreateEmbeddingResponse
from openai.types.responses import ResponseUsage

from tokentrail.providers.openai import chat_usage, embeddings_usage, responses_usage
from tokentrail.usage import Usage

COUNT_FIELDS = (
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
ALL_FIELDS = (*COUNT_FIELDS, "provider_cost_usd", "reported_total_tokens")
# (part, whole): the part is contained in the whole (from the usage semantics, not from usage.py).
PARTS = (
    ("cache_read_tokens", "input_tokens"),
    ("cache_write_tokens", "input_tokens"),
    ("cache_write_1h_tokens", "cache_write_tokens"),
    ("input_audio_tokens", "input_tokens"),
    ("input_image_tokens", "input_tokens"),
    ("reasoning_tokens", "output_tokens"),
    ("output_audio_tokens", "output_tokens"),
)

# Anything a provider payload (or a buggy caller) might put where a count belongs.
anything = st.one_of(
    st.none(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 2**63, 10**400, -(10**400), 10**5000]),
    st.floats(),  # nan, inf, fractions, -0.0, huge
    st.sampled_from([0.0, -0.0, 3.0, -3.0, 0.5, 1e300, math.nan, math.inf, -math.inf]),
    st.text(max_size=8),
    st.sampled_from(["12", " 7 ", "-3", "²", "--5", "9" * 5000, "1_000", "0x10", "١٢", ""]),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
)


def is_count(value: Any) -> bool:
    """A non-negative whole number (or None, "not reported")."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return type(value) is float and math.isfinite(value) and value.is_integer() and value >= 0


def is_cost(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


def broken_invariants(counts: dict[str, int], reported_total: int | None) -> list[str]:
    broken = [f"{part} > {whole}" for part, whole in PARTS if counts[part] > counts[whole]]
    if counts["cache_read_tokens"] + counts["cache_write_tokens"] > counts["input_tokens"]:
        broken.append("cache read + write > input")
    if counts["input_audio_tokens"] + counts["input_image_tokens"] > counts["input_tokens"]:
        broken.append("audio + image > input")
    if reported_total is not None and reported_total != counts["input_tokens"] + counts["output_tokens"]:
        broken.append("total")
    return broken


# ---------------------------------------------------------------------------------------------
# Usage.of never raises
# ---------------------------------------------------------------------------------------------


@given(values=st.dictionaries(st.sampled_from(ALL_FIELDS), anything))
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
def test_usage_of_never_raises_and_flags_every_bad_value(values: dict[str, Any]) -> None:
    usage = Usage.of(**values)

    for name in COUNT_FIELDS:
        assert type(getattr(usage, name)) is int, name
    assert usage.reported_total_tokens is None or type(usage.reported_total_tokens) is int
    assert usage.provider_cost_usd is None or type(usage.provider_cost_usd) is float
    assert all(isinstance(problem, str) and problem for problem in usage.problems)

    bad_counts = [name for name in (*COUNT_FIELDS, "reported_total_tokens") if not is_count(values.get(name))]
    bad_cost = not is_cost(values.get("provider_cost_usd"))
    if bad_counts or bad_cost:
        assert usage.problems, values
        for name in bad_counts:
            assert any(problem.startswith(name) for problem in usage.problems), (name, usage.problems)
        if bad_cost:
            assert usage.provider_cost_usd is None
            assert any("provider cost" in problem for problem in usage.problems)
        return

    counts = {name: 0 if values.get(name) is None else int(values[name]) for name in COUNT_FIELDS}
    raw_total = values.get("reported_total_tokens")
    reported_total = None if raw_total is None else int(raw_total)
    for name in COUNT_FIELDS:
        assert getattr(usage, name) == counts[name]
    assert usage.reported_total_tokens == reported_total
    raw_cost = values.get("provider_cost_usd")
    assert usage.provider_cost_usd == (None if raw_cost is None else float(raw_cost))
    assert bool(usage.problems) == bool(broken_invariants(counts, reported_total)), usage.problems
    assert usage.consistent == (not usage.problems)


def test_usage_of_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError, match="prompt_tokens"):
        Usage.of(prompt_tokens=3)


@pytest.mark.parametrize(
    ("raw", "value", "problem"),
    [
        (None, 0, None),
        (7, 7, None),
        (7.0, 7, None),
        (-0.0, 0, None),
        (-2, -2, "negative"),
        (-2.0, -2, "negative"),
        (True, 0, "boolean"),
        ("12", 12, "string"),
        ("²", 0, "not a whole number"),
        ("--5", 0, "not a whole number"),
        pytest.param("9" * 5000, 0, "not a whole number", id="5000-digit-string"),
        (2.5, 0, "not a whole number"),
        (math.nan, 0, "not a whole number"),
        (math.inf, 0, "not a whole number"),
        ([3], 0, "not a whole number"),
        pytest.param(-(10**5000), -(10**5000), "negative", id="5000-digit-negative"),
    ],
)
def test_count_coercion(raw: Any, value: int, problem: str | None) -> None:
    usage = Usage.of(input_tokens=raw, total_check=False)
    assert usage.input_tokens == value
    if problem is None:
        assert usage.problems == ()
    else:
        assert usage.problems[0].startswith("input_tokens") and problem in usage.problems[0]
        assert len(usage.problems[0]) < 200  # a 5000-digit payload value is not copied into the span


@pytest.mark.parametrize(
    "raw",
    [-0.01, math.nan, math.inf, pytest.param(10**400, id="400-digit-int"), "0.01", True, [0.01]],
)
def test_bad_provider_cost_is_dropped_and_flagged(raw: Any) -> None:
    usage = Usage.of(input_tokens=5, provider_cost_usd=raw)
    assert usage.provider_cost_usd is None
    assert len(usage.problems) == 1 and "provider cost" in usage.problems[0]


def test_provider_cost_is_kept() -> None:
    assert Usage.of(provider_cost_usd=0.0123).provider_cost_usd == 0.0123
    assert Usage.of(provider_cost_usd=0).provider_cost_usd == 0.0
    assert Usage.of(provider_cost_usd=0).problems == ()


# ---------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------


@st.composite
def consistent_counts(draw: st.DrawFn) -> dict[str, int]:
    """Counts whose parts never exceed their wholes."""
    big = st.integers(0, 10**12)
    input_tokens = draw(st.one_of(big, st.integers(0, 1000)))
    output_tokens = draw(st.one_of(big, st.integers(0, 1000)))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    audio = draw(st.integers(0, input_tokens))
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "cache_write_1h_tokens": draw(st.integers(0, cache_write)),
        "reasoning_tokens": draw(st.integers(0, output_tokens)),
        "input_audio_tokens": audio,
        "output_audio_tokens": draw(st.integers(0, output_tokens)),
        "input_image_tokens": draw(st.integers(0, input_tokens - audio)),
        "web_searches": draw(st.integers(0, 100)),
    }


@given(counts=consistent_counts(), report_total=st.booleans())
def test_consistent_usage_has_no_problems(counts: dict[str, int], report_total: bool) -> None:
    total = counts["input_tokens"] + counts["output_tokens"] if report_total else None
    usage = Usage.of(**counts, reported_total_tokens=total)
    assert usage.problems == ()
    assert usage.consistent
    assert usage.total_tokens == counts["input_tokens"] + counts["output_tokens"]


@given(counts=consistent_counts(), pair=st.sampled_from(PARTS), excess=st.integers(1, 10**6))
def test_a_part_larger_than_its_whole_is_flagged(
    counts: dict[str, int], pair: tuple[str, str], excess: int
) -> None:
    part, whole = pair
    counts[part] = counts[whole] + excess
    usage = Usage.of(**counts)
    assert not usage.consistent
    assert any(part in problem and whole in problem for problem in usage.problems), usage.problems
    assert getattr(usage, part) == counts[part]  # recorded as reported, not "repaired"


def test_shared_budgets_are_flagged() -> None:
    # Each part fits, but reads and writes are disjoint shares of the input ...
    usage = Usage.of(input_tokens=100, cache_read_tokens=60, cache_write_tokens=60)
    assert len(usage.problems) == 1
    assert "cache" in usage.problems[0] and "input_tokens" in usage.problems[0]
    # ... and so are the input's modalities.
    usage = Usage.of(input_tokens=100, input_audio_tokens=60, input_image_tokens=60)
    assert len(usage.problems) == 1
    assert "audio" in usage.problems[0] and "image" in usage.problems[0]
    assert "input_tokens" in usage.problems[0]
    # Cached tokens may be audio: a read and a modality overlap legitimately.
    assert Usage.of(input_tokens=100, cache_read_tokens=80, input_audio_tokens=100).consistent


def test_reported_total_is_reconciled() -> None:
    usage = Usage.of(input_tokens=10, output_tokens=5, reported_total_tokens=16)
    assert len(usage.problems) == 1 and "16" in usage.problems[0] and "15" in usage.problems[0]
    assert usage.reported_total_tokens == 16 and usage.total_tokens == 15
    assert Usage.of(input_tokens=10, output_tokens=5, reported_total_tokens=16, total_check=False).consistent
    assert Usage.of(input_tokens=10, output_tokens=5, reported_total_tokens=15).consistent


@given(
    counts=st.fixed_dictionaries({name: st.integers(-3, 12) for name in COUNT_FIELDS}),
    reported_total=st.none() | st.integers(-3, 30),
    total_check=st.booleans(),
)
@settings(max_examples=2000)
def test_the_quick_invariant_check_agrees_with_the_detailed_one(
    counts: dict[str, int], reported_total: int | None, total_check: bool
) -> None:
    # Usage.of asks the one-expression check first and lists problems only when it fails: the
    # two must agree on every record, negative counts (each part compared on its own) included.
    usage = Usage(**counts, reported_total_tokens=reported_total)
    assert usage._holds(total_check) == (not usage._invariant_problems(total_check))
    expected = broken_invariants(counts, reported_total if total_check else None)
    assert usage._holds(total_check) == (not expected)
    of = Usage.of(**counts, reported_total_tokens=reported_total, total_check=total_check)
    negative = [name for name, value in counts.items() if value < 0]
    assert of.consistent == (not expected and not negative and (reported_total or 0) >= 0)


def test_problems_do_not_affect_equality() -> None:
    assert Usage.of(input_tokens="5", total_check=False) == Usage(input_tokens=5)


# ---------------------------------------------------------------------------------------------
# Adding records
# ---------------------------------------------------------------------------------------------


@given(
    a=consistent_counts(),
    b=consistent_counts(),
    costs=st.tuples(st.one_of(st.none(), st.floats(0, 10)), st.one_of(st.none(), st.floats(0, 10))),
    totals=st.tuples(st.booleans(), st.booleans()),
)
def test_adding_records(
    a: dict[str, int], b: dict[str, int], costs: tuple[float | None, float | None], totals: tuple[bool, bool]
) -> None:
    def total(counts: dict[str, int], report: bool) -> int | None:
        return counts["input_tokens"] + counts["output_tokens"] if report else None

    left = Usage.of(**a, provider_cost_usd=costs[0], reported_total_tokens=total(a, totals[0]))
    right = Usage.of(**b, provider_cost_usd=costs[1], reported_total_tokens=total(b, totals[1]))
    summed = left + right
    for name in COUNT_FIELDS:
        assert getattr(summed, name) == a[name] + b[name]
    if costs == (None, None):
        assert summed.provider_cost_usd is None
    else:
        assert summed.provider_cost_usd == sum(c for c in costs if c is not None)
    if all(totals):
        assert summed.reported_total_tokens == summed.total_tokens
    else:
        assert summed.reported_total_tokens is None
    # Parts of sums never exceed sums of wholes: the sum of consistent records is consistent.
    assert summed.problems == ()
    assert Usage.of(**{name: getattr(summed, name) for name in COUNT_FIELDS}).consistent


def test_adding_keeps_problems() -> None:
    bad = Usage.of(input_tokens=-1)
    worse = Usage.of(input_tokens=1, cache_read_tokens=2)
    summed = bad + worse
    assert summed.problems == bad.problems + worse.problems
    assert len(summed.problems) >= 2 and not summed.consistent
    assert (Usage() + bad).problems == bad.problems


def test_adding_other_types_is_refused() -> None:
    with pytest.raises(TypeError):
        Usage() + 5  # type: ignore[operator]


# ---------------------------------------------------------------------------------------------
# OpenAI chat completions (and every OpenAI-compatible provider)
# ---------------------------------------------------------------------------------------------


def both_forms(payload: dict[str, Any]) -> list[Any]:
    """The payload as decoded JSON and as the SDK's own pydantic object."""
    return [payload, CompletionUsage.model_validate(payload)]


@pytest.mark.parametrize("form", [0, 1])
def test_openai_chat_usage(form: int) -> None:
    payload = {
        "prompt_tokens": 2_000,
        "completion_tokens": 700,
        "total_tokens": 2_700,
        "prompt_tokens_details": {
            "cached_tokens": 1_500,
            "cache_write_tokens": 300,
            "audio_tokens": 40,
            "image_tokens": 60,
        },
        "completion_tokens_details": {"reasoning_tokens": 400, "audio_tokens": 50},
    }
    usage = chat_usage(both_forms(payload)[form])
    assert usage.input_tokens == 2_000  # cached is a subset of prompt_tokens
    assert usage.cache_read_tokens == 1_500
    assert usage.cache_write_tokens == 300
    assert usage.input_audio_tokens == 40 and usage.input_image_tokens == 60
    assert usage.output_tokens == 700  # reasoning is a subset of completion_tokens for OpenAI
    assert usage.reasoning_tokens == 400 and usage.output_audio_tokens == 50
    assert usage.total_tokens == usage.reported_total_tokens == 2_700
    assert usage.provider_cost_usd is None
    assert usage.problems == ()


@pytest.mark.parametrize("form", [0, 1])
def test_xai_reasoning_is_extra(form: int) -> None:
    payload = {
        "prompt_tokens": 1_000,
        "completion_tokens": 300,
        "total_tokens": 1_000 + 300 + 900,
        "prompt_tokens_details": {"cached_tokens": 600},
        "completion_tokens_details": {"reasoning_tokens": 900},
        "cost_in_usd_ticks": 123_456_789,
    }
    usage = chat_usage(both_forms(payload)[form])
    assert usage.input_tokens == 1_000 and usage.cache_read_tokens == 600
    assert usage.output_tokens == 300 + 900
    assert usage.reasoning_tokens == 900
    assert usage.total_tokens == payload["total_tokens"]
    assert usage.provider_cost_usd == 123_456_789 / 1e10
    assert usage.problems == ()


@pytest.mark.parametrize("form", [0, 1])
def test_deepseek_cache_hits_win(form: int) -> None:
    payload = {
        "prompt_tokens": 1_000,
        "completion_tokens": 50,
        "total_tokens": 1_050,
        "prompt_cache_hit_tokens": 768,
        "prompt_cache_miss_tokens": 232,
        "prompt_tokens_details": {"cached_tokens": 512},
    }
    usage = chat_usage(both_forms(payload)[form])
    assert usage.cache_read_tokens == 768
    assert usage.input_tokens == 1_000 and usage.output_tokens == 50
    assert usage.problems == ()
    # Without DeepSeek's field the OpenAI one is used.
    del payload["prompt_cache_hit_tokens"]
    assert chat_usage(both_forms(payload)[form]).cache_read_tokens == 512


@pytest.mark.parametrize("form", [0, 1])
def test_openrouter_cost(form: int) -> None:
    payload = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.0123}
    usage = chat_usage(both_forms(payload)[form])
    assert usage.provider_cost_usd == 0.0123
    assert usage.input_tokens == 10 and usage.output_tokens == 5 and usage.problems == ()


def test_xai_ticks_win_over_cost() -> None:
    usage = chat_usage(
        {"prompt_tokens": 1, "completion_tokens": 1, "cost_in_usd_ticks": 5 * 10**8, "cost": 9.0}
    )
    assert usage.provider_cost_usd == 0.05


@st.composite
def openai_chat_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Consistent OpenAI chat usage: subsets within their totals, total = prompt + completion.

    Optional fields are sometimes absent and sometimes null, as real payloads have them.
    """
    prompt = draw(st.integers(0, 10**9))
    completion = draw(st.integers(0, 10**7))
    cached = draw(st.integers(0, prompt))
    written = draw(st.integers(0, prompt - cached))
    audio = draw(st.integers(0, prompt))
    image = draw(st.integers(0, prompt - audio))
    reasoning = draw(st.integers(0, completion))
    out_audio = draw(st.integers(0, completion))
    payload: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }

    def maybe(details: dict[str, int]) -> dict[str, Any] | None:
        kept: dict[str, Any] = {}
        for key, value in details.items():
            how = draw(st.sampled_from(["value", "value", "absent", "null"]))
            if how == "value":
                kept[key] = value
            elif how == "null":
                kept[key] = None
        return kept

    how = draw(st.sampled_from(["present", "absent", "null"]))
    if how != "absent":
        payload["prompt_tokens_details"] = (
            None
            if how == "null"
            else maybe(
                {
                    "cached_tokens": cached,
                    "cache_write_tokens": written,
                    "audio_tokens": audio,
                    "image_tokens": image,
                }
            )
        )
    how = draw(st.sampled_from(["present", "absent", "null"]))
    if how != "absent":
        payload["completion_tokens_details"] = (
            None if how == "null" else maybe({"reasoning_tokens": reasoning, "audio_tokens": out_audio})
        )
    return payload


@given(payload=openai_chat_payloads(), as_object=st.booleans())
@settings(max_examples=300)
def test_openai_shaped_payloads_reconcile(payload: dict[str, Any], as_object: bool) -> None:
    usage = chat_usage(CompletionUsage.model_validate(payload) if as_object else payload)
    assert usage.problems == ()
    assert usage.input_tokens + usage.output_tokens == payload["total_tokens"]
    assert usage.input_tokens == payload["prompt_tokens"]
    assert usage.output_tokens == payload["completion_tokens"]
    details = payload.get("prompt_tokens_details") or {}
    assert usage.cache_read_tokens == (details.get("cached_tokens") or 0)
    completion_details = payload.get("completion_tokens_details") or {}
    assert usage.reasoning_tokens == (completion_details.get("reasoning_tokens") or 0)


junk = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.sampled_from([-1, 10**30, 10**300, 10**5000, 2**63]),
    st.floats(),
    st.text(max_size=5),
    st.sampled_from(["12", "-3", "²"]),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# cost_in_usd_ticks is divided by 1e10 before Usage.of sees it: past float range that division
# raises (test_huge_xai_ticks_do_not_raise), so the fuzz keeps ticks within float range.
tick_junk = st.one_of(
    st.none(), st.integers(-(10**300), 10**300), st.floats(), st.text(max_size=5), st.booleans()
)
detail_junk = st.one_of(
    junk,
    st.fixed_dictionaries(
        {},
        optional={
            "cached_tokens": junk,
            "cache_write_tokens": junk,
            "audio_tokens": junk,
            "image_tokens": junk,
            "reasoning_tokens": junk,
        },
    ),
)


@given(
    payload=st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens": junk,
            "completion_tokens": junk,
            "total_tokens": junk,
            "prompt_cache_hit_tokens": junk,
            "prompt_tokens_details": detail_junk,
            "completion_tokens_details": detail_junk,
            "cost": junk,
            "cost_in_usd_ticks": tick_junk,
        },
    ),
    as_object=st.booleans(),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_chat_usage_never_raises(payload: dict[str, Any], as_object: bool) -> None:
    # The SDK builds its objects without validation (construct), so junk reaches us in both forms.
    source = CompletionUsage.construct(**payload) if as_object else payload
    usage = chat_usage(source)
    for name in COUNT_FIELDS:
        assert type(getattr(usage, name)) is int
    assert usage.provider_cost_usd is None or math.isfinite(usage.provider_cost_usd)
    # Whatever is wrong with a payload shows on the record.
    bad = [
        name
        for name in ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_cache_hit_tokens")
        if not is_count(payload.get(name))
    ]
    if bad:
        assert usage.problems


def test_chat_usage_of_non_payloads() -> None:
    for nothing in (None, 5, "usage", [], {}):
        usage = chat_usage(nothing)
        assert usage == Usage() and usage.problems == ()


def test_huge_xai_ticks_do_not_raise() -> None:
    usage = chat_usage({"prompt_tokens": 1, "completion_tokens": 1, "cost_in_usd_ticks": 10**400})
    assert usage.provider_cost_usd is None and usage.problems


# ---------------------------------------------------------------------------------------------
# OpenAI Responses API and embeddings
# ---------------------------------------------------------------------------------------------


def test_responses_usage() -> None:
    usage_object = ResponseUsage.model_validate(
        {
            "input_tokens": 5_000,
            "input_tokens_details": {"cached_tokens": 4_000, "cache_write_tokens": 700},
            "output_tokens": 1_200,
            "output_tokens_details": {"reasoning_tokens": 1_000},
            "total_tokens": 6_200,
        }
    )
    usage = responses_usage(usage_object, web_searches=2)
    assert usage.input_tokens == 5_000 and usage.cache_read_tokens == 4_000
    assert usage.cache_write_tokens == 700
    assert usage.output_tokens == 1_200 and usage.reasoning_tokens == 1_000
    assert usage.web_searches == 2
    assert usage.total_tokens == usage.reported_total_tokens == 6_200
    assert usage.problems == ()


@given(
    input_tokens=st.integers(0, 10**8),
    output_tokens=st.integers(0, 10**7),
    data=st.data(),
)
def test_responses_usage_reconciles(input_tokens: int, output_tokens: int, data: st.DataObject) -> None:
    cached = data.draw(st.integers(0, input_tokens))
    written = data.draw(st.integers(0, input_tokens - cached))
    reasoning = data.draw(st.integers(0, output_tokens))
    usage = responses_usage(
        ResponseUsage.model_validate(
            {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": input_tokens + output_tokens,
            }
        )
    )
    assert usage.problems == ()
    assert (usage.input_tokens, usage.output_tokens) == (input_tokens, output_tokens)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (cached, written)
    assert usage.reasoning_tokens == reasoning


def test_responses_usage_flags_a_wrong_total() -> None:
    usage = responses_usage(
        {"input_tokens": 10, "output_tokens": 5, "total_tokens": 99, "output_tokens_details": None}
    )
    assert not usage.consistent and "99" in usage.problems[0]


def test_embeddings_usage() -> None:
    response = CreateEmbeddingResponse.model_validate(
        {
            "object": "list",
            "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 42, "total_tokens": 42},
        }
    )
    usage = embeddings_usage(response.usage)
    assert usage.input_tokens == 42 and usage.output_tokens == 0
    assert usage.total_tokens == usage.reported_total_tokens == 42
    assert usage.problems == ()
    assert embeddings_usage({"prompt_tokens": 42, "total_tokens": 40}).problems
