"""The run summary: per-agent usage and cost, totals, efficiency figures; text, JSON and dict."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tokentrail
from openai_wire import MODEL, FakeOpenAI, chat_usage
from tokentrail.pricing import Pricer


@pytest.fixture(autouse=True)
def fresh_summary():
    tokentrail.reset_summary()
    yield
    tokentrail.reset_summary()


def test_summary_totals_equal_the_sum_of_the_spans(recorded):
    client = FakeOpenAI().client()
    big = FakeOpenAI(chat_usage=chat_usage(prompt=64000, completion=100, cached=0)).client()
    for agent, times in (("PM", 1), ("Dev", 3)):
        with tokentrail.attribute(agent=agent):
            for _ in range(times):
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    with tokentrail.attribute(agent="QA"):
        big.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])

    data = tokentrail.summary(format="dict")
    spans = recorded.spans()
    assert data["totals"]["calls"] == len(spans) == 6
    assert data["totals"]["input_tokens"] == sum(s.attributes["gen_ai.usage.input_tokens"] for s in spans)
    assert math.isclose(
        data["totals"]["cost_usd"], sum(s.attributes["gen_ai.usage.cost.amount"] for s in spans)
    )
    assert data["agents"]["Dev"]["calls"] == 3
    assert data["agents"]["(no agent)"]["calls"] == 1
    assert data["efficiency"]["most_expensive_agent"] == "QA"
    attributed = [a for name, a in data["agents"].items() if name != "(no agent)"]
    expected_average = sum(a["input_tokens"] + a["output_tokens"] for a in attributed) / 3
    assert data["efficiency"]["average_tokens_per_agent"] == expected_average
    assert (
        data["efficiency"]["input_output_ratio"]
        == data["totals"]["input_tokens"] / data["totals"]["output_tokens"]
    )
    window = data["efficiency"]["context_window_utilisation"]["openai gpt-4o-mini-2024-07-18"]
    catalogue_window = Pricer().context_window("openai", "gpt-4o-mini-2024-07-18")
    assert window["largest_input_tokens"] == 64000
    assert window["context_window"] == catalogue_window and catalogue_window > 64000
    assert window["utilisation"] == 64000 / catalogue_window
    # The same data as JSON and as text.
    assert json.loads(tokentrail.summary(format="json")) == json.loads(json.dumps(data))
    text = tokentrail.summary()
    assert "most expensive agent: QA" in text and "Dev" in text
    with pytest.raises(ValueError, match="format"):
        tokentrail.summary(format="xml")


def test_summary_printed_at_exit_on_request(tmp_path: Path):
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            import tokentrail
            tokentrail.instrument(setup_otel=False)
            from openai_wire import FakeOpenAI
            with tokentrail.attribute(agent="Solo"):
                FakeOpenAI().client().chat.completions.create(model="gpt-4o-mini", messages=[])
            """
        )
    )
    env = {**os.environ, "TOKENTRAIL_SUMMARY": "1"}
    done = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "tokentrail run summary" in done.stderr and "Solo" in done.stderr
    quiet = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, timeout=60)
    assert "run summary" not in quiet.stderr
