"""instrument() twice, uninstrument(), instrumenting after clients exist: every call counted once.

For each SDK, a client made before anything is instrumented is used through the whole life cycle:
instrument() twice onto the same providers, calls; uninstrument(), calls (nothing recorded);
instrument() again, calls. Each recorded call must be exactly one span, one cost data point and
one sink record, with the same figures as a single instrumentation gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import tokentrail
from anthropic_wire import MESSAGES as CLAUDE_MESSAGES
from anthropic_wire import MODEL as CLAUDE
from anthropic_wire import FakeAnthropic
from gemini_wire import MODEL as GEMINI
from gemini_wire import FakeGemini
from openai_wire import MODEL as GPT
from openai_wire import FakeOpenAI
from tokentrail import semconv as sc


@dataclass(frozen=True)
class SDK:
    provider: str  # the name instrument(providers=...) takes
    make_client: Callable[[], Any]
    chat: Callable[[Any], str]  # one non-streamed call; returns the text the application got
    stream: Callable[[Any], str]  # one streamed call read to the end; returns the text
    provider_name: str  # gen_ai.provider.name
    input_tokens: int
    output_tokens: int


def _claude_chat(client: Any) -> str:
    return client.messages.create(model=CLAUDE, max_tokens=1024, messages=CLAUDE_MESSAGES).content[1].text


def _claude_stream(client: Any) -> str:
    with client.messages.stream(model=CLAUDE, max_tokens=1024, messages=CLAUDE_MESSAGES) as stream:
        return "".join(stream.text_stream)


def _gemini_chat(client: Any) -> str:
    return client.models.generate_content(model=GEMINI, contents="hi").text


def _gemini_stream(client: Any) -> str:
    return "".join(chunk.text for chunk in client.models.generate_content_stream(model=GEMINI, contents="hi"))


_HI = [{"role": "user", "content": "hi"}]


def _gpt_chat(client: Any) -> str:
    return client.chat.completions.create(model=GPT, messages=_HI).choices[0].message.content


def _gpt_stream(client: Any) -> str:
    chunks = client.chat.completions.create(model=GPT, messages=_HI, stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


SDKS = {
    "anthropic": SDK("anthropic", lambda: FakeAnthropic().client(), _claude_chat, _claude_stream,
                     "anthropic", input_tokens=7500, output_tokens=300),
    "google_genai": SDK("google_genai", lambda: FakeGemini().client(), _gemini_chat, _gemini_stream,
                        "gcp.gemini", input_tokens=1500, output_tokens=160),
    "openai": SDK("openai", lambda: FakeOpenAI().client(), _gpt_chat, _gpt_stream,
                  "openai", input_tokens=1200, output_tokens=30),
}  # fmt: skip


# The CallRecords every instrumentation in a test hands its sink (one list for the whole test).
Records = list[tokentrail.CallRecord]


def instrument_onto(recorded: Any, sdk: SDK, records: Records) -> list[str]:
    return tokentrail.instrument(
        tracer_provider=recorded.tracer_provider,
        meter_provider=recorded.meter_provider,
        sinks=[records.append],
        providers=[sdk.provider],
        setup_otel=False,
    )


def call_both(sdk: SDK, client: Any) -> None:
    assert sdk.chat(client) == "Hello there!"
    assert sdk.stream(client) == "Hello there!"


def assert_counted_once_each(recorded: Any, sdk: SDK, records: Records, calls: int) -> None:
    """``calls`` calls recorded: one span, one cost point and one sink record each, exact figures."""
    spans = recorded.spans()  # flushes: spans end and sinks run off the calling thread
    assert len(spans) == calls, [s.name for s in spans]
    assert all(s.attributes[sc.PROVIDER_NAME] == sdk.provider_name for s in spans)
    assert [s.attributes[sc.USAGE_INPUT_TOKENS] for s in spans] == [sdk.input_tokens] * calls
    assert [s.attributes[sc.USAGE_OUTPUT_TOKENS] for s in spans] == [sdk.output_tokens] * calls
    assert sum(1 for s in spans if s.attributes.get(sc.REQUEST_STREAM)) == calls // 2
    assert len({s.context.span_id for s in spans}) == calls
    (cost_point,) = recorded.points(sc.METRIC_OPERATION_COST)
    assert cost_point.count == calls
    assert math.isclose(cost_point.sum, sum(s.attributes[sc.COST_AMOUNT] for s in spans), rel_tol=1e-12)
    (input_point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input")
    assert (input_point.count, input_point.sum) == (calls, calls * sdk.input_tokens)
    assert len(records) == calls
    assert sorted(r.span_id for r in records) == sorted(format(s.context.span_id, "016x") for s in spans)


@pytest.mark.parametrize("name", list(SDKS))
def test_instrument_twice_counts_each_call_once(recorded, name):
    """The fixture instrumented once (its own sink); this is the second instrument()."""
    sdk, records = SDKS[name], []
    assert instrument_onto(recorded, sdk, records) == [sdk.provider]
    call_both(sdk, sdk.make_client())
    assert_counted_once_each(recorded, sdk, records, 2)


@pytest.mark.parametrize("name", list(SDKS))
def test_a_client_made_before_instrument_is_counted_once_through_the_life_cycle(recorded, name):
    sdk, records = SDKS[name], []
    tokentrail.uninstrument()
    client = sdk.make_client()  # made while nothing is instrumented

    call_both(sdk, client)  # not instrumented: nothing recorded
    assert recorded.spans() == [] and recorded.points(sc.METRIC_OPERATION_COST) == []

    instrument_onto(recorded, sdk, records)
    instrument_onto(recorded, sdk, records)  # again: settings replaced, SDK patched once
    call_both(sdk, client)
    assert_counted_once_each(recorded, sdk, records, 2)

    tokentrail.uninstrument()
    assert tokentrail.instrumented() == []
    call_both(sdk, client)  # the same client, uninstrumented again
    assert_counted_once_each(recorded, sdk, records, 2)

    instrument_onto(recorded, sdk, records)
    call_both(sdk, client)
    assert_counted_once_each(recorded, sdk, records, 4)


@pytest.mark.parametrize("name", ["anthropic", "google_genai"])
def test_uninstrument_twice_and_instrument_again_restores_and_repatches(recorded, name):
    sdk, records = SDKS[name], []
    tokentrail.uninstrument()
    tokentrail.uninstrument()  # a second uninstrument is harmless
    assert tokentrail.instrumented() == []
    assert instrument_onto(recorded, sdk, records) == [sdk.provider]
    assert tokentrail.instrumented() == [sdk.provider]
    call_both(sdk, sdk.make_client())
    assert_counted_once_each(recorded, sdk, records, 2)
