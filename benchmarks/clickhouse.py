"""``tokentrail report --source clickhouse`` over a large traces table: 10,000,000 stored spans.

    .venv/bin/python benchmarks/clickhouse.py                  # 10,000,000 spans
    .venv/bin/python benchmarks/clickhouse.py --spans 1000000 --keep /tmp/spans

The table is the collector ``clickhouse`` exporter's (its documented DDL, in an embedded ClickHouse:
chdb), filled by ClickHouse itself (``INSERT ... SELECT FROM numbers(N)``, a million rows at a
time) with spans shaped like tokentrail's: every attribute a string in ``SpanAttributes`` (about 25
per call span: operation, provider, models, five token counts, cost and its parts, price model,
attribution, a label), 20 services, 2,000 pipelines, 20,000 users, 12 models, over 30 days. One span
in ten is not a call (tokentrail roll-up spans and another library's spans): stored, never counted.

Then the reports, each run 5 times (median and best, in-process, the source already open), and
once each end to end through the CLI in a new process (``--url chdb:///DIR``):
``report --by pipeline``, ``report --by model``, and both over the last 7 days. The figures are
checked against a plain ``sum()`` over the call spans.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tokentrail.ledger.clickhouse import ClickHouseSource, chdb_session
from tokentrail.ledger.query import Filters
from tokentrail.testing.clickhouse_table import create_table

TABLE = "default.otel_traces"
DAYS = 30
BATCH = 1_000_000
MODELS = (
    "gpt-4o", "gpt-4o-mini", "o4-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-5-mini",
    "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "gemini-2.5-flash", "gemini-2.5-pro",
    "text-embedding-3-small",
)  # fmt: skip


def _insert_sql(first: int, count: int, end_ns: int) -> str:
    """Rows ``first`` .. ``first + count`` of the synthetic table, computed by ClickHouse."""
    models = "[" + ", ".join(f"'{m}'" for m in MODELS) + "]"
    return f"""
INSERT INTO {TABLE} (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName,
    ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage)
SELECT
    fromUnixTimestamp64Nano(toInt64({end_ns} - (cityHash64(n, 1) % ({DAYS} * 86400000000000)))),
    lower(hex(cityHash64(n, 2))) || lower(hex(cityHash64(n, 3))),
    lower(hex(cityHash64(n, 4))),
    '',
    '',
    if(call, concat('chat ', model), 'unit of work'),
    if(call OR other, 'SPAN_KIND_CLIENT', 'SPAN_KIND_INTERNAL'),
    service,
    map('service.name', service, 'telemetry.sdk.language', 'python'),
    if(other, 'another.library', 'tokentrail'),
    '0.1.0',
    if(call OR other, map(
        'gen_ai.operation.name', if(model = 'text-embedding-3-small', 'embeddings', 'chat'),
        'gen_ai.provider.name', multiIf(startsWith(model, 'claude'), 'anthropic',
                                        startsWith(model, 'gemini'), 'gcp.gemini', 'openai'),
        'gen_ai.request.model', model,
        'gen_ai.response.model', concat(model, '-2025-08-07'),
        'server.address', 'api.example.com',
        'gen_ai.request.stream', if(n % 3 = 0, 'true', 'false'),
        'gen_ai.response.id', concat('resp_', toString(n)),
        'gen_ai.response.finish_reasons', '["stop"]',
        'gen_ai.usage.input_tokens', toString(input_tokens),
        'gen_ai.usage.output_tokens', toString(output_tokens),
        'gen_ai.usage.cache_read.input_tokens', toString(intDiv(input_tokens, 3) * (n % 2)),
        'gen_ai.usage.cache_creation.input_tokens', '0',
        'gen_ai.usage.reasoning.output_tokens', toString(intDiv(output_tokens, 4)),
        'gen_ai.usage.cost.amount', toString(cost),
        'gen_ai.usage.cost.currency', 'USD',
        'gen_ai.usage.cost.source', 'local',
        'tokentrail.cost.usd_micros', toString(toInt64(cost * 1000000)),
        'tokentrail.cost.input', toString(cost * 0.7),
        'tokentrail.cost.output', toString(cost * 0.3),
        'tokentrail.price.model', model,
        'tokentrail.price.source', 'genai-prices 0.0.40',
        'tokentrail.pipeline', concat('pipeline-', toString(cityHash64(n, 5) % 2000)),
        'user.id', concat('user-', toString(cityHash64(n, 6) % 20000)),
        'gen_ai.agent.name', ['PM', 'Dev', 'QA', 'Researcher', 'Reviewer'][1 + n % 5],
        'tokentrail.task', ['plan', 'implement', 'review', 'summarize'][1 + n % 4],
        'tokentrail.label.team', ['search', 'billing', 'support'][1 + n % 3]
    ), map('tokentrail.rollup.calls', '3', 'tokentrail.rollup.cost_usd', '0.5')),
    toUInt64(200000000 + cityHash64(n, 7) % 5000000000),
    if(n % 50 = 0, 'STATUS_CODE_ERROR', 'STATUS_CODE_UNSET'),
    ''
