"""How every ``tokentrail`` command behaves as a Unix command: quiet on a closed pipe, ``python -m
tokentrail``, the developer's command last in the help, the provider inferred from the price
catalogue and the same provider aliases everywhere, and costs to the same precision in ``trend``
and ``report``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ledger_data import fill, random_records
from prometheus_support import running_prometheus, wait_for
from promql_support import tokentrail_instruments
from tokentrail.cli import EXIT_BROKEN_PIPE, main
from tokentrail.ledger.prometheus import SCOPE_NAME
from tokentrail.pricing import PROVIDER_ALIASES

# Commands that run a server until stopped: their only output is one status line, and a broken
# pipe there goes through the same dispatcher as every other command.
SERVERS = {"serve", "dashboard", "fake-server"}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-behaviour") / "ledger.sqlite"
    fill(path, random_records(2500, seed=11, days=5))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli-files")
    messages = folder / "messages.json"
    messages.write_text(json.dumps([{"role": "user", "content": "hello there"}]))
    budgets = folder / "budgets.toml"
    budgets.write_text('[[budget]]\nname = "daily"\nusd = 10\nwindow = "day"\n')
    return {"messages": messages, "budgets": budgets, "stack": folder / "stack"}


def command_names() -> list[str]:
    """The subcommands, in the order ``tokentrail --help`` lists them."""
    done = subprocess.run(
        [sys.executable, "-m", "tokentrail", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = re.findall(r"^    (\S+)", done.stdout, flags=re.MULTILINE)
    assert names, done.stdout
    return names


def argv_for(command: str, ledger: Path, files: dict[str, Path]) -> list[str]:
    """A successful run of ``command`` that writes to standard output."""
    return {
        "prices": ["prices", "gpt-4o-mini"],
        "report": ["report", "--ledger", str(ledger), "--by", "agent"],
        "trend": ["trend", "--ledger", str(ledger)],
        "export": ["export", "--ledger", str(ledger)],
        "budget": ["budget", "status", "--budgets", str(files["budgets"]), "--ledger", str(ledger)],
        "estimate": ["estimate", "--model", "gpt-4o-mini", "--messages", str(files["messages"])],
        "stack": ["stack", "init", str(files["stack"]), "--force"],
        "forecast": ["forecast", "--ledger", str(ledger)],
        "whatif": ["whatif", "--ledger", str(ledger), "--model", "openai:gpt-4o-mini"],
        "advise": ["advise", "--ledger", str(ledger)],
        "ledger": ["ledger", "info", "--ledger", str(ledger)],
    }[command]


class ClosedPipe:
    """Standard output whose reader has gone: every write fails as it does on a closed pipe."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return False


def test_every_command_is_covered():
    names = command_names()
    assert set(names) - SERVERS, names
    for name in set(names) - SERVERS:
        argv_for(name, Path("x"), {"messages": Path("m"), "budgets": Path("b"), "stack": Path("s")})


@pytest.mark.parametrize("command", sorted(set(command_names()) - SERVERS))
def test_a_closed_pipe_ends_every_command_quietly(command, ledger, files, monkeypatch, capsys):
    monkeypatch.setenv("TOKENTRAIL_LEDGER", "off")
    pipe = ClosedPipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    code = main(argv_for(command, ledger, files))
    assert pipe.writes >= 1, f"{command} wrote nothing: the test did not exercise it"
    assert code == EXIT_BROKEN_PIPE
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["export", "report", "trend"])
def test_head_closes_the_pipe_without_a_traceback(command, ledger, tmp_path):
    """The real thing: ``python -m tokentrail export ... | head -1`` in a shell."""
    argv = {
        "export": ["export"],
        "report": ["report", "--by", "day", "--by", "hour", "--by", "agent", "--by", "model", "--format=csv"],
        "trend": ["trend", "--hourly", "10000"],
    }[command]
    pipeline = f"set -o pipefail; {sys.executable} -m tokentrail {' '.join(argv)} --ledger {ledger} | head -1"
    done = subprocess.run(
        ["bash", "-c", pipeline],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TOKENTRAIL_LEDGER": "off"},
    )
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 1
    # The output is larger than a pipe's buffer, so the writer did meet the closed pipe.
    full = subprocess.run(
        [sys.executable, "-m", "tokentrail", *argv, "--ledger", str(ledger)],
        capture_output=True,
        timeout=120,
        env={**os.environ, "TOKENTRAIL_LEDGER": "off"},
    )
    assert full.returncode == 0 and len(full.stdout) > 1 << 16
    assert done.returncode == EXIT_BROKEN_PIPE


