"""Every CLI and configuration error a user can make is one line naming the setting, with the
value cut short: never a traceback, never a 100 KB echo, never a hang."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tokentrail
from ledger_data import random_records
from tokentrail.cli import main
from tokentrail.ledger.writer import LedgerWriter

LONG = "x" * 100_000


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    writer = LedgerWriter(path, flush_interval=60)
    for record in random_records(20):
        writer(record)
    writer.close()
    return path


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err[:2000]
    assert len(err) < 400, err[:2000]
    return err


@pytest.mark.parametrize(
    ("arguments", "names"),
    [
        (["report", "--since", "99999999999d"], "--since"),
        (["report", "--since", "999999999999999999999999h"], "--since"),
        (["report", "--until", "0001-01-01"], "--until"),
        (["report", "--since", LONG], "--since"),
        (["report", "--model", "\udcff\udcfe"], "--model"),  # argv bytes \xff\xfe, as Python decodes them
        (["report", "--where", "agent=\udcff"], "--where"),
        (["trend", "--provider", "\udcff"], "--provider"),
    ],
)
def test_ledger_command_errors_are_one_line_naming_the_option(ledger, capsys, arguments, names):
    assert main([*arguments, "--ledger", str(ledger)]) == 1
    assert names in one_line(capsys)


def test_estimate_of_a_binary_file_is_one_line(tmp_path, capsys):
    binary = tmp_path / "messages.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    assert main(["estimate", "--model", "gpt-4o", "--messages", str(binary)]) == 1
    assert "--messages" in one_line(capsys)


def test_estimate_of_json_nested_too_deep_is_one_line(tmp_path, capsys):
    deep = tmp_path / "messages.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["estimate", "--model", "gpt-4o", "--messages", str(deep)]) == 1
    assert "--messages" in one_line(capsys)


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_a_price_file_nested_100_000_deep_is_one_line(tmp_path, capsys, suffix):
    deep = tmp_path / f"prices{suffix}"
    deep.write_text(("x = " if suffix == ".toml" else "x: ") + "[" * 100_000 + "]" * 100_000)
    assert main(["prices", "--check", str(deep)]) == 1
    assert "nested too deeply" in one_line(capsys)


def test_duplicate_model_entries_in_a_price_file_are_an_error(tmp_path, capsys):
    # Before: reported valid, and the first entry silently won.
    entry = '[[models]]\nprovider = "openai"\nmodel = "My-Model"\ninput_mtok = {}\noutput_mtok = 2.0\n\n'
    prices = tmp_path / "prices.toml"
    prices.write_text(entry.format(1.0) + entry.format(3.0).replace("My-Model", "my-model"))
    assert main(["prices", "--check", str(prices)]) == 1
    assert "models[1] repeats models[0]" in one_line(capsys)


def test_a_fifo_as_price_or_budget_file_fails_at_once(tmp_path):
    fifo = tmp_path / "prices.toml"
    os.mkfifo(fifo)
    script = (
        "import tokentrail, sys\n"
        "try:\n    tokentrail.instrument(ledger=False)\n"
        "except Exception as exc:\n    print(exc)\n"
    )
    for variable in ("TOKENTRAIL_PRICES", "TOKENTRAIL_BUDGETS"):
        env = {**os.environ, variable: str(fifo)}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.stdout.startswith(f"{variable}: ") and "not a regular file" in done.stdout, done


@pytest.mark.parametrize(
    ("variable", "value", "error"),
    [
        ("TOKENTRAIL_LEDGER", "l" * 300, tokentrail.ConfigError),
        ("TOKENTRAIL_LEDGER", LONG, tokentrail.ConfigError),
        ("TOKENTRAIL_PRICES", LONG, tokentrail.PriceOverrideError),
        ("TOKENTRAIL_PRICES", "/nonexistent/" + "p" * 200 + ".toml", tokentrail.PriceOverrideError),
        ("TOKENTRAIL_BUDGETS", LONG, tokentrail.ConfigError),
        ("TOKENTRAIL_FLUSH_TIMEOUT", "soon", tokentrail.ConfigError),
        ("TOKENTRAIL_LEDGER_RETENTION", LONG, tokentrail.ConfigError),
    ],
)
def test_configuration_errors_name_the_variable_and_cut_the_value(
    monkeypatch, tmp_path, variable, value, error
):
    monkeypatch.setenv("TOKENTRAIL_LEDGER", str(tmp_path / "l.sqlite"))
    monkeypatch.setenv(variable, value)
    with pytest.raises(error) as caught:
        tokentrail.instrument()
    message = str(caught.value)
    assert message.startswith(variable) and "\n" not in message and len(message) < 300, message[:1000]


@pytest.mark.parametrize("name_length", [300, 100_000])
def test_a_ledger_argument_too_long_for_the_file_system_is_one_line(name_length):
    with pytest.raises(tokentrail.ConfigError) as caught:
        tokentrail.instrument(ledger="l" * name_length)
    message = str(caught.value)
    assert message.startswith("ledger=") and len(message) < 300
