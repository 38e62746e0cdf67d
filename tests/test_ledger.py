"""The local ledger: what a row holds, the writer thread, several writers, crashes, bad files,
schema versions, the span exporter, the call log, and reports equal to the sums of raw rows."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import tokentrail
from ledger_data import (
    assert_figures_equal,
    expected_groups,
    expected_totals,
    fill,
    matches,
    random_records,
    raw_rows,
)
from openai_wire import MODEL, SNAPSHOT, FakeOpenAI
from tokentrail import _safety, ledger
from tokentrail import semconv as sc
from tokentrail.config import Settings, default_ledger_path
from tokentrail.ledger import _schema
from tokentrail.ledger.query import Filters, report, top_groups
from tokentrail.ledger.writer import LedgerWriter

MESSAGES = [{"role": "user", "content": "hi"}]
SRC = str(Path(__file__).parent.parent / "src")


@pytest.fixture
def ledger_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ledger path for instrument() (through TOKENTRAIL_LEDGER); request it before ``recorded``."""
    path = tmp_path / "data" / "ledger.sqlite"
    monkeypatch.setenv("TOKENTRAIL_LEDGER", str(path))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "ledger-tests")
    return path


def rows(path: Path) -> list[dict]:
    tokentrail.flush()  # the recorder hands calls to the ledger, which writes them
    return raw_rows(path)


# --- what a row holds -------------------------------------------------------------------------------


def test_every_call_becomes_one_row_with_every_field(ledger_file, recorded):
    client = FakeOpenAI().client()
    with tokentrail.attribute(
        pipeline="pip_1",
        phase="qa",
        role="reviewer",
        agent="QA",
        agent_id="qa-7",
        task="review",
        user="u1",
        session="s1",
        conversation="c1",
        labels={"team": "search", "tier": "gold"},
    ):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    (plain, streamed) = rows(ledger_file)
    spans = recorded.spans()
    for row, span, call in zip((plain, streamed), spans, recorded.calls, strict=True):
        assert row["trace_id"] == format(span.context.trace_id, "032x")
        assert row["span_id"] == format(span.context.span_id, "016x")
        assert row["start_time"] == call.start_time and row["duration_s"] == call.duration_s
        assert row["service"] == "ledger-tests"
        assert (row["provider"], row["operation"]) == ("openai", "chat")
        assert (row["request_model"], row["response_model"], row["model"]) == (MODEL, SNAPSHOT, SNAPSHOT)
        assert row["server_address"] == "api.openai.com"
        assert row["response_id"] == "chatcmpl-abc123"
        assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (1200, 30, 1024)
        for name in (
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "reasoning_tokens",
            "input_audio_tokens",
            "output_audio_tokens",
            "input_image_tokens",
            "web_searches",
        ):
            assert row[name] == 0
        attributes = span.attributes
        assert row["cost_usd"] == attributes[sc.COST_AMOUNT] == call.cost.total
        assert row["cost_input_usd"] == attributes[sc.COST_INPUT]
        assert row["cost_output_usd"] == attributes[sc.COST_OUTPUT]
        assert row["cost_source"] == "local"
        assert row["price_model"] == attributes[sc.PRICE_MODEL]
        assert row["price_source"] == call.cost.price_source and row["price_source"].startswith(
            "genai-prices "
        )
        # gpt-4o-mini: $0.15 per million input tokens, $0.075 cached
        assert (row["input_rate_mtok"], row["cache_read_rate_mtok"]) == (0.15, 0.075)
        assert math.isclose(row["cache_savings_usd"], 1024 * (0.15 - 0.075) / 1e6, rel_tol=1e-12)
        assert row["error_type"] is None and row["incomplete"] == 0
        assert (row["pipeline"], row["phase"], row["role"], row["agent"], row["agent_id"]) == (
            "pip_1",
            "qa",
            "reviewer",
            "QA",
            "qa-7",
        )
        assert (row["task"], row["user"], row["session"], row["conversation"]) == ("review", "u1", "s1", "c1")
        assert json.loads(row["labels"]) == {"team": "search", "tier": "gold"}
    assert plain["stream"] == 0 and plain["ttfc_s"] is None
    assert streamed["stream"] == 1 and streamed["ttfc_s"] == recorded.calls[1].time_to_first_chunk_s > 0


