"""Corrupt price data: a clear error at start-up, and at run time calls recorded without cost.

Start-up: a corrupt override file (binary garbage, another encoding, truncated at any byte, bad
TOML/YAML, wrong types) given to ``instrument(prices=...)``, through ``TOKENTRAIL_PRICES`` or to
``tokentrail prices`` fails there, with a :class:`~tokentrail.PriceOverrideError` naming the file
and the problem, before anything is patched. (The per-key messages of well-formed files with bad
values are in test_pricing.py; this file adds the entry points and corrupt files.)

Run time: when pricing itself raises (the card lookup, the loaded catalogue, the card's
arithmetic), the application still gets its response unchanged, and the call is still recorded
with its tokens, without a cost, marked unpriced, and counted in
``tokentrail.instrumentation.errors``.
"""

from __future__ import annotations

import builtins
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

import genai_prices
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import tokentrail
from anthropic_wire import MODEL as CLAUDE
from anthropic_wire import FakeAnthropic
from gemini_wire import MODEL as GEMINI
from gemini_wire import FakeGemini
from openai_wire import MODEL, SNAPSHOT, FakeOpenAI, chat_chunks, chat_completion, chat_usage
from tokentrail import _safety, cli
from tokentrail import semconv as sc
from tokentrail.pricing import PriceCard, PriceOverrideError, Pricer, load_overrides

MESSAGES = [{"role": "user", "content": "Say hello"}]
# The attribute tokentrail.instrumentation.errors carries to say where the error happened.
ERROR_WHERE = "tokentrail.where"

GOOD_TOML = """\
[[models]]
provider = "vllm"
model = "meta-llama/llama-3.1-8b"
input_mtok = 0.05
output_mtok = 0.08

[[models]]
provider = "openai"
prefix = "ft:gpt-4o-mini:"
input_mtok = 0.30
cache_read_mtok = 0.15
output_mtok = 1.20

[[models]]
model = "my-long-context-model"
input_mtok = { base = 1.25, tiers = [{ start = 200000, price = 2.50 }] }
output_mtok = { base = 10.0, tiers = [{ start = 200000, price = 15.0 }] }
"""
GOOD_YAML = yaml.safe_dump(tomllib.loads(GOOD_TOML), sort_keys=False)

# Corrupt files: (name, bytes, fragments the message must contain besides the file's path).
NO_MODELS = "expected a top-level 'models' list"
CORRUPT: list[tuple[str, bytes, list[str]]] = [
    ("garbage.toml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", ["not a UTF-8 text file", "byte 0"]),
    ("utf16.yaml", "models: []\n".encode("utf-16"), ["not a UTF-8 text file"]),
    ("cut_in_a_character.toml", 'model = "caf\u00e9"'.encode()[:-2], ["not a UTF-8 text file", "byte 12"]),
    ("truncated.toml", GOOD_TOML.encode()[: GOOD_TOML.index("tiers")], ["invalid TOML", "end of document"]),
    ("truncated.yaml", b"models:\n  - model: a\n    input_mtok: {base: 1, tiers: [{start: 2",
     ["invalid YAML at line 3, column 44: expected ',' or '}', but got '<stream end>'"]),
    ("tab.yaml", b"models:\n\t- model: a\n", ["invalid YAML at line 2, column 1", "tab"]),
    ("nul.toml", b'[[models]]\nmodel = "a\x00b"\ninput_mtok = 1.0\n', ["invalid TOML"]),
    ("empty.yaml", b"", [NO_MODELS]),
    ("models_table.toml", b"[models]\nmodel = 'a'\ninput_mtok = 1.0\n", [NO_MODELS]),
    ("top_level_list.yaml", b"- model: a\n  input_mtok: 1\n", [NO_MODELS]),
    ("models_scalar.yaml", b"models: 5\n", [NO_MODELS]),
    ("huge.yaml", b"models:\n  - model: a\n    input_mtok: " + b"9" * 400 + b"\n",
     ["models[0].input_mtok", "finite"]),
    ("null_price.yaml", b"models:\n  - model: a\n    input_mtok: null\n",
     ["models[0].input_mtok", "got None"]),
    ("date_price.toml", b"[[models]]\nmodel = 'a'\ninput_mtok = 2024-01-01\n",
     ["models[0].input_mtok", "date"]),
    ("list_price.toml", b"[[models]]\nmodel = 'a'\ninput_mtok = [1.0]\n", ["models[0].input_mtok", "[1.0]"]),
    ("provider_number.toml", b"[[models]]\nprovider = 5\nmodel = 'a'\ninput_mtok = 1.0\n",
     ["models[0].provider"]),
    ("tiers_scalar.toml", b"[[models]]\nmodel = 'a'\ninput_mtok = { base = 1, tiers = 5 }\n",
     ["models[0].input_mtok.tiers", "list"]),
]  # fmt: skip


