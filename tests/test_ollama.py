"""The ollama SDK, for real, over HTTP against the fake provider server (Ollama's native API and its
NDJSON streams).

Expected figures are worked out from the server's own rules (the prompt's words, the answer's
chunks); a local model has no catalogue price, so the priced tests price it through the user's
override file (``TOKENTRAIL_PRICES``) and recompute the cost from the file's rates.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokentrail
from tokentrail import semconv as sc
from tokentrail.instrumentation import OllamaInstrumentor
from tokentrail.providers import ollama as ollama_provider
from tokentrail.testing import FakeLLMServer, _ollama_wire
from tokentrail.testing.fake_server import DEFAULT_CHUNKS

ollama = pytest.importorskip("ollama")

MODEL = "llama3.2"
MESSAGES = [{"role": "user", "content": "Say hello to the fake server"}]
INPUT_MTOK, OUTPUT_MTOK = 0.10, 0.40  # the override's USD per million tokens
PRICES = f"""
[[models]]
provider = "ollama"
model = "{MODEL}"
input_mtok = {INPUT_MTOK}
output_mtok = {OUTPUT_MTOK}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, request: pytest.FixtureRequest) -> Any:
    """``recorded``, with a price override file for the local model in ``TOKENTRAIL_PRICES``."""
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    monkeypatch.setenv("TOKENTRAIL_PRICES", str(path))
    return request.getfixturevalue("recorded")


def client(server: FakeLLMServer, *, is_async: bool = False, **headers: str) -> Any:
    make = ollama.AsyncClient if is_async else ollama.Client
    return make(host=server.url, headers=headers or None)


def override_price(usage: tokentrail.Usage) -> float:
    return (usage.input_tokens * INPUT_MTOK + usage.output_tokens * OUTPUT_MTOK) / 1e6


def sent_prompt_tokens(server: FakeLLMServer) -> int:
    return _ollama_wire.prompt_tokens(server.requests[-1].body)


def test_chat_one_span_exact_usage_unpriced_never_zero(recorded, server):
    server.reset()
    response = client(server).chat(model=MODEL, messages=MESSAGES)
    (call,) = recorded.calls
    span = recorded.span()
    attributes = dict(span.attributes)
    assert span.name == f"chat {MODEL}" and span.kind.name == "CLIENT"
    assert attributes[sc.PROVIDER_NAME] == "ollama"
    assert attributes[sc.OPERATION_NAME] == "chat"
    assert attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attributes[sc.RESPONSE_MODEL] == MODEL
    assert attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert call.usage.input_tokens == response.prompt_eval_count == sent_prompt_tokens(server)
    assert call.usage.output_tokens == response.eval_count == DEFAULT_CHUNKS
    assert call.usage.consistent
    assert call.cost is None and attributes[sc.PRICE_UNPRICED] is True  # local: no list price
    assert sc.COST_AMOUNT not in attributes


def test_an_override_prices_the_local_model(priced, server):
    server.reset()
    client(server).chat(model=MODEL, messages=MESSAGES)
    (call,) = priced.calls
    assert call.cost is not None and call.cost.price_source == "override"
    assert math.isclose(call.cost.total, override_price(call.usage), rel_tol=1e-9)
    assert dict(priced.span().attributes)[sc.COST_AMOUNT] == call.cost.total


def test_the_module_level_functions_use_the_patched_request(recorded, server, monkeypatch):
    server.reset()
    default = ollama._client  # the package's default client, bound at import (ollama.chat is its method)
    monkeypatch.setattr(default._client, "base_url", server.url)
    ollama.chat(model=MODEL, messages=MESSAGES)
    ollama.generate(model=MODEL, prompt="Once upon a time")
    chat, generate = recorded.calls
    assert (chat.operation, generate.operation) == ("chat", "text_completion")


