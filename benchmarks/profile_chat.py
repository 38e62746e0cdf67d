"""Where tokentrail's time goes on an instrumented call: cProfile plus timed components.

Run from the repository root::

    PYTHONPATH=src python benchmarks/profile_chat.py [--calls 2000] [--kind chat|stream] [--top 15]

1. cProfile over ``--calls`` instrumented calls (same fake API and providers as overhead.py):
   the top functions by own time (tottime) inside tokentrail's code, then the non-tokentrail
   functions tokentrail calls into directly (OpenTelemetry, wrapt, pydantic ...) by cumulative time
   per call. cProfile inflates small Python functions; use part 2 for absolute costs.
``--recorder``: the work left to the recorder thread, profiled and broken down by part.
2. The pieces of tokentrail's work timed on their own without a profiler (``--no-components`` to
   skip): the adapter's plan, the call start (span), the response read, pricing, the call end
   (attributes, span end, metrics), and some OpenTelemetry reference points.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CHAT_REQUEST, FakeOpenAI, isolate_ledger, make_providers


def _ours(filename: str) -> bool:
    return "tokentrail" in filename and os.sep + "benchmarks" + os.sep not in filename


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    parts = Path(filename).parts
    if "tokentrail" in parts:
        short = "/".join(parts[parts.index("tokentrail") :])
    elif "site-packages" in parts:
        short = "/".join(parts[parts.index("site-packages") + 1 :])
    else:
        short = filename
    return f"{short}:{line}({name})"


def _instrumented_call(kind: str) -> tuple[Any, Any]:
    """(a function making one instrumented call of ``kind``, the providers), warmed up."""
    import tokentrail

    fake = FakeOpenAI()
    client = fake.client()
    providers = make_providers()
    tokentrail.instrument(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    create = client.chat.completions.create

    def call() -> None:
        if kind == "chat":
            create(**CHAT_REQUEST)
        else:
            for _ in create(**CHAT_REQUEST, stream=True):
                pass

    for _ in range(200 if kind == "chat" else 40):
        call()
    return call, providers


def profile(kind: str, calls: int, top: int) -> None:
    import tokentrail

    call, providers = _instrumented_call(kind)
    profiler = cProfile.Profile()  # perf_counter: a thread-CPU timer is a syscall per event
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    tokentrail.uninstrument()
    stats = pstats.Stats(profiler)
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in entries.values())

    ours = [(func, data) for func, data in entries.items() if _ours(func[0])]
    ours_tt = sum(data[2] for _, data in ours)
    print(
        f"cProfile, {calls} instrumented {kind} calls: {total / calls * 1e6:.0f} µs/call profiled in all, "
        f"{ours_tt / calls * 1e6:.1f} µs/call own time in tokentrail's code"
    )
    print(f"\nTop {top} tokentrail functions by own time (tottime):")
    print(f"{'tottime µs/call':>16}{'cumtime µs/call':>17}{'calls/call':>12}  function")
    for func, (_, nc, tt, ct, _) in sorted(ours, key=lambda item: -item[1][2])[:top]:
        print(f"{tt / calls * 1e6:>16.2f}{ct / calls * 1e6:>17.2f}{nc / calls:>12.1f}  {_label(func)}")

    # Functions outside tokentrail called directly from tokentrail code (the price of what we call).
    external: dict[Any, list[float]] = {}
    for func, (*_, callers) in entries.items():
        if _ours(func[0]):
            continue
        for caller, (_, c_nc, _, c_ct) in callers.items():
            if _ours(caller[0]):
                slot = external.setdefault(func, [0.0, 0.0])
                slot[0] += c_nc
                slot[1] += c_ct
    print(f"\nTop {top} non-tokentrail functions called from tokentrail code, by cumulative time:")
    print(f"{'cumtime µs/call':>16}{'calls/call':>12}  function")
    for func, (nc, ct) in sorted(external.items(), key=lambda item: -item[1][1])[:top]:
        print(f"{ct / calls * 1e6:>16.2f}{nc / calls:>12.1f}  {_label(func)}")
    providers.shutdown()


# (label, regular expression over "file:line(function)") for the recorder profile's breakdown.
_RECORDER_PARTS = (
    (
        "OpenTelemetry metric records (histogram.record, counter.add, tokentrail's batches of them)",
        r"(metrics/_internal/instrument\.py:\d+\((record|add)\)|tokentrail/_metric_batch\.py:\d+\(record\))",
    ),
    ("OpenTelemetry span end attributes (set_attributes)", r"sdk/trace/__init__\.py:\d+\(set_attributes\)"),
    ("OpenTelemetry span end (end)", r"sdk/trace/__init__\.py:\d+\(end\)"),
    ("reading the response (provider module, Usage.of)", r"tokentrail/lifecycle\.py:\d+\(_read\)"),
    ("pricing", r"tokentrail/lifecycle\.py:\d+\(_price\)"),
    (
        "sinks (run summary, ledger hand-off, CallRecord)",
        r"tokentrail/(run_summary|_batcher)\.py:\d+\((__call__|submit)\)",
    ),
)


def profile_recorder(kind: str, calls: int) -> None:
    """What the recorder thread does per call, by part: ``calls`` calls are made with the recorder's
    thread held back, then their finishing work runs here under cProfile (``tokentrail.flush()``)."""
    import re

    import tokentrail
    from tokentrail import lifecycle

    call, providers = _instrumented_call(kind)
    tokentrail.flush()
    queue = lifecycle.RECORDER._queue()  # benchmark-only: hold the recorder thread back
    queue._wake_at, queue._interval = 10**9, 3600.0
    queue._wake.set()
    time.sleep(0.3)  # the thread now waits an hour
    for _ in range(calls):
        call()
    profiler = cProfile.Profile()
    profiler.enable()
    lifecycle.RECORDER.flush()
    profiler.disable()
    tokentrail.uninstrument()
    entries: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in entries.values())
    print(f"\nRecorder thread, {calls} {kind} calls: {total / calls * 1e6:.0f} µs/call profiled in all")
    for label, pattern in _RECORDER_PARTS:
        cumulative = sum(ct for func, (_, _, _, ct, _) in entries.items() if re.search(pattern, _label(func)))
        print(f"{cumulative / calls * 1e6:>9.1f} µs {100 * cumulative / total:>5.1f}%  {label}")
    providers.shutdown()


def _per_call_us(function: Any, number: int, repeat: int = 7) -> float:
    best = []
    for _ in range(repeat):
        start = time.thread_time_ns()
        for _ in range(number):
            function()
        best.append((time.thread_time_ns() - start) / number)
    best.sort()
    return best[len(best) // 2] / 1e3  # median of repeats


def components(number: int) -> None:
    """Each piece of the chat call's instrumentation, timed alone (median of 7 x number runs)."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    import tokentrail
    from tokentrail import lifecycle
    from tokentrail.providers import openai as tt_openai

    fake = FakeOpenAI()
    client = fake.client()
    providers = make_providers()
    tokentrail.instrument(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    client.chat.completions.create(**CHAT_REQUEST)  # fill the caches
    telemetry = lifecycle.active()
    assert telemetry is not None
    adapter = tt_openai.OpenAIAdapter()

    # An options object as the SDK builds it (captured from a real request).
    from openai._base_client import SyncAPIClient

    captured: dict[str, Any] = {}
    original = SyncAPIClient.__dict__["request"]
    tokentrail.uninstrument()

    def capture(self: Any, cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        captured["options"] = options
        return original(self, cast_to, options, *args, **kwargs)

    SyncAPIClient.request = capture  # type: ignore[method-assign]
    try:
        response = client.chat.completions.create(**CHAT_REQUEST)
    finally:
        SyncAPIClient.request = original  # type: ignore[method-assign]
    options = captured["options"]
    tokentrail.instrument(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    client.chat.completions.create(**CHAT_REQUEST)
    telemetry = lifecycle.active()
    assert telemetry is not None

    plan = adapter.plan(client, options, False, telemetry)
    assert plan is not None
    request = plan.request
    info = tt_openai._CHAT.response(response, request)
    assert info.usage is not None
    now = time.time()
    pricer = telemetry.pricer
    pricer.price(info.usage, request.provider, (info.response_model, request.request_model), now, None)

    def start_end() -> None:
        call = telemetry.start(request)
        call.finish(info)

    def start_only() -> None:
        telemetry.start(request).span.end()

    def start_activate_end() -> None:
        call = telemetry.start(request)
        call.deactivate(call.activate())
        call.finish(info)

    tracer = providers.tracer_provider.get_tracer("bench.components")
    ten = {f"bench.attribute.{i}": i for i in range(10)}
    meter = providers.meter_provider.get_meter("bench.components")
    histogram = meter.create_histogram("bench.components.histogram")
    small = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-5-mini"}

    def bare_span() -> None:
        tracer.start_span("chat gpt-5-mini", kind=SpanKind.CLIENT, attributes=ten).end()

    span_for_exemplar = tracer.start_span("exemplar")
    exemplar_context = trace.set_span_in_context(span_for_exemplar)

    rows = [
        (
            "adapter.plan (RequestInfo, request_params)",
            lambda: adapter.plan(client, options, False, telemetry),
        ),
        (
            "ChatCompletions.response (ResponseInfo + chat_usage)",
            lambda: tt_openai._CHAT.response(response, request),
        ),
        ("chat_usage (Usage.of)", lambda: tt_openai.chat_usage(response.usage)),
        (
            "Pricer.price (cached card)",
            lambda: pricer.price(
                info.usage, request.provider, (info.response_model, request.request_model), now, None
            ),
        ),
        ("Call start + span.end (no metrics)", start_only),
        ("Call start + finish (span, attributes, metrics)", start_end),
        ("Call start + activate/deactivate + finish", start_activate_end),
        (
            "context attach+detach (activate/deactivate)",
            lambda: otel_context.detach(otel_context.attach(trace.set_span_in_context(span_for_exemplar))),
        ),
        ("OTel: start_span(10 attrs) + end", bare_span),
        ("OTel: histogram.record, no context", lambda: histogram.record(1.0, small)),
        (
            "OTel: histogram.record, sampled-span context (exemplar)",
            lambda: histogram.record(1.0, small, context=exemplar_context),
        ),
    ]
    print(f"\nComponents (thread CPU µs per call, median of 7 x {number}):")
    for label, function in rows:
        print(f"{_per_call_us(function, number):>9.2f}  {label}")
    tokentrail.uninstrument()
    providers.shutdown()


def stream_components(number: int) -> None:
    """The per-chunk path alone: the stream follower over already-parsed chunks, piece by piece."""
    import tokentrail
    from tokentrail import lifecycle
    from tokentrail.providers import openai as tt_openai
    from tokentrail.providers._stream import follow_generator

    fake = FakeOpenAI()
    client = fake.client()
    providers = make_providers()
    # Parsed chunks exactly as the SDK yields them when usage was asked for (52 with the usage chunk).
    chunks = list(
        client.chat.completions.create(**CHAT_REQUEST, stream=True, stream_options={"include_usage": True})
    )
    tokentrail.instrument(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    telemetry = lifecycle.active()
    assert telemetry is not None
    from tokentrail.records import RequestInfo

    request = RequestInfo(operation="chat", provider="openai", request_model="gpt-5-mini", stream=True)
    n = len(chunks)

    def plain() -> None:
        for _ in iter(chunks):
            pass

    def state_add() -> None:
        state = tt_openai.ChatStreamState(False, True, False)
        for chunk in chunks:
            state.add(chunk)

    call = telemetry.start(request)

    def followed() -> None:
        # A fresh follower and state each pass; the call is already ended so no span work is timed.
        state = tt_openai.ChatStreamState(False, True, False)
        for _ in follow_generator(iter(chunks), call, state):
            pass

    call.finish(None)
    plain_us = _per_call_us(plain, number)
    rows = [
        ("plain iteration over the parsed chunks (reference)", plain_us),
        ("ChatStreamState.add", _per_call_us(state_add, number)),
        (
            "follower iteration (generator step + add + chunk timing) minus plain",
            _per_call_us(followed, number) - plain_us,
        ),
    ]
    print(f"\nPer-chunk components (thread CPU µs per chunk, {n} chunks incl. the usage chunk, median of 7):")
    for label, us in rows:
        print(f"{us / n:>9.3f}  {label}")
    tokentrail.uninstrument()
    providers.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="profiled calls (default 2000)")
    parser.add_argument("--kind", choices=("chat", "stream"), default="chat")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--number", type=int, default=2000, help="runs per component timing (default 2000)")
    parser.add_argument("--no-components", action="store_true")
    parser.add_argument("--recorder", action="store_true", help="also profile the recorder thread's work")
    args = parser.parse_args(argv)
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENTRAIL_WARM_PRICES", "0")
    isolate_ledger()
    profile(args.kind, args.calls, args.top)
    if args.recorder:
        profile_recorder(args.kind, args.calls)
    if not args.no_components:
        if args.kind == "chat":
            components(args.number)
        else:
            stream_components(max(1, args.number // 10))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
