"""A LangGraph pipeline of three agents on three providers, with its cost explained.

    PM (OpenAI, through LangChain's ChatOpenAI) -> Dev (Anthropic SDK) -> QA (Gemini SDK) -> Dev ...

Nothing in here mentions tokentrail except the attribution of the run to a pipeline and the
summary at the end: run it under ``opentelemetry-instrument`` (as ``./scripts/demo`` does) and
every model call is instrumented, priced and recorded; LangGraph's node names become the agents.

With no API keys it runs against tokentrail's bundled fake provider server (started here, on
``--port``). With ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY`` and ``GEMINI_API_KEY`` set, each agent
whose key is set talks to the real provider instead.

The fake server listens on loopback, so tell tokentrail which provider it stands in for there:
``TOKENTRAIL_PROVIDER_HOSTS=127.0.0.1:<port>=openai`` (Anthropic and Gemini clients are recognised
by their SDK; the Anthropic client reaches the server as ``localhost`` so the mapping of
127.0.0.1 does not apply to it).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import Any, TypedDict

import anthropic
from google import genai
from google.genai import types as genai_types
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

import tokentrail
from tokentrail.testing import FakeLLMServer

TEAM_GUIDE = (
    "Team conventions: small functions with clear names; tests first; no global state; "
    "errors say what to do; every public function documented. " * 60
)


# Keys for the fake server (it accepts any). Named here so a test can prove no key leaks anywhere.
FAKE_KEYS = {"openai": "sk-fake-demo", "anthropic": "sk-ant-fake-demo", "gemini": "fake-gemini-key"}


class State(TypedDict, total=False):
    feature: str
    plan: str
    code: str
    review: str
    rounds: int


class Agents:
    """The three agents' clients: real providers where a key is set, the fake server otherwise."""

    def __init__(self, fake: FakeLLMServer | None) -> None:
        openai_key = os.environ.get("OPENAI_API_KEY")
        anthropic_key = os.environ.get("ANTHROPIC_API_KEY")
        gemini_key = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        self.pm_model = ChatOpenAI(
            model="gpt-4o-mini",
            api_key=openai_key or FAKE_KEYS["openai"],
            base_url=None if openai_key else fake.base_url,  # type: ignore[union-attr]
            max_retries=2,
        )
        self.dev_client = anthropic.Anthropic(
            api_key=anthropic_key or FAKE_KEYS["anthropic"],
            # "localhost", not 127.0.0.1: the provider_hosts mapping of the fake server's
            # OpenAI face must not apply to the Anthropic client.
            base_url=None if anthropic_key else fake.url.replace("127.0.0.1", "localhost"),  # type: ignore[union-attr]
        )
        http_options = None if gemini_key else genai_types.HttpOptions(base_url=fake.url)  # type: ignore[union-attr]
        self.qa_client = genai.Client(api_key=gemini_key or FAKE_KEYS["gemini"], http_options=http_options)

    def pm(self, state: State) -> State:
        answer = self.pm_model.invoke(
            [
                ("system", "You are the product manager. Write a short, numbered plan."),
                ("user", f"Feature: {state['feature']}"),
            ]
        )
        return {"plan": str(answer.content)}

    def dev(self, state: State) -> State:
        feedback = f"\nQA feedback to address: {state['review']}" if state.get("review") else ""
        # The long, stable team guide is marked for prompt caching: the second round reads it
        # from the cache, at a tenth of the price.
        with self.dev_client.messages.stream(
            model="claude-sonnet-4-6",
            max_tokens=1024,
            system=[{"type": "text", "text": TEAM_GUIDE, "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": f"Implement this plan:\n{state['plan']}{feedback}"}],
        ) as stream:
            code = "".join(stream.text_stream)
        return {"code": code}

    def qa(self, state: State) -> State:
        response = self.qa_client.models.generate_content(
            model="gemini-2.5-flash",
            contents=f"Review this implementation for bugs:\n{state['code']}",
            config=genai_types.GenerateContentConfig(
                thinking_config=genai_types.ThinkingConfig(thinking_budget=512)
            ),
        )
        return {"review": response.text or "", "rounds": state.get("rounds", 0) + 1}


def build_graph(agents: Agents) -> Any:
    graph = StateGraph(State)
    graph.add_node("PM", agents.pm)
    graph.add_node("Dev", agents.dev)
    graph.add_node("QA", agents.qa)
    graph.add_edge(START, "PM")
    graph.add_edge("PM", "Dev")
    graph.add_edge("Dev", "QA")
    # QA sends the work back to Dev once, as review loops do.
    graph.add_conditional_edges("QA", lambda state: "Dev" if state["rounds"] < 2 else END, ["Dev", END])
    return graph.compile()


def run(fake: FakeLLMServer | None, feature: str) -> State:
    """One pipeline run, attributed to its own pipeline id."""
    graph = build_graph(Agents(fake))
    with tokentrail.attribute(pipeline=f"pip_{uuid.uuid4().hex[:8]}", task="feature"):
        return graph.invoke({"feature": feature, "rounds": 0})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A three-agent LangGraph pipeline, with its costs.")
    parser.add_argument("--port", type=int, default=18765, help="port of the fake provider server")
    parser.add_argument("--runs", type=int, default=2, help="pipeline runs (default 2)")
    parser.add_argument("--feature", default="CSV export for the monthly invoice report")
    args = parser.parse_args(argv)
    if not tokentrail.instrumented():
        print(
            "note: tokentrail is not active; run this under `opentelemetry-instrument` "
            "(./scripts/demo does) or call tokentrail.instrument() first",
            file=sys.stderr,
        )
    with FakeLLMServer(port=args.port) as fake:
        for _ in range(args.runs):
            run(fake, args.feature)
    print(tokentrail.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
