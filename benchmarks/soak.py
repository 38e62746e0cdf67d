"""Memory soak: many instrumented calls, a third of them streams the application abandons half-way.

Run from the repository root::

    PYTHONPATH=src python benchmarks/soak.py [--calls 100000] [--sample-every 1000]
        [--stream-chunks 20] [--json FILE]

Every call goes through the real OpenAI SDK to an in-process ``httpx2.MockTransport`` (the fake
API of ``_common.py``), instrumented by ``tokentrail.instrument()`` onto real SDK providers: a
``TracerProvider`` with a ``BatchSpanProcessor`` over an exporter that counts spans and drops them,
and a ``MeterProvider`` whose reader is never collected. The local ledger is on
(``TOKENTRAIL_LEDGER`` points at a file in a temporary directory) and every call runs inside
``tokentrail.attribute(agent=..., task=...)`` with a bounded set of values (4 agents x 5 tasks).

Calls cycle through three kinds: a plain chat call; a stream read to the end; a stream the
application stops iterating half-way and drops (no ``close()``): tokentrail must still end its
span (marked incomplete) when the stream object is collected.

Measured: resident memory (``/proc/self/statm``) and live Python memory blocks
(``sys.getallocatedblocks()``) every ``--sample-every`` calls. After a warm-up (the first 10% of
the calls: imports, caches, the allocator's arenas), a least-squares line through the samples gives
the growth per 10,000 calls, also over the second half alone; flat memory is a slope near zero (a
leak of one small object per call would show as hundreds of KiB, and 10,000 blocks, per 10,000
calls). RSS also holds what no Python object owns: the ledger connection's SQLite page cache
(up to 16 MiB, ``PRAGMA cache_size`` in ``ledger/_schema.py``) fills as the ledger file grows, and
the allocator keeps the high-water mark of short-lived backlogs; the block count does not.

Checked at the end, after ``tokentrail.flush()`` and a forced garbage collection: every span that
started ended exactly once (a ``SpanProcessor`` counts ``on_start`` and ``on_end`` by span id, and a
log handler counts the SDK's "Calling end() on an ended span" warnings), one span per call, and the
ledger holds exactly one row per call (the abandoned streams' rows marked incomplete). The exit
code is 1 if any of that fails, so the script can gate a CI job.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CHAT_REQUEST, FakeOpenAI, isolate_ledger, make_providers

AGENTS = ("planner", "coder", "reviewer", "qa")
TASKS = ("summarise", "refund", "triage", "translate", "classify")
KINDS = ("chat", "stream", "abandoned")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") / 1024


def rss_kib() -> float:
    """Resident set size of this process in KiB (second field of /proc/self/statm, in pages)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_KIB


def slope_per_10k(samples: list[tuple[int, float]]) -> float:
    """Least-squares slope of (calls, value) samples, per 10,000 calls."""
    count = len(samples)
    if count < 2:
        return float("nan")
    mean_x = sum(x for x, _ in samples) / count
    mean_y = sum(y for _, y in samples) / count
    spread = sum((x - mean_x) ** 2 for x, _ in samples)
    if spread == 0:
        return float("nan")
    return sum((x - mean_x) * (y - mean_y) for x, y in samples) / spread * 10_000


class SpanCounter(SpanProcessor):
    """A ``SpanProcessor`` that keeps the ids of the spans open right now, and counts.

    Only open spans are held (by id), so it does not grow with the run. An ``on_end`` for a span
    that is not open is an end without a start, or a second end.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open: set[tuple[int, int]] = set()
        self.started = 0
        self.ended = 0
        self.unmatched_ends = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        context = span.get_span_context()
        with self._lock:
            self.started += 1
            self.open.add((context.trace_id, context.span_id))

    def on_end(self, span: Any) -> None:
        context = span.get_span_context()
        with self._lock:
            self.ended += 1
            try:
                self.open.remove((context.trace_id, context.span_id))
            except KeyError:
                self.unmatched_ends += 1


class EndedTwice(logging.Handler):
    """Counts the SDK's warning for ``end()`` on a span that has ended (it calls no processor then)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "on an ended span" in record.getMessage():
            self.count += 1


