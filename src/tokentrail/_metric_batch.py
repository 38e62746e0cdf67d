"""Several values into one OpenTelemetry SDK instrument under one attribute set, checked once.

Why: the SDK's ``Histogram.record`` / ``Counter.add`` (opentelemetry-sdk 1.45) cleans the attribute
dict (``_clean_attribute_value``, recursive) and hashes it again (``_hash_attributes``) on every
value: about 15 µs a record with tokentrail's seven metric attributes on this machine, against
about 2 µs for the aggregation itself. A call records six values, and a 50-chunk stream 55 (one
``time_per_output_chunk`` value per chunk after the first, as the conventions ask): most of the
whole-process cost of a call (``benchmarks/profile_chat.py --recorder``: 60% of the recorder's
work was the SDK's record calls).

:func:`record` gives the SDK the same measurements, with the same values, attributes, exemplar
decisions and cardinality limit, through the SDK's own aggregation objects; what it saves is
cleaning and hashing an attribute set it has already seen (cached here by its items). It is a
private fast path: taken only on the SDK versions whose internals it was written against
(:func:`supported`), for SDK instruments (or the API's proxies once bound to one) fed by the SDK's
synchronous measurement consumer; anything else goes through the public ``record`` / ``add``, value
by value, as before. ``tests/test_metric_batch.py`` holds the two paths to the same collected data.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from functools import partial, reduce
from operator import add, sub
from time import time_ns
from typing import Any

from . import _safety

__all__ = ["Gathered", "record", "record_linked", "supported"]


def _load() -> tuple[Any, ...] | None:
    """The SDK internals the fast path uses, if this SDK is one it was written against."""
    try:
        from opentelemetry.attributes import _clean_attribute_value
        from opentelemetry.sdk.metrics._internal import instrument as sdk_instrument
        from opentelemetry.sdk.metrics._internal._view_instrument_match import (
            _hash_attributes,
            _ViewInstrumentMatch,
        )
        from opentelemetry.sdk.metrics._internal.aggregation import (
            _ExplicitBucketHistogramAggregation,
            _SumAggregation,
        )
        from opentelemetry.sdk.metrics._internal.exemplar import exemplar_filter
        from opentelemetry.sdk.metrics._internal.exemplar.exemplar_reservoir import (
            AlignedHistogramBucketExemplarReservoir,
        )
        from opentelemetry.sdk.metrics._internal.measurement import Measurement
        from opentelemetry.sdk.metrics._internal.measurement_consumer import SynchronousMeasurementConsumer
        from opentelemetry.sdk.version import __version__
        from opentelemetry.trace import INVALID_SPAN, get_current_span
    except ImportError:
        return None
    # Read for 1.45 (the Measurement fields, _hash_attributes keys, _get_or_create_aggregation under
    # the match's lock, _reset_on_collect, the explicit-bucket histogram's and the sum's fields and
    # their aggregate(), the aligned exemplar reservoir's _boundaries and its buckets that keep the
    # last offer, with the ids of the last span offered): another minor may change any of them.
    if tuple(__version__.split(".")[:2]) != ("1", "45"):
        return None
    needed = (
        hasattr(_ViewInstrumentMatch, "_get_or_create_aggregation"),
        hasattr(SynchronousMeasurementConsumer, "consume_measurement"),
        "__slots__" not in Measurement.__dict__,  # its fields are set through __dict__ below
        tuple(Measurement.__dataclass_fields__)
        == ("value", "time_unix_nano", "instrument", "context", "attributes"),
        hasattr(_ExplicitBucketHistogramAggregation, "_get_empty_bucket_counts"),
        hasattr(_SumAggregation, "_sample_exemplar"),
    )
    if not all(needed):
        return None
    # The SDK's own filters answer from the context alone (never the value, time or attributes):
    # asked once per batch. Any other filter is asked for every value, as the SDK asks it.
    per_context = (
        exemplar_filter.AlwaysOnExemplarFilter,
        exemplar_filter.AlwaysOffExemplarFilter,
        exemplar_filter.TraceBasedExemplarFilter,
    )
    return (
        _clean_attribute_value,
        _hash_attributes,
        Measurement,
        SynchronousMeasurementConsumer,
        (sdk_instrument.Histogram, sdk_instrument.Counter),
        _ExplicitBucketHistogramAggregation,
        per_context,
        AlignedHistogramBucketExemplarReservoir,
        (get_current_span, INVALID_SPAN),
        _SumAggregation,
    )


# Loaded at the first record (on the recorder thread), not at import: an application that never
# sets up the SDK's metrics never imports them for this.
_INTERNALS: tuple[Any, ...] | None = None
_LOADED = False


def supported() -> bool:
    """Whether the fast path applies to this SDK (see :func:`_load`)."""
    global _INTERNALS, _LOADED
    if not _LOADED:
        _INTERNALS = _load()
        _LOADED = True
    return _INTERNALS is not None


# attribute items -> (the cleaned attributes, their aggregation key): metric attributes are few and
# low-cardinality by design (settings.metric_value_limit), so this stays small; emptied if not.
_PREPARED: dict[tuple[Any, ...], tuple[dict[str, Any], Any]] = {}
_PREPARED_LIMIT = 4096


class _Plan:
    """What recording on one SDK instrument needs that does not change from call to call: its
    measurement consumer, the exemplar filter, and the view matches of every reader (the SDK fixes
    an instrument's matches the first time it records and never changes them)."""

    __slots__ = (
        "consumer",
        "instrument",
        "is_histogram",
        "last",
        "matches",
        "per_context",
        "should_sample",
    )

    def __init__(self, real: Any) -> None:
        self.instrument = real
        self.is_histogram = hasattr(real, "record")
        self.consumer = real._measurement_consumer
        exemplar_filter = self.consumer._sdk_config.exemplar_filter
        self.should_sample = exemplar_filter.should_sample
        self.per_context = type(exemplar_filter) in _INTERNALS[6]  # type: ignore[index]
        # (the last context asked about, the answer), one tuple so threads read a matching pair:
        # contexts are immutable, and most records of a call share the one offering no exemplar.
        self.last: tuple[Any, bool] = (_NOT_ASKED, False)
        self.matches = tuple(
            match
            for storage in self.consumer._reader_storages.values()
            for match in storage._get_or_init_view_instrument_match(real)
        )


_NOT_ASKED = object()

# id(the instrument tokentrail holds) -> (that instrument, the plan of the SDK instrument behind it):
# a handful of instruments per Telemetry; the instrument is kept so that its id is not reused.
# Emptied when full: each instrument() makes new instruments, and the old ones must not be kept.
_PLANS: dict[int, tuple[Any, _Plan]] = {}
_PLANS_LIMIT = 256


def record(instrument: Any, values: Sequence[float], attributes: Mapping[str, Any], context: Any) -> None:
    """Record each of ``values`` on ``instrument`` (a histogram's ``record``, a counter's ``add``)
    with ``attributes`` and ``context`` (for exemplars)."""
    if not values:
        return
    plan = _plan(instrument)
    if plan is None:
        _one_by_one(instrument, values, attributes, context)
        return
    try:
        _record_fast(plan, values, attributes, context)
    except Exception as exc:  # an SDK that is not what the check above took it for
        _safety.internal_error("metrics.batch", exc)


def record_linked(
    instrument: Any,
    values: Sequence[float],
    attributes: Mapping[str, Any],
    contexts: Sequence[Any],
    times: Sequence[int],
) -> None:
    """:func:`record`, each value with a context (and time) of its own: values of several calls,
    each offered as an exemplar of its own call's trace."""
    if not values:
        return
    plan = _plan(instrument)
    if plan is None:
        method = instrument.add if not hasattr(instrument, "record") else instrument.record
        for value, context in zip(values, contexts, strict=True):
            method(value, attributes, context=context)
        return
    try:
        _record_fast(plan, values, attributes, None, contexts, times)
    except Exception as exc:  # an SDK that is not what the check above took it for
        _safety.internal_error("metrics.batch", exc)


def _one_by_one(
    instrument: Any, values: Sequence[float], attributes: Mapping[str, Any], context: Any
) -> None:
    method = instrument.add if not hasattr(instrument, "record") else instrument.record
    for value in values:
        method(value, attributes, context=context)


def _plan(instrument: Any) -> _Plan | None:
    """The plan of the SDK instrument behind ``instrument`` if the fast path applies to it, else None."""
    found = _PLANS.get(id(instrument))
    if found is not None and found[0] is instrument:
        plan = found[1]
        return plan if plan.instrument._is_enabled() else None
    if not supported():
        return None
    kinds = _INTERNALS[4]  # type: ignore[index]
    real = instrument if isinstance(instrument, kinds) else getattr(instrument, "_real_instrument", None)
    if real is None or not isinstance(real, kinds):
        return None  # not kept: an API proxy may be bound to an SDK instrument later
    if type(getattr(real, "_measurement_consumer", None)) is not _INTERNALS[3] or not real._is_enabled():
        return None
    plan = _Plan(real)
    if len(_PLANS) >= _PLANS_LIMIT:
        _PLANS.clear()
    _PLANS[id(instrument)] = (instrument, plan)
    return plan


def _prepared(attributes: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    clean, hash_attributes = _INTERNALS[0], _INTERNALS[1]  # type: ignore[index]
    try:
        items = tuple(attributes.items())
        found = _PREPARED.get(items)
    except TypeError:  # an unhashable value: prepared every time
        cleaned = clean(attributes, None)
        return cleaned, hash_attributes(cleaned)
    if found is None:
        cleaned = clean(attributes, None)
        found = (cleaned, hash_attributes(cleaned))
        if len(_PREPARED) >= _PREPARED_LIMIT:
            _PREPARED.clear()
        _PREPARED[items] = found
    return found


def _record_fast(
    plan: _Plan,
    values: Sequence[float],
    attributes: Mapping[str, Any],
    context: Any,
    contexts: Sequence[Any] | None = None,
    times: Sequence[int] | None = None,
) -> None:
    """The values into every view of ``plan``'s instrument: all with ``context``, or each with its
    own of ``contexts`` (and ``times``)."""
    real = plan.instrument
    if _usable(values):  # the usual case
        kept_values = values if type(values) is list else list(values)  # read, never changed
    else:
        kept_values, kept_contexts, kept_times = [], [], []
        for index, value in enumerate(values):
            own = context if contexts is None else contexts[index]
            if not math.isfinite(value) or value < 0:
                # The SDK's own path refuses it, with its warning.
                (real.record if plan.is_histogram else real.add)(value, attributes, context=own)
                continue
            kept_values.append(value)
            if contexts is not None and times is not None:
                kept_contexts.append(own)
                kept_times.append(times[index])
        if not kept_values:
            return
        if contexts is not None:
            contexts, times = kept_contexts, kept_times
    cleaned, key = _prepared(attributes)
    now = time_ns()
    samples = _samples(plan, kept_values, cleaned, context, contexts, times, now)
    measurements: list[Any] | None = None  # built only if a value is sampled or not a histogram's
    hash_attributes = _INTERNALS[1]  # type: ignore[index]
    histogram_class = _INTERNALS[5]  # type: ignore[index]
    aligned_class = _INTERNALS[7]  # type: ignore[index]
    sum_class = _INTERNALS[9]  # type: ignore[index]
    for match in plan.matches:
        kept = match._view._attribute_keys
        if kept is None:
            match_attributes, match_key = cleaned, key
        else:
            match_attributes = {k: v for k, v in cleaned.items() if k in kept}
            match_key = hash_attributes(match_attributes)
        aggregation = None if match._reset_on_collect else match._attributes_aggregation.get(match_key)
        if aggregation is None or match._reset_on_collect:
            # As the SDK does: collect() may discard the aggregations, so create (and, when it
            # discards them, aggregate) under the match's lock; a copy: the aggregation keeps the
            # attributes it is given.
            with match._lock:
                aggregation = match._get_or_create_aggregation(match_key, dict(match_attributes))
                if match._reset_on_collect:
                    measurements = _aggregate(
                        aggregation,
                        kept_values,
                        samples,
                        measurements,
                        real,
                        now,
                        context,
                        cleaned,
                        contexts,
                        times,
                    )
                    continue
        if type(aggregation) is sum_class and not any(samples):
            # A counter's values with no exemplar to offer (the token parts): what its aggregate()
            # does for each, added in order under one hold of its lock.
            with aggregation._lock:
                start = aggregation._value
                aggregation._value = reduce(add, kept_values, 0 if start is None else start)
            continue
        if type(aggregation) is histogram_class:
            if not any(samples):
                _add_to_histogram(aggregation, kept_values)
                continue
            reservoir = aggregation._reservoir
            if type(reservoir) is aligned_class:
                _add_to_histogram(aggregation, kept_values)
                _offer_last_in_each_bucket(
                    reservoir, kept_values, samples, cleaned, context, contexts, times, now
                )
                continue
        measurements = _aggregate(
            aggregation, kept_values, samples, measurements, real, now, context, cleaned, contexts, times
        )


def _samples(
    plan: _Plan,
    values: list[float],
    cleaned: dict[str, Any],
    context: Any,
    contexts: Sequence[Any] | None,
    times: Sequence[int] | None,
    now: int,
) -> list[bool]:
    """The exemplar filter's answer for each value (the SDK's own filters: once per context)."""
    should_sample = plan.should_sample
    if plan.per_context:
        last_context, sample = plan.last
        if contexts is None:
            if context is not last_context:
                sample = should_sample(values[0], now, cleaned, context)
                plan.last = (context, sample)
            return [sample] * len(values)
        samples = []
        for value, own in zip(values, contexts, strict=True):
            if own is not last_context:
                sample = should_sample(value, now, cleaned, own)
                last_context = own
            samples.append(sample)
        plan.last = (last_context, sample)
        return samples
    if contexts is None or times is None:
        return [should_sample(value, now, cleaned, context) for value in values]
    return [
        should_sample(value, t, cleaned, own) for value, t, own in zip(values, times, contexts, strict=True)
    ]


def _offer_last_in_each_bucket(
    reservoir: Any,
    values: list[float],
    samples: list[bool],
    cleaned: dict[str, Any],
    context: Any,
    contexts: Sequence[Any] | None,
    times: Sequence[int] | None,
    now: int,
) -> None:
    """The exemplars the SDK's aligned reservoir would hold after being offered each sampled value
    in turn. It keeps, in each of the histogram's buckets (found as ``bisect_left``), the last
    value offered, with the trace and span of the last offer that had a span (an offer without
    one keeps the ids before it): so only those offers are made, in their order."""
    boundaries = reservoir._boundaries
    last: dict[int, int] = {}
    for index, (value, sample) in enumerate(zip(values, samples, strict=True)):
        if sample:
            last[bisect_left(boundaries, value)] = index
    offers = list(last.values())
    if contexts is not None:
        get_current_span, invalid = _INTERNALS[8]  # type: ignore[index]
        for bucket, index in last.items():
            if get_current_span(contexts[index]) != invalid:
                continue
            for earlier in range(index - 1, -1, -1):  # the last offer in this bucket with a span
                if (
                    samples[earlier]
                    and bisect_left(boundaries, values[earlier]) == bucket
                    and get_current_span(contexts[earlier]) != invalid
                ):
                    offers.append(earlier)
                    break
    offer = reservoir.offer
    for index in sorted(offers):
        offer(
            values[index],
            now if times is None else times[index],
            cleaned,
            context if contexts is None else contexts[index],
        )


def _add_to_histogram(aggregation: Any, values: list[float]) -> None:
    """What ``aggregate`` does for each value of an explicit-bucket histogram (no exemplar to offer),
    under one hold of its lock: count the bucket, add to the sum in the same order, keep min and max.

    Many values (a batch of streams' chunk gaps: 49 a stream) are counted from their sorted copy,
    with one binary search per bucket boundary instead of one per value: a value goes to bucket ``i``
    when ``boundaries[i - 1] < value <= boundaries[i]`` (the SDK's ``bisect_left``)."""
    boundaries = aggregation._boundaries
    if len(values) > _SORT_FROM:
        ordered = sorted(values)
        # All in C: how many values are at or below each boundary, then how many in each bucket.
        below = list(map(partial(bisect_right, ordered), boundaries))
        below.append(len(ordered))
        added = list(map(sub, below, [0, *below[:-1]]))
    else:
        added = None
    with aggregation._lock:
        counts = aggregation._value
        if counts is None:
            counts = aggregation._value = aggregation._get_empty_bucket_counts()
        if added is None:
            for value in values:
                counts[bisect_left(boundaries, value)] += 1
        else:
            counts[:] = map(add, counts, added)  # in place: the SDK's own list, under its lock
        # Added one by one in order from the running sum, as the SDK adds them (reduce: in C).
        aggregation._sum = reduce(add, values, aggregation._sum)
        if aggregation._record_min_max:
            # min() and max() keep the first of equal values (1 before 1.0), as the SDK's running
            # min and max do; the sort is stable, so the first of the largest is found by bisection.
            if added is None:
                low, high = min(values), max(values)
            else:
                low, high = ordered[0], ordered[bisect_left(ordered, ordered[-1])]
            aggregation._min = min(aggregation._min, low)
            aggregation._max = max(aggregation._max, high)


# Up to this many values, a binary search each; past it, one sort and one search per boundary (in
# C, whatever the number of values: cheaper from a few values on).
_SORT_FROM = 3


def _usable(values: Sequence[float]) -> bool:
    """Every value finite and not negative (what the SDK records without a word), checked in C.
    A long batch is summed rather than tested value by value (~4x cheaper): a NaN or an infinity
    makes the sum non-finite; so does an overflowing sum of finite values, which then only takes
    the value-by-value path."""
    if len(values) > _SORT_FROM:
        return math.isfinite(sum(values)) and min(values) >= 0
    return all(map(math.isfinite, values)) and min(values) >= 0


def _aggregate(
    aggregation: Any,
    values: list[float],
    samples: list[bool],
    measurements: list[Any] | None,
    real: Any,
    now: int,
    context: Any,
    cleaned: dict[str, Any],
    contexts: Sequence[Any] | None = None,
    times: Sequence[int] | None = None,
) -> list[Any]:
    """Each value through the aggregation's own ``aggregate`` (exemplars offered as the SDK offers
    them); returns the measurements, built once for every match."""
    if measurements is None:
        measurement_class = _INTERNALS[2]  # type: ignore[index]
        new = object.__new__
        measurements = []
        for index, value in enumerate(values):
            # A Measurement as the SDK builds it, without its __post_init__ cleaning the same
            # attributes again: they were cleaned once (a plain dataclass: its fields are its
            # __dict__).
            measurement = new(measurement_class)
            measurement.__dict__.update(
                value=value,
                time_unix_nano=now if times is None else times[index],
                instrument=real,
                context=context if contexts is None else contexts[index],
                attributes=cleaned,
            )
            measurements.append(measurement)
    for measurement, sample in zip(measurements, samples, strict=True):
        aggregation.aggregate(measurement, sample)
    return measurements


class Gathered:
    """Values gathered over several calls (the recorder's batch of ended calls), recorded at
    :meth:`record_all` as one batch per instrument and attribute set.

    Why: a call records four to six token, time and chunk values, and its duration and cost, and
    the calls of a busy application share a few attribute sets; gathered, each set is looked up,
    and each histogram locked, once per batch instead of once per call.

    Values without an exemplar (:meth:`add`) share one empty context. The duration and cost link
    to their own call's trace (:meth:`add_linked`: each value keeps its context and time): an
    explicit-bucket histogram's exemplar reservoir (the SDK's aligned one) keeps the last value
    offered in each bucket, so the batch offers just those and the exemplars are the same as when
    offered call by call; any other reservoir is offered every value, in order."""

    __slots__ = ("_context", "_groups", "_linked")

    def __init__(self, context: Any) -> None:
        self._context = context
        # (id(instrument), attribute items) -> (instrument, attributes, values)
        self._groups: dict[tuple[int, tuple[Any, ...]], tuple[Any, Mapping[str, Any], list[float]]] = {}
        # (id(instrument), attribute items) -> (instrument, attributes, values, contexts, times)
        self._linked: dict[
            tuple[int, tuple[Any, ...]], tuple[Any, Mapping[str, Any], list[Any], list[Any], list[int]]
        ] = {}

    def add(
        self,
        instrument: Any,
        values: Sequence[float],
        attributes: Mapping[str, Any],
        items: tuple[Any, ...] | None = None,
    ) -> None:
        """Keep ``values`` for ``instrument`` under ``attributes`` (no exemplar). ``items``:
        ``tuple(attributes.items())``, when the caller has it already."""
        if not values:
            return
        try:
            key = (id(instrument), tuple(attributes.items()) if items is None else items)
            group = self._groups.get(key)
        except TypeError:  # an unhashable value: recorded now, on its own
            record(instrument, values, attributes, self._context)
            return
        if group is None:
            self._groups[key] = (instrument, attributes, list(values))
        else:
            group[2].extend(values)

    def add_with(
        self,
        instrument: Any,
        values: Sequence[float],
        attributes: Mapping[str, Any],
        items: tuple[Any, ...],
        name: str,
        value: Any,
    ) -> None:
        """:meth:`add` under ``attributes`` and ``name: value`` (a token type), the merged dict
        made only for the batch's first values under it."""
        if name in attributes:  # replaced rather than added: its place in the items moves
            self.add(instrument, values, {**attributes, name: value})
            return
        if not values:
            return
        try:
            key = (id(instrument), (*items, (name, value)))
            group = self._groups.get(key)
        except TypeError:
            record(instrument, values, {**attributes, name: value}, self._context)
            return
        if group is None:
            self._groups[key] = (instrument, {**attributes, name: value}, list(values))
        else:
            group[2].extend(values)

    def add_linked(
        self,
        instrument: Any,
        value: float,
        attributes: Mapping[str, Any],
        context: Any,
        items: tuple[Any, ...] | None = None,
    ) -> None:
        """Keep one ``value`` for ``instrument`` under ``attributes``, offered as an exemplar of
        ``context`` (its call's span) as the SDK would offer it now."""
        try:
            key = (id(instrument), tuple(attributes.items()) if items is None else items)
            group = self._linked.get(key)
        except TypeError:  # an unhashable value: recorded now, on its own
            record(instrument, (value,), attributes, context)
            return
        if group is None:
            self._linked[key] = (instrument, attributes, [value], [context], [time_ns()])
        else:
            group[2].append(value)
            group[3].append(context)
            group[4].append(time_ns())

    def record_all(self) -> None:
        """Record everything gathered (each group as :func:`record` does) and start empty."""
        linked, self._linked = self._linked, {}
        for instrument, attributes, values, contexts, times in linked.values():
            try:
                record_linked(instrument, values, attributes, contexts, times)
            except Exception as exc:  # record_linked() swallows its own; this is the last guard
                _safety.internal_error("metrics.gathered", exc)
        groups, self._groups = self._groups, {}
        for instrument, attributes, values in groups.values():
            try:
                record(instrument, values, attributes, self._context)
            except Exception as exc:  # record() swallows its own; this is the last guard
                _safety.internal_error("metrics.gathered", exc)
