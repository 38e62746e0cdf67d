"""The dashboard's figures read on two threads (``overview(..., alongside=...)``, what ``serve``
does) are the figures read on one, over the real ledger; a failure on the second thread reaches the
caller as the same exception."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledger_data import fill, random_records
from tokentrail.insights.overview import View, overview
from tokentrail.ledger import open_ledger
from tokentrail.ledger.source import LedgerSource
from tokentrail.pricing import Pricer

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("overview") / "ledger.sqlite"
    fill(path, random_records(1200, seed=29, days=12))
    return path


def reader(path: Path, threads: set[str] | None = None):
    @contextmanager
    def reading():
        if threads is not None:
            threads.add(threading.current_thread().name)
        connection = open_ledger(path, create=False, readonly=True)
        try:
            yield LedgerSource(connection, path)
        finally:
            connection.close()

    return reading


@pytest.mark.parametrize(
    "view",
    [
        View(),
        View(since="7d", stack="agent"),
        View(since="30d", provider="anthropic", stack="pipeline"),
        View(since="2d", agent="PM", stack="provider"),
    ],
    ids=["default", "agents-7d", "anthropic", "hourly-agent"],
)
def test_two_threads_read_what_one_reads(ledger, view):
    pricer = Pricer()
    with reader(ledger)() as source:
        latest = source.connection.execute("SELECT MAX(start_time) FROM calls").fetchone()[0]
        now = latest + 60  # the views end just after the last generated call
        alone = overview(source, view, pricer=pricer, now=now)
    threads: set[str] = set()
    with reader(ledger)() as source:
        together = overview(source, view, pricer=pricer, now=now, alongside=reader(ledger, threads))
    assert any(name.startswith("tokentrail-overview") for name in threads), threads
    assert together == alone
    assert alone["totals"]["calls"] > 0 or view.agent  # the views read something


def test_a_failure_on_the_second_thread_reaches_the_caller(ledger):
    class Refused(Exception):
        pass

    @contextmanager
    def failing():
        raise Refused("the second connection could not be opened")
        yield  # pragma: no cover

    with reader(ledger)() as source, pytest.raises(Refused, match="could not be opened"):
        overview(source, View(), pricer=Pricer(), alongside=failing)