def test_failed_and_incomplete_calls(ledger_file, recorded):
    failing = FakeOpenAI(status=429)
    with pytest.raises(Exception, match="Rate limit"):
        failing.client().chat.completions.create(model=MODEL, messages=MESSAGES)
    stream = FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    failed, cut = rows(ledger_file)
    assert failed["error_type"] == "RateLimitError"
    assert failed["input_tokens"] is None and failed["cost_usd"] is None and failed["labels"] is None
    assert cut["incomplete"] == 1 and cut["input_tokens"] is None


def test_service_name_comes_from_the_tracer_provider_resource(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    tokentrail.instrument(
        tracer_provider=provider, meter_provider=MeterProvider(), ledger=tmp_path / "l.sqlite"
    )
    try:
        FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    finally:
        tokentrail.uninstrument()  # flushes
    assert [row["service"] for row in raw_rows(tmp_path / "l.sqlite")] == ["checkout"]
    # Without a named resource: OTEL_SERVICE_NAME, else the script's name.
    from tokentrail.ledger._rows import service_name

    assert service_name(TracerProvider()) == "from-env"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setattr(sys, "argv", ["/srv/app/worker.py"])
    assert service_name(TracerProvider()) == "worker"


def test_file_and_directory_are_private(tmp_path):
    path = tmp_path / "new" / "dir" / "ledger.sqlite"
    fill(path, random_records(3))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    connection = _schema.open_ledger(path)  # WAL and shared-memory files follow the database's mode
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        assert stat.S_IMODE(side.stat().st_mode) == 0o600, suffix
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


# --- where the ledger is, and when it is on ------------------------------------------------------------


def test_default_location_and_switches(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TOKENTRAIL_LEDGER")
    assert default_ledger_path() == tmp_path / "xdg" / "tokentrail" / "ledger.sqlite"
    assert Settings.resolve().ledger == default_ledger_path()
    assert Settings.resolve(environ={"HOME": "/home/u"}).ledger == Path(
        "/home/u/.local/share/tokentrail/ledger.sqlite"
    )
    for off in ("off", "OFF", "false", "0", "none"):
        assert Settings.resolve(environ={"TOKENTRAIL_LEDGER": off}).ledger is None
    assert Settings.resolve(ledger=False).ledger is None
    assert Settings.resolve(ledger="~/x.sqlite").ledger == Path.home() / "x.sqlite"
    assert Settings.resolve(
        ledger=True, environ={"TOKENTRAIL_LEDGER": "off", "XDG_DATA_HOME": "/d"}
    ).ledger == Path("/d/tokentrail/ledger.sqlite")
    with pytest.raises(tokentrail.ConfigError, match="is a directory"):
        Settings.resolve(ledger=tmp_path)


def test_on_by_default_at_the_per_user_location(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TOKENTRAIL_LEDGER")
    tokentrail.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    try:
        FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    finally:
        tokentrail.uninstrument()
    assert len(raw_rows(tmp_path / "xdg" / "tokentrail" / "ledger.sqlite")) == 1


def test_off_means_no_writer_and_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    tokentrail.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider())  # env: off
    try:
        assert ledger.active_writer() is None
        tokentrail.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider(), ledger=False)
        FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
        assert ledger.active_writer() is None
    finally:
        tokentrail.uninstrument()
    assert list(tmp_path.iterdir()) == []


def test_repeated_instrument_keeps_one_writer_per_path(tmp_path):
    first = tmp_path / "a.sqlite"
    try:
        tokentrail.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider(), ledger=first)
        writer = ledger.active_writer()
        tokentrail.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider(), ledger=first)
        assert ledger.active_writer() is writer
        tokentrail.instrument(
            tracer_provider=TracerProvider(), meter_provider=MeterProvider(), ledger=tmp_path / "b.sqlite"
        )
        assert ledger.active_writer() is not writer and ledger.active_writer().path == tmp_path / "b.sqlite"
        FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    finally:
        tokentrail.uninstrument()
    assert ledger.active_writer() is None
    assert len(raw_rows(tmp_path / "b.sqlite")) == 1


