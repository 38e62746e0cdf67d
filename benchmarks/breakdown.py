"""Where tokentrail's per-call overhead goes, measured in place: knock one piece out, time the rest.

Run from the repository root::

    PYTHONPATH=src python benchmarks/breakdown.py [--rounds 150] [--json FILE]

A profiler inflates small Python functions, and a piece timed on its own runs with warm caches that
it never has inside a real SDK call. Here every variant is the real instrumented call (same fake API
and providers as overhead.py) with one piece of tokentrail's work replaced by a stand-in at runtime
(the source is not modified), interleaved with the full ``tokentrail`` and ``bare`` configurations
in the same rounds. The cost of a piece is p10(tokentrail) - p10(tokentrail without it).

Chat knock-outs:

``no-metrics``        every tokentrail instrument replaced by the OTel API's no-op instrument
``no-exemplars``      metrics recorded without the span context (no exemplar sampling)
``no-token-parts``    the ``token_parts`` counter (cache-read / reasoning adds) made a no-op
``no-span``           a no-op tracer (non-recording span: no span attributes, no exemplars)
``no-response-read``  ``ChatCompletions.response`` returns a ready ``ResponseInfo`` (no usage parsing)
``no-pricing``        ``Pricer.price`` returns a ready ``Cost``
``no-ledger``         ``instrument(ledger=False)``: no local-ledger sink (the ledger is on by default;
                      here it writes to a temporary directory, see ``_common.isolate_ledger``)

Stream: ``bare+usage`` is the bare SDK with the application itself asking for
``stream_options.include_usage`` (what the SDK pays to parse the usage); knock-outs
``no-usage-inject`` (``stream_usage=False``: no usage chunk asked for, so also no token/cost
metrics), ``no-proxy`` (the SDK stream is returned unwrapped; the call ends at once).

The knock-outs reach into tokentrail internals (``lifecycle.Telemetry`` attributes,
``providers.openai.ChatCompletions``, ``providers._stainless.Instrumentation._dispatch``); one that no
longer fits the source is reported as skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CHAT_REQUEST, FakeOpenAI, isolate_ledger, make_providers
from overhead import _quantile, source_state

Undo = Callable[[], None]


def _set(obj: Any, name: str, value: Any) -> Undo:
    had = name in vars(obj)
    old = vars(obj).get(name)
    setattr(obj, name, value)

    def undo() -> None:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)

    return undo


_INSTRUMENTS = ("token_usage", "duration", "time_to_first_chunk", "time_per_output_chunk", "cost")
_COUNTERS = ("token_parts", "unpriced_calls", "inconsistent_usage")


class _NoContext:
    """An instrument that forwards everything except the exemplar context."""

    def __init__(self, instrument: Any) -> None:
        self._instrument = instrument

    def record(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        self._instrument.record(amount, attributes)

    def add(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        self._instrument.add(amount, attributes)


def no_metrics(telemetry: Any, ready: dict[str, Any]) -> Undo:
    from opentelemetry.metrics import NoOpCounter, NoOpHistogram

    for name in _INSTRUMENTS:
        getattr(telemetry, name)  # fail (skip) if the source changed
        setattr(telemetry, name, NoOpHistogram(name))
    for name in _COUNTERS:
        getattr(telemetry, name)
        setattr(telemetry, name, NoOpCounter(name))
    return lambda: None  # the telemetry object is discarded at uninstrument()


def no_exemplars(telemetry: Any, ready: dict[str, Any]) -> Undo:
    for name in (*_INSTRUMENTS, *_COUNTERS):
        setattr(telemetry, name, _NoContext(getattr(telemetry, name)))
    return lambda: None


def no_token_parts(telemetry: Any, ready: dict[str, Any]) -> Undo:
    from opentelemetry.metrics import NoOpCounter

    getattr(telemetry, "token_parts")  # noqa: B009 - fail (skip) if the source changed
    telemetry.token_parts = NoOpCounter("token_parts")
    return lambda: None


def no_span(telemetry: Any, ready: dict[str, Any]) -> Undo:
    from opentelemetry import trace

    getattr(telemetry, "tracer")  # noqa: B009 - fail (skip) if the source changed
    telemetry.tracer = trace.NoOpTracer()
    return lambda: None


def no_response_read(telemetry: Any, ready: dict[str, Any]) -> Undo:
    from tokentrail.providers import openai as tt_openai

    info = ready["response_info"]
    return _set(tt_openai.ChatCompletions, "response", lambda self, parsed, request: info)


def no_pricing(telemetry: Any, ready: dict[str, Any]) -> Undo:
    cost = ready["cost"]
    return _set(telemetry.pricer, "price", lambda *args, **kwargs: cost)


def no_proxy(telemetry: Any, ready: dict[str, Any]) -> Undo:
    from tokentrail.providers import _stainless

    original = _stainless.Instrumentation._dispatch

    def dispatch(self: Any, plan: Any, call: Any, result: Any, is_async: bool) -> Any:
        if isinstance(result, self.sdk.stream_types):
            call.finish(None)
            return result
        return original(self, plan, call, result, is_async)

    return _set(_stainless.Instrumentation, "_dispatch", dispatch)


CHAT_KNOCKOUTS: dict[str, Callable[[Any, dict[str, Any]], Undo]] = {
    "no-metrics": no_metrics,
    "no-exemplars": no_exemplars,
    "no-token-parts": no_token_parts,
    "no-span": no_span,
    "no-response-read": no_response_read,
    "no-pricing": no_pricing,
}
STREAM_KNOCKOUTS: dict[str, Callable[[Any, dict[str, Any]], Undo]] = {
    "no-usage-inject": lambda telemetry, ready: lambda: None,  # via instrument(stream_usage=False)
    "no-proxy": no_proxy,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--chat-calls", type=int, default=20)
    parser.add_argument("--stream-calls", type=int, default=4)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENTRAIL_WARM_PRICES", "0")
    isolate_ledger()

    import tokentrail
    from tokentrail import lifecycle
    from tokentrail.providers import openai as tt_openai

    fake = FakeOpenAI()
    client = fake.client()
    providers = make_providers()
    create = client.chat.completions.create

    def chat() -> None:
        create(**CHAT_REQUEST)

    def stream() -> None:
        for _ in create(**CHAT_REQUEST, stream=True):
            pass

    def stream_with_usage() -> None:  # the application asks for the usage chunk itself
        for _ in create(**CHAT_REQUEST, stream=True, stream_options={"include_usage": True}):
            pass

    # Ready-made results for the stand-ins, from a real instrumented call.
    tokentrail.instrument(tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider)
    telemetry = lifecycle.active()
    response = create(**CHAT_REQUEST)
    from tokentrail.records import RequestInfo

    request = RequestInfo(operation="chat", provider="openai", request_model=CHAT_REQUEST["model"])
    info = tt_openai._CHAT.response(response, request)
    assert info.usage is not None and telemetry is not None
    cost = telemetry.pricer.price(
        info.usage, "openai", (info.response_model, request.request_model), time.time()
    )
    assert cost is not None
    ready = {"response_info": info, "cost": cost}
    tokentrail.uninstrument()

    def block(
        function: Callable[[], None], calls: int, knockout: Any, stream_usage: bool = True, **options: Any
    ) -> float | None:
        undo: Undo | None = None
        if knockout != "bare":
            try:
                tokentrail.instrument(
                    tracer_provider=providers.tracer_provider,
                    meter_provider=providers.meter_provider,
                    stream_usage=stream_usage,
                    **options,
                )
            except TypeError:  # an instrument() option this source does not have
                return None
            if knockout is not None:
                try:
                    undo = knockout(lifecycle.active(), ready)
                except Exception:
                    tokentrail.uninstrument()
                    return None
            function()  # untimed: fill caches
        try:
            gc.collect()
            start = time.thread_time_ns()
            for _ in range(calls):
                function()
            elapsed = time.thread_time_ns() - start
        finally:
            if undo is not None:
                undo()
            if knockout != "bare":
                tokentrail.uninstrument()
        return elapsed / calls

    plans: dict[str, list[tuple[str, Callable[[], float | None]]]] = {
        "chat": [
            ("bare", lambda: block(chat, args.chat_calls, "bare")),
            ("tokentrail", lambda: block(chat, args.chat_calls, None)),
            *[
                (name, lambda k=knockout: block(chat, args.chat_calls, k))
                for name, knockout in CHAT_KNOCKOUTS.items()
            ],
            ("no-ledger", lambda: block(chat, args.chat_calls, None, ledger=False)),
        ],
        "stream": [
            ("bare", lambda: block(stream, args.stream_calls, "bare")),
            ("bare+usage", lambda: block(stream_with_usage, args.stream_calls, "bare")),
            ("tokentrail", lambda: block(stream, args.stream_calls, None)),
            ("no-usage-inject", lambda: block(stream, args.stream_calls, None, stream_usage=False)),
            ("no-proxy", lambda: block(stream, args.stream_calls, no_proxy)),
        ],
    }
    times: dict[str, dict[str, list[float]]] = {
        kind: {name: [] for name, _ in plan} for kind, plan in plans.items()
    }
    skipped: set[str] = set()
    for plan in plans.values():  # warm-up
        for _, run in plan:
            run()
    started = time.perf_counter()
    for round_index in range(args.rounds):
        for kind, plan in plans.items():
            shift = round_index % len(plan)
            order = plan[shift:] + plan[:shift]
            if (round_index // len(plan)) % 2:
                order.reverse()
            for name, run in order:
                value = run()
                if value is None:
                    skipped.add(f"{kind}/{name}")
                else:
                    times[kind][name].append(value)
        if (round_index + 1) % 10 == 0:
            print(f"\rround {round_index + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
    print(f"\r{args.rounds} rounds in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    providers.shutdown()

    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "tokentrail_source": source_state(),
        "rounds": args.rounds,
        "results": {},
        "skipped": sorted(skipped),
    }
    print(
        f"tokentrail overhead breakdown - {report['date']} - {args.rounds} rounds - "
        f"source {report['tokentrail_source']}"
    )
    for kind, by_name in times.items():
        p10 = {name: _quantile(values, 0.1) / 1e3 for name, values in by_name.items() if values}
        bare, full = p10["bare"], p10["tokentrail"]
        print(f"\n{kind}: bare {bare:.1f} µs, tokentrail +{full - bare:.1f} µs (p10 of blocks)")
        print(f"{'knock-out':<20}{'+µs over bare':>15}{'piece costs µs':>16}{'share':>8}")
        rows = {}
        for name, value in p10.items():
            if name in ("bare", "tokentrail"):
                continue
            if name == "bare+usage":  # not a knock-out: what the SDK itself pays for the usage chunk
                rows[name] = {"overhead_us": value - bare}
                print(f"{name:<20}{value - bare:>15.1f}{'(SDK only)':>16}")
                continue
            piece = full - value
            rows[name] = {"overhead_us": value - bare, "piece_us": piece}
            print(f"{name:<20}{value - bare:>15.1f}{piece:>16.1f}{piece / (full - bare):>8.0%}")
        report["results"][kind] = {
            "bare_us": bare,
            "tokentrail_overhead_us": full - bare,
            "knockouts": rows,
            "median_us": {
                name: statistics.median(values) / 1e3 for name, values in by_name.items() if values
            },
        }
    if skipped:
        print(f"\nskipped (no longer fits the source): {', '.join(sorted(skipped))}")
    print(
        "\npiece costs = p10(tokentrail) - p10(tokentrail with the piece knocked out); the pieces overlap "
        "(no-span also removes exemplars and span attributes), so they do not add up to the total."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
