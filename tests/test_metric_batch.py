"""tokentrail._metric_batch: values recorded in one batch reach the SDK exactly as the public
``record`` / ``add`` would put them there (same points, buckets, sums, attributes, exemplars)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    Counter,
    ExemplarFilter,
    Histogram,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.trace import TracerProvider

from tokentrail import _metric_batch

ATTRIBUTES = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-5-mini",
    "server.port": 443,
}
VALUES = [0.004, 0.03, 0.03, 2.5, 0.0, 70.0]


def _points(reader: InMemoryMetricReader) -> dict[str, list[dict[str, Any]]]:
    """Instrument name -> its points, without timestamps (which differ between two runs)."""
    found: dict[str, list[dict[str, Any]]] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                rows = []
                for point in metric.data.data_points:
                    row = {"attributes": dict(point.attributes or {})}
                    for field in ("count", "sum", "bucket_counts", "explicit_bounds", "min", "max", "value"):
                        if hasattr(point, field):
                            value = getattr(point, field)
                            row[field] = list(value) if isinstance(value, (list, tuple)) else value
                    # The span differs between two runs; a counter's reservoir samples at random.
                    row["exemplars"] = (
                        sorted(
                            (e.value, e.span_id is not None, dict(e.filtered_attributes or {}))
                            for e in point.exemplars
                        )
                        if metric.name == "h"
                        else len(point.exemplars) > 0
                    )
                    rows.append(row)
                found[metric.name] = sorted(rows, key=repr)
    return found


def _run(batched: bool, *, views: tuple[View, ...] = (), delta: bool = False, exemplar: bool = False):
    temporality = (
        {Histogram: AggregationTemporality.DELTA, Counter: AggregationTemporality.DELTA} if delta else {}
    )
    reader = InMemoryMetricReader(preferred_temporality=temporality)
    meter = MeterProvider(metric_readers=[reader], views=list(views)).get_meter("test")
    histogram = meter.create_histogram("h", unit="s", explicit_bucket_boundaries_advisory=[0.01, 0.1, 1, 10])
    counter = meter.create_counter("c", unit="{token}")
    context = otel_context.Context()
    if exemplar:
        span = TracerProvider().get_tracer("test").start_span("call")
        context = trace.set_span_in_context(span)
    other = {**ATTRIBUTES, "gen_ai.token.type": "input"}
    for _ in range(2):  # the second round finds the aggregations the first one made
        if batched:
            _metric_batch.record(histogram, VALUES, ATTRIBUTES, context)
            _metric_batch.record(counter, (1024, 64), other, context)
        else:
            for value in VALUES:
                histogram.record(value, ATTRIBUTES, context=context)
            for value in (1024, 64):
                counter.add(value, other, context=context)
    first = _points(reader)
    if batched:
        _metric_batch.record(histogram, VALUES[:2], ATTRIBUTES, context)
    else:
        for value in VALUES[:2]:
            histogram.record(value, ATTRIBUTES, context=context)
    return first, _points(reader)  # the second collection: after a (delta) reset too


def test_the_sdk_is_one_the_fast_path_was_written_for():
    # A failure here means the benchmark figures no longer hold (the public path is taken): read
    # the SDK's new record path and extend _metric_batch._load, or accept the slower path.
    assert _metric_batch.supported()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"delta": True},
        {"exemplar": True},
        {"views": (View(instrument_name="h", attribute_keys={"gen_ai.request.model"}),)},
        {"views": (View(instrument_name="h", name="h.copy"), View(instrument_name="h"))},
    ],
    ids=["cumulative", "delta", "exemplars", "view-attribute-keys", "two-views"],
)
def test_a_batch_collects_as_the_values_one_by_one(options):
    batched, plain = _run(True, **options), _run(False, **options)
    assert batched == plain
    first = batched[0]
    assert first["h"][0]["count"] == 2 * len(VALUES)
    assert first["c"][0]["value"] == 2 * (1024 + 64)
    if options.get("exemplar"):
        assert any(point["exemplars"] for point in first["h"])


def test_a_negative_value_is_refused_as_the_sdk_refuses_it(caplog):
    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("test").create_histogram("h")
    _metric_batch.record(histogram, [1.0, -1.0, float("nan"), 2.0], ATTRIBUTES, otel_context.Context())
    (point,) = _points(reader)["h"]
    assert point["count"] == 2 and point["sum"] == 3.0
    assert "non-negative" in caplog.text and "not finite" in caplog.text


def test_instruments_that_are_not_the_sdks_take_the_public_path():
    recorded: list[tuple[float, Any]] = []

    class Recording:
        def record(self, value: float, attributes: Any, context: Any = None) -> None:
            recorded.append((value, dict(attributes)))

    _metric_batch.record(Recording(), [1.0, 2.0], ATTRIBUTES, None)
    assert recorded == [(1.0, ATTRIBUTES), (2.0, ATTRIBUTES)]
    no_op = NoOpMeterProvider().get_meter("test").create_histogram("h")
    _metric_batch.record(no_op, [1.0], ATTRIBUTES, None)  # nothing to record, nothing raised


def test_an_unhashable_attribute_value_is_recorded_all_the_same():
    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("test").create_histogram("h")
    attributes = {**ATTRIBUTES, "list": ["a", "b"]}
    _metric_batch.record(histogram, [1.0, 2.0], attributes, otel_context.Context())
    (point,) = _points(reader)["h"]
    assert point["count"] == 2 and point["attributes"]["list"] == ("a", "b")


def _histogram_points(batched: bool, values: list[float], boundaries: list[float], **provider: Any):
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader], **provider).get_meter("test")
    histogram = meter.create_histogram("h", explicit_bucket_boundaries_advisory=boundaries)
    span = TracerProvider().get_tracer("test").start_span("call")
    for context in (otel_context.Context(), trace.set_span_in_context(span)):
        if batched:
            _metric_batch.record(histogram, values, ATTRIBUTES, context)
        else:
            for value in values:
                histogram.record(value, ATTRIBUTES, context=context)
    return _points(reader)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.integers(0, 10**7), st.floats(0, 1e4, allow_nan=False, allow_infinity=False)),
        min_size=1,
        max_size=200,  # past _SORT_FROM the buckets are counted from a sorted copy
    ),
    boundaries=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=12, unique=True).map(sorted),
)
@example(values=[1.0, 2.0, 2.0, 10.0, 10.0, 10.5, 0.0, 3.0, 2.0, 1e4], boundaries=[0.0, 2.0, 10.0])
def test_a_batch_counts_sums_and_bounds_as_value_by_value(values, boundaries):
    # The stream's chunk gaps and the token counts take the histogram's own fields under one lock:
    # the buckets, the sum (added in the same order, so equal to the last bit), min and max.
    assert _histogram_points(True, values, boundaries) == _histogram_points(False, values, boundaries)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.integers(0, 10**7), st.floats(0, 1e4, allow_nan=False, allow_infinity=False)),
        min_size=1,
        max_size=40,
    ),
    rounds=st.integers(1, 3),
)
def test_a_counter_batch_adds_up_as_value_by_value(values, rounds):
    # The token parts: a counter's values with no exemplar go in under one hold of its lock, added
    # in the same order (equal to the last bit), onto what earlier batches left.
    def collected(batched: bool) -> list[Any]:
        reader = InMemoryMetricReader()
        counter = MeterProvider(metric_readers=[reader]).get_meter("test").create_counter("c")
        for _ in range(rounds):
            if batched:
                _metric_batch.record(counter, values, ATTRIBUTES, otel_context.Context())
            else:
                for value in values:
                    counter.add(value, ATTRIBUTES, context=otel_context.Context())
        return _points(reader)["c"]

    batched = collected(True)
    assert batched == collected(False)
    assert batched[0]["value"] == pytest.approx(rounds * math.fsum(values), rel=1e-9)


class _SamplesLargeValues(ExemplarFilter):
    """A filter whose answer depends on the value: asked for every value, as the SDK asks it."""

    def should_sample(self, value: float, time_unix_nano: int, attributes: Any, context: Any) -> bool:
        return value >= 1.0


@pytest.mark.parametrize(
    "exemplar_filter",
    [AlwaysOnExemplarFilter(), AlwaysOffExemplarFilter(), TraceBasedExemplarFilter(), _SamplesLargeValues()],
    ids=["always-on", "always-off", "trace-based", "by-value"],
)
def test_every_exemplar_filter_samples_as_value_by_value(exemplar_filter):
    batched = _histogram_points(True, VALUES, [0.01, 0.1, 1, 10], exemplar_filter=exemplar_filter)
    plain = _histogram_points(False, VALUES, [0.01, 0.1, 1, 10], exemplar_filter=exemplar_filter)
    assert batched == plain
    sampled = any(point["exemplars"] for point in batched["h"])
    assert sampled == (not isinstance(exemplar_filter, AlwaysOffExemplarFilter))


def test_values_gathered_over_calls_collect_as_recorded_call_by_call():
    def run(gathering: bool) -> Any:
        reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[reader]).get_meter("test")
        histogram = meter.create_histogram("h", explicit_bucket_boundaries_advisory=[0.01, 0.1, 1, 10])
        counter = meter.create_counter("c")
        context = otel_context.Context()
        gathered = _metric_batch.Gathered(context)
        for call in range(5):  # five calls, two attribute sets, two instruments
            attributes = {**ATTRIBUTES, "gen_ai.token.type": "input" if call % 2 else "output"}
            values = [value * (call + 1) for value in VALUES]
            if gathering:
                gathered.add(histogram, values, attributes)
                gathered.add(counter, (call + 1,), attributes)
            else:
                _metric_batch.record(histogram, values, attributes, context)
                _metric_batch.record(counter, (call + 1,), attributes, context)
        if gathering:
            assert reader.get_metrics_data() is None  # nothing reaches the SDK before record_all
            gathered.record_all()
        return _points(reader)

    gathered, direct = run(True), run(False)
    assert gathered == direct
    assert sum(point["count"] for point in gathered["h"]) == 5 * len(VALUES)
    assert sum(point["value"] for point in gathered["c"]) == 15


def test_a_gathered_unhashable_attribute_set_is_recorded_at_once():
    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("test").create_histogram("h")
    gathered = _metric_batch.Gathered(otel_context.Context())
    gathered.add(histogram, [1.0], {**ATTRIBUTES, "list": ["a"]})
    (point,) = _points(reader)["h"]
    assert point["count"] == 1


def _linked_points(
    gathering: bool,
    calls: list[tuple[float, int]],
    boundaries: list[float],
    *,
    views: tuple[View, ...] = (),
    delta: bool = False,
    **provider: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Each call's (value, which span) into a histogram and a counter, each value with its own
    call's context: gathered and recorded in one batch, or recorded by the SDK call by call."""
    import random

    temporality = (
        {Histogram: AggregationTemporality.DELTA, Counter: AggregationTemporality.DELTA} if delta else {}
    )
    reader = InMemoryMetricReader(preferred_temporality=temporality)
    meter = MeterProvider(metric_readers=[reader], views=list(views), **provider).get_meter("test")
    histogram = meter.create_histogram("h", explicit_bucket_boundaries_advisory=boundaries)
    counter = meter.create_counter("c")
    contexts = [otel_context.Context(), *(trace.set_span_in_context(span) for span in _SPANS)]
    random.seed(7)  # the counter's reservoir samples at random: the same draws for both runs
    gathered = _metric_batch.Gathered(otel_context.Context())
    for value, which in calls:
        attributes = {**ATTRIBUTES, "gen_ai.request.model": f"m{which % 2}"}
        context = contexts[which]
        # The counter's reservoir draws from one random sequence: one attribute set keeps the
        # draws in the same order both ways (two sets would take turns differently).
        if gathering:
            gathered.add_linked(histogram, value, attributes, context)
            gathered.add_linked(counter, value, ATTRIBUTES, context)
        else:
            histogram.record(value, attributes, context=context)
            counter.add(value, ATTRIBUTES, context=context)
    if gathering:
        gathered.record_all()
    found: dict[str, list[dict[str, Any]]] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                rows = []
                for point in metric.data.data_points:
                    row = {"attributes": dict(point.attributes or {})}
                    for field in ("count", "sum", "bucket_counts", "min", "max", "value"):
                        if hasattr(point, field):
                            value = getattr(point, field)
                            row[field] = list(value) if isinstance(value, (list, tuple)) else value
                    row["exemplars"] = sorted(
                        (
                            e.value,
                            e.trace_id or 0,
                            e.span_id or 0,
                            sorted((e.filtered_attributes or {}).items()),
                        )
                        for e in point.exemplars
                    )
                    rows.append(row)
                found[metric.name] = sorted(rows, key=repr)
    return found