# --- the writer ---------------------------------------------------------------------------------------


def test_sink_only_queues_and_the_thread_writes_within_the_interval(tmp_path):
    writer = LedgerWriter(tmp_path / "l.sqlite", flush_interval=0.05)
    try:
        records = random_records(50)
        for record in records:
            writer(record)
        deadline = time.monotonic() + 10
        while writer.written < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.written == 50 and writer.pending == 0
    finally:
        writer.close()
    assert len(raw_rows(tmp_path / "l.sqlite")) == 50


def test_full_queue_drops_counts_and_warns_once(tmp_path, caplog):
    _safety.reset_for_tests()
    reader = InMemoryMetricReader()
    writer = LedgerWriter(
        tmp_path / "l.sqlite",
        meter_provider=MeterProvider(metric_readers=[reader]),
        queue_size=5,
        flush_interval=60,
    )
    records = random_records(20)
    with caplog.at_level(logging.WARNING, logger="tokentrail"), writer._batcher._drain_lock:
        start = time.perf_counter()  # the writer thread cannot drain meanwhile: the queue stays full
        for record in records:
            writer(record)
        assert time.perf_counter() - start < 0.5  # never blocks
    assert writer.dropped == 15
    warnings = [r for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(warnings) == 1
    points = [
        point
        for rm in reader.get_metrics_data().resource_metrics
        for scope in rm.scope_metrics
        for metric in scope.metrics
        if metric.name == sc.METRIC_LEDGER_DROPPED
        for point in metric.data.data_points
    ]
    assert [(p.value, dict(p.attributes)) for p in points] == [(15, {sc.LEDGER_DROP_REASON: "queue_full"})]
    writer.close()
    assert len(raw_rows(tmp_path / "l.sqlite")) == 5


def test_write_errors_never_reach_the_application(tmp_path, caplog):
    _safety.reset_for_tests()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the ledger's directory should be")
    writer = LedgerWriter(blocker / "ledger.sqlite", flush_interval=60)
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        for record in random_records(10):
            writer(record)
        writer.flush()
        writer(random_records(1)[0])
        writer.flush()
    writer.close()
    assert writer.dropped == 11 and writer.written == 0
    messages = [r.getMessage() for r in caplog.records if "cannot write the ledger" in r.getMessage()]
    assert len(messages) == 1 and "TOKENTRAIL_LEDGER" in messages[0]


def test_disk_full_drops_the_batch_then_recovers(tmp_path):
    _safety.reset_for_tests()
    writer = LedgerWriter(tmp_path / "l.sqlite", flush_interval=60)
    writer(random_records(1)[0])
    writer.flush()
    connection = writer._connection
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL from here on
    for record in random_records(2000, seed=2):
        writer(record)
    writer.flush()
    assert writer.dropped == 2000 and writer.written == 1
    connection.execute("PRAGMA max_page_count = 1073741823")
    writer(random_records(1, seed=3)[0])
    writer.flush()
    writer.close()
    assert writer.written == 2
    check = sqlite3.connect(tmp_path / "l.sqlite")
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT COUNT(*), (SELECT SUM(calls) FROM rollup) FROM calls").fetchone() == (2, 2)


def test_each_batch_adds_to_the_rollup_once_whatever_ids_came_before(tmp_path):
    # The rollup adds up the rows from the batch's first id on, found from the last id inserted:
    # right after the newest rows were deleted, and across a batch of several statements.
    writer = LedgerWriter(tmp_path / "l.sqlite", flush_interval=60)
    for record in random_records(5, seed=4):
        writer(record)
    writer.flush()
    connection = writer._connection
    connection.execute("DELETE FROM calls WHERE id > 3")  # the two newest go; the rollup keeps them
    connection.commit()
    for size, seed in ((1, 5), (300, 6), (2, 7)):
        for record in random_records(size, seed=seed):
            writer(record)
        writer.flush()
        rolled_up = connection.execute("SELECT SUM(calls) FROM rollup").fetchone()[0]
        calls = connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        assert rolled_up == calls + 2
    writer.close()
    assert writer.written == 308


def test_locked_ledger_keeps_the_rows_and_flush_returns_within_its_bound(tmp_path):
    _safety.reset_for_tests()
    path = tmp_path / "l.sqlite"
    writer = LedgerWriter(path, flush_interval=60)
    writer(random_records(1)[0])
    writer.flush()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    writer(random_records(1, seed=2)[0])
    started = time.monotonic()
    assert writer.flush(timeout=0.2) is False  # locked: the row stays queued, not dropped
    assert time.monotonic() - started < 2
    assert writer.dropped == 0 and writer.pending == 1
    holder.execute("ROLLBACK")
    holder.close()
    writer(random_records(1, seed=3)[0])
    assert writer.flush() is True
    writer.close()
    assert writer.written == 3 and len(raw_rows(path)) == 3


def test_deleted_ledger_is_created_again(tmp_path):
    path = tmp_path / "l.sqlite"
    writer = LedgerWriter(path, flush_interval=60)
    writer(random_records(1)[0])
    writer.flush()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    writer(random_records(1, seed=2)[0])
    writer.flush()
    writer.close()
    assert len(raw_rows(path)) == 1


def test_uninstrument_flushes_and_interpreter_exit_flushes(tmp_path):
    path = tmp_path / "l.sqlite"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{SRC!r}, {str(Path(__file__).parent)!r}]
        from ledger_data import random_records
        from tokentrail.ledger.writer import LedgerWriter
        writer = LedgerWriter({str(path)!r}, flush_interval=3600)
        for record in random_records(25):
            writer(record)
        print(writer.written, flush=True)  # nothing written yet: the exit hook must do it
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    assert len(raw_rows(path)) == 25


