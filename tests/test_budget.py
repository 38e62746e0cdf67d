"""Budgets: hard stops before the request, alerts once each, windows, configuration."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

import tokentrail
from openai_wire import FakeOpenAI, chat_usage
from tokentrail.budgets import EVENT_THRESHOLD, METRIC_REMAINING, METRIC_SPEND, BudgetAlert, Reservation
from tokentrail.estimation import count_openai_chat, price_tokens

MESSAGES = [{"role": "user", "content": "Say hello."}]
MODEL = "gpt-4o-mini"
MAX_TOKENS = 20


def exact_fake() -> tuple[FakeOpenAI, float]:
    """A fake whose reported usage is exactly the estimate's worst case: (fake, cost per call)."""
    tokens, exact = count_openai_chat(MODEL, MESSAGES)
    assert exact
    fake = FakeOpenAI(chat_usage=chat_usage(prompt=tokens, completion=MAX_TOKENS, cached=0))
    cost = price_tokens("openai", MODEL, tokens, MAX_TOKENS)
    assert cost is not None and cost > 0
    return fake, cost


def ask(client: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("usd", [0, 0.0, -1, -0.01, float("nan"), float("inf"), "1", True, None])
def test_zero_negative_or_odd_budgets_are_rejected_at_once(usd: Any) -> None:
    with pytest.raises(ValueError, match="usd"):
        tokentrail.budget(usd=usd)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": "fortnight"}, "window"),
        ({"window": "0h"}, "window"),
        ({"window": "day", "timezone": "Mars/Olympus"}, "timezone"),
        ({"window": "1h", "timezone": "Europe/Paris"}, "timezone"),
        ({"mode": "block"}, "mode"),
        ({"unknown": "maybe"}, "unknown"),
        ({"thresholds": (0, 1)}, "thresholds"),
        ({"scope": {"colour": "red"}}, "colour"),
        ({"shared": True}, "shared"),
    ],
)
def test_bad_settings_are_rejected_at_once(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tokentrail.budget(usd=1, **kwargs)


def test_bad_budget_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text('[[budget]]\nname = "zero"\nusd = 0\n')
    with pytest.raises(tokentrail.ConfigError, match="greater than 0"):
        tokentrail.instrument(budgets=path, ledger=False, setup_otel=False)
    path.write_text('[[budget]]\nusd = 1\nwindow = "weekly-ish"\n')
    with pytest.raises(tokentrail.ConfigError, match="window"):
        tokentrail.instrument(budgets=str(path), ledger=False, setup_otel=False)


# --- hard stop ---------------------------------------------------------------------------------


def test_hard_stop_sends_nothing(recorded: Any) -> None:
    fake, cost = exact_fake()
    client = fake.client()
    with (
        tokentrail.budget(usd=cost * 0.5, name="tiny") as tiny,
        pytest.raises(tokentrail.BudgetExceeded) as refused,
    ):
        ask(client)
    assert fake.sent == []
    assert recorded.spans() == [] and recorded.calls == []
    error = refused.value
    assert error.budget is tiny and error.limit_usd == cost * 0.5
    assert error.spent_usd == 0 and error.estimate_usd == pytest.approx(cost)
    assert "tiny" in str(error) and "refused before sending" in str(error)


async def test_hard_stop_async_sends_nothing(recorded: Any) -> None:
    fake, cost = exact_fake()
    client = fake.client(is_async=True)
    async with tokentrail.budget(usd=cost * 1.5):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)
        with pytest.raises(tokentrail.BudgetExceeded):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)
    assert len(fake.sent) == 1


def test_warn_mode_never_refuses(recorded: Any) -> None:
    fake, cost = exact_fake()
    alerts: list[BudgetAlert] = []
    with tokentrail.budget(usd=cost * 0.5, mode="warn", on_alert=alerts.append) as warned:
        ask(fake.client())
        ask(fake.client())
    assert len(fake.sent) == 2
    tokentrail.flush()  # alerts come from the recorder thread, which settles ended calls
    assert [a.threshold for a in alerts] == [0.5, 0.8, 1.0]
    assert warned.spent_usd == pytest.approx(2 * cost)