def test_chat_stream_usage_from_the_done_line_equals_the_plain_call(priced, server):
    server.reset()
    plain = client(server).chat(model=MODEL, messages=MESSAGES)
    chunks = list(client(server).chat(model=MODEL, messages=MESSAGES, stream=True))
    assert chunks[-1].done and all(not chunk.done for chunk in chunks[:-1])
    assert "".join(chunk.message.content for chunk in chunks) == plain.message.content
    whole, streamed = priced.calls
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    assert streamed.stream and not streamed.incomplete
    assert streamed.finish_reasons == ("stop",) and streamed.response_model == MODEL
    assert streamed.time_to_first_chunk_s is not None


def test_a_stream_looped_over_straight_from_the_call_is_one_complete_call(priced, server):
    # The usual shape: no name holds the stream, so the loop holds only what iter() gave it. The
    # stand-in must stay alive until the loop ends (its finaliser ends an abandoned stream's call).
    server.reset()
    text = ""
    for chunk in client(server).chat(model=MODEL, messages=MESSAGES, stream=True):
        text += chunk.message.content
    (call,) = priced.calls
    assert text and not call.incomplete and call.finish_reasons == ("stop",)
    assert call.usage is not None and call.usage.output_tokens == DEFAULT_CHUNKS


async def test_an_async_stream_looped_over_straight_from_the_call_is_one_complete_call(priced, server):
    server.reset()
    async_client = client(server, is_async=True)
    text = ""
    async for chunk in await async_client.chat(model=MODEL, messages=MESSAGES, stream=True):
        text += chunk.message.content
    (call,) = priced.calls
    assert text and not call.incomplete and call.finish_reasons == ("stop",)
    assert call.usage is not None and call.usage.output_tokens == DEFAULT_CHUNKS


def test_generate_plain_and_streamed(priced, server):
    server.reset()
    prompt, system = "Once upon a time", "You tell short stories."
    plain = client(server).generate(model=MODEL, prompt=prompt, system=system)
    expected_input = sent_prompt_tokens(server)
    streamed_chunks = client(server).generate(model=MODEL, prompt=prompt, stream=True)
    text = "".join(chunk.response for chunk in streamed_chunks)
    assert text == plain.response
    whole, streamed = priced.calls
    assert whole.operation == streamed.operation == "text_completion"
    assert whole.usage.input_tokens == plain.prompt_eval_count == expected_input
    assert streamed.usage.output_tokens == whole.usage.output_tokens == DEFAULT_CHUNKS
    assert math.isclose(whole.cost.total, override_price(whole.usage), rel_tol=1e-9)


def test_a_token_limit_is_the_finish_reason(recorded, server):
    server.reset()
    options = {"num_predict": 3, "temperature": 0}
    response = client(server).chat(model=MODEL, messages=MESSAGES, options=options)
    (call,) = recorded.calls
    assert call.usage.output_tokens == response.eval_count == 3
    attributes = dict(recorded.span().attributes)
    assert attributes[sc.RESPONSE_FINISH_REASONS] == ("length",)
    assert attributes[sc.REQUEST_MAX_TOKENS] == 3 and attributes[sc.REQUEST_TEMPERATURE] == 0


def test_embed_counts_its_input_and_embeddings_report_nothing(recorded, server):
    server.reset()
    embedded = client(server).embed(model="nomic-embed-text", input=["one two", "three"])
    legacy = client(server).embeddings(model="nomic-embed-text", prompt="one two")
    assert len(embedded.embeddings) == 2 and len(legacy.embedding) == 768
    embed, embeddings = recorded.calls
    assert embed.operation == embeddings.operation == "embeddings"
    assert embed.usage.input_tokens == embedded.prompt_eval_count > 0
    assert embeddings.usage is None  # the deprecated endpoint counts nothing: missing, not 0
    spans = {span.attributes[sc.REQUEST_MODEL]: dict(span.attributes) for span in recorded.spans()}
    assert len(recorded.spans()) == 2 and all(sc.COST_AMOUNT not in a for a in spans.values())


