"""Instructions per call, counted by callgrind: a comparison that the machine's load cannot move.

On a shared 2-core VM, CPU-time figures (overhead.py) move with whatever else runs; callgrind
counts the instructions the process executes - every thread, tokentrail's recorder included -
and gives the same count for the same code, inputs and environment. Use it to compare two trees
("is the change slower?"); use overhead.py for absolute times.

Run from the repository root (valgrind from Debian's package)::

    PYTHONPATH=src python benchmarks/instructions.py [--provider openai|anthropic|gemini]
        [--kind chat|stream] [--calls 100] [--json FILE]

For each configuration (``bare``: the SDK alone; ``tokentrail``: instrumented with every default on)
the script runs itself under ``valgrind --tool=callgrind`` twice, with 0 and with ``--calls`` calls
after the same warm-up, and takes the difference: the instructions of those calls alone, start-up
and warm-up excluded. tokentrail's work on its recorder thread is finished (``tokentrail.flush()``)
inside each run, so it counts. Reported: instructions per call, bare and tokentrail, and the
difference (tokentrail's cost per call, whole process).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

WARM_UP_CALLS = 5
_COLLECTED = re.compile(r"Collected : (\d+)")


def _inner(provider: str, kind: str, calls: int, instrumented: bool) -> None:
    from _common import isolate_ledger, make_providers
    from overhead import workload

    isolate_ledger()
    providers = make_providers()
    work = workload(provider, 50, providers)
    if instrumented:
        import tokentrail

        tokentrail.instrument(
            tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
        )
    call = work.chat if kind == "chat" else (lambda: list(work.stream()))

    def finish() -> None:
        if instrumented:
            tokentrail.flush()
        providers.tracer_provider.force_flush()

    for _ in range(WARM_UP_CALLS):
        call()
    finish()
    for _ in range(calls):
        call()
    finish()


def _count(provider: str, kind: str, calls: int, instrumented: bool) -> int:
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
        ]
        if instrumented:
            command.append("--instrumented")
        env = {**os.environ, "TOKENTRAIL_WARM_PRICES": "0", "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"callgrind run failed:\n{done.stderr[-2000:]}")
        found = _COLLECTED.findall(done.stderr)
        if not found:
            raise SystemExit(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]}")
        return int(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="openai", choices=["openai", "anthropic", "gemini"])
    parser.add_argument("--kind", default="chat", choices=["chat", "stream"])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--instrumented", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        _inner(args.provider, args.kind, args.calls, args.instrumented)
        return
    per_call = {}
    for name, instrumented in (("bare", False), ("tokentrail", True)):
        empty = _count(args.provider, args.kind, 0, instrumented)
        full = _count(args.provider, args.kind, args.calls, instrumented)
        per_call[name] = (full - empty) / args.calls
    result = {
        "provider": args.provider,
        "kind": args.kind,
        "calls": args.calls,
        "instructions_per_call": per_call,
        "tokentrail_overhead_per_call": per_call["tokentrail"] - per_call["bare"],
    }
    print(
        f"{args.provider} {args.kind}: bare {per_call['bare']:,.0f} instructions/call, "
        f"tokentrail {per_call['tokentrail']:,.0f} "
        f"(+{result['tokentrail_overhead_per_call']:,.0f}, whole process)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