# --- several processes, and crashes ---------------------------------------------------------------------

WRITER_PROCESS = """
import sys, time
sys.path[:0] = [{src!r}, {tests!r}]
from ledger_data import random_records
from tokentrail.ledger.writer import LedgerWriter
writer = LedgerWriter({path!r}, flush_interval=0.02, batch_size=50)
records = random_records({count}, seed={seed})
for index, record in enumerate(records):
    record.response_id = "p{seed}-" + str(index)
    writer(record)
    if index % 100 == 0:
        time.sleep(0.001)
writer.close()
print(writer.written, writer.dropped)
"""


def test_several_processes_write_one_ledger(tmp_path):
    path = tmp_path / "shared.sqlite"
    count, processes = 1500, 4
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER_PROCESS.format(
                    src=SRC, tests=str(Path(__file__).parent), path=str(path), count=count, seed=seed
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(processes)
    ]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.split() == [str(count), "0"], (out, err)
    connection = sqlite3.connect(path)
    ids = [row[0] for row in connection.execute("SELECT response_id FROM calls")]
    assert sorted(ids) == sorted(f"p{seed}-{i}" for seed in range(processes) for i in range(count))
    assert connection.execute("SELECT SUM(calls) FROM rollup").fetchone()[0] == count * processes
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


KILLED_PROCESS = """
import dataclasses, sys, time
sys.path[:0] = [{src!r}, {tests!r}]
from ledger_data import random_records
from tokentrail.ledger.writer import LedgerWriter
writer = LedgerWriter({path!r}, flush_interval={interval})
template = random_records(1)[0]
sequence = 0
while True:
    writer(dataclasses.replace(template, start_time=time.time(), response_id=str(sequence)))
    sequence += 1
    if sequence == 200:
        print("running", flush=True)
    time.sleep(0.0005)
"""