def write(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


@pytest.fixture
def uninstrumented() -> Any:
    """No instrumentation before the test, and none left after it."""
    tokentrail.uninstrument()
    yield
    tokentrail.uninstrument()


def assert_nothing_patched() -> None:
    from openai import _base_client

    assert tokentrail.instrumented() == []
    assert not hasattr(_base_client.SyncAPIClient.request, "__wrapped__")


# --- start-up -----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["argument", "environment"])
@pytest.mark.parametrize(("name", "content", "fragments"), CORRUPT, ids=[c[0] for c in CORRUPT])
def test_a_corrupt_override_file_fails_at_instrument(
    uninstrumented, tmp_path, monkeypatch, source, name, content, fragments
):
    path = write(tmp_path, name, content)
    with pytest.raises(PriceOverrideError) as raised:
        if source == "argument":
            tokentrail.instrument(prices=path, setup_otel=False)
        else:
            monkeypatch.setenv("TOKENTRAIL_PRICES", str(path))
            tokentrail.instrument(setup_otel=False)
    message = str(raised.value)
    named = "TOKENTRAIL_PRICES: " if source == "environment" else ""  # the setting to fix
    assert message.startswith(f"{named}{path}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message and len(message) < 400  # one readable line, even for a huge value
    assert_nothing_patched()


def test_an_override_path_that_is_a_directory_fails_at_instrument(uninstrumented, tmp_path):
    directory = tmp_path / "prices.toml"
    directory.mkdir()
    with pytest.raises(PriceOverrideError, match="cannot read price override file") as raised:
        tokentrail.instrument(prices=directory, setup_otel=False)
    assert str(directory) in str(raised.value)
    assert_nothing_patched()


def test_a_failed_reinstrument_keeps_the_working_instrumentation(recorded, tmp_path):
    """instrument() again with a corrupt file refuses before touching anything: the instrumentation
    in place keeps recording, once per call, with its prices."""
    path = write(tmp_path, "garbage.yaml", b"\xff\x00\xfe" * 50)
    with pytest.raises(PriceOverrideError, match="not a UTF-8 text file"):
        tokentrail.instrument(prices=path, setup_otel=False)
    FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    span = recorded.span()
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 1200
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1200, cache_read_tokens=1024, output_tokens=30),
        SNAPSHOT,
        provider_id="openai",
        price_context={"service_tier": "default"},
    )
    assert span.attributes[sc.COST_AMOUNT] == pytest.approx(float(expected.total_price), rel=1e-9)
    assert span.attributes[sc.PRICE_SOURCE].startswith("genai-prices ")
    assert len(recorded.calls) == 1


@pytest.mark.parametrize(("name", "content", "fragments"), CORRUPT[:5], ids=[c[0] for c in CORRUPT[:5]])
@pytest.mark.parametrize("option", ["--check", "--prices"])
def test_the_prices_command_reports_a_corrupt_file_in_one_line(
    capsys, tmp_path, option, name, content, fragments
):
    path = write(tmp_path, name, content)
    argv = (
        ["prices", "--check", str(path)] if option == "--check" else ["prices", MODEL, "--prices", str(path)]
    )
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize(("name", "text"), [("prices.toml", GOOD_TOML), ("prices.yaml", GOOD_YAML)])
def test_a_file_truncated_at_any_byte_loads_or_fails_naming_the_file(tmp_path, name, text):
    """A file cut short (a copy interrupted, a disk full) never escapes as another exception; a cut
    that happens to leave a valid file loads the entries it still holds."""
    data = text.encode()
    path = tmp_path / name
    assert len(load_overrides(write(tmp_path, name, data))) == 3
    failed = loaded = 0
    for cut in range(0, len(data), 3):  # every third byte: about 130 cuts per file
        path.write_bytes(data[:cut])
        try:
            entries = load_overrides(path)
        except PriceOverrideError as exc:
            assert str(exc).startswith(f"{path}: ")
            failed += 1
        else:
            assert len(entries) <= 3
            loaded += 1
    assert failed > loaded > 0