# Spans that are sampled (their values are exemplars under the trace-based filter) and one that is not.
_SPANS = (
    *(TracerProvider().get_tracer("test").start_span(f"call {n}") for n in range(3)),
    trace.NonRecordingSpan(
        trace.SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False, trace_flags=trace.TraceFlags(0))
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 10**5), st.floats(0, 1e4, allow_nan=False, allow_infinity=False)),
            st.integers(0, len(_SPANS)),
        ),
        min_size=1,
        max_size=40,
    ),
    boundaries=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=8, unique=True).map(sorted),
    exemplar_filter=st.sampled_from(
        [
            TraceBasedExemplarFilter(),
            AlwaysOnExemplarFilter(),
            AlwaysOffExemplarFilter(),
            _SamplesLargeValues(),
        ]
    ),
)
def test_values_gathered_with_their_calls_contexts_collect_as_recorded_call_by_call(
    calls, boundaries, exemplar_filter
):
    """Duration and cost wait for the batch like the other values, each with its call's context:
    the buckets, sums and every exemplar (value, trace, span, attributes) are the SDK's own."""
    gathered = _linked_points(True, calls, boundaries, exemplar_filter=exemplar_filter)
    direct = _linked_points(False, calls, boundaries, exemplar_filter=exemplar_filter)
    assert gathered == direct
    assert sum(point["count"] for point in gathered["h"]) == len(calls)


