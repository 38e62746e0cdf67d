"""Ledger benchmarks: the sink's cost on the calling thread, the writer's ingestion rate, and
reports over a million calls.

    .venv/bin/python benchmarks/ledger.py            # 1,000,000 calls for the report figures
    .venv/bin/python benchmarks/ledger.py --calls 200000

Everything runs in a temporary directory; nothing touches the user's ledger.

* **sink**: what ``LedgerWriter.__call__`` costs the application per call (it only queues).
* **ingestion**: CallRecords submitted as fast as one thread can, written by the background
  writer (rows + rollup, one transaction per flush), until the last row is committed:
  calls/s end to end. Then a paced run at 50,000 calls/s for 3 s with the default queue must
  drop nothing.
* **report**: ``tokentrail report`` queries (totals, breakdowns, nested, filtered) over the
  ledger filled by the ingestion run, through the rollup, and the same through raw rows.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tokentrail.ledger import open_ledger
from tokentrail.ledger.query import Filters, report
from tokentrail.ledger.writer import LedgerWriter
from tokentrail.pricing import Pricer
from tokentrail.records import CallRecord
from tokentrail.usage import Usage

MODELS = ("gpt-4o", "gpt-4o-mini", "o4-mini", "gpt-4.1", "gpt-4.1-mini")
AGENTS = ("PM", "Dev", "QA", "Researcher", "Summarizer", "Reviewer")
TASKS = ("plan", "implement", "review", "summarize")
PHASES = ("plan", "build", "review")


def make_records(count: int, days: float, seed: int = 7) -> list[CallRecord]:
    """Realistic calls spread over ``days`` up to now, priced by the real catalogue: pipeline runs
    of 50 calls within a few minutes, each run for one user, its agents working in
    ``attribute()`` blocks (whose calls share one attribution mapping, as in an application)."""
    rng = random.Random(seed)
    pricer = Pricer()
    now = time.time()
    records = []
    run_start = 0.0
    attribution: dict[str, str] = {}
    for i in range(count):
        if i % 50 == 0:
            run_start = now - rng.random() * days * 86400
        if i % 10 == 0:  # a new agent block within the run
            attribution = {
                "pipeline": f"pip_{i // 50:06d}",
                "user": f"user{(i // 50) % 200}",
                "agent": AGENTS[(i // 10) % len(AGENTS)],
                "task": TASKS[(i // 10) % len(TASKS)],
                "phase": PHASES[(i // 10) % len(PHASES)],
                "label:team": ("search", "billing", "growth")[(i // 50) % 3],
            }
        model = MODELS[(i // 10) % len(MODELS)]
        usage = Usage(
            input_tokens=rng.randint(200, 20_000),
            output_tokens=rng.randint(10, 2_000),
            cache_read_tokens=rng.choice((0, 0, 128, 1024)),
        )
        at = min(now, run_start + (i % 50) * 6 + rng.random() * 6)
        records.append(
            CallRecord(
                start_time=at,
                duration_s=rng.random() * 5,
                operation="chat",
                provider="openai",
                request_model=model,
                response_model=model,
                server_address="api.openai.com",
                stream=bool(i % 2),
                usage=usage,
                cost=pricer.price(usage, "openai", (model,), at),
                time_to_first_chunk_s=0.2 if i % 2 else None,
                trace_id=f"{rng.getrandbits(128):032x}",
                span_id=f"{rng.getrandbits(64):016x}",
                response_id=f"chatcmpl-{i}",
                attribution=attribution,
            )
        )
    records.sort(key=lambda record: record.start_time)  # calls arrive in time order
    return records


def bench_sink_and_writer(path: Path, records: list[CallRecord]) -> tuple[float, float, float]:
    """(ns per call on the calling thread, calls/s the writer persists, calls per CPU-second).

    The writer thread is kept idle while the calls are queued (so the sink is timed alone), then
    one flush writes them all: rows and rollup, committed, in transactions of 50,000 calls."""
    writer = LedgerWriter(path, queue_size=len(records) + 1, flush_interval=3600, batch_size=len(records) + 1)
    start = time.perf_counter_ns()
    for record in records:
        writer(record)
    per_call = (time.perf_counter_ns() - start) / len(records)
    wall, cpu = time.perf_counter(), time.process_time()
    writer.flush()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert writer.written == len(records) and writer.dropped == 0
    writer.close()
    return per_call, len(records) / wall, len(records) / cpu


def bench_concurrent(path: Path, records: list[CallRecord]) -> tuple[float, int]:
    """Calls submitted as fast as one thread can while the writer thread writes: calls/s until
    the last one is committed."""
    writer = LedgerWriter(path, queue_size=len(records) + 1)
    start = time.perf_counter()
    for record in records:
        writer(record)
    writer.flush()
    elapsed = time.perf_counter() - start
    writer.close()
    return len(records) / elapsed, writer.dropped


def bench_paced(path: Path, records: list[CallRecord], rate: int, seconds: float) -> tuple[int, int, float]:
    writer = LedgerWriter(path)  # default queue and flush interval
    total = int(rate * seconds)
    step = rate // 100  # 100 bursts per second
    start = time.perf_counter()
    sent = 0
    while sent < total:
        for record in records[sent % len(records) : sent % len(records) + step]:
            writer(record)
        sent += step
        pause = start + sent / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    achieved = sent / (time.perf_counter() - start)
    writer.close()
    return writer.written, writer.dropped, achieved


def timed(function, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"making {args.calls:,} calls over {args.days:g} days ...", file=sys.stderr)
        records = make_records(args.calls, args.days)
        ledger = Path(tmp) / "ledger.sqlite"
        per_call, rate, cpu_rate = bench_sink_and_writer(ledger, records)
        print(f"sink (calling thread): {per_call:,.0f} ns per call")
        print(f"writer: {rate:,.0f} calls/s persisted ({cpu_rate:,.0f} calls per CPU-second)")
        sample = records[: min(len(records), 200_000)]
        rate, dropped = bench_concurrent(Path(tmp) / "concurrent.sqlite", sample)
        print(
            f"submit + write concurrently: {rate:,.0f} calls/s end to end "
            f"({len(sample):,} calls, {dropped} dropped)"
        )
        written, dropped, achieved = bench_paced(Path(tmp) / "paced.sqlite", records, 50_000, 3.0)
        print(
            f"paced at 50,000 calls/s for 3 s, default queue: {written:,} written, {dropped} dropped "
            f"(achieved {achieved:,.0f} calls/s)"
        )
        print(f"ledger: {ledger.stat().st_size / 1e6:,.0f} MB for {args.calls:,} calls")
        connection = open_ledger(ledger)
        week = Filters(since=time.time() - 7 * 86400)
        cases = [
            ("totals", (), Filters()),
            ("--by agent", ("agent",), Filters()),
            ("--by model", ("model",), Filters()),
            ("--by day", ("day",), Filters()),
            ("--by agent --by task", ("agent", "task"), Filters()),
            ("--by label:team --by model", ("label:team", "model"), Filters()),
            ("--by pipeline (20,000 pipelines)", ("pipeline",), Filters()),
            ("--since 7d --by agent", ("agent",), week),
            ("--pipeline pip_000042", (), Filters(pipeline="pip_000042")),
        ]
        print(f"\nreport over {args.calls:,} calls      rollup     raw rows")
        for name, by, filters in cases:
            fast = timed(lambda by=by, filters=filters: report(connection, by, filters))
            slow = timed(lambda by=by, filters=filters: report(connection, by, filters, use_rollup=False), 1)
            print(f"  {name:<34} {fast * 1000:>7.0f} ms {slow * 1000:>9.0f} ms")
        rollup_rows = connection.execute("SELECT COUNT(*) FROM rollup").fetchone()[0]
        print(f"rollup rows: {rollup_rows:,}")
        connection.close()
        # The command itself, start-up included, as a user runs it.
        commands = (
            ["--by", "agent"],
            ["--by", "day", "--by", "model"],
            ["--since", "7d", "--by", "label:team"],
        )
        for argv in commands:
            command = [sys.executable, "-m", "tokentrail.cli", "report", "--ledger", str(ledger), *argv]
            elapsed = timed(lambda command=command: subprocess.run(command, check=True, capture_output=True))
            print(f"  tokentrail report {' '.join(argv):<30} {elapsed * 1000:>7.0f} ms (whole command)")
    print(f"(report times: best of 3; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