def test_a_call_is_settled_off_the_calling_thread_with_its_alert(recorded: Any) -> None:
    fake, cost = exact_fake()
    crossed = threading.Event()
    threads: list[str] = []

    def on_alert(alert: BudgetAlert) -> None:
        threads.append(threading.current_thread().name)
        crossed.set()

    with tokentrail.budget(usd=cost * 1.5, thresholds=(0.5,), on_alert=on_alert) as watched:
        ask(fake.client())
        assert crossed.wait(timeout=10), "the recorder settles within its interval, unasked"
    assert threads == ["tokentrail-recorder"]
    assert watched.spent_usd == pytest.approx(cost) and watched.reserved_usd == 0


def test_an_ended_call_still_holding_its_worst_case_never_causes_a_refusal(recorded: Any) -> None:
    # The worst case (max_tokens of output) is ten times what each call really costs. Until the
    # recorder settles a call, its worst case is held; the next call, right after, would not fit
    # beside it, but fits beside the real spend - and so it must be allowed, settled or not.
    tokens, _ = count_openai_chat(MODEL, MESSAGES)
    fake = FakeOpenAI(chat_usage=chat_usage(prompt=tokens, completion=1, cached=0))
    worst = price_tokens("openai", MODEL, tokens, 200)
    real = price_tokens("openai", MODEL, tokens, 1)
    assert worst is not None and real is not None and worst > 3 * real
    client = fake.client()
    with tokentrail.budget(usd=worst + 2 * real, thresholds=(1.0,)) as tight:
        for _ in range(3):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=200)
        with pytest.raises(tokentrail.BudgetExceeded):  # 3 real + 1 worst: over, settled or not
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=200)
    assert len(fake.sent) == 3
    assert tight.spent_usd == pytest.approx(3 * real) and tight.reserved_usd == 0


def test_unknown_estimate_policy(recorded: Any) -> None:
    # Embeddings carry no input estimate: their worst case is unknown.
    fake = FakeOpenAI()
    client = fake.client()
    with (
        tokentrail.budget(usd=1.0, unknown="refuse"),
        pytest.raises(tokentrail.BudgetExceeded, match="unknown"),
    ):
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert fake.sent == []
    with tokentrail.budget(usd=1.0, unknown="allow"):
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert len(fake.sent) == 1


def test_scope_matches_attribution(recorded: Any) -> None:
    fake, cost = exact_fake()
    client = fake.client()
    scoped = tokentrail.budget(usd=cost * 1.5, scope={"pipeline": "pip_1"})
    with scoped:
        with tokentrail.attribute(pipeline="pip_2"):
            ask(client)
            ask(client)  # another pipeline: not this budget's
        with tokentrail.attribute(pipeline="pip_1"):
            ask(client)
            with pytest.raises(tokentrail.BudgetExceeded):
                ask(client)
    assert len(fake.sent) == 3
    assert scoped.spent_usd == pytest.approx(cost)


def test_decorator_budgets_each_run(recorded: Any) -> None:
    fake, cost = exact_fake()
    client = fake.client()

    @tokentrail.budget(usd=cost * 1.5)
    def one_call_per_run() -> None:
        ask(client)

    one_call_per_run()
    one_call_per_run()
    assert len(fake.sent) == 2


# --- concurrency -------------------------------------------------------------------------------


def test_fifty_threads_never_overspend_and_alert_once(recorded: Any) -> None:
    fake, cost = exact_fake()
    client = fake.client()
    alerts: list[BudgetAlert] = []
    limit = cost * 10.5  # room for exactly 10 calls' worst case
    shared = tokentrail.budget(usd=limit, name="threads", on_alert=alerts.append)
    refused: list[Exception] = []
    barrier = threading.Barrier(50)

    def worker() -> None:
        barrier.wait()
        with shared:
            try:
                ask(client)
            except tokentrail.BudgetExceeded as exc:
                refused.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake.sent) == 10 and len(refused) == 40
    assert shared.spent_usd == pytest.approx(10 * cost) and shared.spent_usd <= limit
    assert shared.reserved_usd == pytest.approx(0)
    assert sorted(a.threshold for a in alerts) == [0.5, 0.8]
    events = [e for span in recorded.spans() for e in span.events if e.name == EVENT_THRESHOLD]
    assert sorted(e.attributes["tokentrail.budget.threshold"] for e in events) == [0.5, 0.8]


