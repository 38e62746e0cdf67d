"""``opentelemetry-instrument python app.py`` instruments with no code change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

APP = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    import tokentrail
    from openai_wire import FakeOpenAI

    records = []
    tokentrail.add_sink(records.append)
    client = FakeOpenAI().client()
    messages = [{{"role": "user", "content": "hi"}}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
    tokentrail.flush()  # sinks run on tokentrail's recorder thread
    print("RESULT " + json.dumps({{
        "instrumented": tokentrail.instrumented(),
        "costs": [r.cost.total for r in records],
        "inputs": [r.usage.input_tokens for r in records],
    }}))
    """
)


def test_entry_point_is_registered_under_our_own_name():
    names = {ep.name: ep.value for ep in entry_points(group="opentelemetry_instrumentor")}
    assert names.get("tokentrail_openai") == "tokentrail.instrumentation:OpenAIInstrumentor"
    assert "openai" not in names or not names["openai"].startswith("tokentrail")


def test_opentelemetry_instrument_runs_the_app_instrumented(tmp_path: Path):
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    if not launcher.exists():
        pytest.fail(f"{launcher} missing: tokentrail must be installed with its dependencies")
    app = tmp_path / "app.py"
    app.write_text(APP.format(tests=str(Path(__file__).parent)))
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "autoinstrument-test",
    }
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result_line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(result_line.removeprefix("RESULT "))
    assert "openai" in result["instrumented"]  # with langchain-core installed, "langchain" too
    assert result["inputs"] == [1200, 1200]
    assert result["costs"][0] == result["costs"][1] > 0
    # The console exporter printed our spans with their cost, under the configured service.
    assert '"gen_ai.usage.cost.amount"' in done.stdout
    assert '"service.name": "autoinstrument-test"' in done.stdout
    assert "sk-test-SECRET" not in done.stdout + done.stderr
