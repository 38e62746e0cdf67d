"""API keys never appear in anything tokentrail writes, even with content capture on.

A full run of the demo pipeline (three SDKs, LangGraph) under ``opentelemetry-instrument``, with
every output switched on: spans and metrics to the console exporters, content captured on spans
and events, the JSON call log, the ledger. Then every byte of it is searched for the keys used.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import multi_agent  # noqa: E402 - the example is a script, imported from its folder

RUNNER = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    sys.path.insert(0, {examples!r})
    import multi_agent
    sys.exit(multi_agent.main(["--port", {port!r}, "--runs", "1"]))
    """
)


def test_no_key_in_spans_metrics_logs_or_ledger(tmp_path: Path):
    from prometheus_support import free_port

    port = str(free_port())
    ledger = tmp_path / "ledger.sqlite"
    runner = tmp_path / "run.py"
    runner.write_text(RUNNER.format(examples=str(ROOT / "examples"), port=port))
    env = {key: value for key, value in os.environ.items() if not key.endswith("_API_KEY")} | {
        "TOKENTRAIL_LEDGER": str(ledger),
        "TOKENTRAIL_LOG_CALLS": "1",
        "TOKENTRAIL_PROVIDER_HOSTS": f"127.0.0.1:{port}=openai",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "secrets-test",
    }
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    done = subprocess.run(
        [str(launcher), sys.executable, str(runner)], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ledger_dump = "\n".join(sqlite3.connect(ledger).iterdump())
    outputs = {"stdout": done.stdout, "stderr": done.stderr, "ledger": ledger_dump}
    # The run really produced each output, with content captured: an empty haystack proves nothing.
    assert '"gen_ai.usage.cost.amount"' in done.stdout and "gen_ai.input.messages" in done.stdout
    assert "gen_ai_client_operation_cost" in done.stdout or "gen_ai.client.operation.cost" in done.stdout
    assert "tokentrail.calls" in done.stderr
    assert ledger_dump.count('INSERT INTO "calls"') >= 5
    for provider, key in multi_agent.FAKE_KEYS.items():
        for name, text in outputs.items():
            assert key not in text, f"the {provider} key appears in {name}"
