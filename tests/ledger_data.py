"""Random but realistic calls for the ledger tests, and reports computed the slow, obvious way
from the raw ``calls`` rows to hold the real reports against."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from tokentrail.ledger.writer import LedgerWriter
from tokentrail.pricing import Pricer
from tokentrail.records import CallRecord
from tokentrail.usage import Usage

MODELS = {
    "openai": ("gpt-4o", "gpt-4o-mini", "o4-mini"),
    "anthropic": ("claude-sonnet-4-5", "claude-x-unknown"),
}
AGENTS = ("PM", "Dev", "QA", None)
TASKS = ("plan", "implement", "review", None)
PHASES = ("plan", "build", "review", None)
ROLES = ("lead", "worker", None)
PIPELINES = ("pip_a", "pip_b", "pip_c", None)
USERS = ("alice", "bob", None)
TEAMS = ("search", "billing", None)

_pricer = Pricer()


def random_records(
    count: int, *, seed: int = 1, days: float = 10.0, now: float | None = None
) -> list[CallRecord]:
    rng = random.Random(seed)
    now = time.time() if now is None else now
    records = []
    for i in range(count):
        provider = rng.choice(("openai", "openai", "anthropic"))
        model = rng.choice(MODELS[provider])
        at = now - rng.random() * days * 86400
        error = rng.random() < 0.05
        usage = None
        if not error and rng.random() < 0.95:
            input_tokens = rng.randint(1, 50_000)
            output_tokens = rng.randint(0, 4_000)
            usage = Usage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=rng.choice((0, 0, min(1024, input_tokens), input_tokens // 2)),
                cache_write_tokens=rng.choice((0, 0, 0, input_tokens // 4)) if provider == "anthropic" else 0,
                reasoning_tokens=rng.randint(0, output_tokens) if model == "o4-mini" else 0,
            )
        cost = _pricer.price(usage, provider, (model,), at) if usage is not None else None
        attribution: dict[str, str] = {}
        for key, choices in (
            ("agent", AGENTS),
            ("task", TASKS),
            ("phase", PHASES),
            ("role", ROLES),
            ("pipeline", PIPELINES),
            ("user", USERS),
            ("label:team", TEAMS),
        ):
            value = rng.choice(choices)
            if value is not None:
                attribution[key] = value
        if rng.random() < 0.1:
            attribution["session"] = f"s{rng.randint(1, 3)}"
        records.append(
            CallRecord(
                start_time=at,
                duration_s=rng.random() * 3,
                operation=rng.choice(("chat", "chat", "embeddings")),
                provider=provider,
                request_model=model,
                response_model=None if error else f"{model}-2025" if rng.random() < 0.3 else model,
                server_address="api.example.com",
                stream=rng.random() < 0.5,
                usage=usage,
                cost=cost,
                time_to_first_chunk_s=rng.random() if rng.random() < 0.5 else None,
                error_type="RateLimitError" if error else None,
                trace_id=f"{rng.getrandbits(128):032x}",
                span_id=f"{rng.getrandbits(64):016x}",
                response_id=f"resp-{i}",
                incomplete=rng.random() < 0.03,
                attribution=attribution,
            )
        )
    return records


def fill(path: Path, records: list[CallRecord], *, service: str = "tests") -> None:
    writer = LedgerWriter(path, service=service, flush_interval=3600, queue_size=len(records) + 1)
    for record in records:
        writer(record)
    writer.close()
    assert writer.written == len(records), (writer.written, writer.dropped)


def raw_rows(path: Path) -> list[dict[str, Any]]:
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    rows = [dict(row) for row in connection.execute("SELECT * FROM calls")]
    connection.close()
    return rows


def key_of(row: dict[str, Any], key: str) -> str | None:
    if key == "day":
        return datetime.fromtimestamp(row["start_time"]).strftime("%Y-%m-%d")
    if key == "hour":
        return datetime.fromtimestamp(row["start_time"]).strftime("%Y-%m-%d %H:00")
    if key.startswith("label:"):
        return json.loads(row["labels"]).get(key[6:]) if row["labels"] else None
    return row[key]


def matches(row: dict[str, Any], since: float | None, until: float | None, where: dict[str, str]) -> bool:
    if since is not None and row["start_time"] < since:
        return False
    if until is not None and row["start_time"] >= until:
        return False
    for key, value in where.items():
        if key == "model":
            if value not in (row["model"], row["request_model"]):
                return False
        elif (key_of(row, key) or "") != value:
            return False
    return True


def expected_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's figures, summed straight from raw rows."""
    with_usage = [r for r in rows if r["input_tokens"] is not None]
    priced = [r for r in rows if r["cost_usd"] is not None]
    cost = sum(r["cost_usd"] for r in priced)
    tokens = sum(r["input_tokens"] + r["output_tokens"] for r in with_usage)
    return {
        "calls": len(rows),
        "calls_with_usage": len(with_usage),
        "priced_calls": len(priced),
        "unpriced_calls": len([r for r in with_usage if r["cost_usd"] is None]),
        "errors": len([r for r in rows if r["error_type"] is not None]),
        "incomplete": sum(r["incomplete"] for r in rows),
        "input_tokens": sum(r["input_tokens"] for r in with_usage),
        "output_tokens": sum(r["output_tokens"] for r in with_usage),
        "cache_read_tokens": sum(r["cache_read_tokens"] for r in with_usage),
        "cache_write_tokens": sum(r["cache_write_tokens"] for r in with_usage),
        "reasoning_tokens": sum(r["reasoning_tokens"] for r in with_usage),
        "cost_usd": cost,
        "cache_savings_usd": sum(r["cache_savings_usd"] or 0.0 for r in rows),
        "total_tokens": tokens,
        "avg_cost_per_call_usd": cost / len(priced) if priced else None,
        "avg_tokens_per_call": tokens / len(with_usage) if with_usage else None,
    }


def expected_groups(rows: list[dict[str, Any]], by: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(key_of(row, key) for key in by)].append(row)
    return {key: expected_totals(members) for key, members in groups.items()}


def assert_figures_equal(actual: dict[str, Any], expected: dict[str, Any], where: str = "") -> None:
    for name, value in expected.items():
        got = actual[name]
        if isinstance(value, float) or isinstance(got, float):
            assert got is not None and value is not None, (where, name, got, value)
            assert abs(got - value) <= 1e-9 * max(1.0, abs(value)), (where, name, got, value)
        else:
            assert got == value, (where, name, got, value)