async def test_fifty_tasks_never_overspend(recorded: Any) -> None:
    fake, cost = exact_fake()
    client = fake.client(is_async=True)
    alerts: list[BudgetAlert] = []
    limit = cost * 20
    shared = tokentrail.budget(usd=limit, name="tasks", on_alert=alerts.append)

    async def one() -> bool:
        async with shared:
            try:
                await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)
                return True
            except tokentrail.BudgetExceeded:
                return False

    done = await asyncio.gather(*(one() for _ in range(50)))
    assert sum(done) == 20 == len(fake.sent)
    assert shared.spent_usd <= limit * (1 + 1e-9)
    assert sorted(a.threshold for a in alerts) == [0.5, 0.8, 1.0]


def test_thresholds_fire_once_under_concurrent_settling() -> None:
    alerts: list[BudgetAlert] = []
    shared = tokentrail.budget(usd=1.0, mode="warn", on_alert=alerts.append)
    barrier = threading.Barrier(50)

    def worker() -> None:
        reservation = shared.reserve(0.05)
        barrier.wait()
        from tokentrail.budgets import settle_budgets

        settle_budgets([reservation], 0.05)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.threshold for a in alerts) == [0.5, 0.8, 1.0]
    assert shared.spent_usd == pytest.approx(2.5)


# --- windows ----------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_window_roll_over() -> None:
    clock = Clock(3600 * 1000 + 10)
    alerts: list[BudgetAlert] = []
    hourly = tokentrail.budget(usd=1.0, window="1h", clock=clock, on_alert=alerts.append)
    hourly.settle(hourly.reserve(0.6), 0.6)
    with pytest.raises(tokentrail.BudgetExceeded):
        hourly.reserve(0.5)
    assert hourly.status()["window_start"] == 3600 * 1000
    clock.now += 3600  # the next hour: spend and fired thresholds start afresh
    assert hourly.spent_usd == 0
    reservation = hourly.reserve(0.9)
    assert isinstance(reservation, Reservation)
    fired = hourly.settle(reservation, 0.9)
    assert [a.threshold for a in fired] == [0.5, 0.8]
    assert hourly.status()["window_end"] == 3600 * 1002


def test_calendar_day_in_a_time_zone() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    clock = Clock(datetime(2026, 3, 29, 23, 30, tzinfo=paris).timestamp())  # DST change that day
    daily = tokentrail.budget(usd=1.0, window="day", timezone="Europe/Paris", clock=clock)
    status = daily.status()
    assert status["window_start"] == datetime(2026, 3, 29, tzinfo=paris).timestamp()
    assert status["window_end"] - status["window_start"] == 23 * 3600
    daily.settle(daily.reserve(0.7), 0.7)
    clock.now += 3600  # 00:30 the next day in Paris
    assert daily.spent_usd == 0


# --- configuration, metrics, CLI -----------------------------------------------------------


def test_configured_budgets_apply_to_matching_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, cost = exact_fake()
    path = tmp_path / "budgets.toml"
    path.write_text(
        f'[[budget]]\nname = "pip"\nusd = {cost * 1.5!r}\nscope = {{ pipeline = "pip_9" }}\nwindow = "1d"\n'
    )
    monkeypatch.setenv("TOKENTRAIL_BUDGETS", str(path))
    tokentrail.instrument(ledger=False, setup_otel=False)
    try:
        client = fake.client()
        ask(client)  # outside the scope
        with tokentrail.attribute(pipeline="pip_9"):
            ask(client)
            with pytest.raises(tokentrail.BudgetExceeded):
                ask(client)
    finally:
        tokentrail.uninstrument()
    assert len(fake.sent) == 2
    ask(fake.client())  # uninstrumented: no budgets apply
    assert len(fake.sent) == 3


def test_budget_metrics_per_name(recorded: Any) -> None:
    fake, cost = exact_fake()
    with tokentrail.budget(usd=1.0, name="metered"):
        ask(fake.client())
    spend = [
        p for p in recorded.points(METRIC_SPEND) if p.attributes == {"tokentrail.budget.name": "metered"}
    ]
    left = [
        p for p in recorded.points(METRIC_REMAINING) if p.attributes == {"tokentrail.budget.name": "metered"}
    ]
    assert spend[0].value == pytest.approx(cost)
    assert left[0].value == pytest.approx(1.0 - cost)