_KEYS = st.sampled_from(
    ["model", "prefix", "provider", "input_mtok", "output_mtok", "cache_read_mtok", "base", "tiers",
     "start", "price", "requests_kcount", "nonsense"]
)  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(max_size=8)
    | st.dates()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS | st.integers(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(_VALUES, max_size=3))
def test_wrongly_typed_entries_fail_naming_the_entry(entries: list[Any]) -> None:
    """Whatever a YAML file can hold, a bad entry is a PriceOverrideError naming it, never
    another exception."""
    try:
        load_overrides(entries)
    except PriceOverrideError as exc:
        assert str(exc).startswith("price overrides: models[")


# --- run time -------------------------------------------------------------------------------------


def _card_lookup_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("price card lookup failed")

    monkeypatch.setattr(Pricer, "card", broken)


def _catalogue_is_corrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loaded genai-prices catalogue is damaged: its provider list holds garbage."""
    from genai_prices import data_snapshot

    corrupt = data_snapshot.DataSnapshot(providers=[None], from_auto_update=False)  # type: ignore[list-item]
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", corrupt)


def _card_arithmetic_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: PriceCard, usage: Any) -> Any:
        raise ZeroDivisionError("corrupt price line")

    monkeypatch.setattr(PriceCard, "price", broken)


PRICING_FAULTS = {
    "card_lookup_raises": _card_lookup_fails,
    "catalogue_corrupt": _catalogue_is_corrupt,
    "card_arithmetic_raises": _card_arithmetic_fails,
}


def error_counts(recorded: Any) -> dict[str, int]:
    return {p.attributes[ERROR_WHERE]: p.value for p in recorded.points(sc.METRIC_INSTRUMENTATION_ERRORS)}


def assert_recorded_without_cost(span: Any, input_tokens: int, output_tokens: int) -> None:
    attributes = dict(span.attributes)
    assert attributes[sc.USAGE_INPUT_TOKENS] == input_tokens
    assert attributes[sc.USAGE_OUTPUT_TOKENS] == output_tokens
    assert attributes[sc.PRICE_UNPRICED] is True
    for name in (sc.COST_AMOUNT, sc.COST_USD_MICROS, sc.COST_SOURCE, sc.PRICE_MODEL, sc.PRICE_SOURCE):
        assert name not in attributes, name
    assert sc.ERROR_TYPE not in attributes  # the call itself succeeded
    # Told apart from a model the catalogue does not know: the type of the pricing failure.
    failure = getattr(builtins, attributes[sc.PRICE_ERROR], None)
    assert isinstance(failure, type) and issubclass(failure, Exception), attributes[sc.PRICE_ERROR]


@pytest.mark.parametrize("fault", list(PRICING_FAULTS))
def test_a_pricing_fault_records_the_call_without_cost(recorded, monkeypatch, caplog, fault):
    PRICING_FAULTS[fault](monkeypatch)
    client = FakeOpenAI().client()
    expected_chat = ChatCompletion.model_validate(chat_completion(text="Hello there!")).model_dump()
    wire_chunks = chat_chunks(["Hel", "lo", " there", "!"], chat_usage(), include_usage=False)
    expected_chunks = [ChatCompletionChunk.model_validate(chunk).model_dump() for chunk in wire_chunks]
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        for _ in range(3):
            assert (
                client.chat.completions.create(model=MODEL, messages=MESSAGES).model_dump() == expected_chat
            )
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        assert [chunk.model_dump() for chunk in stream] == expected_chunks
        spans = recorded.spans()  # flushes: pricing may run off the calling thread

    assert len(spans) == 4
    for span in spans:
        assert_recorded_without_cost(span, 1200, 30)
        assert span.attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 1024
    assert sum(1 for span in spans if span.attributes.get(sc.REQUEST_STREAM)) == 1
    # Metrics: every token counted, no cost recorded, every call counted unpriced and as an error.
    (input_point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="input")
    (output_point,) = recorded.points(sc.METRIC_TOKEN_USAGE, gen_ai__token__type="output")
    assert (input_point.count, input_point.sum, output_point.sum) == (4, 4 * 1200, 4 * 30)
    (cache_point,) = recorded.points(sc.METRIC_TOKEN_PARTS, gen_ai__token__type="cache_read")
    assert cache_point.value == 4 * 1024
    assert recorded.points(sc.METRIC_OPERATION_COST) == []
    (unpriced_point,) = recorded.points(sc.METRIC_UNPRICED_CALLS)
    assert unpriced_point.value == 4
    assert error_counts(recorded) == {"pricing": 4}
    assert _safety.errors_total == 4
    # The sinks (ledger, run summary, the application's own) get the tokens and no cost.
    assert [(call.usage.input_tokens, call.usage.output_tokens, call.cost) for call in recorded.calls] == [
        (1200, 30, None)
    ] * 4
    # Logged once with its traceback, then only counted.
    logged = [r for r in caplog.records if "internal error in pricing" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert not [r for r in caplog.records if "no price known" in r.getMessage()]  # not an unknown model


def test_a_pricing_fault_with_a_budget_lets_the_call_through(recorded, monkeypatch):
    """A budget cannot estimate a call it cannot price: with the default unknown="allow" the call
    is sent, recorded without cost, and the failed estimate is counted too."""
    _card_lookup_fails(monkeypatch)
    client = FakeOpenAI().client()
    with tokentrail.budget(usd=0.000001, mode="raise", name="tiny"):
        response = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=50)
    assert response.choices[0].message.content == "Hello there!"
    assert_recorded_without_cost(recorded.span(), 1200, 30)
    assert error_counts(recorded) == {"budget.estimate": 1, "pricing": 1}


def test_a_pricing_fault_on_anthropic_and_gemini_calls(recorded, monkeypatch):
    _catalogue_is_corrupt(monkeypatch)
    anthropic_client = FakeAnthropic().client()
    message = anthropic_client.messages.create(model=CLAUDE, max_tokens=1024, messages=MESSAGES)
    assert message.usage.output_tokens == 300
    with anthropic_client.messages.stream(model=CLAUDE, max_tokens=1024, messages=MESSAGES) as s:
        assert "".join(s.text_stream) == "Hello there!"
    gemini_client = FakeGemini().client()
    assert gemini_client.models.generate_content(model=GEMINI, contents="hi").text == "Hello there!"
    streamed = gemini_client.models.generate_content_stream(model=GEMINI, contents="hi")
    assert "".join(chunk.text for chunk in streamed) == "Hello there!"
    anthropic_spans = [s for s in recorded.spans() if s.attributes[sc.PROVIDER_NAME] == "anthropic"]
    gemini_spans = [s for s in recorded.spans() if s.attributes[sc.PROVIDER_NAME] == "gcp.gemini"]
    assert len(anthropic_spans) == len(gemini_spans) == 2
    for span in anthropic_spans:
        assert_recorded_without_cost(span, 7500, 300)
    for span in gemini_spans:
        assert_recorded_without_cost(span, 1500, 160)
    assert recorded.points(sc.METRIC_OPERATION_COST) == []
    assert error_counts(recorded) == {"pricing": 4}


def test_pricing_recovers_when_the_fault_goes(recorded, monkeypatch):
    """A transient fault is not cached: once the lookup works again, calls are priced."""
    with monkeypatch.context() as patch:
        _card_lookup_fails(patch)
        FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
        tokentrail.flush()
    FakeOpenAI().client().chat.completions.create(model=MODEL, messages=MESSAGES)
    unpriced, priced = recorded.spans()
    assert_recorded_without_cost(unpriced, 1200, 30)
    assert priced.attributes[sc.COST_AMOUNT] > 0 and sc.PRICE_UNPRICED not in priced.attributes
    (cost_point,) = recorded.points(sc.METRIC_OPERATION_COST)
    assert cost_point.count == 1


def test_the_environment_variable_is_read_once_at_instrument(uninstrumented, tmp_path, monkeypatch):
    """A price file corrupted after start-up changes nothing: prices were compiled at instrument()."""
    path = write(tmp_path, "prices.toml", GOOD_TOML.encode())
    monkeypatch.setenv("TOKENTRAIL_PRICES", str(path))
    calls: list[tokentrail.CallRecord] = []
    tokentrail.instrument(setup_otel=False, providers=["openai"], sinks=[calls.append])
    path.write_bytes(b"\x00\xff" * 10)
    os.utime(path)
    client = FakeOpenAI().client(base_url="http://127.0.0.1:8000/v1")  # vLLM's default port
    client.chat.completions.create(model="meta-llama/llama-3.1-8b", messages=MESSAGES)
    tokentrail.flush()
    (call,) = calls
    assert call.provider == "vllm"
    assert call.cost is not None and call.cost.price_source == "override"
    assert call.cost.total == pytest.approx((1200 * 0.05 + 30 * 0.08) / 1e6, rel=1e-12)
