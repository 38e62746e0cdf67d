"""Instructions per call, counted by callgrind: a comparison that the machine's load cannot move.

On a shared 2-core VM, CPU-time figures (overhead.py) move with whatever else runs; callgrind
counts the instructions the process executes - every thread, tokentrail's recorder included -
and gives the same count for the same code, inputs and environment. Use it to compare two trees
("is the change slower?") and tokentrail with overhead.py's floor; use overhead.py for times.

Run from the repository root (valgrind from Debian's package)::

    PYTHONPATH=src python benchmarks/instructions.py [--provider openai|anthropic|...]
        [--kind chat|stream] [--calls 100] [--block N] [--floor] [--json FILE]

For each configuration (``bare``: the SDK alone; ``floor``: overhead.py's hand-written floor, with
``--floor``; ``tokentrail``: instrumented with every default on) the script runs itself under
``valgrind --tool=callgrind`` twice, with 0 and with ``--calls`` calls after the same warm-up, and
takes the difference: the instructions of those calls alone, start-up and warm-up excluded. The
deferred work (tokentrail's recorder and ledger writer, the span processor's export) is finished
after every ``--block`` calls (default: all of them, one block), inside the count, as overhead.py
finishes it after each of its blocks (20 chat calls or 4 streams). Reported: instructions per call
of each configuration, and over bare (the cost per call, whole process).

The background threads' own timers are parked in the counted runs: under callgrind the process
runs ~50 times slower, and the recorder's 0.1 s timer would otherwise cut the blocks short.

``--no-gc`` turns the cyclic garbage collector off for the counted calls (after one collection),
so the garbage they leave is collected once, at the interpreter's exit, in every run alike. Without
it, where the SDK's own collections fall moves the count by more than a call's instrumentation costs
when the SDK makes much garbage (mistralai builds pydantic models on every call: the same command
gave tokentrail 3.89x the floor with 40 chat calls and 1.89x with 80, and a negative cost for
streams). The count then leaves out what the collector would have spent on the calls' garbage
between blocks, in every configuration alike.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

WARM_UP_CALLS = 5
_COLLECTED = re.compile(r"Collected : (\d+)")
_PARKED_S = 3600.0


def _park(batcher: object) -> None:
    """Let ``batcher``'s thread wake only when asked (benchmark only: a private field)."""
    batcher._interval = _PARKED_S  # type: ignore[attr-defined]
    batcher._wake_at = 10**9  # type: ignore[attr-defined]
    batcher._wake.set()  # type: ignore[attr-defined]  # it picks the new interval up now


def _inner(provider: str, kind: str, calls: int, config: str, block: int, no_gc: bool) -> None:
    from _common import isolate_ledger
    from overhead import Bench

    isolate_ledger()
    bench = Bench(provider)
    if config == "tokentrail":
        bench.instrument()
    call = bench.functions[(config, kind)]
    for _ in range(WARM_UP_CALLS):
        call()
    bench.finish_pending()
    if config == "tokentrail":
        from tokentrail import _setup, lifecycle

        _park(lifecycle.RECORDER._queue())
        writer = _setup._ledger._writer
        if writer is not None:
            _park(writer._batcher)
        time.sleep(0.5)  # (both threads back asleep, on the long interval)
    if no_gc:
        gc.collect()
        gc.disable()
    left = calls
    while left:
        for _ in range(min(block, left)):
            call()
        left -= min(block, left)
        bench.finish_pending()


def _count(provider: str, kind: str, calls: int, config: str, block: int, no_gc: bool) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={scratch}/callgrind.out",
            sys.executable,
            __file__,
            "--inner",
            "--provider",
            provider,
            "--kind",
            kind,
            "--calls",
            str(calls),
            "--config",
            config,
            "--block",
            str(block),
            *(["--no-gc"] if no_gc else []),
        ]
        env = {**os.environ, "TOKENTRAIL_WARM_PRICES": "0", "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"callgrind run failed:\n{done.stderr[-2000:]}")
        found = _COLLECTED.findall(done.stderr)
        if not found:
            raise SystemExit(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]}")
        return int(found[-1])


def main() -> None:
    from overhead import PROVIDERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="openai", choices=PROVIDERS)
    parser.add_argument("--kind", default="chat", choices=["chat", "stream"])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument(
        "--block", type=int, default=0, help="calls between two finishes of the deferred work (default: all)"
    )
    parser.add_argument("--floor", action="store_true", help="also count overhead.py's floor")
    parser.add_argument(
        "--no-gc", action="store_true", help="garbage collection off in the counted calls (collected at exit)"
    )
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    block = args.block if args.block > 0 else max(1, args.calls)
    if args.inner:
        _inner(args.provider, args.kind, args.calls, args.config, block, args.no_gc)
        return
    configs = ("bare", "floor", "tokentrail") if args.floor else ("bare", "tokentrail")
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # one valgrind per core
        counts = {
            (config, calls): pool.submit(_count, args.provider, args.kind, calls, config, block, args.no_gc)
            for config in configs
            for calls in (0, args.calls)
        }
        found = {key: future.result() for key, future in counts.items()}
    per_call = {config: (found[(config, args.calls)] - found[(config, 0)]) / args.calls for config in configs}
    over = {config: per_call[config] - per_call["bare"] for config in configs if config != "bare"}
    result = {
        "provider": args.provider,
        "kind": args.kind,
        "calls": args.calls,
        "block": block,
        "gc": "off in the counted calls" if args.no_gc else "on",
        "instructions_per_call": per_call,
        "over_bare_per_call": over,
        "tokentrail_overhead_per_call": over["tokentrail"],
    }
    gc_note = ", gc off" if args.no_gc else ""
    line = f"{args.provider} {args.kind}, blocks of {block}{gc_note}: "
    line += f"bare {per_call['bare']:,.0f} instructions/call"
    for config, extra in over.items():
        line += f", {config} +{extra:,.0f}"
    if "floor" in over and over["floor"] > 0:
        result["x_floor"] = over["tokentrail"] / over["floor"]
        line += f" ({result['x_floor']:.2f}x the floor's)"
    print(line + " (whole process)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