def test_python_dash_m_tokentrail():
    done = subprocess.run(
        [sys.executable, "-m", "tokentrail", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    import tokentrail

    assert done.stdout.strip() == f"tokentrail {tokentrail.__version__}"


def test_the_developer_command_comes_last():
    names = command_names()
    assert names[-1] == "fake-server" and names.count("fake-server") == 1
    assert {"prices", "report", "trend", "export", "estimate"} <= set(names[:-1])


# --- the provider: inferred from the catalogue, aliases alike ----------------------------------------------


@pytest.mark.parametrize(
    "model, provider",
    [("claude-sonnet-4-5", "anthropic"), ("gpt-4o-mini", "openai"), ("gemini-2.5-flash", "gcp.gemini")],
)
def test_the_provider_is_inferred_from_the_catalogue(model, provider, files, capsys):
    assert main(["prices", model]) == 0
    assert capsys.readouterr().out.startswith(f"{model} ({provider}) priced as {model}")
    argv = ["estimate", "--model", model, "--messages", str(files["messages"]), "--format", "json"]
    assert main(argv) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["provider"] == provider and found["worst_case_usd"] > 0
    # A Claude model is not counted as an unknown OpenAI one: anthropic's approximation.
    assert ("exact" in found["note"]) == (provider == "openai")


@pytest.mark.parametrize(
    "model, message",
    [
        ("acme-private-finetune-7", "the price catalogue does not list it; pass --provider"),
        ("text-embedding-3-small", "priced by several providers (azure.ai.openai, openai): pass --provider"),
    ],
)
def test_an_unknown_or_ambiguous_model_asks_for_the_provider(model, message, files, capsys):
    for argv in (["prices", model], ["estimate", "--model", model, "--messages", str(files["messages"])]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("error: ")


@pytest.mark.parametrize("alias", sorted(PROVIDER_ALIASES))
def test_every_alias_means_the_same_in_every_command(alias, files, capsys, monkeypatch):
    """prices and estimate resolve an alias alike; an override file gives every provider a price."""
    target = PROVIDER_ALIASES[alias]
    overrides = files["messages"].parent / f"{alias}.toml"
    overrides.write_text(
        f'[[models]]\nprovider = "{target}"\nmodel = "m-{alias}"\ninput_mtok = 1.0\noutput_mtok = 2.0\n'
    )
    assert main(["prices", f"m-{alias}", "--provider", alias, "--prices", str(overrides)]) == 0
    assert capsys.readouterr().out.startswith(f"m-{alias} ({target}) priced as")
    # Without --provider, the override file's provider is the one that prices the model.
    assert main(["prices", f"m-{alias}", "--prices", str(overrides)]) == 0
    assert capsys.readouterr().out.startswith(f"m-{alias} ({target}) priced as")
    argv = ["estimate", "--model", f"m-{alias}", "--provider", alias, "--messages", str(files["messages"])]
    assert main([*argv, "--format", "json"]) == 0
    # estimate counts Azure OpenAI as OpenAI (same tokenizer); every other alias names its target.
    wanted = "openai" if target == "azure.ai.openai" else target
    assert json.loads(capsys.readouterr().out)["provider"] == wanted


@pytest.mark.parametrize("alias", sorted(PROVIDER_ALIASES))
def test_the_ledger_commands_filter_by_an_alias_as_by_its_name(alias, ledger, capsys):
    """report, trend and export take --provider gemini as they take --provider gcp.gemini."""
    for command in (["report", "--format", "json"], ["trend", "--format", "json"], ["export"]):
        outputs = []
        for provider in (alias, PROVIDER_ALIASES[alias]):
            assert main([*command, "--ledger", str(ledger), "--provider", provider]) == 0
            # The same rows and figures; only the report's "now" moves between the two runs.
            outputs.append(re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+\+00:00", "NOW", capsys.readouterr().out))
        assert outputs[0] == outputs[1], command
        assert len(outputs[0]) > 100
    assert main(["report", "--ledger", str(ledger), "--provider", alias, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["filters"]["provider"] == PROVIDER_ALIASES[alias]


# --- trend and report agree to the last digit ------------------------------------------------------------


def test_trend_and_report_show_costs_to_the_same_precision(ledger, capsys):
    assert main(["report", "--ledger", str(ledger)]) == 0
    report_cost = re.search(r"^  cost\s+(\$[0-9,.]+)$", capsys.readouterr().out, flags=re.MULTILINE)
    assert main(["trend", "--ledger", str(ledger), "--daily", "10"]) == 0
    trend_out = capsys.readouterr().out
    trend_total = re.search(r"^  total\s+(\$[0-9,.]+)$", trend_out, flags=re.MULTILINE)
    assert report_cost and trend_total, trend_out
    assert trend_total.group(1) == report_cost.group(1)
    decimals = {len(cost.split(".")[1]) for cost in re.findall(r"\$[0-9,]+\.[0-9]+", trend_out)}
    assert decimals == {len(report_cost.group(1).split(".")[1])}


def test_stack_without_an_action_says_how(capsys):
    assert main(["stack"]) == 1
    assert capsys.readouterr().err == "error: use: tokentrail stack init DIR [--force]\n"


# --- report --source prometheus beside another instrumentation ---------------------------------------------


# What Prometheus scrapes from an application instrumented twice: tokentrail's series (3 calls, $0.5)
# and another GenAI instrumentation's same-named ones under its own scope (5 calls, $2).
def exposition(scope: str) -> str:
    model = 'gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o"'
    both = (
        (f'otel_scope_name="{scope}",{model}', 3, 0.5),
        (f'otel_scope_name="other.genai",{model}', 5, 2.0),
    )
    lines = []
    for family, cost_is_sum in (
        ("gen_ai_client_operation_duration_seconds", False),
        ("gen_ai_client_operation_cost_USD", True),
    ):
        lines.append(f"# TYPE {family} histogram")
        for labels, calls, cost in both:
            lines.append(f'{family}_bucket{{{labels},le="+Inf"}} {calls}')
            lines.append(f"{family}_sum{{{labels}}} {cost if cost_is_sum else 1.5}")
            lines.append(f"{family}_count{{{labels}}} {calls}")
    return "\n".join(lines) + "\n"


def test_report_from_prometheus_counts_only_tokentrail_s_scope(tmp_path, capsys):
    import http.server
    import threading

    assert {i["scope"] for i in tokentrail_instruments()} == {SCOPE_NAME}
    body = exposition(SCOPE_NAME)

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = body.encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = f"127.0.0.1:{server.server_address[1]}"
        with running_prometheus(tmp_path, [target]) as prom:
            wait_for(lambda: prom.query("gen_ai_client_operation_cost_USD_sum"), "the first scrape")
            both = sum(float(r["value"][1]) for r in prom.query("gen_ai_client_operation_cost_USD_sum"))
            assert both == 2.5  # both scopes are in Prometheus
            assert main(["report", "--source", "prometheus", "--url", prom.url, "--format", "json"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["calls"] == 3 and totals["cost_usd"] == 0.5