def test_gathered_linked_values_under_delta_temporality_collect_as_call_by_call():
    calls = [(value, n % (len(_SPANS) + 1)) for n, value in enumerate(VALUES * 3)]
    gathered = _linked_points(True, calls, [0.01, 0.1, 1, 10], delta=True)
    direct = _linked_points(False, calls, [0.01, 0.1, 1, 10], delta=True)
    assert gathered == direct
    assert any(point["exemplars"] for point in gathered["h"])


def test_gathered_linked_values_under_a_view_that_merges_attribute_sets():
    """A view keeping fewer attribute keys merges two gathered groups into one point: the values
    arrive group by group instead of call by call. Counts, buckets, min and max are the same; the
    sum may differ in its last bit (added in another order); each bucket's exemplar is the last of
    its group's values there, a call's own value with its own trace and span."""
    view = View(instrument_name="h", attribute_keys={"gen_ai.operation.name"})
    calls = [(value, n % (len(_SPANS) + 1)) for n, value in enumerate(VALUES * 3)]
    (gathered,) = _linked_points(True, calls, [0.01, 0.1, 1, 10], views=(view,))["h"]
    (direct,) = _linked_points(False, calls, [0.01, 0.1, 1, 10], views=(view,))["h"]
    for field in ("attributes", "count", "bucket_counts", "min", "max"):
        assert gathered[field] == direct[field]
    assert math.isclose(gathered["sum"], direct["sum"], rel_tol=1e-12)
    assert len(gathered["exemplars"]) == len(direct["exemplars"])
    spans = {0: (0, 0), **{n + 1: _ids(span) for n, span in enumerate(_SPANS)}}
    offered = {(value, *spans[which]) for value, which in calls}
    for value, trace_id, span_id, _ in gathered["exemplars"]:
        assert (value, trace_id, span_id) in offered