def test_sigkill_loses_at_most_the_last_interval_and_never_corrupts(tmp_path):
    path = tmp_path / "killed.sqlite"
    interval = 0.2
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_PROCESS.format(
                src=SRC, tests=str(Path(__file__).parent), path=str(path), interval=interval
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "running", child.stderr.read()
    time.sleep(1.0 + random.random() * 0.3)
    killed_at = time.time()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    sequences = sorted(int(row[0]) for row in connection.execute("SELECT response_id FROM calls"))
    assert (
        sequences == list(range(len(sequences))) and len(sequences) > 200
    )  # a prefix: nothing in between lost
    last = connection.execute("SELECT MAX(start_time) FROM calls").fetchone()[0]
    # Lost: only calls queued within the last flush interval (plus the commit itself and scheduling
    # on a loaded machine), never older ones.
    assert killed_at - last < interval + 0.6, killed_at - last
    assert connection.execute("SELECT SUM(calls) FROM rollup").fetchone()[0] == len(sequences)


# --- schema versions ---------------------------------------------------------------------------------


def test_newer_schema_is_refused_clearly(tmp_path, caplog):
    _safety.reset_for_tests()
    path = tmp_path / "l.sqlite"
    fill(path, random_records(2))
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {_schema.SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(ledger.LedgerVersionError) as raised:
        _schema.open_ledger(path)
    message = str(raised.value)
    assert f"schema version {_schema.SCHEMA_VERSION + 1}" in message
    assert f"understands up to {_schema.SCHEMA_VERSION}" in message and "upgrade tokentrail" in message
    writer = LedgerWriter(path, flush_interval=60)
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        writer(random_records(1)[0])
        writer.flush()  # refused, counted, logged; never raised
    writer.close()
    assert writer.dropped == 1
    assert any("newer tokentrail" in r.getMessage() for r in caplog.records)
    assert len(raw_rows(path)) == 2  # untouched


def test_forward_migration_keeps_the_data(tmp_path, monkeypatch):
    path = tmp_path / "l.sqlite"
    fill(path, random_records(30))

    def v2(connection):
        connection.execute("ALTER TABLE calls ADD COLUMN note TEXT")

    monkeypatch.setattr(_schema, "MIGRATIONS", [*_schema.MIGRATIONS, v2])
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", 2)
    connection = _schema.open_ledger(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
    assert connection.execute("SELECT COUNT(*), COUNT(note) FROM calls").fetchone() == (30, 0)
    connection.close()


def test_not_a_ledger(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ledger.LedgerError, match="is it a tokentrail ledger"):
        _schema.open_ledger(path)


# --- reports equal the sums of raw rows -------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("filled") / "ledger.sqlite"
    fill(path, random_records(3000, seed=11))
    return path


BY_CHOICES = [
    "provider",
    "model",
    "operation",
    "agent",
    "task",
    "pipeline",
    "phase",
    "role",
    "user",
    "day",
    "hour",
    "label:team",
    "service",
    "request_model",
]


@pytest.mark.parametrize("seed", range(12))
def test_report_figures_equal_the_sums_of_raw_rows(filled, seed):
    rng = random.Random(seed)
    all_rows = raw_rows(filled)
    now = time.time()
    by = rng.sample(BY_CHOICES, rng.choice((0, 1, 1, 2, 3)))
    since = now - rng.random() * 12 * 86400 if rng.random() < 0.7 else None
    until = (since or now - 12 * 86400) + rng.random() * 8 * 86400 if rng.random() < 0.4 else None
    where: dict[str, str] = {}
    if rng.random() < 0.5:
        key = rng.choice(["agent", "task", "label:team", "pipeline", "role", "session"])
        value = (
            rng.choice(
                [
                    r[key] if not key.startswith("label") else json.loads(r["labels"] or "{}").get("team")
                    for r in all_rows[:50]
                ]
            )
            or ""
        )
        where[key] = value
    model = rng.choice([None, "gpt-4o", "gpt-4o-2025"])
    provider = rng.choice([None, "openai"])
    filters = Filters(since, until, None, model, provider, where)
    expected_where = dict(where)
    if model:
        expected_where["model"] = model
    if provider:
        expected_where["provider"] = provider
    selected = [r for r in all_rows if matches(r, since, until, expected_where)]
    connection = _schema.open_ledger(filled)
    for use_rollup in (True, False):
        result = report(connection, by, filters, use_rollup=use_rollup)
        assert_figures_equal(
            result.totals.as_dict(), expected_totals(selected), f"totals rollup={use_rollup}"
        )
        expected = expected_groups(selected, by) if by else {}
        leaves = dict(result.leaves())
        assert set(leaves) == set(expected), (by, use_rollup)
        for key, totals in leaves.items():
            assert_figures_equal(totals.as_dict(), expected[key], f"{by}={key}")
        for group in result.groups:  # every subtotal is the sum of its rows too
            members = [r for r in selected if (_value(r, by[0]) == group.value)]
            assert_figures_equal(group.totals.as_dict(), expected_totals(members), f"{by[0]}={group.value}")
    connection.close()


def _value(row, key):
    from ledger_data import key_of

    return key_of(row, key)


# --- the span exporter --------------------------------------------------------------------------------


def test_exporter_is_selectable_by_name_through_the_sdk_configurator():
    from opentelemetry.sdk._configuration import _import_exporters

    from tokentrail.ledger.exporter import LedgerSpanExporter

    traces, _metrics, _logs = _import_exporters(["tokentrail"], [], [])
    assert traces == {"tokentrail": LedgerSpanExporter}


def test_exporter_writes_the_same_rows_and_instrument_adds_no_sink(tmp_path):
    from tokentrail.ledger.exporter import LedgerSpanExporter

    path = tmp_path / "l.sqlite"
    exporter = LedgerSpanExporter(str(path))
    provider = TracerProvider(resource=Resource.create({"service.name": "exported"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    records: list = []
    try:
        tokentrail.instrument(
            tracer_provider=provider, meter_provider=MeterProvider(), ledger=path, sinks=[records.append]
        )
        assert ledger.active_writer() is None  # the exporter writes the ledger: no second writer
        client = FakeOpenAI().client()
        with tokentrail.attribute(agent="QA", pipeline="p", labels={"team": "x"}, span=True):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
            list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    finally:
        tokentrail.uninstrument()
        provider.shutdown()
    exported = raw_rows(path)
    assert len(exported) == 2  # the roll-up span is not a call
    # The same row the sink writes, field for field (the service from the span's resource).
    from tokentrail.ledger._rows import row_dict, row_from_record

    for row, record in zip(exported, records, strict=True):
        expected = row_dict(row_from_record(record, "exported"))
        expected["labels"] = (
            json.dumps(expected["labels"], separators=(",", ":")) if expected["labels"] else None
        )
        for name, value in expected.items():
            if name in ("start_time", "duration_s", "ttfc_s") and value is not None:
                assert math.isclose(row[name], value, abs_tol=0.05), name  # span and call clocks
            else:
                assert row[name] == value, name


def test_exporter_created_after_instrument_takes_over_from_the_sink(tmp_path):
    from tokentrail.ledger.exporter import LedgerSpanExporter

    path = tmp_path / "l.sqlite"
    provider = TracerProvider()
    try:
        tokentrail.instrument(tracer_provider=provider, meter_provider=MeterProvider(), ledger=path)
        assert ledger.active_writer() is not None
        exporter = LedgerSpanExporter(str(path))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        assert ledger.active_writer() is None
        FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    finally:
        tokentrail.uninstrument()
        provider.shutdown()
    assert len(raw_rows(path)) == 1
    assert not ledger.exporter_active()


def test_otel_traces_exporter_tokentrail_under_opentelemetry_instrument(tmp_path):
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import tokentrail
        from tokentrail import ledger
        from openai_wire import FakeOpenAI
        client = FakeOpenAI().client()
        messages = [{{"role": "user", "content": "hi"}}]
        with tokentrail.attribute(agent="auto"):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
        print("SINK", ledger.active_writer() is not None, "EXPORTER", ledger.exporter_active())
        """
        )
    )
    path = tmp_path / "auto.sqlite"
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console,tokentrail",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "auto-app",
        "TOKENTRAIL_LEDGER": str(path),
    }
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "SINK False EXPORTER True" in done.stdout
    written = raw_rows(path)
    assert len(written) == 2  # once each: from the exporter, no sink beside it
    assert {row["service"] for row in written} == {"auto-app"}
    assert {row["agent"] for row in written} == {"auto"} and all(row["cost_usd"] > 0 for row in written)
    assert '"gen_ai.usage.cost.amount"' in done.stdout  # the console exporter ran beside it


# --- structured call logs ---------------------------------------------------------------------------------


def test_call_log_sink_is_off_by_default_and_logs_one_json_record_per_call(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="tokentrail.calls")
    try:
        tokentrail.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
        FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
        tokentrail.flush()
        assert not [r for r in caplog.records if r.name == "tokentrail.calls"]
        monkeypatch.setenv("TOKENTRAIL_LOG_CALLS", "1")
        provider = TracerProvider()
        tokentrail.instrument(tracer_provider=provider, meter_provider=MeterProvider())
        with tokentrail.attribute(agent="QA", labels={"team": "x"}):
            FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
        tokentrail.flush()
    finally:
        tokentrail.uninstrument()
    (logged,) = [r for r in caplog.records if r.name == "tokentrail.calls"]
    fields = json.loads(logged.getMessage())
    assert logged.levelno == logging.INFO
    assert fields["agent"] == "QA" and fields["labels"] == {"team": "x"}
    assert fields["input_tokens"] == 1200 and fields["cost_usd"] > 0 and fields["response_model"] == SNAPSHOT
    assert len(fields["trace_id"]) == 32 and logged.otelTraceID == fields["trace_id"]
    assert logged.tokentrail_call == fields
    from tokentrail.ledger._schema import COLUMN_NAMES

    assert list(fields) == list(COLUMN_NAMES)  # the same fields as a ledger row


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_its_own_calls(tmp_path):
    path = tmp_path / "forked.sqlite"
    writer = LedgerWriter(path, flush_interval=0.05)
    writer(random_records(1, seed=1)[0])
    writer.flush()
    pid = os.fork()
    if pid == 0:  # the child: its own thread writes within the interval, without an exit hook
        code = 1
        try:
            for record in random_records(5, seed=2):
                writer(record)
            deadline = time.monotonic() + 10
            while writer.written < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            code = 0 if writer.written == 5 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer(random_records(1, seed=3)[0])
    writer.close()
    assert len(raw_rows(path)) == 7


def test_a_batch_is_inserted_in_a_few_statements_not_one_per_row(tmp_path):
    # executemany() steps SQLite once per row, each step releasing and retaking the GIL: behind a
    # busy application thread every retake waits a switch interval (2,000 rows: seconds). Rows go
    # in up to 128 to a statement (fewer if SQLite's parameter limit says so).
    writer = LedgerWriter(tmp_path / "l.sqlite", flush_interval=3600, batch_size=10_000)
    try:
        connection = writer._open()
        statements: list[str] = []
        connection.set_trace_callback(statements.append)
        records = random_records(2_000, seed=3)
        for record in records:
            writer(record)
        writer.flush()
        connection.set_trace_callback(None)
    finally:
        writer.close()
    inserts = [s for s in statements if s.startswith("INSERT INTO calls")]
    per_statement = connection_limit_rows()
    # Full statements, then the rest in power-of-two sizes (a bounded set of prepared statements).
    assert len(inserts) <= 2_000 // per_statement + per_statement.bit_length()
    sizes = {statement.count("), (") + 1 for statement in inserts}
    assert all(size == per_statement or size & (size - 1) == 0 for size in sizes)
    rows = raw_rows(tmp_path / "l.sqlite")
    assert len(rows) == 2_000
    assert sorted(r["response_id"] for r in rows) == sorted(r.response_id for r in records)
    assert math.isclose(sum(r["cost_usd"] or 0 for r in rows), sum(r.cost_usd or 0 for r in records))


def connection_limit_rows() -> int:
    from tokentrail.ledger._schema import COLUMN_NAMES

    probe = sqlite3.connect(":memory:")
    try:
        return max(1, min(128, probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMN_NAMES)))
    finally:
        probe.close()


def _ledger_rows(path: Path) -> list[tuple]:
    from tokentrail.ledger._schema import COLUMN_NAMES

    connection = sqlite3.connect(path)
    try:
        names = ", ".join(f'"{name}"' for name in COLUMN_NAMES)
        return connection.execute(f"SELECT {names} FROM calls ORDER BY id").fetchall()
    finally:
        connection.close()


def _nullable_columns() -> list[int]:
    from tokentrail.ledger._schema import CALL_COLUMNS

    return [i for i, (_, kind) in enumerate(CALL_COLUMNS) if "NOT NULL" not in kind]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    blanks=st.lists(st.frozensets(st.sampled_from(_nullable_columns())), min_size=1, max_size=40),
)
def test_rows_are_stored_as_given_whatever_columns_they_leave_empty(tmp_path_factory, seed, blanks):
    """A statement names only the columns its batch fills (binding NULLs is costly): every row
    still reads back exactly as it was written, in order, with its empty columns NULL."""
    from tokentrail.ledger._rows import row_from_record

    path = tmp_path_factory.mktemp("columns") / "l.sqlite"
    records = random_records(len(blanks), seed=seed)
    rows = []
    for record, blank in zip(records, blanks, strict=True):
        row = list(row_from_record(record, "svc"))
        for i in blank:
            row[i] = None
        rows.append(tuple(row))
    writer = LedgerWriter(path, flush_interval=3600)
    try:
        for row in rows:
            writer.submit_row(row)
        assert writer.flush()
    finally:
        writer.close()
    assert writer.dropped == 0
    assert _ledger_rows(path) == rows


def test_column_sets_beyond_the_bound_name_every_column(tmp_path):
    """The prepared statements stay bounded: after eight sets of filled columns, a batch that
    fills another set is inserted naming every column (and still stored as given)."""
    from tokentrail.ledger._rows import row_from_record
    from tokentrail.ledger._schema import COLUMN_NAMES

    path = tmp_path / "l.sqlite"
    nullable = _nullable_columns()
    writer = LedgerWriter(path, flush_interval=3600)
    written = []
    try:
        connection = writer._open()
        statements: list[str] = []
        connection.set_trace_callback(statements.append)
        for k in range(12):  # twelve batches, each leaving a different column empty
            row = list(row_from_record(random_records(1, seed=k)[0], "svc"))
            row[nullable[k]] = None
            written.append(tuple(row))
            writer.submit_row(tuple(row))
            assert writer.flush()
        connection.set_trace_callback(None)
    finally:
        writer.close()
    filled = {frozenset(i for i, value in enumerate(row) if value is not None) for row in written}
    assert len(filled) == 12  # twelve different sets, as the test means
    inserts = [s for s in statements if s.startswith("INSERT INTO calls")]
    named = [s.partition(") VALUES")[0].count('"') // 2 for s in inserts]
    assert len(named) == 12
    assert all(count < len(COLUMN_NAMES) for count in named[:8])
    assert all(count == len(COLUMN_NAMES) for count in named[8:])
    assert _ledger_rows(path) == written


def test_a_row_of_the_wrong_length_is_dropped_alone(tmp_path):
    from tokentrail.ledger._rows import row_from_record

    path = tmp_path / "l.sqlite"
    good = [row_from_record(record, "svc") for record in random_records(3, seed=8)]
    writer = LedgerWriter(path, flush_interval=3600)
    try:
        writer.submit_row(good[0])
        writer.submit_row(good[1][:-1])
        writer.submit_row(good[2])
        writer.flush()
    finally:
        writer.close()
    assert writer.dropped == 1
    assert _ledger_rows(path) == [good[0], good[2]]


@pytest.fixture(scope="module")
def ranked_ledger(tmp_path_factory):
    path = tmp_path_factory.mktemp("ranked") / "ledger.sqlite"
    now = time.time()
    fill(path, random_records(400, seed=23, days=3, now=now))
    return path, now


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["pipeline", "agent", "model", "provider", "user", "label:team", "task", "day"]),
    since_h=st.floats(min_value=0, max_value=80),
    length_h=st.floats(min_value=0, max_value=80),
    limit=st.integers(min_value=1, max_value=12),
    where=st.sampled_from([{}, {"provider": "openai"}, {"agent": "QA"}]),
)
def test_top_groups_are_the_reports_first_groups(ranked_ledger, key, since_h, length_h, limit, where):
    """The dashboard's ranked lists (summed and ranked by SQLite) equal the report's first groups."""
    path, now = ranked_ledger
    since = now - since_h * 3600
    filters = Filters(since, since + length_h * 3600, where=where)
    connection = _schema.open_ledger(path, create=False)
    try:
        expected = report(connection, [key], filters).groups[:limit]
        got = top_groups(connection, key, filters, limit)
    finally:
        connection.close()
    assert [g.value for g in got] == [g.value for g in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.totals.calls == theirs.totals.calls
        assert math.isclose(mine.totals.cost_usd, theirs.totals.cost_usd, rel_tol=1e-9, abs_tol=1e-12)
        assert mine.totals.input_tokens == theirs.totals.input_tokens