async def test_async_client_chat_generate_and_streams(priced, server):
    server.reset()
    async_client = client(server, is_async=True)
    plain = await async_client.chat(model=MODEL, messages=MESSAGES)
    stream = await async_client.chat(model=MODEL, messages=MESSAGES, stream=True)
    text = "".join([chunk.message.content async for chunk in stream])
    assert text == plain.message.content
    generated = [chunk async for chunk in await async_client.generate(model=MODEL, prompt="hi", stream=True)]
    assert generated[-1].done
    embedded = await async_client.embed(model="nomic-embed-text", input="one")
    whole, streamed, generate, embed = priced.calls
    assert whole.usage == streamed.usage and whole.cost == streamed.cost
    assert generate.operation == "text_completion" and generate.usage.output_tokens == DEFAULT_CHUNKS
    assert embed.usage.input_tokens == embedded.prompt_eval_count


async def test_async_stream_closed_early(recorded, server):
    server.reset()
    stream = await client(server, is_async=True).chat(model=MODEL, messages=MESSAGES, stream=True)
    await stream.__anext__()
    await stream.aclose()
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None


def test_stream_closed_early_is_one_incomplete_call(recorded, server):
    server.reset()
    stream = client(server).chat(model=MODEL, messages=MESSAGES, stream=True)
    next(stream)
    stream.close()
    (call,) = recorded.calls
    assert call.incomplete and call.usage is None and call.cost is None
    assert dict(recorded.span().attributes)[sc.USAGE_MISSING] is True


def test_partly_read_stream_left_in_a_loop(recorded, server):
    server.reset()
    for chunk in client(server).generate(model=MODEL, prompt="Once upon a time", stream=True):
        if chunk.response:
            break
    gc.collect()
    (call,) = recorded.calls
    assert call.incomplete and call.response_model == MODEL


def test_abandoned_stream_ends_once_when_collected(recorded, server):
    server.reset()
    stream = client(server).chat(model=MODEL, messages=MESSAGES, stream=True)
    next(stream)
    del stream
    gc.collect()
    (call,) = recorded.calls
    assert call.incomplete


def test_cut_stream_raises_the_sdks_error_and_records_it(recorded, server):
    server.reset()
    server.cut_next_stream(3)
    with pytest.raises(Exception) as raised:  # the HTTP library's own error, whatever it is
        list(client(server).chat(model=MODEL, messages=MESSAGES, stream=True))
    (call,) = recorded.calls
    assert call.error_type == type(raised.value).__qualname__ and call.incomplete


@pytest.mark.parametrize("stream", [False, True])
def test_api_error_passes_through_unchanged(recorded, server, stream):
    server.reset()
    server.fail_next(500)
    with pytest.raises(ollama.ResponseError) as raised:
        result = client(server).chat(model=MODEL, messages=MESSAGES, stream=stream)
        if stream:
            list(result)
    assert raised.value.status_code == 500
    span = recorded.span()
    assert span.status.status_code.name == "ERROR"
    assert dict(span.attributes)[sc.ERROR_TYPE] == "ResponseError"


def test_loading_a_model_and_managing_models_are_not_recorded(recorded, server):
    server.reset()
    client(server).generate(model=MODEL)  # no prompt: loads the model (the fake answers it anyway)
    with pytest.raises(ollama.ResponseError):  # the fake server has no /api/show: a 404
        client(server).show(MODEL)
    assert recorded.spans() == [] and recorded.points(sc.METRIC_UNRECOGNISED_CALLS) == []


def test_a_request_tokentrail_does_not_know_is_counted(recorded, server):
    server.reset()
    with pytest.raises(ollama.ResponseError):  # the fake server has no such endpoint: a 404
        client(server)._request(dict, "POST", "/api/speculative", json={"model": MODEL})
    assert recorded.spans() == []
    points = recorded.points(sc.METRIC_UNRECOGNISED_CALLS)
    assert [(dict(p.attributes), p.value) for p in points] == [
        ({sc.SDK_NAME: "ollama", sc.SDK_ENDPOINT: "POST /api/speculative"}, 1)
    ]


