"""Python bytecodes per call, counted by tracing: where tokentrail's work goes, function by function.

instructions.py counts machine instructions (valgrind, minutes a case) and overhead.py measures time
(seconds, noisy); this counts the bytecodes the interpreter executes (``sys.settrace`` with opcode
events, a few seconds a case), split into what runs on the calling thread during the calls and what
runs when the deferred work is finished (tokentrail's recorder and ledger writer, flushed on this
thread: ``tokentrail.flush()``). It gives the same count for the same code and inputs, and names the
functions that execute them: use it to find what to make cheaper and to check that a change did.

Bytecodes are not time: C code (the SDK's parsers, SQLite, the OpenTelemetry SDK's locks) counts
nothing here, and a bytecode may cost anything from a few nanoseconds to a dict resize. What runs on
other threads (the span processor's export) is not counted.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bytecodes.py [--provider ollama] [--kind stream] [--calls 20]
        [--config bare|floor|tokentrail] [--top 25]

Prints bytecodes per call of ``--config`` (default tokentrail) and, beside it, of bare and the
floor, then the functions that execute the most of tokentrail's in each phase.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

WARM_UP_CALLS = 20
CONFIGS = ("bare", "floor", "tokentrail")


def count(provider: str, kind: str, calls: int, config: str) -> dict[tuple[str, str, str], int]:
    """(phase, file path, function) -> bytecodes executed over ``calls`` calls and the flush after them."""
    from _common import isolate_ledger
    from overhead import Bench

    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    isolate_ledger()
    bench = Bench(provider)
    function = bench.functions[(config, kind)]
    if config == "tokentrail":
        bench.instrument()
        _park_timers()
    try:
        for _ in range(WARM_UP_CALLS):
            function()
        bench.finish_pending()
        counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        phase = ["call"]

        def trace(frame: FrameType, event: str, arg: Any) -> Any:
            frame.f_trace_opcodes = True
            if event == "opcode":
                code = frame.f_code
                counts[(phase[0], code.co_filename, code.co_name)] += 1
            return trace

        sys.settrace(trace)
        try:
            for _ in range(calls):
                function()
            phase[0] = "flush"
            bench.finish_pending()
        finally:
            sys.settrace(None)
    finally:
        if config == "tokentrail":
            bench.uninstrument()
    return counts


def _park_timers() -> None:
    """Keep tokentrail's background threads from finishing calls while they are counted: the
    flush, on this thread, does it (benchmark only: private fields)."""
    from tokentrail import _setup, lifecycle

    queue = lifecycle.RECORDER._queue()
    ledger = _setup._ledger._writer  # None with the ledger off (TOKENTRAIL_LEDGER=off)
    writer = ledger._batcher if ledger is not None else None
    for batcher in (queue, writer):
        if batcher is not None:
            batcher._interval = 3600.0
            batcher._wake_at = 10**9
            batcher._wake.set()


def per_phase(counts: dict[tuple[str, str, str], int], calls: int) -> dict[str, float]:
    totals: collections.Counter[str] = collections.Counter()
    for (phase, _, _), value in counts.items():
        totals[phase] += value
    return {phase: totals[phase] / calls for phase in ("call", "flush")}


def main() -> int:
    from overhead import KINDS, PROVIDERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=PROVIDERS, default="ollama")
    parser.add_argument("--kind", choices=KINDS, default="stream")
    parser.add_argument("--calls", type=int, default=20, help="counted calls (default 20)")
    parser.add_argument("--top", type=int, default=25, help="functions listed per phase (default 25)")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    results = {config: count(args.provider, args.kind, args.calls, config) for config in CONFIGS}
    phases = {config: per_phase(results[config], args.calls) for config in CONFIGS}
    bare = phases["bare"]["call"] + phases["bare"]["flush"]
    print(f"{args.provider} {args.kind}: Python bytecodes per call (calling thread + deferred work)")
    for config in CONFIGS:
        call, flush = phases[config]["call"], phases[config]["flush"]
        extra = call + flush - bare
        line = f"  {config:10s} {call:10,.0f} + {flush:8,.0f}"
        if config != "bare":
            line += f"   over bare: {extra:+8,.0f}"
            floor_extra = phases["floor"]["call"] + phases["floor"]["flush"] - bare
            if config == "tokentrail" and floor_extra > 0:
                line += f" ({extra / floor_extra:.2f}x the floor's)"
        print(line)
    # tokentrail's own functions (the SDK's run in bare too), by module, then what else the deferred
    # work runs (the OpenTelemetry SDK's, the standard library's).
    own = os.sep + "tokentrail" + os.sep
    for phase, title in (("call", "calling thread"), ("flush", "deferred work")):
        by_function: collections.Counter[str] = collections.Counter()
        for (where, path, name), value in results["tokentrail"].items():
            if where == phase and (own in path or phase == "flush"):
                module = path.split(own, 1)[1] if own in path else os.path.basename(path)
                by_function[f"{module}:{name}"] += value
        print(f"tokentrail, {title}: the functions that run the most bytecodes a call")
        for where, value in by_function.most_common(args.top):
            print(f"  {value / args.calls:9,.0f}  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
