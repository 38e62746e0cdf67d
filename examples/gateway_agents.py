"""A research-and-writing pipeline over a gateway (LiteLLM) and an agent framework (the OpenAI
Agents SDK), with its cost explained.

    Researcher  LiteLLM -> Amazon Bedrock (LiteLLM's own HTTP client: no SDK tokentrail patches)
    Editor      LiteLLM -> the openai SDK (the SDK call is the one counted, named by the step)
    Triage      an Agents SDK agent, which hands off to ...
    Writer      ... an Agents SDK agent that writes the brief

``tokentrail.instrument()`` is the one line of set-up. The agent SDK's agents name their own calls
(``gen_ai.agent.name``) and become ``invoke_agent {name}`` roll-up spans; LiteLLM's steps are named
with ``tokentrail.attribute``. Every model call is counted once, whichever layers saw it, and
priced from the bundled price catalogue (LiteLLM's own cost figure is never used).

With no keys it runs against tokentrail's bundled fake provider server (started here): the
Bedrock route gets dummy AWS credentials, and the Triage agent's client asks the fake server to
answer with the handoff (``X-Fake-Tool-Call: transfer_to_writer``), as a real model would.

    ./scripts/demo-agents            # or: .venv/bin/python examples/gateway_agents.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

# LiteLLM fetches its model cost map from the internet at import unless told not to; tokentrail
# prices from its own bundled catalogue and needs nothing from there.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import tokentrail
from tokentrail.testing import FakeLLMServer

BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
EDITOR_MODEL = "gpt-4o-mini"
TRIAGE_MODEL = "gpt-4o"
WRITER_MODEL = "gpt-4o-mini"
FAKE_KEYS = {"openai": "sk-fake-gateway-demo", "aws": "fake-aws-secret-gateway-demo"}
CACHED = {"type": "ephemeral"}  # Anthropic's prompt caching, as LiteLLM passes it on to Bedrock
STYLE_GUIDE = "House style: short sentences, numbers with units, sources named, no hype. " * 40


def _fake_aws_credentials() -> None:
    """Dummy credentials for LiteLLM's Bedrock route to sign with (the fake server ignores them)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIAFAKEGATEWAYDEMO",
        "AWS_SECRET_ACCESS_KEY": FAKE_KEYS["aws"],
        "AWS_REGION_NAME": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)


def research(server: FakeLLMServer, topic: str) -> str:
    """The Researcher: LiteLLM over its own HTTP client to Bedrock (a cached style guide)."""
    import litellm

    with tokentrail.attribute(agent="Researcher", task="research"):
        response = litellm.completion(
            model=f"bedrock/{BEDROCK_MODEL}",
            aws_bedrock_runtime_endpoint=server.url,
            messages=[
                {
                    "role": "system",
                    "content": [
                        {"type": "text", "text": STYLE_GUIDE, "cache_control": {"type": "ephemeral"}}
                    ],
                },
                {"role": "user", "content": f"List the facts a brief on {topic} needs."},
            ],
        )
    return str(response.choices[0].message.content)


def edit(server: FakeLLMServer, notes: str) -> str:
    """The Editor: LiteLLM's OpenAI route, which goes through the openai SDK."""
    import litellm

    with tokentrail.attribute(agent="Editor", task="edit"):
        response = litellm.completion(
            model=f"openai/{EDITOR_MODEL}",
            api_base=server.base_url,
            api_key=FAKE_KEYS["openai"],
            messages=[{"role": "user", "content": f"Tighten these notes: {notes}"}],
        )
    return str(response.choices[0].message.content)


async def write(server: FakeLLMServer, notes: str) -> Any:
    """Triage hands off to Writer (Agents SDK); each agent's calls carry its name."""
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # the SDK's own traces go to OpenAI's dashboard: no key, none here
    plain = AsyncOpenAI(base_url=server.base_url, api_key=FAKE_KEYS["openai"], max_retries=0)
    handing_off = AsyncOpenAI(
        base_url=server.base_url,
        api_key=FAKE_KEYS["openai"],
        max_retries=0,
        default_headers={"X-Fake-Tool-Call": "transfer_to_writer"},
    )
    writer = Agent(
        name="Writer",
        instructions="Write a one-paragraph brief from the notes.",
        model=OpenAIChatCompletionsModel(model=WRITER_MODEL, openai_client=plain),
    )
    triage = Agent(
        name="Triage",
        instructions="Hand the notes to the writer.",
        handoffs=[writer],
        model=OpenAIChatCompletionsModel(model=TRIAGE_MODEL, openai_client=handing_off),
    )
    with tokentrail.attribute(task="write"):
        return await Runner.run(triage, f"Notes: {notes}")


def run(server: FakeLLMServer, topic: str) -> dict[str, Any]:
    """The whole pipeline, attributed to one pipeline id; returns what each step produced."""
    _fake_aws_credentials()
    with tokentrail.attribute(pipeline=f"brief-{uuid.uuid4().hex[:8]}", span="pipeline brief"):
        notes = research(server, topic)
        edited = edit(server, notes)
        result = asyncio.run(write(server, edited))
    return {
        "notes": notes,
        "edited": edited,
        "brief": str(result.final_output),
        "agent": result.last_agent.name,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topic", default="the cost of LLM calls")
    parser.add_argument(
        "--runs", type=int, default=2, help="pipeline runs (default 2: the second reads the cache)"
    )
    parser.add_argument("--ledger", default=".tokentrail/gateway-demo-ledger.sqlite")
    args = parser.parse_args(argv)
    Path(args.ledger).parent.mkdir(parents=True, exist_ok=True)
    with FakeLLMServer() as server:
        # The fake server's OpenAI face is on loopback: say which provider it stands in for there.
        tokentrail.instrument(
            ledger=args.ledger,
            provider_hosts={server.url.removeprefix("http://"): "openai"},
        )
        for _ in range(args.runs):
            produced = run(server, args.topic)
    print(f"brief by {produced['agent']}: {produced['brief'][:72]}...")
    print(tokentrail.summary())
    tokentrail.uninstrument()
    return 0


if __name__ == "__main__":
    sys.exit(main())