def test_budget_refuses_a_priced_local_call_before_sending(monkeypatch, tmp_path, request, server):
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    monkeypatch.setenv("TOKENTRAIL_PRICES", str(path))
    request.getfixturevalue("recorded")
    server.reset()
    with tokentrail.budget(usd=1e-12, mode="raise"), pytest.raises(tokentrail.BudgetExceeded):
        client(server).chat(model=MODEL, messages=MESSAGES, options={"num_predict": 100})
    assert server.requests == []


@pytest.mark.tokentrail(capture_content="SPAN_ONLY")
def test_content_capture_of_chat_and_generate_streams(recorded, server):
    server.reset()
    list(client(server).chat(model=MODEL, messages=MESSAGES, stream=True))
    client(server).generate(model=MODEL, prompt="Once upon a time", system="Be brief.")
    chat, generate = (dict(span.attributes) for span in recorded.spans())
    assert '"content": "Say hello to the fake server"' in chat[sc.INPUT_MESSAGES]
    assert '"content": "This is a fake answer' in chat[sc.OUTPUT_MESSAGES]
    assert '"content": "Once upon a time"' in generate[sc.INPUT_MESSAGES]
    assert '"content": "Be brief."' in generate[sc.SYSTEM_INSTRUCTIONS]
    assert '"content": "This is a fake answer' in generate[sc.OUTPUT_MESSAGES]


def test_a_failure_of_ours_never_reaches_the_application(recorded, server, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a tokentrail bug")

    monkeypatch.setattr(ollama_provider.GenerateStreamState, "add", broken)
    monkeypatch.setattr(ollama_provider.Generate, "info", staticmethod(broken))
    chunks = list(client(server).chat(model=MODEL, messages=MESSAGES, stream=True))
    response = client(server).chat(model=MODEL, messages=MESSAGES)
    assert chunks[-1].done and len(chunks) == DEFAULT_CHUNKS + 1 and response.done
    assert len(recorded.calls) == 2  # still one call each, without what could not be read
    monkeypatch.setattr(ollama_provider.OllamaRequest, "request", broken)
    assert client(server).chat(model=MODEL, messages=MESSAGES).done  # the request reader failed: not recorded
    assert len(recorded.calls) == 2


def test_registered_instrumentor_and_patch_set():
    assert OllamaInstrumentor().instrumentation_dependencies() == ("ollama >= 0.4.7",)
    patch = ollama_provider.patches()
    patch.install()
    patch.install()
    assert patch.installed
    patch.remove()
    assert not patch.installed


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.integers(min_value=1, max_value=60),
    prompt=st.lists(st.sampled_from(["a", "bb", "ccc"]), max_size=900),
    chat=st.booleans(),
)
def test_property_stream_equals_plain_and_parts_within_their_whole(priced, server, words, prompt, chat):
    server.reset()
    text = " ".join(prompt) or "hi"
    sdk = client(server, **{"X-Fake-Chunks": str(words)})
    before = len(priced.calls)
    if chat:
        messages = [{"role": "user", "content": text}]
        sdk.chat(model=MODEL, messages=messages)
        list(sdk.chat(model=MODEL, messages=messages, stream=True))
    else:
        sdk.generate(model=MODEL, prompt=text)
        list(sdk.generate(model=MODEL, prompt=text, stream=True))
    whole, streamed = priced.calls[before:]
    assert streamed.usage == whole.usage and streamed.cost == whole.cost
    usage = whole.usage
    assert usage.input_tokens == sent_prompt_tokens(server) and usage.output_tokens == words
    assert usage.consistent
    assert usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
    assert usage.reasoning_tokens <= usage.output_tokens
    assert math.isclose(whole.cost.total, override_price(usage), rel_tol=1e-9)
    assert whole.cost.input + whole.cost.output == pytest.approx(whole.cost.total, rel=1e-9)