def _ids(span: Any) -> tuple[int, int]:
    context = span.get_span_context()
    return context.trace_id, context.span_id


def test_a_refused_linked_value_is_refused_as_the_sdk_refuses_it(caplog):
    calls = [(1.0, 1), (-2.0, 2), (float("nan"), 1), (3.0, 3)]
    gathered = _linked_points(True, calls, [0.01, 0.1, 1, 10])
    direct = _linked_points(False, calls, [0.01, 0.1, 1, 10])
    assert gathered == direct
    assert sum(point["count"] for point in gathered["h"]) == 2


@pytest.mark.parametrize(
    "values", [[3, 3.0, 1.0, 1, 2, 2, 2, 2, 2, 2], [1.0, 1, 3.0, 3]], ids=["sorted", "short"]
)
def test_min_and_max_keep_the_first_of_equal_values_as_the_sdk_does(values):
    def bounds(batched: bool) -> tuple[Any, Any]:
        reader = InMemoryMetricReader()
        histogram = MeterProvider(metric_readers=[reader]).get_meter("test").create_histogram("h")
        if batched:
            _metric_batch.record(histogram, values, ATTRIBUTES, otel_context.Context())
        else:
            for value in values:
                histogram.record(value, ATTRIBUTES)
        (point,) = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
        return point.min, point.max

    batched, plain = bounds(True), bounds(False)
    assert batched == plain
    assert [type(v) for v in batched] == [type(v) for v in plain]


def test_a_long_batch_with_a_nan_or_an_infinity_is_refused_value_by_value(caplog):
    values = [0.5] * 20 + [float("nan"), float("inf"), 1e308, 1e308]
    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("test").create_histogram("h")
    _metric_batch.record(histogram, values, ATTRIBUTES, otel_context.Context())
    (point,) = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    assert point.count == 22  # the NaN and the infinity refused, the two large finite values kept
    assert point.max == 1e308


@pytest.mark.parametrize(
    "attributes",
    [ATTRIBUTES, {**ATTRIBUTES, "gen_ai.token.type": "stale"}, {**ATTRIBUTES, "list": ["a"]}],
    ids=["plain", "name-already-there", "unhashable"],
)
def test_values_gathered_with_a_token_type_collect_as_recorded_with_the_merged_attributes(attributes):
    def run(gathering: bool) -> Any:
        reader = InMemoryMetricReader()
        histogram = MeterProvider(metric_readers=[reader]).get_meter("test").create_histogram("h")
        gathered = _metric_batch.Gathered(otel_context.Context())
        for call in range(3):
            for token_type, value in (("input", 10 * call + 1), ("output", call + 2)):
                if gathering:
                    items = tuple(attributes.items())
                    gathered.add_with(histogram, (value,), attributes, items, "gen_ai.token.type", token_type)
                else:
                    histogram.record(value, {**attributes, "gen_ai.token.type": token_type})
        gathered.record_all()
        return _points(reader)

    gathered, direct = run(True), run(False)
    assert gathered == direct
    assert {point["attributes"]["gen_ai.token.type"] for point in gathered["h"]} == {"input", "output"}
