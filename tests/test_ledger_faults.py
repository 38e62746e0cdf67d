"""Ledger faults a real service meets: a row SQLite cannot store, a ledger another process holds
locked, old rows piling up. None may cost another call's row or block the application."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tokentrail
from ledger_data import random_records, raw_rows
from openai_wire import MODEL, FakeOpenAI, chat_usage
from tokentrail.ledger import retention
from tokentrail.ledger._rows import MAX_COUNT
from tokentrail.ledger.writer import LedgerWriter

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def ledger_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.sqlite"
    monkeypatch.setenv("TOKENTRAIL_LEDGER", str(path))
    return path


# --- 3. a bad row costs only itself -----------------------------------------------------------------


def test_poisoned_rows_keep_every_other_row_of_their_batch(ledger_file, recorded):
    # Before: UnicodeEncodeError / OverflowError escaped the batch write and every call of the
    # batch was lost (101 calls, 0 rows).
    good = FakeOpenAI().client()
    huge = FakeOpenAI(chat_usage=chat_usage(prompt=10**30)).client()
    for index in range(50):
        good.chat.completions.create(model=MODEL, messages=MESSAGES)
        if index == 10:
            with tokentrail.attribute(agent="planner-\udcff"):  # a lone surrogate: attribute() takes it
                good.chat.completions.create(model=MODEL, messages=MESSAGES)
        if index == 20:
            huge.chat.completions.create(model=MODEL, messages=MESSAGES)
    tokentrail.flush()
    rows = raw_rows(ledger_file)
    assert len(rows) == 52
    (escaped,) = [row for row in rows if row["agent"] is not None]
    assert escaped["agent"] == "planner-\\udcff"
    (clamped,) = [row for row in rows if row["input_tokens"] != chat_usage()["prompt_tokens"]]
    assert clamped["input_tokens"] == MAX_COUNT and clamped["usage_inconsistent"] == 1
    with sqlite3.connect(ledger_file) as connection:
        rollup = connection.execute("SELECT SUM(calls), SUM(input_tokens) FROM rollup").fetchone()
    rollup_calls, rollup_input = rollup
    assert rollup_calls == 52
    assert rollup_input == 51 * chat_usage()["prompt_tokens"] + MAX_COUNT


def test_a_row_that_cannot_be_made_is_dropped_alone_and_counted(tmp_path):
    writer = LedgerWriter(tmp_path / "l.sqlite", flush_interval=60)
    records = random_records(20, seed=5)
    writer(object())  # not a CallRecord: its row cannot be built
    for record in records:
        writer(record)
    writer.close()
    assert writer.dropped == 1 and writer.written == 20
    assert len(raw_rows(tmp_path / "l.sqlite")) == 20


# --- 4. a locked ledger never blocks the application for long ----------------------------------------

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


@pytest.fixture
def locked_for_60_s(ledger_file):
    def lock():
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(ledger_file), "60"], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout.readline().strip() == "locked"
        return holder

    holders = []
    yield lambda: holders.append(lock()) or holders[-1]
    for holder in holders:
        holder.kill()
        holder.wait()


def test_flush_and_uninstrument_return_within_the_bound_on_a_ledger_locked_for_60_s(
    ledger_file, recorded, locked_for_60_s, monkeypatch, caplog
):
    # Before: flush() and uninstrument() blocked 40 s each (10 s busy timeout x 4 attempts).
    monkeypatch.setenv("TOKENTRAIL_FLUSH_TIMEOUT", "1")
    from tokentrail import _waits

    _waits.configure()
    client = FakeOpenAI().client()
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    tokentrail.flush()  # the ledger exists, with one row
    holder = locked_for_60_s()
    for _ in range(5):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    started = time.monotonic()
    tokentrail.flush()
    flushed = time.monotonic() - started
    assert flushed < 2.5, flushed  # one bound for the writer thread's write in progress, one for ours
    writer = tokentrail.ledger.active_writer()
    assert writer.pending == 5 and writer.dropped == 0  # kept, to be written when the lock goes
    assert "still queued" in caplog.text
    started = time.monotonic()
    tokentrail.uninstrument()
    closed = time.monotonic() - started
    assert closed < 2.5, closed
    assert writer.dropped == 5  # given up at uninstrument(): counted and said
    assert "5 call(s) not written" in caplog.text
    holder.kill()
    holder.wait()
    assert len(raw_rows(ledger_file)) == 1
    monkeypatch.delenv("TOKENTRAIL_FLUSH_TIMEOUT")
    _waits.configure()


def test_rows_kept_while_locked_are_written_once_the_lock_goes(tmp_path):
    path = tmp_path / "l.sqlite"
    writer = LedgerWriter(path, flush_interval=0.05)
    writer(random_records(1)[0])
    writer.flush()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    for record in random_records(30, seed=7):
        writer(record)
    assert writer.flush(timeout=0.1) is False
    holder.execute("ROLLBACK")
    holder.close()
    deadline = time.monotonic() + 10
    while writer.pending and time.monotonic() < deadline:  # the writer thread retries by itself
        time.sleep(0.05)
    writer.close()
    assert writer.dropped == 0 and len(raw_rows(path)) == 31


EXIT_APP = textwrap.dedent(
    """
    import time, tokentrail
    from tokentrail.ledger import active_writer
    tokentrail.instrument()
    writer = active_writer()
    from ledger_data import random_records
    writer(random_records(1)[0])
    writer.flush()
    import subprocess, sys
    holder = subprocess.Popen(
        [sys.executable, "-c", {holder!r}, {path!r}, "60"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    for record in random_records(7, seed=2):
        writer(record)
    print(holder.pid, flush=True)
    print(time.monotonic(), flush=True)
    # exits here: the exit drain may wait for the lock at most TOKENTRAIL_FLUSH_TIMEOUT
    """
)


def test_exit_waits_at_most_the_bound_for_a_locked_ledger(tmp_path):
    path = tmp_path / "l.sqlite"
    script = EXIT_APP.format(holder=HOLDER, path=str(path))
    env = {
        **os.environ,
        "TOKENTRAIL_LEDGER": str(path),
        "TOKENTRAIL_FLUSH_TIMEOUT": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    holder_pid, exit_started = done.stdout.strip().splitlines()[-2:]
    os.kill(int(holder_pid), 9)
    exit_took = time.monotonic() - float(exit_started)
    assert exit_took < 3.5, (exit_took, time.monotonic() - started)  # before: 40-80 s
    assert "7 call(s) not written to the ledger" in done.stderr


# --- 7. retention -------------------------------------------------------------------------------------

DAY = 86_400


def old_and_new_records(now: float):
    """200 calls over the last 200 days: about 140 of them older than 60 days."""
    return random_records(200, seed=11, days=200, now=now)


def test_the_writer_prunes_old_raw_rows_on_its_own_thread_and_old_reports_still_answer(tmp_path, monkeypatch):
    from tokentrail.ledger.query import Filters, report

    monkeypatch.setenv(retention.ENV_RAW_DAYS, "60")
    now = time.time()
    records = old_and_new_records(now)
    path = tmp_path / "l.sqlite"
    writer = LedgerWriter(path, flush_interval=60)  # the writer thread stays asleep
    for record in records:
        writer(record)
    writer.flush()  # on this (the application's) thread: writes, never prunes
    assert len(raw_rows(path)) == 200
    writer.close()

    cutoff = retention.Retention(60).cutoffs(now)[0]
    old = [r for r in records if r.start_time < cutoff]
    assert 100 < len(old) < 200
    writer = LedgerWriter(path, flush_interval=0.05)
    writer(random_records(1, seed=12, days=0.01, now=now)[0])  # the writer thread's first write prunes
    deadline = time.monotonic() + 10
    while len(raw_rows(path)) != 201 - len(old) and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()
    remaining = raw_rows(path)
    assert len(remaining) == 201 - len(old)
    assert min(row["start_time"] for row in remaining) >= cutoff
    # The roll-up keeps the pruned calls: a report over the old period answers from it.
    with sqlite3.connect(path) as connection:
        found = report(connection, filters=Filters(since=now - 200 * DAY - 3600, until=cutoff))
    assert found.totals.calls == len(old)
    assert found.totals.input_tokens == sum(r.usage.input_tokens for r in old if r.usage is not None)


def test_ledger_info_and_prune_commands(tmp_path, capsys, monkeypatch):
    from tokentrail.cli import main

    now = time.time()
    records = old_and_new_records(now)
    path = tmp_path / "l.sqlite"
    monkeypatch.setenv(retention.ENV_RAW_DAYS, "0")  # this writer keeps everything
    writer = LedgerWriter(path, flush_interval=60)
    for record in records:
        writer(record)
    writer.close()
    monkeypatch.delenv(retention.ENV_RAW_DAYS)
    cutoff = retention.Retention(30).cutoffs(now)[0]
    expired = sum(1 for r in records if r.start_time < cutoff)

    assert main(["ledger", "info", "--ledger", str(path), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["calls"] == 200
    assert found["oldest_call"] == min(r.start_time for r in records)
    assert found["size_bytes"] >= os.stat(path).st_size
    assert found["retention"] == {"raw_days": 90.0, "rollup_days": 730.0}

    assert main(["ledger", "prune", "--ledger", str(path), "--keep-days", "30"]) == 0
    assert f"deleted {expired:,} raw row(s)" in capsys.readouterr().out
    assert len(raw_rows(path)) == 200 - expired

    assert main(["ledger", "info", "--ledger", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"{200 - expired:,} raw row(s)" in shown and "raw rows 90 days" in shown

    assert main(["ledger", "prune", "--ledger", str(path), "--keep-days", "soon"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --keep-days='soon': use a number of days") and "\n" not in error


@pytest.mark.parametrize("value", ["-1", "nan", "1e400", "x" * 10_000])
def test_a_bad_retention_setting_is_one_line_naming_it(value):
    with pytest.raises(tokentrail.ConfigError) as caught:
        retention.Retention.from_env({retention.ENV_RAW_DAYS: value})
    message = str(caught.value)
    assert message.startswith(f"{retention.ENV_RAW_DAYS}=") and len(message) < 200