@dataclass
class Soak:
    calls: int
    sample_every: int
    stream_chunks: int
    quiet: bool = False
    samples: list[tuple[int, float]] = field(default_factory=list)  # (calls, RSS KiB)
    blocks: list[tuple[int, float]] = field(default_factory=list)  # (calls, live Python memory blocks)
    made: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def run(self) -> dict[str, Any]:
        import tokentrail
        from tokentrail import ledger as tokentrail_ledger

        logging.getLogger("opentelemetry").setLevel(logging.WARNING)
        ended_twice = EndedTwice()
        logging.getLogger("opentelemetry.sdk.trace").addHandler(ended_twice)
        ledger_path = isolate_ledger()
        if ledger_path.strip().lower() in ("off", "0", "false", ""):
            raise SystemExit("soak.py checks the ledger: unset TOKENTRAIL_LEDGER or point it at a file")
        providers = make_providers()
        spans = SpanCounter()
        providers.tracer_provider.add_span_processor(spans)
        fake = FakeOpenAI(stream_chunks=self.stream_chunks)
        client = fake.client()
        create = client.chat.completions.create
        half = self.stream_chunks // 2
        tokentrail.instrument(
            tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
        )
        warmup = self.calls // 10
        rss_start = rss_kib()
        started = time.perf_counter()
        try:
            for number in range(self.calls):
                kind = KINDS[number % 3]
                with tokentrail.attribute(agent=AGENTS[number % 4], task=TASKS[number % 5]):
                    if kind == "chat":
                        create(**CHAT_REQUEST)
                    elif kind == "stream":
                        for _ in create(**CHAT_REQUEST, stream=True):
                            pass
                    else:  # the application reads half the stream, then drops it without closing it
                        stream = create(**CHAT_REQUEST, stream=True)
                        chunks = iter(stream)
                        for _ in range(half):
                            next(chunks)
                        del chunks, stream
                self.made[kind] += 1
                done = number + 1
                if done % self.sample_every == 0 or done == self.calls:
                    self.samples.append((done, rss_kib()))
                    self.blocks.append((done, sys.getallocatedblocks()))
                    if not self.quiet:
                        print(
                            f"\r{done:,}/{self.calls:,} calls, RSS {self.samples[-1][1] / 1024:.1f} MiB",
                            end="",
                            file=sys.stderr,
                            flush=True,
                        )
            elapsed = time.perf_counter() - started
            if not self.quiet:
                print(file=sys.stderr)
            rss_end = rss_kib()
            # Abandoned streams in reference cycles end when the collector finds them; then
            # everything queued (metrics, span ends, ledger rows) is written out.
            gc.collect()
            tokentrail.flush()
            providers.tracer_provider.force_flush()
            writer = tokentrail_ledger.active_writer()
            written = writer.written if writer is not None else None
            dropped = writer.dropped if writer is not None else None
        finally:
            tokentrail.uninstrument()  # flushes and closes the ledger writer
            providers.shutdown()
            logging.getLogger("opentelemetry.sdk.trace").removeHandler(ended_twice)
        rows = ledger_rows(ledger_path)
        ledger_bytes = sum(
            os.path.getsize(ledger_path + suffix)
            for suffix in ("", "-wal")
            if os.path.exists(ledger_path + suffix)
        )
        after_warmup = [sample for sample in self.samples if sample[0] >= warmup]
        second_half = [sample for sample in self.samples if sample[0] >= self.calls // 2]
        blocks_after_warmup = [sample for sample in self.blocks if sample[0] >= warmup]
        return {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "calls": self.calls,
            "made": dict(self.made),
            "stream_chunks": self.stream_chunks,
            "abandoned_after_chunks": half,
            "elapsed_s": elapsed,
            "rss_kib": {
                "start": rss_start,
                "after_warmup": after_warmup[0][1] if after_warmup else None,
                "end": rss_end,
                "peak": max(kib for _, kib in self.samples) if self.samples else None,
            },
            "warmup_calls": warmup,
            "slope_kib_per_10k_calls": slope_per_10k(after_warmup),
            "slope_second_half_kib_per_10k_calls": slope_per_10k(second_half),
            "samples_after_warmup": len(after_warmup),
            "python_blocks": {
                "after_warmup": blocks_after_warmup[0][1] if blocks_after_warmup else None,
                "end": self.blocks[-1][1] if self.blocks else None,
                "slope_per_10k_calls": slope_per_10k(blocks_after_warmup),
            },
            "samples": self.samples,
            "block_samples": self.blocks,
            "spans": {
                "started": spans.started,
                "ended": spans.ended,
                "left_open": len(spans.open),
                "unmatched_ends": spans.unmatched_ends,
                "ended_twice_warnings": ended_twice.count,
                "exported": providers.exporter.exported,
            },
            "ledger": {
                "path": ledger_path,
                **rows,
                "file_bytes": ledger_bytes,
                "writer_written": written,
                "writer_dropped": dropped,
            },
            "internal_errors": sys.modules["tokentrail._safety"].errors_total,
        }


def ledger_rows(path: str) -> dict[str, int]:
    """Rows in the ledger's calls table: all, streamed, marked incomplete."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        total, streamed, incomplete = connection.execute(
            "SELECT count(*), coalesce(sum(stream), 0), coalesce(sum(incomplete), 0) FROM calls"
        ).fetchone()
    finally:
        connection.close()
    return {"rows": total, "stream_rows": streamed, "incomplete_rows": incomplete}


def problems(report: dict[str, Any]) -> list[str]:
    """What the run got wrong: spans not ended once, calls missing from the spans or the ledger."""
    spans, ledger, made = report["spans"], report["ledger"], report["made"]
    found = []
    if spans["left_open"]:
        found.append(f"{spans['left_open']} span(s) started and never ended")
    if spans["unmatched_ends"] or spans["ended_twice_warnings"]:
        found.append(
            f"spans ended more than once: {spans['unmatched_ends']} unmatched on_end, "
            f"{spans['ended_twice_warnings']} 'end() on an ended span' warnings"
        )
    if spans["started"] != report["calls"]:
        found.append(f"{spans['started']} spans started for {report['calls']} calls")
    if ledger["rows"] != report["calls"]:
        found.append(f"the ledger holds {ledger['rows']} rows for {report['calls']} calls")
    if ledger["stream_rows"] != made["stream"] + made["abandoned"]:
        found.append(f"{ledger['stream_rows']} stream rows for {made['stream'] + made['abandoned']} streams")
    if ledger["incomplete_rows"] != made["abandoned"]:
        found.append(f"{ledger['incomplete_rows']} incomplete rows for {made['abandoned']} abandoned streams")
    return found


def summary(report: dict[str, Any]) -> str:
    rss, spans, ledger, made = report["rss_kib"], report["spans"], report["ledger"], report["made"]
    blocks = report["python_blocks"]
    mib = 1 / 1024
    lines = [
        f"tokentrail memory soak - {report['date']} - {report['calls']:,} calls in "
        f"{report['elapsed_s']:.0f} s ({made['chat']:,} chat, {made['stream']:,} streams read to the end, "
        f"{made['abandoned']:,} abandoned after {report['abandoned_after_chunks']} of "
        f"{report['stream_chunks']} chunks); ledger on, attribution set",
        "",
        f"RSS: start {rss['start'] * mib:.1f} MiB, after warm-up ({report['warmup_calls']:,} calls) "
        f"{(rss['after_warmup'] or 0) * mib:.1f} MiB, end {rss['end'] * mib:.1f} MiB, "
        f"peak {(rss['peak'] or 0) * mib:.1f} MiB",
        f"slope after warm-up: {report['slope_kib_per_10k_calls']:+.1f} KiB per 10,000 calls "
        f"(least squares over {report['samples_after_warmup']} samples); "
        f"over the second half: {report['slope_second_half_kib_per_10k_calls']:+.1f}",
        f"live Python memory blocks (sys.getallocatedblocks): {blocks['after_warmup']:,} after warm-up, "
        f"{blocks['end']:,} at the end, slope {blocks['slope_per_10k_calls']:+.0f} per 10,000 calls",
        f"spans: {spans['started']:,} started, {spans['ended']:,} ended, {spans['left_open']} left open, "
        f"{spans['unmatched_ends'] + spans['ended_twice_warnings']} ended twice; "
        f"{spans['exported']:,} exported",
        f"ledger: {ledger['rows']:,} rows ({ledger['stream_rows']:,} streams, "
        f"{ledger['incomplete_rows']:,} incomplete) for {report['calls']:,} calls; "
        f"writer wrote {ledger['writer_written']}, dropped {ledger['writer_dropped']}; "
        f"file {ledger['file_bytes'] / 2**20:.1f} MiB (its SQLite page cache grows with it, up to 16 MiB)",
        f"tokentrail internal errors: {report['internal_errors']}",
    ]
    found = problems(report)
    lines.append("")
    lines.append(
        "FAILED: " + "; ".join(found) if found else "OK: every span ended once, every call in the ledger"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000, help="instrumented calls (default 100000)")
    parser.add_argument(
        "--sample-every", type=int, default=1000, help="calls between RSS samples (default 1000)"
    )
    parser.add_argument(
        "--stream-chunks", type=int, default=20, help="chunks per stream, at least 4 (default 20)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report (with every sample) as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.calls < 3 or args.sample_every < 1 or args.stream_chunks < 4:
        parser.error("--calls must be at least 3, --sample-every at least 1, --stream-chunks at least 4")
    # Load the price catalogue on the first call, not on a thread racing the first samples.
    os.environ.setdefault("TOKENTRAIL_WARM_PRICES", "0")
    report = Soak(args.calls, args.sample_every, args.stream_chunks, args.quiet).run()
    print(summary(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 1 if problems(report) else 0


if __name__ == "__main__":
    raise SystemExit(main())