def test_cli_budget_status_reads_the_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tokentrail import ledger as ledger_module
    from tokentrail.cli import main

    fake, cost = exact_fake()
    ledger = tmp_path / "ledger.sqlite"
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(
        '[[budget]]\nname = "daily"\nusd = 1.0\nwindow = "day"\ntimezone = "UTC"\n'
        'scope = { pipeline = "p1" }\nshared = true\n'
    )
    tokentrail.instrument(ledger=ledger, setup_otel=False, budgets=budgets)
    try:
        with tokentrail.attribute(pipeline="p1"):
            ask(fake.client())
            ask(fake.client())
        ledger_module.flush()
    finally:
        tokentrail.uninstrument()
    code = main(["budget", "status", "--budgets", str(budgets), "--ledger", str(ledger), "--format", "json"])
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "daily" and row["spent_usd"] == pytest.approx(2 * cost)
    assert row["remaining_usd"] == pytest.approx(1.0 - 2 * cost)
    assert main(["budget", "status", "--budgets", str(budgets), "--ledger", str(ledger)]) == 0
    assert "daily" in capsys.readouterr().out


def test_shared_budget_counts_other_processes_spend(tmp_path: Path) -> None:
    from tokentrail import ledger as ledger_module

    fake, cost = exact_fake()
    ledger = tmp_path / "ledger.sqlite"
    tokentrail.instrument(ledger=ledger, setup_otel=False)  # "another process": writes the ledger
    try:
        with tokentrail.attribute(pipeline="p2"):
            ask(fake.client())
            ask(fake.client())
        ledger_module.flush()
    finally:
        tokentrail.uninstrument()
    shared = tokentrail.budget(
        usd=cost * 2.5, scope={"pipeline": "p2"}, window="1d", shared=True, ledger=ledger, name="shared"
    )
    assert shared.spent_usd == pytest.approx(2 * cost)
    with pytest.raises(tokentrail.BudgetExceeded):
        shared.reserve(cost)
    in_memory = tokentrail.budget(usd=cost * 2.5, scope={"pipeline": "p2"}, window="1d")
    assert in_memory.spent_usd == 0  # without shared=True the ledger is never read


def test_cli_status_agrees_with_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from tokentrail import ledger as ledger_module
    from tokentrail.cli import main
    from tokentrail.ledger.api import create_app

    fake, _ = exact_fake()
    ledger = tmp_path / "ledger.sqlite"
    tokentrail.instrument(ledger=ledger, setup_otel=False)
    try:
        with tokentrail.attribute(pipeline="p3"):
            for _ in range(3):
                ask(fake.client())
        ledger_module.flush()
    finally:
        tokentrail.uninstrument()
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budget]]\nname = "run"\nusd = 1.0\nscope = { pipeline = "p3" }\n')
    assert (
        main(["budget", "status", "--budgets", str(budgets), "--ledger", str(ledger), "--format", "json"])
        == 0
    )
    (row,) = json.loads(capsys.readouterr().out)
    served = TestClient(create_app(ledger)).get("/v1/pipelines/p3/budget", params={"budget_usd": 1.0}).json()
    assert row["spent_usd"] == pytest.approx(served["spent_usd"]) and row["spent_usd"] > 0
    assert row["remaining_usd"] == pytest.approx(served["remaining_usd"])


def test_serve_lists_the_configured_budgets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from tokentrail import ledger as ledger_module
    from tokentrail.cli import main
    from tokentrail.ledger.api import create_app

    fake, cost = exact_fake()
    ledger = tmp_path / "ledger.sqlite"
    tokentrail.instrument(ledger=ledger, setup_otel=False)
    try:
        with tokentrail.attribute(pipeline="p4"):
            ask(fake.client())
        ledger_module.flush()
    finally:
        tokentrail.uninstrument()
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(
        '[[budget]]\nname = "p4-daily"\nusd = 2.0\nwindow = "1d"\nscope = { pipeline = "p4" }\n'
    )
    assert (
        main(["budget", "status", "--budgets", str(budgets), "--ledger", str(ledger), "--format", "json"])
        == 0
    )
    (cli_row,) = json.loads(capsys.readouterr().out)
    response = TestClient(create_app(ledger, budgets)).get("/v1/budgets")
    assert response.status_code == 200
    (served,) = response.json()
    assert served["name"] == "p4-daily" and served["spent_usd"] == pytest.approx(cost)
    assert served["remaining_usd"] == pytest.approx(2.0 - cost)
    assert served["over_budget"] is False and served["percent_used"] == pytest.approx(cost / 2.0 * 100)
    assert served["spent_usd"] == pytest.approx(cli_row["spent_usd"])
    unconfigured = TestClient(create_app(ledger)).get("/v1/budgets")
    assert unconfigured.status_code == 404 and "TOKENTRAIL_BUDGETS" in unconfigured.json()["detail"]