FROM (
    SELECT
        number AS n,
        (n % 10) != 0 AS call,
        (n % 20) = 0 AS other,
        {models}[1 + cityHash64(n, 8) % {len(MODELS)}] AS model,
        concat('svc-', toString(cityHash64(n, 9) % 20)) AS service,
        toInt64(100 + cityHash64(n, 10) % 20000) AS input_tokens,
        toInt64(cityHash64(n, 11) % 2000) AS output_tokens,
        (input_tokens * 2.5 + output_tokens * 10) / 1000000 AS cost
    FROM numbers({first}, {count})
)"""


def fill(directory: Path, spans: int) -> float:
    session = chdb_session(str(directory))
    create_table(session)
    end_ns = time.time_ns()
    started = time.perf_counter()
    for first in range(0, spans, BATCH):
        session.query(_insert_sql(first, min(BATCH, spans - first), end_ns), "CSV")
        print(f"  inserted {min(first + BATCH, spans):,} spans", file=sys.stderr)
    session.query(f"OPTIMIZE TABLE {TABLE} FINAL", "CSV")  # merged parts, as a table some hours old
    return time.perf_counter() - started


def timed(function, rounds: int = 5) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--keep", metavar="DIR", help="build the table in DIR and keep it")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tokentrail-ch-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        print(f"filling {args.spans:,} spans into {directory} ...", file=sys.stderr)
        fill_s = fill(directory, args.spans)
        session = chdb_session(str(directory))
        stored = session.query(
            "SELECT sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active AND table = 'otel_traces'",
            "JSONCompact",
        )
        rows, size = json.loads(stored.bytes())["data"][0]
        source = ClickHouseSource(f"chdb://{directory}")
        week = Filters(since=time.time() - 7 * 86400)
        figures = {"spans": int(rows), "bytes_on_disk": int(size), "fill_s": round(fill_s, 1)}
        for name, by, filters in (
            ("by_pipeline", ["pipeline"], Filters()),
            ("by_model", ["model"], Filters()),
            ("by_pipeline_7d", ["pipeline"], week),
            ("by_model_7d", ["model"], week),
        ):
            median, best, result = timed(lambda by=by, filters=filters: source.report(by, filters))
            figures[name] = {
                "median_s": round(median, 3),
                "best_s": round(best, 3),
                "groups": len(result.groups),
                "calls": result.totals.calls,
            }
            scope = "(7 days) " if filters.since else "         "
            print(
                f"report --by {by[0]:<9} {scope}median {median:6.3f} s   best {best:6.3f} s   "
                f"{len(result.groups):5,} groups  {result.totals.calls:,} calls"
            )
        # The figures are the stored calls' own: a plain sum over the call spans agrees.
        check = json.loads(
            session.query(
                "SELECT count(), sum(toFloat64OrZero(SpanAttributes['gen_ai.usage.cost.amount'])) "
                f"FROM {TABLE} WHERE ScopeName = 'tokentrail' AND SpanKind = 'SPAN_KIND_CLIENT'",
                "JSONCompact",
            ).bytes()
        )["data"][0]
        totals = source.report([], Filters()).totals
        expected_cost = float(check[1])
        assert totals.calls == int(check[0]) and abs(totals.cost_usd - expected_cost) < 1e-6 * expected_cost
        source.close()
        session.close()
        # End to end, a new process each: what a user waits for.
        for by in ("pipeline", "model"):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "tokentrail.cli", "report", "--source", "clickhouse",
                 "--url", f"chdb://{directory}", "--by", by, "--format", "json",
                 "--output", str(directory / "out.json")],
                check=True,
            )  # fmt: skip
            wall = time.perf_counter() - started
            figures[f"cli_by_{by}_s"] = round(wall, 2)
            print(f"report --source clickhouse (CLI) --by {by}: {wall:.2f} s (a new process)")
        print(f"{int(rows):,} spans, {int(size) / 1e9:.2f} GB on disk, filled in {fill_s:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
