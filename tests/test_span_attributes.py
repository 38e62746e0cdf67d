"""tokentrail._span_attributes: the end-of-call attributes land on the SDK span exactly as the public
``set_attributes`` puts them there (values, order, dropped count, limits, an ended span)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from tokentrail import _span_attributes

END = {
    "gen_ai.request.max_tokens": 1024,
    "gen_ai.request.temperature": 0.7,
    "gen_ai.request.stream": True,
    "gen_ai.response.model": "claude-sonnet-4-5",
    "gen_ai.response.finish_reasons": ("end_turn",),
    "gen_ai.usage.input_tokens": 1234,
    "tokentrail.cost.amount": 0.0123,
    "tokentrail.usage.problems": ("output_tokens < reasoning_tokens", "negative"),
}


def _span(limits: SpanLimits | None = None) -> Any:
    provider = TracerProvider(span_limits=limits) if limits is not None else TracerProvider()
    return provider.get_tracer("test").start_span("call", attributes={"gen_ai.operation.name": "chat"})


def _state(span: Any) -> tuple[list[tuple[str, Any]], int]:
    return list(span.attributes.items()), span.dropped_attributes


def _both(attributes: dict[str, Any], limits: SpanLimits | None = None) -> tuple[Any, Any]:
    fast, public = _span(limits), _span(limits)
    _span_attributes.set_attributes(fast, attributes)
    public.set_attributes(attributes)
    return _state(fast), _state(public)


def test_the_sdk_is_one_the_fast_path_was_written_for():
    # A failure here: read the SDK's new set_attributes and extend _span_attributes._load.
    assert _span_attributes.supported()


def test_the_end_attributes_land_as_the_public_path_puts_them():
    fast, public = _both(END)
    assert fast == public
    assert dict(fast[0])["gen_ai.response.finish_reasons"] == ("end_turn",)


@pytest.mark.parametrize(
    "odd",
    [
        {"list": ["a", "b"]},  # cleaned to a tuple by the SDK
        {"mixed": ("a", 1)},
        {"none": None},
        {"bytes": b"x"},
        {"object": object()},
        {"": "empty key"},
    ],
    ids=["list", "mixed-tuple", "none", "bytes", "object", "empty-key"],
)
def test_a_value_the_sdk_would_clean_takes_the_public_path(odd):
    attributes = {**END, **odd}
    fast, public = _both(attributes)
    if "object" in odd:  # stored as its str(), which differs between two objects' addresses
        fast = ([(k, v) for k, v in fast[0] if k != "object"], fast[1])
        public = ([(k, v) for k, v in public[0] if k != "object"], public[1])
    assert fast == public


def test_limits_apply_as_the_sdk_applies_them():
    fast, public = _both(END, SpanLimits(max_span_attributes=4, max_span_attribute_length=6))
    assert fast == public
    assert len(fast[0]) == 4 and fast[1] > 0
    assert all(len(v) <= 6 for _, v in fast[0] if isinstance(v, str))


@pytest.mark.parametrize("max_attributes", [None, 9, 10, 128])
def test_a_key_the_span_already_has_moves_as_the_public_path_moves_it(max_attributes):
    # One dict.update when every key is new and all fit; a key set again (here the start's
    # operation name) goes item by item, to the end, as the SDK puts it.
    limits = SpanLimits(max_span_attributes=max_attributes) if max_attributes else None
    again = {**END, "gen_ai.operation.name": "text_completion"}
    for attributes in (END, again):
        fast, public = _both(attributes, limits)
        assert fast == public
    assert _both(again)[0][0][-1] == ("gen_ai.operation.name", "text_completion")


def test_an_ended_span_is_refused_with_the_sdks_warning(caplog):
    span = _span()
    span.end()
    with caplog.at_level(logging.WARNING):
        _span_attributes.set_attributes(span, END)
    assert "ended span" in caplog.text
    assert "gen_ai.usage.input_tokens" not in span.attributes


def test_a_span_that_is_not_the_sdks_takes_its_own_method():
    seen: list[dict[str, Any]] = []

    class Other:
        def set_attributes(self, attributes: dict[str, Any]) -> None:
            seen.append(dict(attributes))

    _span_attributes.set_attributes(Other(), END)
    assert seen == [END]


_values = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.tuples(st.text(max_size=5), st.text(max_size=5)),
)


@settings(max_examples=80, deadline=None)
@given(
    attributes=st.dictionaries(st.text(min_size=1, max_size=8), _values, max_size=30),
    max_attributes=st.one_of(st.none(), st.integers(1, 40)),
    max_length=st.one_of(st.none(), st.integers(0, 10)),
)
def test_any_plain_attributes_under_any_limits_land_alike(attributes, max_attributes, max_length):
    limits = SpanLimits(max_span_attributes=max_attributes, max_span_attribute_length=max_length)
    fast, public = _both(attributes, limits)
    assert fast == public


class _Text(str):
    """A str subclass: the SDK's cleaning would not keep it as it is."""


_any_value = st.one_of(
    _values,
    st.none(),
    st.binary(max_size=3),
    st.lists(st.text(max_size=3), max_size=2),
    st.tuples(st.text(max_size=3), st.integers()),
    st.tuples(),
    st.builds(_Text, st.text(max_size=3)),
    st.tuples(st.builds(_Text, st.text(max_size=3))),
)


def _plain_one_by_one(attributes: dict[Any, Any], limit: int | None) -> bool:
    """The definition _plain computes in C: checked item by item."""
    for key, value in attributes.items():
        if type(key) is not str or not key:
            return False
        if type(value) is str:
            if limit is not None and len(value) > limit:
                return False
        elif type(value) is tuple:
            if any(type(item) is not str or (limit is not None and len(item) > limit) for item in value):
                return False
        elif type(value) not in (int, float, bool):
            return False
    return True


@settings(max_examples=400, deadline=None)
@given(
    attributes=st.dictionaries(
        st.one_of(st.text(max_size=6), st.builds(_Text, st.text(max_size=3)), st.integers()),
        _any_value,
        max_size=12,
    ),
    limit=st.one_of(st.none(), st.integers(0, 6)),
)
def test_the_plain_check_is_the_item_by_item_definition(attributes, limit):
    # Which attribute sets take the fast path: exactly those whose every key is a non-empty str
    # and every value a str, int, float, bool or tuple of str, within the length limit.
    assert _span_attributes._plain(attributes, limit) == _plain_one_by_one(attributes, limit)
