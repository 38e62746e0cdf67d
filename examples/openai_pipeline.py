"""An OpenAI-only pipeline, instrumented in code, against the bundled fake provider.

(The README's demo is ``multi_agent.py``: three providers under ``opentelemetry-instrument``.
This one shows the one-line set-up and reading every call in-process through a sink.)

Runs with no API keys and no network: it starts `tokentrail.testing.FakeLLMServer` on loopback,
points real `openai` clients at it, and runs a pipeline of agents (PM, Dev, QA, a researcher on
OpenRouter, a nightly batch summary) under `tokentrail.attribute(...)`. Every call goes through
tokentrail exactly as it would against the real APIs; at the end the demo prints what tokentrail
recorded: cost and tokens per agent and per model.

The fake server is reached through two host names so that tokentrail sees two providers:
127.0.0.1 is mapped to `openai` (priced from the catalogue) and localhost to `openrouter`
(whose responses report their own cost, which tokentrail then uses).

Send the spans and metrics to a collector too with `OTEL_EXPORTER_OTLP_ENDPOINT=http://...`.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

import openai

import tokentrail
from tokentrail.testing import FakeLLMServer

SYSTEM_PROMPT = (
    "You are part of a software team. Follow the team's conventions: small functions, "
    "tests first, clear names, and explain trade-offs briefly. " * 40
)


def run_pipeline(server: FakeLLMServer) -> None:
    """The workload: what a real multi-agent pipeline does, call for call."""
    openai_client = openai.OpenAI(base_url=server.base_url, api_key="sk-demo-not-a-real-key", max_retries=2)
    openrouter_base = server.base_url.replace("127.0.0.1", "localhost")
    openrouter = openai.OpenAI(
        base_url=openrouter_base,
        api_key="sk-or-demo-not-a-real-key",
        default_headers={"X-Fake-Flavor": "openrouter"},
    )
    feature = "Add CSV export to the monthly invoice report"

    with tokentrail.span("pipeline pip_demo", pipeline="pip_demo"):
        with tokentrail.attribute(phase="plan", agent="PM", task="plan", span=True):
            plan = openai_client.chat.completions.create(
                model="gpt-4o",
                messages=[
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": f"Write a three-step plan for: {feature}"},
                ],
            )
            steps = [f"step {i}: {plan.choices[0].message.content[:40]}" for i in range(1, 4)]

        with tokentrail.attribute(phase="research", agent="Researcher", task="research", span=True):
            openrouter.chat.completions.create(
                model="anthropic/claude-sonnet-4.5",
                messages=[{"role": "user", "content": f"What do CSV exports usually get wrong? {feature}"}],
            )
            openai_client.embeddings.create(
                model="text-embedding-3-small", input=[feature, *steps], encoding_format="float"
            )

        with tokentrail.attribute(phase="build", agent="Dev", task="implement", span=True):
            for number, step in enumerate(steps):
                # Streams, as coding agents use them; the first attempt of the second step is
                # rate-limited and retried by the SDK inside the same call.
                headers = {"X-Fake-Chunks": "40"}
                if number == 1:
                    server.fail_next(status=429)
                stream = openai_client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[
                        {"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": f"Implement {step}"},
                    ],
                    stream=True,
                    extra_headers=headers,
                )
                "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

        with tokentrail.attribute(phase="review", agent="QA", task="review", span=True):
            with openai_client.responses.stream(
                model="o4-mini",
                input=f"Review the implementation of: {feature}",
                reasoning={"effort": "medium"},
            ) as review:
                review.get_final_response()
            # A reviewer that stops reading early: the call still ends, marked incomplete.
            partial = openai_client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "List every edge case you can think of"}],
                stream=True,
                extra_headers={"X-Fake-Chunks": "60"},
            )
            for index, _chunk in enumerate(partial):
                if index == 5:
                    break
            partial.close()

    nightly = tokentrail.attribute(pipeline="nightly", agent="Summarizer", task="summarize")
    with nightly, tokentrail.price_context(processing="batch"):
        openai_client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Summarise today's pipeline runs for the team"}],
        )


def report(calls: list[tokentrail.CallRecord], out: Any = sys.stdout) -> None:
    """Print what tokentrail recorded: per agent, per model, and in total."""

    def table(title: str, key: Any) -> None:
        groups: dict[str, list[tokentrail.CallRecord]] = defaultdict(list)
        for call in calls:
            groups[key(call)].append(call)
        print(f"\n{title}", file=out)
        header = (
            f"  {'':<34}{'calls':>6}{'input':>9}{'cached':>9}{'output':>9}{'reasoning':>10}{'cost USD':>12}"
        )
        print(header, file=out)
        print("  " + "-" * (len(header) - 2), file=out)
        for name, group in sorted(groups.items(), key=lambda item: -_cost(item[1])):
            print(_row(name, group), file=out)
        print("  " + "-" * (len(header) - 2), file=out)
        print(_row("total", calls), file=out)

    print(f"tokentrail recorded {len(calls)} LLM calls", file=out)
    table("By agent", lambda c: c.attribution.get("agent", "-"))
    table("By provider and model", lambda c: f"{c.provider} {c.response_model or c.request_model}")
    notes = []
    for call in calls:
        if call.cost is not None and call.cost.source == "provider":
            notes.append(f"{call.provider} {call.response_model}: cost reported by the provider")
        if call.incomplete:
            notes.append(
                f"{call.response_model}: stream closed early, usage unknown (span marked incomplete)"
            )
        if call.usage is not None and call.cost is None:
            notes.append(f"{call.response_model}: no known price (tokens recorded, cost absent)")
    if notes:
        print("\nNotes", file=out)
        for note in dict.fromkeys(notes):
            print(f"  - {note}", file=out)


def _cost(group: list[tokentrail.CallRecord]) -> float:
    return sum(call.cost.total for call in group if call.cost is not None)


def _row(name: str, group: list[tokentrail.CallRecord]) -> str:
    def tokens(field: str) -> int:
        return sum(getattr(call.usage, field) for call in group if call.usage is not None)

    return (
        f"  {name[:34]:<34}{len(group):>6}{tokens('input_tokens'):>9,}{tokens('cache_read_tokens'):>9,}"
        f"{tokens('output_tokens'):>9,}{tokens('reasoning_tokens'):>10,}{_cost(group):>12.6f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    calls: list[tokentrail.CallRecord] = []
    with FakeLLMServer() as server:
        port = server.url.rsplit(":", 1)[1]
        tokentrail.instrument(
            provider_hosts={f"127.0.0.1:{port}": "openai", f"localhost:{port}": "openrouter"},
            sinks=[calls.append],
            ledger=False,  # a demo's fake spend does not belong in the user's ledger
        )
        print(f"fake provider server on {server.base_url}; running the pipeline ...")
        run_pipeline(server)
    report(calls)
    tokentrail.uninstrument()
    return 0


if __name__ == "__main__":
    sys.exit(main())
