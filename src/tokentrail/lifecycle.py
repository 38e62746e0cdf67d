"""One LLM call, start to end: the span, the metrics, the cost, and the hand-off to sinks.

This is the only module that knows OpenTelemetry. Provider modules describe a call with
:class:`~tokentrail.records.RequestInfo` / :class:`~tokentrail.records.ResponseInfo`; this module
never sees an SDK type. A :class:`Call` ends exactly once, whichever comes first: the response,
the end of its stream, a close, an exception, or the garbage collector taking an unfinished stream.

Nothing here may raise into the application: every public method catches its own errors and
reports them through :mod:`tokentrail._safety`.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from operator import sub as _minus
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.metrics import Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _fork, _metric_batch, _safety, _span_attributes, _waits, budgets, runtime
from . import semconv as sc
from ._batcher import Batcher
from ._patching import ClassPatches
from ._version import __version__
from .budgets import BudgetAlert, Reservation, active_budgets, named_budgets, settle_budgets
from .budgets import check as check_budgets
from .config import Settings
from .context import (
    Attribution,
    Rollup,
    current_attribution,
    current_framework_llm_run,
    current_price_context,
    under_incoming_baggage,
)
from .pricing import Cost, Pricer
from .records import CallRecord, RequestInfo, ResponseInfo, UsagePart
from .runtime import Runtime
from .usage import USAGE_FIELDS, Usage

if TYPE_CHECKING:
    from opentelemetry._logs import LoggerProvider

__all__ = [
    "Call",
    "Sink",
    "Telemetry",
    "Unit",
    "active",
    "add_sink",
    "recording",
    "remove_sink",
    "set_active",
    "start_unit",
]

Sink = Callable[[CallRecord], None]
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
# Exemplars (links from a metric bucket to a trace) are kept on the duration and cost histograms,
# where a dashboard jumps from "this was slow / expensive" to the trace. The other records get an
# empty context: no exemplar, and a measurably cheaper record on the hot path.
_NO_EXEMPLAR = otel_context.Context()


class Telemetry:
    """The instruments, pricer, settings and sinks one ``instrument()`` call set up."""

    def __init__(
        self,
        settings: Settings,
        pricer: Pricer,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        sinks: Iterable[Sink] = (),
    ) -> None:
        self.settings = settings
        self.pricer = pricer
        # The providers given to instrument() (None: the global ones, which may still be the API's
        # proxies: they bind to the application's SDK whenever it sets one up).
        self.providers = (tracer_provider, meter_provider, logger_provider)
        # The content event is a log record, as the conventions define it (made only when asked).
        self._logger_provider = logger_provider
        self._logger: Any = None
        self.runtime = Runtime(settings, pricer, start_unit=self.start_unit)
        self.sinks: list[Sink] = list(sinks)
        self.tracer = trace.get_tracer("tokentrail", __version__, tracer_provider, schema_url=_SCHEMA_URL)
        meter = metrics.get_meter("tokentrail", __version__, meter_provider, schema_url=_SCHEMA_URL)
        self.token_usage = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used per call",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
        )
        self.duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit="s",
            description="Duration of GenAI client operations",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.time_to_first_chunk = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time from the request to the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.time_per_output_chunk = meter.create_histogram(
            sc.METRIC_TIME_PER_OUTPUT_CHUNK,
            unit="s",
            description="Time between a chunk and the one before it, one value per chunk after the first",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
        )
        self.cost = meter.create_histogram(
            sc.METRIC_OPERATION_COST,
            unit="USD",
            description="Cost of GenAI client operations in US dollars",
            explicit_bucket_boundaries_advisory=list(sc.COST_BUCKETS),
        )
        self.token_parts = meter.create_counter(
            sc.METRIC_TOKEN_PARTS,
            unit="{token}",
            description="Cache-read, cache-creation and reasoning tokens: parts of gen_ai.client.token.usage",
        )
        if settings.latest_experimental:
            self.inference_tokens = (
                meter.create_histogram(
                    sc.METRIC_INFERENCE_INPUT_TOKENS,
                    unit="{token}",
                    description="Input (prompt) tokens used per inference operation",
                    explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
                ),
                meter.create_histogram(
                    sc.METRIC_INFERENCE_OUTPUT_TOKENS,
                    unit="{token}",
                    description="Output (completion) tokens used per inference operation",
                    explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS),
                ),
            )
            self.detailed_tokens = {
                name: meter.create_counter(name, unit="{token}", description=description)
                for name, description in _DETAILED_COUNTERS
            }
        self.unpriced_calls = meter.create_counter(
            sc.METRIC_UNPRICED_CALLS,
            unit="{call}",
            description="Calls whose model has no known price (cost not recorded)",
        )
        self.inconsistent_usage = meter.create_counter(
            sc.METRIC_INCONSISTENT_USAGE,
            unit="{call}",
            description="Calls whose reported usage broke an invariant (recorded as reported)",
        )
        self.attribution_overflow = meter.create_counter(
            sc.METRIC_ATTRIBUTION_OVERFLOW,
            unit="{call}",
            description="Calls whose attribution value was folded into _other on metrics (cap reached)",
        )
        # Attribution on metrics: only allowed keys, at most metric_value_limit values per key.
        self.metric_keys = tuple((key, sc.attribution_attribute(key)) for key in settings.metric_attributes)
        self._metric_values: dict[str, set[str]] = {key: set() for key in settings.metric_attributes}
        self.unrecognised_calls = meter.create_counter(
            sc.METRIC_UNRECOGNISED_CALLS,
            unit="{request}",
            description="SDK requests not recorded as LLM calls (listings, uploads, endpoints tokentrail "
            "does not know), by SDK and endpoint",
        )
        self.errors = meter.create_counter(
            sc.METRIC_INSTRUMENTATION_ERRORS,
            unit="{error}",
            description="Errors inside tokentrail, swallowed so the application is unaffected",
        )
        _observe_budgets(meter)
        self.recorder = RECORDER
        RECORDER.hook_exit()

    def start(self, request: RequestInfo, *, started_at: float | None = None) -> Call:
        """Begin a call: the span starts now (or at ``started_at``, epoch seconds, for calls
        reported after the fact by a framework), with the attributes samplers need.

        Raises :class:`~tokentrail.budgets.BudgetExceeded` (the one exception that reaches the
        application) when a budget in ``raise`` mode refuses the call: before any span or request."""
        reservations = ()
        if active_budgets():
            reservations = check_budgets(
                request, current_attribution().values, self.pricer, enforce=started_at is None
            )
        call = Call(self, request, started_at)
        call.reservations = reservations
        return call

    @property
    def logger(self) -> Any:
        """The logger of content events, made at the first one: the logs API (about 1 ms to import)
        is not imported at start-up for the content capture that is off by default."""
        if self._logger is None:
            from opentelemetry._logs import get_logger

            self._logger = get_logger(
                "tokentrail", __version__, self._logger_provider, schema_url=_SCHEMA_URL
            )
        return self._logger

    def metric_value(self, key: str, value: str) -> str:
        """``value`` if the key still has room for it on metrics, else ``_other`` (counted)."""
        seen = self._metric_values[key]
        if value in seen:
            return value
        if len(seen) < self.settings.metric_value_limit:
            seen.add(value)  # a race may admit one value over the cap: harmless
            return value
        self.attribution_overflow.add(1, {"tokentrail.attribution.key": key})
        return sc.OVERFLOW_VALUE

    def unrecognised(self, sdk: str, endpoint: str) -> None:
        """An SDK request that is not an LLM call tokentrail knows: counted, logged once (debug)."""
        self.unrecognised_calls.add(1, {sc.SDK_NAME: sdk, sc.SDK_ENDPOINT: endpoint}, context=_NO_EXEMPLAR)
        key = ("unrecognised", sdk, endpoint)
        if key not in _logged_unrecognised:
            _logged_unrecognised.add(key)
            _safety.log.debug(
                "tokentrail: %s request %s is not an LLM call it knows; not recorded", sdk, endpoint
            )

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        self.sinks[:] = [each for each in self.sinks if each is not sink]

    def start_unit(self, name: str, span_attributes: Mapping[str, str]) -> Unit | None:
        """Open a roll-up span (INTERNAL) for a unit of work."""
        try:
            span = self.tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=dict(span_attributes))
        except Exception as exc:
            _safety.internal_error("unit.start", exc)
            return None
        return Unit(span)


_logged_unrecognised: set[tuple[str, str, str]] = set()


def _observe_budgets(meter: Any) -> None:
    """Spend and remaining budget as gauges, one series per budget name.

    On the metric reader's thread: what is settled so far (the recorder is not drained from inside a
    metrics collection, which its own records would wait on)."""

    def spend(_options: Any) -> list[Any]:
        return [Observation(b.settled_spend(), {sc.BUDGET_NAME: b.name}) for b in named_budgets()]

    def remaining(_options: Any) -> list[Any]:
        return [
            Observation(max(0.0, b.usd - b.settled_spend()), {sc.BUDGET_NAME: b.name})
            for b in named_budgets()
        ]

    meter.create_observable_gauge(
        sc.METRIC_BUDGET_SPEND, [spend], unit="USD", description="Spend in the budget's window"
    )
    meter.create_observable_gauge(
        sc.METRIC_BUDGET_REMAINING,
        [remaining],
        unit="USD",
        description="Budget left in the window (never below 0)",
    )


class Recorder:
    """Finishes ended calls (and roll-up units) on one background thread, in the order they ended.

    The end of a call on the application's thread is a timestamp and an append to a queue; the
    rest - reading the response, pricing, the span's end attributes and its end (at the call's own
    end time), the metric records, roll-ups and sinks - happens here. That work is most of what
    instrumentation costs, and an LLM application's thread spends its time waiting on the network,
    so this thread does it while the application waits for its next response.

    Built on the same :class:`~tokentrail._batcher.Batcher` as the ledger: drained every 0.1 s (or
    sooner past 250 calls), never dropping: when this thread falls 1,000 calls behind (an
    application whose own thread keeps the CPU, and the GIL, busy leaves it little time), the
    calling thread drains the queue itself - there is no idle time to hide the work in then -
    which also bounds the memory held; and drained at exit before the OpenTelemetry providers
    shut down. ``flush()`` finishes everything
    ended so far, on the calling thread: ``tokentrail.flush()`` before reading spans, metrics or
    sinks in-process. A forked child starts a thread of its own with its first call. In a
    ``multiprocessing`` worker, which ends with ``os._exit()``, a ``Process`` drains when its target
    returns and a ``Pool`` worker (which its pool may SIGTERM) hands each call on before it
    returns to the application (see :mod:`tokentrail._fork`)."""

    def __init__(self) -> None:
        self._batcher: Batcher | None = None
        self._lock = threading.Lock()
        self._exiting = False
        self._queued = False  # decided: calls go to the queue (not exiting, not writing through)

    def _forked(self) -> None:
        self._lock = threading.Lock()
        self._queued = False  # is it a multiprocessing worker? Decided at its first call

    def _queue(self) -> Batcher:
        batcher = self._batcher
        if batcher is None:
            with self._lock:
                if self._batcher is None:
                    self._batcher = Batcher(
                        "tokentrail-recorder",
                        _complete_all,
                        on_drop=_never_dropped,
                        queue_size=1_000,
                        batch_size=250,
                        flush_interval=0.1,
                        handle_when_full=True,
                    )
                batcher = self._batcher
        return batcher

    def hook_exit(self) -> None:
        """Drain at exit before the exit hooks registered until now (the providers' shutdown).
        The queue and its thread start with the first call, not at ``instrument()``."""
        atexit.unregister(self._drain_at_exit)
        atexit.register(self._drain_at_exit)

    def _drain_at_exit(self) -> None:
        self._exiting = True
        self._queued = False
        if self._batcher is not None:
            self._batcher.drain_for_exit()

    def submit(self, ended: Call | Unit) -> None:
        if self._queued and not sys.is_finalizing():
            self._batcher.submit(ended)  # type: ignore[union-attr]
            return
        if self._exiting or sys.is_finalizing():
            # Late in shutdown (a stream finalised at exit): finished here, at once. A thread
            # started now would never run, and starting it would wait for it forever.
            _complete_all([ended])
            return
        worker = _fork.worker_kind()
        if worker == "pool":
            # A Pool worker may be killed by its pool's SIGTERM once its result is sent: each call
            # is finished, written and exported before the application goes on.
            _complete_all([ended])
            _hand_on(ended._telemetry if isinstance(ended, Call) else _active)
            return
        if worker == "process":  # ends with os._exit(): drained when its target returns
            _fork.at_worker_exit(_drain_worker)
        queue = self._queue()
        self._queued = True
        queue.submit(ended)

    def flush(self) -> None:
        """Finish everything ended so far, on this thread. The work is bounded (at most the queue's
        1,000 calls); only a span processor that exports synchronously (``SimpleSpanProcessor``)
        can make it wait, as it makes every span end wait."""
        if self._batcher is not None:
            self._batcher.flush()


def _complete_all(ended: list[Any]) -> None:
    # The batch's metric values without an exemplar go to the SDK together, after the last call.
    gathered = _metric_batch.Gathered(_NO_EXEMPLAR)
    try:
        for item in ended:
            try:
                item._complete(gathered)
            except Exception as exc:
                _safety.internal_error("lifecycle.complete", exc)
    finally:
        gathered.record_all()


def _no_op() -> None:
    pass


def _drain_worker() -> None:
    """The end of a multiprocessing worker: finish every call and hand it on, as exit would."""
    RECORDER.flush()
    _hand_on(_active)


def _hand_on(telemetry: Telemetry | None) -> None:
    """Hand finished calls on at once: every sink that queues (the ledger) writes them, and the
    OpenTelemetry providers export them, each waiting at most ``TOKENTRAIL_FLUSH_TIMEOUT``."""
    if telemetry is None:
        return
    timeout = _waits.flush_timeout()
    for sink in telemetry.sinks:
        flush = getattr(sink, "flush", None)
        if flush is not None:
            try:
                flush()  # the ledger's waits at most the same bound
            except Exception as exc:
                _safety.internal_error("lifecycle.hand_on", exc)
    tracer_provider, meter_provider, _ = telemetry.providers
    for provider in (
        tracer_provider or trace.get_tracer_provider(),
        meter_provider or metrics.get_meter_provider(),
    ):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            try:
                force_flush(timeout_millis=int(timeout * 1000))
            except Exception as exc:
                _safety.internal_error("lifecycle.hand_on", exc)


def _never_dropped(count: int, reason: str) -> None:  # only reached after the recorder was closed
    _safety.warn_once("recorder.drop", "tokentrail: %d finished call(s) not recorded (%s)", count, reason)


# One recorder for the process: every instrument() shares its thread and its exit hook.
RECORDER = Recorder()
# Held for the life of the process (the callback refers to it), as RECORDER is anyway.
_fork.on_fork(RECORDER, before=_no_op, after_in_parent=_no_op, after_in_child=RECORDER._forked)


def _drain_first(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    RECORDER.flush()
    return wrapped(*args, **kwargs)


_SDK_PROVIDER_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.sdk.metrics")
_provider_patches = ClassPatches()
_hooks_registered = False


def _drain_before_provider_flush(module: Any) -> None:
    """An application that ends with ``tracer_provider.shutdown()`` (or ``force_flush()``) gets
    the calls that ended just before it: the SDK providers drain the recorder first. Patched on
    the SDK classes while tokentrail is instrumented, when (and only if) the SDK is imported."""
    if _active is None:
        return  # a hook that fires after uninstrument()
    for name in ("TracerProvider", "MeterProvider"):
        provider = getattr(module, name, None)
        if provider is None:
            continue
        for method in ("shutdown", "force_flush"):
            if not _provider_patches.patched(provider, method):
                _provider_patches.wrap(provider, method, _drain_first)


def _hook_provider_flush() -> None:
    global _hooks_registered
    for module in _SDK_PROVIDER_MODULES:
        if module in sys.modules:
            _drain_before_provider_flush(sys.modules[module])
        elif not _hooks_registered:
            # Runs when the application imports the SDK; wrapt cannot unregister it, so it checks
            # that tokentrail is still instrumented then.
            wrapt.register_post_import_hook(_drain_before_provider_flush, module)
    _hooks_registered = True


_active: Telemetry | None = None


def active() -> Telemetry | None:
    """The telemetry of the current ``instrument()``, or None when not instrumented."""
    return _active


def recording() -> Telemetry | None:
    """The telemetry to record a call with here: the active one, unless the caller is inside
    ``opentelemetry.instrumentation.utils.suppress_instrumentation()`` (then nothing is recorded:
    no span, no metrics, no ledger row), as every OpenTelemetry instrumentation honours it."""
    telemetry = _active
    if telemetry is None or otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY):
        return None
    return telemetry


def set_active(telemetry: Telemetry | None) -> None:
    """Install ``telemetry`` (from ``instrument()``) or, with None, undo everything installing did:
    the runtime the lower layers read, the budgets' settling, the error counter, the drains."""
    global _active
    _active = telemetry
    if telemetry is None:
        runtime.install(None)
        budgets.settle_ended_with(None)
        _safety.set_error_counter(None)
        _provider_patches.undo()
        return
    runtime.install(telemetry.runtime)
    budgets.settle_ended_with(RECORDER.flush)  # reading or refusing on a budget settles ended calls
    errors = telemetry.errors
    _safety.set_error_counter(lambda where: errors.add(1, {sc.ERROR_WHERE: where}))
    _hook_provider_flush()


def add_sink(sink: Sink) -> None:
    """Hand every finished call to ``sink`` too (on the active instrumentation)."""
    telemetry = _active
    if telemetry is None:
        raise RuntimeError("call tokentrail.instrument() before adding sinks")
    telemetry.add_sink(sink)


def remove_sink(sink: Sink) -> None:
    """Stop handing calls to ``sink`` (a no-op when it was not added or nothing is instrumented)."""
    telemetry = _active
    if telemetry is not None:
        telemetry.remove_sink(sink)


Response = ResponseInfo | Callable[[], ResponseInfo | None] | None
"""What a call ends with: the response read, or a function that reads it (run off the calling
thread, after the call ended), or None when nothing came back."""


class Call:
    """One LLM call in flight. Create with :meth:`Telemetry.start`; ends exactly once.

    The end is split in two: :meth:`finish` / :meth:`fail` on the application's thread take the
    time and queue the call; :meth:`_complete` on the recorder thread does the rest.
    """

    __slots__ = (
        "_end_ns",
        "_end_perf",
        "_ended",
        "_error",
        "_incomplete",
        "_price_context",
        "_pricing_error",
        "_response",
        "_start",
        "_start_epoch",
        "_telemetry",
        "attribution",
        "chunk_times",
        "request",
        "reservations",
        "span",
    )

    def __init__(self, telemetry: Telemetry, request: RequestInfo, started_at: float | None = None) -> None:
        self._telemetry = telemetry
        self.request = request
        self.reservations: tuple[Reservation, ...] = ()
        self._ended = False
        # When each chunk reached the application (time.perf_counter()), written by the stream
        # follower: 8 bytes a chunk, read at the end for the first-chunk and per-chunk timings.
        self.chunk_times = array("d")
        self._pricing_error: str | None = None
        self._start = time.perf_counter()
        if started_at is None:
            self._start_epoch = time.time()
            span_start = None
        else:
            self._start_epoch = started_at
            self._start -= max(0.0, time.time() - started_at)
            span_start = int(started_at * 1e9)
        framework_run = current_framework_llm_run()
        if framework_run is not None:
            framework_run.mark_covered()  # the framework layers above must not count this call again
        # Context-local facts are read here, on the application's thread, in the call's context.
        self._price_context = current_price_context()
        self.attribution: Attribution = current_attribution()
        if telemetry.settings.baggage:
            self.attribution = under_incoming_baggage(self.attribution)
        try:
            self.span = telemetry.tracer.start_span(
                _span_name(request),
                kind=SpanKind.CLIENT,
                attributes=_start_attributes(request, self),
                start_time=span_start,
            )
        except Exception as exc:
            _safety.internal_error("lifecycle.start", exc)
            self.span = trace.INVALID_SPAN

    # --- while the request runs -----------------------------------------------------------

    def activate(self) -> object:
        """Make the call's span current (so HTTP client spans nest under it); returns a token."""
        try:
            return otel_context.attach(trace.set_span_in_context(self.span))
        except Exception as exc:
            _safety.internal_error("lifecycle.activate", exc)
            return None

    @staticmethod
    def deactivate(token: object) -> None:
        if token is not None:
            try:
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception as exc:
                _safety.internal_error("lifecycle.deactivate", exc)

    @property
    def ended(self) -> bool:
        return self._ended

    # --- the end, on the application's thread -----------------------------------------------

    def __del__(self) -> None:
        # The last safety net: a call dropped before it ended (a stream never iterated, or whose
        # follower was never finalised) still ends, incomplete, rather than leaving its span open.
        try:
            if not self._ended:
                self.finish(None, incomplete=True)
        except Exception:  # never raise from a finaliser
            pass

    def finish(self, response: Response, *, incomplete: bool = False) -> None:
        """The call succeeded (or a stream stopped early, with ``incomplete``)."""
        if self._ended:
            return
        self._ended = True
        try:
            self._end(response, None, incomplete)
        except Exception as exc:
            _safety.internal_error("lifecycle.finish", exc)

    def fail(self, error: BaseException, response: Response = None) -> None:
        """The call (or its stream) raised ``error``; the application's exception is untouched."""
        if self._ended:
            return
        self._ended = True
        try:
            self._end(response, error, None)
        except Exception as exc:
            _safety.internal_error("lifecycle.fail", exc)

    def _end(self, response: Response, error: BaseException | None, incomplete: bool | None) -> None:
        # ``incomplete`` None: a failed call, incomplete if part of a stream had arrived.
        self._end_perf = time.perf_counter()
        self._end_ns = time.time_ns()
        self._error = error
        self._incomplete = incomplete
        # A budget's reservation for this call stays held until the recorder settles it with the
        # real cost (see budgets.check: a refusal first settles every call that has ended).
        self._response = response
        self._telemetry.recorder.submit(self)

    def _price(self, response: ResponseInfo | None) -> tuple[Cost | None, str | None]:
        """(cost, the model without a price); (None, None) when there is nothing to price."""
        if response is None or (response.usage is None and not response.extra_usage):
            return None, None
        try:
            return _price_call(
                self._telemetry.pricer,
                response.usage if response.billed_usage is None else response.billed_usage,
                response.extra_usage,
                self.request.provider,
                (self.request.price_model, response.response_model, self.request.request_model),
                self._start_epoch,
                _merge(response.price_context, self._price_context),
            )
        except Exception as exc:
            _safety.internal_error("pricing", exc)
            self._pricing_error = _error_type(exc)
            return None, None

    # --- the end, on the recorder thread ----------------------------------------------------

    def _complete(self, gathered: _metric_batch.Gathered) -> None:
        """Everything after the end, on the recorder thread: read, price, settle budgets, end the
        span, record metrics (those without an exemplar into ``gathered``, recorded after the
        batch's last call), add to roll-ups, hand to sinks."""
        telemetry = self._telemetry
        request = self.request
        error = self._error
        response = _read(self._response)
        self._response = None  # the SDK's objects are not kept beyond this point
        incomplete = self._incomplete
        if incomplete is None:
            incomplete = response is not None and request.stream
        usage = response.usage if response is not None else None
        cost, unpriced = self._price(response)
        alerts = self._settle_budgets(cost)
        if response is not None:
            for part in response.extra_usage:  # the call's totals include what was billed separately
                usage = part.usage if usage is None else usage + part.usage
        error_type = _error_type(error) if error is not None else None
        times = self.chunk_times
        ttfc = times[0] - self._start if times else None
        self._end_span(response, usage, cost, error_type, incomplete, ttfc, alerts)
        for rollup in self.attribution.rollups:
            rollup.add(usage, cost.total if cost is not None else None, error is not None)
        self._record_metrics(response, usage, cost, error_type, ttfc, unpriced, gathered)
        if telemetry.sinks:
            self._hand_to_sinks(response, usage, cost, error_type, incomplete, ttfc)

    def _settle_budgets(self, cost: Cost | None) -> list[BudgetAlert]:
        """The call's real cost replaces its reservations (before the span ends: a threshold it
        crossed becomes an event on it)."""
        if not self.reservations:
            return []
        return settle_budgets(self.reservations, cost.total if cost is not None else 0.0)

    def _end_span(
        self,
        response: ResponseInfo | None,
        usage: Usage | None,
        cost: Cost | None,
        error_type: str | None,
        incomplete: bool,
        ttfc: float | None,
        alerts: list[BudgetAlert],
    ) -> None:
        span = self.span
        if span.is_recording():
            settings = self._telemetry.settings
            attributes = _end_attributes(self.request, response, usage, cost, error_type, incomplete, ttfc)
            if self._pricing_error is not None:
                attributes[sc.PRICE_ERROR] = self._pricing_error
            if settings.content.enabled:
                _capture_content(self._telemetry, span, self.request, response, attributes, self._end_ns)
            _span_attributes.set_attributes(span, attributes)
            if error_type is not None:
                span.set_status(Status(StatusCode.ERROR, error_type))
            for alert in alerts:
                _budget_event(span, alert)
        span.end(end_time=self._end_ns)

    def _metric_attributes(self, response_model: str | None, error_type: str | None) -> dict[str, Any]:
        """Low-cardinality attributes only (never ids, users or prompts)."""
        telemetry = self._telemetry
        attributes = _request_attributes(self.request)
        if response_model:
            attributes[sc.RESPONSE_MODEL] = response_model
        if error_type:
            attributes[sc.ERROR_TYPE] = error_type
        values = self.attribution.values
        if values:
            for key, name in telemetry.metric_keys:
                value = values.get(key)
                if value is not None:
                    attributes[name] = telemetry.metric_value(key, value)
        return attributes

    def _record_metrics(
        self,
        response: ResponseInfo | None,
        usage: Usage | None,
        cost: Cost | None,
        error_type: str | None,
        ttfc: float | None,
        unpriced: str | None,
        gathered: _metric_batch.Gathered,
    ) -> None:
        telemetry = self._telemetry
        request = self.request
        response_model = response.response_model if response is not None else None
        attributes = self._metric_attributes(response_model, error_type)
        span = self.span
        # Exemplars (a link from a bucket to this trace) on duration and cost only.
        exemplar_context = trace.set_span_in_context(span) if span.is_recording() else _NO_EXEMPLAR
        # Each instrument's values wait in ``gathered`` for the other calls finished with this one,
        # and go to the SDK in one batch per attribute set (_metric_batch: the SDK checks an
        # attribute set once, not once per value); the duration and cost each with this call's
        # exemplar context.
        items = tuple(attributes.items())  # the attribute set's key, made once for every record
        gather = gathered.add
        gather_linked = gathered.add_linked
        gather_linked(telemetry.duration, self._end_perf - self._start, attributes, exemplar_context, items)
        if ttfc is not None:
            gather(telemetry.time_to_first_chunk, (ttfc,), attributes, items)
            # One value per chunk after the first: the time since the chunk before it.
            times = self.chunk_times
            gather(
                telemetry.time_per_output_chunk,
                list(map(_minus, islice(times, 1, None), times)),
                attributes,
                items,
            )
        if usage is None:
            return
        if telemetry.settings.latest_experimental:
            _record_latest_usage(telemetry, request, usage, attributes)
        else:
            # A negative count (flagged in usage.problems, kept on the span and the ledger) stays
            # off the histograms, which refuse it with a line on stderr per call.
            gather_with = gathered.add_with
            if usage.input_tokens >= 0:
                gather_with(
                    telemetry.token_usage, (usage.input_tokens,), attributes, items, sc.TOKEN_TYPE, "input"
                )
            if request.operation != "embeddings" and usage.output_tokens >= 0:
                gather_with(
                    telemetry.token_usage, (usage.output_tokens,), attributes, items, sc.TOKEN_TYPE, "output"
                )
            for name, token_type in _PART_TOKEN_TYPES:
                amount = getattr(usage, name)
                if amount > 0:
                    gather_with(
                        telemetry.token_parts, (amount,), attributes, items, sc.TOKEN_TYPE, token_type
                    )
        if usage.problems:
            telemetry.inconsistent_usage.add(1, attributes, context=_NO_EXEMPLAR)
        if cost is not None:
            if cost.total >= 0:  # a negative cost (from negative counts) stays off the histogram
                gather_linked(telemetry.cost, cost.total, attributes, exemplar_context, items)
            return
        telemetry.unpriced_calls.add(1, attributes, context=_NO_EXEMPLAR)
        unpriced_model = unpriced or response_model or request.request_model or "?"
        if self._pricing_error is None and telemetry.pricer.first_unpriced(request.provider, unpriced_model):
            # A pricing fault is logged as such (internal_error), not as an unknown model.
            _safety.log.warning(
                "tokentrail: no price known for model %r of provider %r; its tokens are "
                "recorded without cost. Add it to a price override file (TOKENTRAIL_PRICES).",
                unpriced_model,
                request.provider,
            )

    def _hand_to_sinks(
        self,
        response: ResponseInfo | None,
        usage: Usage | None,
        cost: Cost | None,
        error_type: str | None,
        incomplete: bool,
        ttfc: float | None,
    ) -> None:
        request = self.request
        span_context = self.span.get_span_context()
        record = CallRecord(
            start_time=self._start_epoch,
            duration_s=self._end_perf - self._start,
            operation=request.operation,
            provider=request.provider,
            request_model=request.request_model,
            response_model=response.response_model if response is not None else None,
            server_address=request.server_address,
            stream=request.stream,
            usage=usage,
            cost=cost,
            time_to_first_chunk_s=ttfc,
            error_type=error_type,
            trace_id=format(span_context.trace_id, "032x") if span_context.is_valid else None,
            span_id=format(span_context.span_id, "016x") if span_context.is_valid else None,
            response_id=response.response_id if response else None,
            finish_reasons=response.finish_reasons if response else (),
            incomplete=incomplete,
            attribution=self.attribution.values,
        )
        for sink in self._telemetry.sinks:
            try:
                sink(record)
            except Exception as exc:
                _safety.internal_error("sink", exc)


# (Usage field, gen_ai.token.type) of the parts counted in tokentrail.client.token.parts.
_PART_TOKEN_TYPES = tuple((f.name, f.token_type) for f in USAGE_FIELDS if f.token_type)
# (Usage field, span attributes) of the parts set on the span when non-zero (the two totals always
# are): the current name, and the previous release's where it had another.
_PART_ATTRIBUTES = tuple(
    (f.name, (f.span_attribute, f.previous_attribute) if f.previous_attribute else (f.span_attribute,))
    for f in USAGE_FIELDS
    if f.name not in ("input_tokens", "output_tokens")
)


_DETAILED_COUNTERS = (
    (sc.METRIC_DETAILED_INPUT_TOKENS, "Input tokens, by modality (cache reads and writes included)"),
    (sc.METRIC_DETAILED_OUTPUT_TOKENS, "Output tokens, by modality (reasoning included)"),
    (sc.METRIC_DETAILED_CACHE_READ_TOKENS, "Input tokens read from the prompt cache"),
    (sc.METRIC_DETAILED_CACHE_WRITE_TOKENS, "Input tokens written to the prompt cache"),
    (sc.METRIC_DETAILED_REASONING_TOKENS, "Output tokens spent reasoning"),
)


def _record_latest_usage(
    telemetry: Telemetry, request: RequestInfo, usage: Usage, attributes: dict[str, Any]
) -> None:
    """The GenAI conventions' pending usage metrics (OTEL_SEMCONV_STABILITY_OPT_IN=
    gen_ai_latest_experimental): per-call histograms of input and output, and counters of each
    token category, by modality where the provider reports it (text is what remains)."""
    input_histogram, output_histogram = telemetry.inference_tokens
    counters = telemetry.detailed_tokens
    if usage.input_tokens >= 0:  # negative counts stay off the histograms (flagged on the span)
        input_histogram.record(usage.input_tokens, attributes, context=_NO_EXEMPLAR)
    if request.operation != "embeddings" and usage.output_tokens >= 0:
        output_histogram.record(usage.output_tokens, attributes, context=_NO_EXEMPLAR)
    by_modality = (
        (
            sc.METRIC_DETAILED_INPUT_TOKENS,
            (
                ("audio", usage.input_audio_tokens),
                ("image", usage.input_image_tokens),
                ("text", usage.input_tokens - usage.input_audio_tokens - usage.input_image_tokens),
            ),
        ),
        (
            sc.METRIC_DETAILED_OUTPUT_TOKENS,
            (("audio", usage.output_audio_tokens), ("text", usage.output_tokens - usage.output_audio_tokens)),
        ),
    )
    for name, amounts in by_modality:
        for modality, amount in amounts:
            if amount > 0:
                counters[name].add(amount, {**attributes, sc.TOKEN_MODALITY: modality}, context=_NO_EXEMPLAR)
    # Providers do not say the modality of cached and reasoning tokens: recorded without one.
    for name, amount in (
        (sc.METRIC_DETAILED_CACHE_READ_TOKENS, usage.cache_read_tokens),
        (sc.METRIC_DETAILED_CACHE_WRITE_TOKENS, usage.cache_write_tokens),
        (sc.METRIC_DETAILED_REASONING_TOKENS, usage.reasoning_tokens),
    ):
        if amount > 0:
            counters[name].add(amount, attributes, context=_NO_EXEMPLAR)


def _budget_event(span: trace.Span, alert: BudgetAlert) -> None:
    try:
        span.add_event(
            sc.BUDGET_THRESHOLD_EVENT,
            {
                sc.BUDGET_NAME: alert.budget,
                sc.BUDGET_THRESHOLD: alert.threshold,
                sc.BUDGET_SPENT_USD: alert.spent_usd,
                sc.BUDGET_LIMIT_USD: alert.limit_usd,
            },
        )
    except Exception as exc:
        _safety.internal_error("budget.event", exc)


def _read(response: Response) -> ResponseInfo | None:
    """The response a call ended with, read now if it was handed over as a reader."""
    if response is None or isinstance(response, ResponseInfo):
        return response
    try:
        return response()
    except Exception as exc:  # the SDK object was not what the provider module expected
        _safety.internal_error("lifecycle.response", exc)
        return None


def _price_call(
    pricer: Pricer,
    usage: Usage | None,
    parts: tuple[UsagePart, ...],
    provider: str,
    models: tuple[str | None, ...],
    at: float,
    context: Mapping[str, str] | None,
) -> tuple[Cost | None, str | None]:
    """(cost, None), or (None, the model without a price): a call is priced whole or not at all,
    never as a partial sum that would look complete."""
    cost = None
    if usage is not None:
        cost = pricer.price(usage, provider, models, at, context)
        if cost is None:
            return None, None
    for part in parts:
        part_cost = pricer.price(part.usage, provider, (part.model,) if part.model else models, at, context)
        if part_cost is None:
            return None, part.model
        cost = part_cost if cost is None else _add_costs(cost, part_cost)
    return cost, None


def _add_costs(first: Cost, second: Cost) -> Cost:
    def plus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a + b

    def local(cost: Cost) -> float | None:
        return cost.local_estimate if cost.source == sc.COST_SOURCE_PROVIDER else cost.total

    reported = sc.COST_SOURCE_PROVIDER in (first.source, second.source)
    return Cost(
        total=first.total + second.total,
        input=plus(first.input, second.input),
        output=plus(first.output, second.output),
        source=first.source if first.source == second.source else sc.COST_SOURCE_LOCAL,
        local_estimate=plus(local(first), local(second)) if reported else None,
        priced_model=first.priced_model,
        price_source=first.price_source,
    )


def _span_name(request: RequestInfo) -> str:
    if request.request_model:
        return f"{request.operation} {request.request_model}"
    return request.operation


def _request_attributes(request: RequestInfo) -> dict[str, Any]:
    """What the request says of itself, on the span from its start and on every metric."""
    attributes: dict[str, Any] = {
        sc.OPERATION_NAME: request.operation,
        sc.PROVIDER_NAME: request.provider,
    }
    if request.request_model:
        attributes[sc.REQUEST_MODEL] = request.request_model
    if request.server_address:
        attributes[sc.SERVER_ADDRESS] = request.server_address
    if request.server_port:
        attributes[sc.SERVER_PORT] = request.server_port
    return attributes


def _start_attributes(request: RequestInfo, call: Call) -> dict[str, Any]:
    attributes = _request_attributes(request)
    # The request's parameters and gen_ai.request.stream go on at the end, on the recorder
    # thread (the conventions list them with the response); samplers see the five above, and the
    # application's attribution.
    if call.attribution.span_attributes:
        attributes.update(call.attribution.span_attributes)
    return attributes


def _end_attributes(
    request: RequestInfo,
    response: ResponseInfo | None,
    usage: Usage | None,
    cost: Cost | None,
    error_type: str | None,
    incomplete: bool,
    ttfc: float | None,
) -> dict[str, Any]:
    attributes: dict[str, Any] = dict(request.parameters())
    if request.stream:
        attributes[sc.REQUEST_STREAM] = True
    if response is not None:
        if response.response_model:
            attributes[sc.RESPONSE_MODEL] = response.response_model
        if response.response_id:
            attributes[sc.RESPONSE_ID] = response.response_id
        if response.finish_reasons:
            attributes[sc.RESPONSE_FINISH_REASONS] = response.finish_reasons
        if response.attributes:
            attributes.update(response.attributes)
    if ttfc is not None:
        attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
    if error_type is not None:
        attributes[sc.ERROR_TYPE] = error_type
    if incomplete:
        attributes[sc.STREAM_INCOMPLETE] = True
    if usage is None:
        attributes[sc.USAGE_MISSING] = True
        return attributes
    attributes[sc.USAGE_INPUT_TOKENS] = usage.input_tokens
    attributes[sc.USAGE_OUTPUT_TOKENS] = usage.output_tokens
    for name, names in _PART_ATTRIBUTES:
        amount = getattr(usage, name)
        if amount:
            for attribute in names:
                attributes[attribute] = amount
    if usage.problems:
        attributes[sc.USAGE_INCONSISTENT] = True
        attributes[sc.USAGE_PROBLEMS] = usage.problems
    if cost is None:
        attributes[sc.PRICE_UNPRICED] = True
        return attributes
    attributes[sc.COST_AMOUNT] = cost.total
    attributes[sc.COST_CURRENCY] = "USD"
    attributes[sc.COST_SOURCE] = cost.source
    attributes[sc.COST_USD_MICROS] = round(cost.total * 1_000_000)
    if cost.input is not None:
        attributes[sc.COST_INPUT] = cost.input
    if cost.output is not None:
        attributes[sc.COST_OUTPUT] = cost.output
    if cost.local_estimate is not None:
        attributes[sc.COST_LOCAL_ESTIMATE] = cost.local_estimate
    if cost.priced_model is not None:
        attributes[sc.PRICE_MODEL] = cost.priced_model
    if cost.price_source is not None:
        attributes[sc.PRICE_SOURCE] = cost.price_source
    return attributes


def _capture_content(
    telemetry: Telemetry,
    span: trace.Span,
    request: RequestInfo,
    response: ResponseInfo | None,
    attributes: dict[str, Any],
    end_ns: int,
) -> None:
    settings = telemetry.settings
    content: dict[str, str] = {}
    if request.input_messages is not None:
        content[sc.INPUT_MESSAGES] = json.dumps(request.input_messages, ensure_ascii=False, default=str)
    if request.system_instructions:
        content[sc.SYSTEM_INSTRUCTIONS] = json.dumps(
            request.system_instructions, ensure_ascii=False, default=str
        )
    if response is not None and response.output_messages is not None:
        content[sc.OUTPUT_MESSAGES] = json.dumps(response.output_messages, ensure_ascii=False, default=str)
    if settings.content.span:
        attributes.update(content)
    if settings.content.event and content:
        telemetry.logger.emit(
            timestamp=end_ns,
            context=trace.set_span_in_context(span),
            event_name=sc.CONTENT_EVENT,
            attributes=content,
        )


def _error_type(error: BaseException) -> str:
    return type(error).__qualname__


def _merge(first: Mapping[str, str] | None, second: Mapping[str, str] | None) -> Mapping[str, str] | None:
    if not second:
        return first
    if not first:
        return second
    return {**first, **second}


class Unit:
    """A roll-up span around a unit of work (see ``tokentrail.span``).

    It ends through the recorder too, after the calls that ended inside it were added up there."""

    __slots__ = ("_end_ns", "_ended", "_error", "rollup", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.rollup = Rollup()
        self._ended = False

    def activate(self) -> object:
        try:
            return otel_context.attach(trace.set_span_in_context(self.span))
        except Exception as exc:
            _safety.internal_error("unit.activate", exc)
            return None

    @staticmethod
    def deactivate(token: object) -> None:
        Call.deactivate(token)

    def end(self, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._end_ns = time.time_ns()
        self._error = error
        try:
            RECORDER.submit(self)
        except Exception as exc:
            _safety.internal_error("unit.end", exc)

    def _complete(self, gathered: _metric_batch.Gathered | None = None) -> None:  # records no metric
        error = self._error
        self.span.set_attributes(self.rollup.attributes())
        if error is not None and not isinstance(error, GeneratorExit):
            self.span.set_attribute(sc.ERROR_TYPE, _error_type(error))
            self.span.set_status(Status(StatusCode.ERROR, _error_type(error)))
        self.span.end(end_time=self._end_ns)


def start_unit(name: str, span_attributes: Mapping[str, str]) -> Unit | None:
    """Open a roll-up span (INTERNAL) for a unit of work, if tokentrail is instrumented."""
    telemetry = _active
    if telemetry is None:
        return None
    return telemetry.start_unit(name, span_attributes)
