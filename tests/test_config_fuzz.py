"""Malformed configuration, fuzzed: every entry point a user sets something through.

``instrument()`` arguments and their environment variables (``Settings.resolve``, what
``instrument()`` runs first), budgets (``tokentrail.budget(...)``, ``instrument(budgets=...)``
lists and ``TOKENTRAIL_BUDGETS`` TOML files), attribution (``attribute``, ``span``,
``price_context``) and price override files. For each, hypothesis draws wrong types,
negative / huge / NaN numbers, empty strings, unknown words and garbage files, and the test holds:

* the error is the documented one (``ConfigError`` / ``PriceOverrideError`` / ``ValueError``),
  raised by the call that was given the value, never an ``AttributeError``, ``OverflowError`` ...;
* its message is one short line naming the setting (the argument or the variable the value came
  from) and what is accepted;
* valid values never raise, and mean what they say.

The single bad values the older tests pin down (test_budget.py, test_pricing.py,
test_attribution.py, test_anthropic.py, test_openai.py) are not repeated here.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import tokentrail
from tokentrail import budgets as budgets_module
from tokentrail._safety import shown_path
from tokentrail.budgets import budget, load
from tokentrail.config import (
    ENV_BAGGAGE,
    ENV_CAPTURE,
    ENV_LEDGER,
    ENV_LOG_CALLS,
    ENV_METRIC_ATTRIBUTES,
    ENV_METRIC_VALUE_LIMIT,
    ENV_PRICES,
    ENV_PROVIDER_HOSTS,
    ENV_STREAM_USAGE,
    ConfigError,
    ContentCapture,
    Settings,
)
from tokentrail.context import (
    ATTRIBUTION_KEYS,
    MAX_VALUE_LENGTH,
    PRICE_CONTEXT_KEYS,
    attribute,
    current_attribution,
    current_price_context,
    price_context,
)
from tokentrail.pricing import PriceOverrideError, Pricer, load_overrides
from tokentrail.usage import Usage

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- values nobody should pass --------------------------------------------------------------------

huge_ints = st.integers(min_value=10**20, max_value=10**400) | st.integers(min_value=-(10**400), max_value=-1)
# Integers no float can hold: float() raises OverflowError on them.
overflowing_ints = st.integers(min_value=10**309, max_value=10**400) | st.integers(max_value=-(10**309))
odd_floats = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e308, -1e-9, 0.5])
odd_text = st.sampled_from(
    ["", " ", "\t\n", "\0", "\udcff", "é", "None", "null", "-", "1e400", "NaN"]
) | st.text(max_size=40)
containers = st.lists(st.integers(), max_size=3) | st.dictionaries(
    st.text(max_size=5), st.integers(), max_size=3
)
junk = (
    huge_ints
    | st.integers(min_value=-5, max_value=5)
    | odd_floats
    | st.floats()
    | odd_text
    | st.binary(max_size=10)
    | containers
    | st.builds(object)
    | st.tuples(st.integers())
)


def case_and_space(word: str) -> st.SearchStrategy[str]:
    """``word`` as a user might type it: any letter case, padded with blanks."""
    return st.tuples(
        st.sampled_from(["", " ", "  ", "\t"]),
        st.lists(st.booleans(), min_size=len(word), max_size=len(word)),
        st.sampled_from(["", " ", "\n"]),
    ).map(
        lambda t: (
            t[0] + "".join(c.upper() if up else c.lower() for c, up in zip(word, t[1], strict=True)) + t[2]
        )
    )


def words(*accepted: str) -> st.SearchStrategy[str]:
    return st.sampled_from(accepted).flatmap(case_and_space)


def one_line(message: str) -> None:
    assert "\n" not in message and len(message) <= 600, message


def as_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


LABEL_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
PERIOD = re.compile(r"(\d+)\s*([smhd])")


def is_period(value: Any) -> bool:
    match = PERIOD.fullmatch(value) if isinstance(value, str) else None
    return match is not None and int(match.group(1)) > 0


def is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


# --- instrument() settings and their environment variables --------------------------------------


@dataclass(frozen=True)
class Setting:
    argument: str
    variable: str
    valid: st.SearchStrategy[Any]
    """Values that must be accepted (as argument; the strings among them also as variable)."""
    invalid: st.SearchStrategy[Any]
    accepted: tuple[str, ...]
    """Words the message must hold: what to use instead."""
    meaning: Callable[[Settings], Any]
    expected: Callable[[Any], Any]
    """What a valid value must resolve to (as read back by ``meaning``)."""
    invalid_text: st.SearchStrategy[str]
    """Strings that must be refused, as the environment variable (and as the argument)."""


CAPTURE_MODES = {
    "": ContentCapture(),
    "NO_CONTENT": ContentCapture(),
    "FALSE": ContentCapture(),
    "SPAN_ONLY": ContentCapture(span=True),
    "TRUE": ContentCapture(span=True),
    "EVENT_ONLY": ContentCapture(event=True),
    "SPAN_AND_EVENT": ContentCapture(span=True, event=True),
}
INJECT = {"inject": True, "on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
FLAGS = {
    "1": True,
    "true": True,
    "on": True,
    "yes": True,
    "": False,
    "0": False,
    "false": False,
    "off": False,
}
FLAGS |= {"no": False}


def text_not_a_word_of(accepted: Any, normalise: Callable[[str], str]) -> st.SearchStrategy[str]:
    """Text that is none of the accepted words once normalised as the parser does."""
    return odd_text.filter(lambda value: normalise(value) not in accepted)


def not_a_word_of(accepted: Any, normalise: Callable[[str], str]) -> st.SearchStrategy[Any]:
    """Junk, or text that is none of the accepted words once normalised as the parser does."""
    return junk.filter(
        lambda value: (
            not isinstance(value, bool) and not (isinstance(value, str) and normalise(value) in accepted)
        )
    )


def provider_names() -> st.SearchStrategy[str]:
    return st.from_regex(r"[a-z][a-z0-9_.\-]{0,15}", fullmatch=True)


not_a_key = st.text(max_size=10).filter(
    lambda k: (
        k.strip()
        and "," not in k
        and k.strip() not in ATTRIBUTION_KEYS
        and not k.strip().startswith("label:")
    )
)
hosts = st.from_regex(r"[a-z0-9.\-]{1,20}(:[0-9]{1,5})?", fullmatch=True)
attribution_keys = st.sampled_from(list(ATTRIBUTION_KEYS)) | st.from_regex(
    r"label:[a-z][a-z0-9_]{0,10}", fullmatch=True
)

SETTINGS = [
    Setting(
        "capture_content",
        ENV_CAPTURE,
        words(*CAPTURE_MODES) | st.booleans(),
        not_a_word_of(CAPTURE_MODES, lambda v: v.strip().upper()),
        ("NO_CONTENT", "SPAN_ONLY", "EVENT_ONLY", "SPAN_AND_EVENT"),
        lambda s: s.content,
        lambda v: ContentCapture(span=v) if isinstance(v, bool) else CAPTURE_MODES[v.strip().upper()],
        text_not_a_word_of(CAPTURE_MODES, lambda v: v.strip().upper()),
    ),
    Setting(
        "stream_usage",
        ENV_STREAM_USAGE,
        words(*INJECT) | st.booleans(),
        not_a_word_of(INJECT, lambda v: v.strip().lower()),
        ("'inject'", "'off'"),
        lambda s: s.inject_stream_usage,
        lambda v: v if isinstance(v, bool) else INJECT[v.strip().lower()],
        text_not_a_word_of(INJECT, lambda v: v.strip().lower()),
    ),
    Setting(
        "baggage",
        ENV_BAGGAGE,
        words(*FLAGS) | st.booleans(),
        not_a_word_of(FLAGS, lambda v: v.strip().lower()),
        ("true or false",),
        lambda s: s.baggage,
        lambda v: v if isinstance(v, bool) else FLAGS[v.strip().lower()],
        text_not_a_word_of(FLAGS, lambda v: v.strip().lower()),
    ),
    Setting(
        "log_calls",
        ENV_LOG_CALLS,
        words(*FLAGS) | st.booleans(),
        not_a_word_of(FLAGS, lambda v: v.strip().lower()),
        ("true or false",),
        lambda s: s.log_calls,
        lambda v: v if isinstance(v, bool) else FLAGS[v.strip().lower()],
        text_not_a_word_of(FLAGS, lambda v: v.strip().lower()),
    ),
    Setting(
        "anthropic_native_spans",
        "TOKENTRAIL_ANTHROPIC_NATIVE_SPANS",
        words("off", "keep") | st.just(" "),
        not_a_word_of({"off", "keep", ""}, lambda v: v.strip().lower()).filter(lambda v: v is not None),
        ("'off'", "'keep'"),
        lambda s: s.option("anthropic", "native_spans"),
        lambda v: v.strip().lower() or "off",
        text_not_a_word_of({"off", "keep", ""}, lambda v: v.strip().lower()),
    ),
    Setting(
        "metric_value_limit",
        ENV_METRIC_VALUE_LIMIT,
        st.integers(min_value=1, max_value=10**30)
        | st.integers(min_value=1, max_value=10**6).map(lambda n: f" {n} ")
        | st.integers(min_value=1, max_value=10**6).map(float),
        st.integers(max_value=0)
        | huge_ints.filter(lambda n: n < 0)
        | st.floats().filter(lambda f: not (f.is_integer() and f >= 1))
        | st.booleans()
        | st.text(max_size=10).filter(lambda t: t != "" and (as_int(t) or 0) < 1)
        | containers,
        ("whole number of at least 1",),
        lambda s: s.metric_value_limit,
        lambda v: int(v),
        odd_text.filter(lambda t: t != "" and (as_int(t) or 0) < 1),
    ),
    Setting(
        "metric_attributes",
        ENV_METRIC_ATTRIBUTES,
        st.lists(attribution_keys, max_size=4, unique=True).flatmap(
            lambda keys: st.sampled_from([keys, ",".join(keys)])
        ),
        st.tuples(
            st.lists(attribution_keys, max_size=2),
            not_a_key | st.integers() | st.none() | st.binary(max_size=3),
        ).map(lambda t: [*t[0], t[1]])
        | st.tuples(st.lists(attribution_keys, max_size=2), not_a_key).map(lambda t: ",".join([*t[0], t[1]]))
        | st.integers()
        | st.binary(min_size=1, max_size=5),
        ("not an attribution key", "pipeline", "label:<name>"),
        lambda s: s.metric_attributes,
        lambda v: tuple(k for k in (v.split(",") if isinstance(v, str) else v) if k),
        st.tuples(st.lists(attribution_keys, max_size=2), not_a_key).map(lambda t: ",".join([*t[0], t[1]])),
    ),
    Setting(
        "provider_hosts",
        ENV_PROVIDER_HOSTS,
        st.dictionaries(hosts, provider_names(), max_size=3).flatmap(
            lambda mapping: st.sampled_from([mapping, ",".join(f"{h}={p}" for h, p in mapping.items())])
        ),
        st.text(max_size=15).filter(
            lambda t: any(i.strip() for i in t.split(",")) and all("=" not in i for i in t.split(","))
        )
        | st.tuples(
            hosts, st.text(max_size=8).filter(lambda p: not re.fullmatch(r"[a-z][a-z0-9_.\-]*", p.strip()))
        ).map(lambda pair: {pair[0]: pair[1]})
        | st.integers()
        | st.floats()
        | st.lists(st.text(max_size=5), min_size=1, max_size=3)
        | st.binary(min_size=1, max_size=5),
        ("host", "provider"),
        lambda s: dict(s.provider_hosts),
        lambda v: {
            h.strip().lower(): p.strip()
            for h, p in (
                v.items() if isinstance(v, dict) else (i.partition("=")[::2] for i in v.split(",") if i)
            )
        },
        odd_text.filter(
            lambda t: any(i.strip() for i in t.split(",")) and all("=" not in i for i in t.split(","))
        ),
    ),
    Setting(
        "ledger",
        ENV_LEDGER,
        st.sampled_from(["off", "OFF ", "false", "0", "no", "none", False]),
        st.integers()
        | st.floats()
        | containers
        | st.binary(max_size=4)
        | st.text(max_size=8).map(lambda t: f"{t}\0x"),
        ("path",),
        lambda s: s.ledger,
        lambda v: None,
        odd_text.map(lambda t: f"{t}\0x") | st.just("~no_such_user_of_tokentrail/ledger.sqlite"),
    ),
]


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.argument for s in SETTINGS])
@FUZZ
@given(data=st.data())
def test_a_bad_argument_is_a_config_error_naming_the_argument(setting: Setting, data: st.DataObject) -> None:
    value = data.draw(setting.invalid | setting.invalid_text, label="value")
    with pytest.raises(ConfigError) as raised:
        Settings.resolve(**{setting.argument: value}, environ={})
    message = str(raised.value)
    one_line(message)
    assert message.startswith(setting.argument) or f" {setting.argument}" in message, message
    assert setting.variable not in message  # the user set the argument, not the variable
    for word in setting.accepted:
        assert word in message, (word, message)


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.argument for s in SETTINGS])
@FUZZ
@given(data=st.data())
def test_a_bad_environment_variable_is_a_config_error_naming_the_variable(
    setting: Setting, data: st.DataObject
) -> None:
    value = data.draw(setting.invalid_text, label="value")
    with pytest.raises(ConfigError) as raised:
        Settings.resolve(environ={setting.variable: value})
    message = str(raised.value)
    one_line(message)
    assert setting.variable in message, message
    for word in setting.accepted:
        assert word in message, (word, message)


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.argument for s in SETTINGS])
@FUZZ
@given(data=st.data())
def test_valid_settings_never_raise_and_mean_what_they_say(setting: Setting, data: st.DataObject) -> None:
    value = data.draw(setting.valid, label="value")
    assert setting.meaning(Settings.resolve(**{setting.argument: value}, environ={})) == setting.expected(
        value
    )
    if isinstance(value, str):
        assert setting.meaning(Settings.resolve(environ={setting.variable: value})) == setting.expected(value)


@FUZZ
@given(name=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,30}\.sqlite", fullmatch=True), home=st.booleans())
def test_a_ledger_path_is_taken_as_given(tmp_path: Path, name: str, home: bool) -> None:
    value = f"~/{name}" if home else str(tmp_path / name)
    expected = Path.home() / name if home else tmp_path / name
    assert Settings.resolve(ledger=value, environ={}).ledger == expected
    assert Settings.resolve(environ={ENV_LEDGER: f" {value} "}).ledger == expected


@FUZZ
@given(
    value=st.integers()
    | st.floats()
    | st.dictionaries(st.text(max_size=3), st.integers())
    | st.binary()
    | st.just(" ")
)
def test_a_price_source_of_the_wrong_type_is_a_config_error_naming_it(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^prices=.*TOML or YAML price override file") as raised:
        Settings.resolve(prices=value, environ={})
    one_line(str(raised.value))


def test_a_blank_price_file_variable_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=rf"^{ENV_PRICES}=' ': name a TOML or YAML price override file$"):
        Settings.resolve(environ={ENV_PRICES: " "})
    assert Settings.resolve(environ={ENV_PRICES: ""}).prices is None  # empty: unset, as before


@FUZZ
@given(data=st.data())
def test_instrument_rejects_before_patching_anything(data: st.DataObject) -> None:
    setting = data.draw(st.sampled_from(SETTINGS), label="setting")
    value = data.draw(setting.invalid, label="value")
    before = tokentrail.instrumented()
    with pytest.raises(ConfigError, match=setting.argument):
        tokentrail.instrument(**{"ledger": False, "setup_otel": False, setting.argument: value})
    assert tokentrail.instrumented() == before


# --- budgets ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _budget_names_restored() -> Any:
    """Named budgets register for metrics: the fuzzed ones must not outlive the test."""
    saved = dict(budgets_module._by_name)
    yield
    budgets_module._by_name.clear()
    budgets_module._by_name.update(saved)


positive_usd = st.floats(min_value=1e-6, max_value=1e9) | st.integers(min_value=1, max_value=10**9)
periods = st.tuples(st.integers(min_value=1, max_value=999), st.sampled_from("smhd")).map(
    lambda t: f"{t[0]}{t[1]}"
)
zones = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"])
attribution_values = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=20)
scopes = st.dictionaries(st.sampled_from(list(ATTRIBUTION_KEYS)), attribution_values, max_size=3)


@st.composite
def valid_budget_settings(draw: st.DrawFn) -> dict[str, Any]:
    settings_: dict[str, Any] = {"usd": draw(positive_usd)}
    window = draw(st.sampled_from(["per_run", "period", "day"]))
    if window == "period":
        settings_["window"] = draw(periods)
        if draw(st.booleans()):
            settings_["shared"] = True
            settings_["refresh_s"] = draw(st.floats(min_value=0, max_value=3600) | st.integers(0, 3600))
    elif window == "day":
        settings_["window"] = "day"
        settings_["timezone"] = draw(zones)
    optional = {
        "mode": st.sampled_from(["raise", "warn"]),
        "unknown": st.sampled_from(["allow", "refuse"]),
        "thresholds": st.lists(st.floats(min_value=0.01, max_value=10), min_size=1, max_size=4),
        "scope": scopes,
        "max_output_tokens": st.integers(min_value=1, max_value=10**6),
        "name": st.text(string.ascii_letters + " -_", min_size=1, max_size=20),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            settings_[key] = draw(strategy)
    return settings_


@FUZZ
@given(settings_=valid_budget_settings())
def test_valid_budgets_never_raise_and_keep_their_settings(settings_: dict[str, Any]) -> None:
    made = budget(**settings_)
    assert made.usd == float(settings_["usd"])
    assert made.window == settings_.get("window", "per_run")
    assert made.scope == settings_.get("scope", {})
    assert made.thresholds == tuple(sorted(settings_.get("thresholds", (0.5, 0.8, 1.0))))
    assert made.mode == settings_.get("mode", "raise")
    status = made.status()
    assert (status["spent_usd"], status["percent_used"], status["over_budget"]) == (0.0, 0.0, False)


def _not(accepted: Callable[[Any], bool]) -> st.SearchStrategy[Any]:
    return junk.filter(lambda value: not accepted(value))


# argument -> (values it must refuse, extra settings the value needs to be looked at)
BAD_BUDGET_ARGUMENTS: dict[str, tuple[st.SearchStrategy[Any], dict[str, Any]]] = {
    "usd": (_not(lambda v: is_finite_number(v) and v > 0) | overflowing_ints, {}),
    "mode": (_not(lambda v: isinstance(v, str) and v in ("raise", "warn")), {}),
    "unknown": (_not(lambda v: isinstance(v, str) and v in ("allow", "refuse")), {}),
    "thresholds": (
        st.lists(st.floats().filter(lambda f: not 0 < f <= 10), min_size=1, max_size=3)
        | st.lists(
            st.none() | st.booleans() | st.text(string.ascii_letters, min_size=1), min_size=1, max_size=2
        )
        | st.integers()
        | st.floats()
        | st.text(min_size=1, max_size=5)
        | st.lists(huge_ints, min_size=1, max_size=1),
        {},
    ),
    "window": (
        _not(lambda v: v in ("per_run", "day") or is_period(v))
        | st.sampled_from(["0h", "00m", "-1d", "1w", "1.5h", "h", "day ", "PER_RUN", "1h\n"]),
        {},
    ),
    "timezone": (
        st.integers()
        | st.floats()
        | containers
        | st.sampled_from(["Mars/Base", "Europe/", "../etc/passwd", "\0"]),
        {"window": "day"},
    ),
    "max_output_tokens": (
        st.integers(max_value=0) | st.floats() | st.booleans() | st.text(max_size=4) | containers,
        {},
    ),
    "name": (st.integers() | st.floats() | containers | st.binary(min_size=1, max_size=3), {}),
    "shared": (_not(lambda v: isinstance(v, bool)), {"window": "1h"}),
    "refresh_s": (
        st.floats().filter(lambda f: not (math.isfinite(f) and f >= 0))
        | st.integers(max_value=-1)
        | overflowing_ints
        | st.booleans()
        | st.text(max_size=4)
        | containers,
        {"window": "1h", "shared": True},
    ),
    "ledger": (
        st.integers() | st.floats() | containers | st.text(max_size=4).map(lambda t: t + "\0"),
        {"window": "1h", "shared": True},
    ),
    "scope": (
        st.text(max_size=5)
        | st.integers()
        | st.dictionaries(
            st.text(max_size=8).filter(lambda k: k not in ATTRIBUTION_KEYS and not k.startswith("label:")),
            attribution_values,
            min_size=1,
            max_size=2,
        )
        | st.dictionaries(
            st.sampled_from(list(ATTRIBUTION_KEYS)),
            st.none() | st.booleans() | st.floats() | st.just("") | st.text(min_size=257, max_size=300),
            min_size=1,
            max_size=2,
        ),
        {},
    ),
    "on_alert": (st.integers() | st.text(max_size=3) | containers, {}),
}


@pytest.mark.parametrize("argument", list(BAD_BUDGET_ARGUMENTS))
@FUZZ
@given(data=st.data())
def test_a_bad_budget_argument_is_a_value_error_naming_it(argument: str, data: st.DataObject) -> None:
    strategy, needs = BAD_BUDGET_ARGUMENTS[argument]
    value = data.draw(strategy, label=argument)
    kwargs = {"usd": 1.0, **needs, argument: value}
    with pytest.raises(ValueError) as raised:
        budget(**kwargs)
    message = str(raised.value)
    one_line(message)
    assert message.startswith("budget: ") and argument in message, message
    # The same value in a list given to instrument(budgets=...): a ConfigError naming the entry.
    with pytest.raises(ConfigError) as listed:
        load([{"usd": 1.0}, kwargs])
    assert str(listed.value).startswith("instrument(budgets=...): budget #2: ")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


@FUZZ
@given(entries=st.lists(valid_budget_settings(), max_size=4))
def test_a_valid_budgets_file_loads_every_budget(tmp_path: Path, entries: list[dict[str, Any]]) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(
        "".join("[[budget]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in e.items()) for e in entries),
        encoding="utf-8",
    )
    loaded = load(path)
    assert [(b.usd, b.window, dict(b.scope)) for b in loaded] == [
        (float(e["usd"]), e.get("window", "per_run"), e.get("scope", {})) for e in entries
    ]
    assert [b.name for b in loaded] == [e.get("name", f"budget-{i + 1}") for i, e in enumerate(entries)]


@FUZZ
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_a_garbage_budgets_file_is_a_config_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "budgets.toml"
    path.write_bytes(content)
    try:
        loaded = load(path)
    except ConfigError as error:
        one_line(str(error))
        # Named as the message names files: whole, or cut at its start so the file's name stays.
        assert shown_path(path) in str(error) and path.name in str(error)
    else:
        assert loaded == ()  # garbage that parses as TOML holds no [[budget]] table: nothing to apply


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("[[budgets]]\nusd = 1\n", ["unknown top-level key(s) ['budgets']", "[[budget]]"]),
        ("budget = 5\n", ["[[budget]] tables", "not 5"]),
        ("[budget]\nusd = 1\n", ["[[budget]] tables", "{'usd': 1}"]),
        (
            "[[budget]]\nusd = 1\nshared = 'false'\nwindow = '1h'\n",
            ["budget #1", "shared must be true or false"],
        ),
        ("[[budget]]\nusd = 1\nthresholds = 0.5\n", ["budget #1", "thresholds", "0.5"]),
        ("[[budget]]\nusd = 1\nlimit = 3\n", ["budget #1", "unknown field(s) ['limit']", "usd, window"]),
    ],
)
def test_budget_file_mistakes_that_used_to_slip_through(
    tmp_path: Path, content: str, words: list[str]
) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load(path)
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))


def test_a_budgets_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "budgets.toml"
    path.write_bytes(b'[[budget]]\nname = "caf\xe9"\nusd = 1\n')
    with pytest.raises(
        ConfigError, match=r"budgets\.toml': not UTF-8 text \(invalid continuation byte at byte 22\)"
    ):
        load(path)


@FUZZ
@given(
    source=st.integers()
    | st.floats()
    | st.binary(max_size=4)
    | st.dictionaries(st.text(max_size=3), st.integers())
)
def test_budgets_of_the_wrong_type_are_a_config_error(source: Any) -> None:
    with pytest.raises(
        ConfigError, match=r"^instrument\(budgets=.*\[\[budget\]\] tables, or a list of"
    ) as raised:
        load(source)
    one_line(str(raised.value))


# --- attribution -----------------------------------------------------------------------------------

bad_attribution_values = (
    st.booleans()
    | st.floats()
    | containers
    | st.binary(max_size=3)
    | st.just("")
    | st.text(min_size=MAX_VALUE_LENGTH + 1, max_size=MAX_VALUE_LENGTH + 20)
    | st.integers(min_value=10**256, max_value=10**5000)
)


@FUZZ
@given(key=st.sampled_from(list(ATTRIBUTION_KEYS)), value=bad_attribution_values)
def test_a_bad_attribution_value_is_a_value_error_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ValueError) as raised:
        attribute(**{key: value})
    message = str(raised.value)
    one_line(message)
    assert message.startswith(f"attribution {key}")
    assert "strings" in message or f"1 to {MAX_VALUE_LENGTH} characters" in message


@FUZZ
@given(
    values=st.dictionaries(
        st.sampled_from(list(ATTRIBUTION_KEYS)),
        st.text(min_size=1, max_size=MAX_VALUE_LENGTH) | st.integers(min_value=-(10**50), max_value=10**50),
        max_size=5,
    ),
    labels=st.dictionaries(
        st.from_regex(LABEL_KEY, fullmatch=True), st.text(min_size=1, max_size=40), max_size=3
    ),
)
def test_valid_attribution_never_raises_and_is_kept_as_text(
    values: dict[str, Any], labels: dict[str, str]
) -> None:
    with attribute(**values, labels=labels):
        current = current_attribution().values
    assert current == {
        **{k: str(v) for k, v in values.items()},
        **{f"label:{k}": v for k, v in labels.items()},
    }


@FUZZ
@given(
    labels=st.dictionaries(
        st.text(max_size=70).filter(lambda k: not LABEL_KEY.fullmatch(k))
        | st.sampled_from(["team\n", "Team", "a" * 65]),
        st.just("v"),
        min_size=1,
        max_size=2,
    )
    | st.text(max_size=5)
    | st.lists(st.tuples(st.text(max_size=3), st.text(max_size=3)), min_size=1, max_size=2)
    | st.integers()
)
def test_bad_labels_are_a_value_error_naming_labels(labels: Any) -> None:
    with pytest.raises(ValueError, match=r"^(attribution label |attribute\(labels=)") as raised:
        attribute(labels=labels)
    one_line(str(raised.value))


@FUZZ
@given(
    key=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True).filter(
        lambda k: k not in PRICE_CONTEXT_KEYS
    ),
    value=st.text(max_size=8),
)
def test_an_unknown_price_context_key_is_refused_when_given(key: str, value: str) -> None:
    with pytest.raises(ValueError) as raised:
        price_context(**{key: value})  # not entered: the call itself refuses
    assert str(raised.value).startswith("price_context: unknown key") and "processing, service_tier" in str(
        raised.value
    )


@FUZZ
@given(key=st.sampled_from(list(PRICE_CONTEXT_KEYS)), value=junk)
def test_an_unknown_price_context_value_is_refused_when_given(key: str, value: Any) -> None:
    assume(value not in PRICE_CONTEXT_KEYS[key])
    with pytest.raises(ValueError) as raised:
        price_context(**{key: value})
    message = str(raised.value)
    one_line(message)
    assert message.startswith(f"price_context: {key}=") and ", ".join(PRICE_CONTEXT_KEYS[key]) in message


@FUZZ
@given(choice=st.sampled_from([(k, v) for k, values in PRICE_CONTEXT_KEYS.items() for v in values]))
def test_a_valid_price_context_applies_inside_its_block_only(choice: tuple[str, str]) -> None:
    key, value = choice
    block = price_context(**{key: value})
    assert current_price_context() == {}
    with block:
        assert current_price_context() == {key: value}
    assert current_price_context() == {}


# --- price override files --------------------------------------------------------------------------


@FUZZ
@given(
    content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    suffix=st.sampled_from([".toml", ".yaml"]),
)
def test_a_garbage_override_file_is_a_price_override_error_naming_the_file(
    tmp_path: Path, content: bytes, suffix: str
) -> None:
    if suffix == ".yaml":
        pytest.importorskip("yaml")
    path = tmp_path / f"prices{suffix}"
    path.write_bytes(content)
    try:
        entries = load_overrides(path)
    except PriceOverrideError as error:
        assert str(error).startswith(str(path))
    else:
        assert entries == []  # only a file whose models list is empty loads: garbage has none to give


price_keys = st.sampled_from(["input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"])
bad_prices = (
    st.floats().filter(lambda f: not (math.isfinite(f) and f >= 0))
    | st.integers(max_value=-1)
    | overflowing_ints
    | st.booleans()
    | st.text(max_size=6)
    | st.none()
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=4).filter(lambda k: k != "base"), st.integers(), max_size=2)
)


@FUZZ
@given(key=price_keys, value=bad_prices)
def test_a_bad_price_is_a_price_override_error_naming_the_entry_and_key(key: str, value: Any) -> None:
    entry = {"model": "m", "input_mtok": 1.0, "output_mtok": 2.0, key: value}
    with pytest.raises(PriceOverrideError) as raised:
        load_overrides([{"model": "ok", "input_mtok": 1.0}, entry])
    message = str(raised.value)
    one_line(message)
    assert message.startswith(f"price overrides: models[1].{key}"), message


@FUZZ
@given(input_price=st.floats(min_value=0, max_value=1e6), output_price=st.floats(min_value=0, max_value=1e6))
def test_valid_override_prices_load_and_price_what_they_say(input_price: float, output_price: float) -> None:
    pricer = Pricer(
        load_overrides([{"model": "fuzz-model", "input_mtok": input_price, "output_mtok": output_price}])
    )
    cost = pricer.price(Usage(input_tokens=1_000_000, output_tokens=2_000_000), "any", ("fuzz-model",), 0.0)
    assert cost is not None and cost.price_source == "override"
    assert cost.input == pytest.approx(input_price) and cost.output == pytest.approx(2 * output_price)


@FUZZ
@given(
    source=st.integers()
    | st.floats()
    | st.binary(max_size=6)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
    | st.sampled_from(["", " ", "\t"])
)
def test_an_override_source_of_the_wrong_type_is_a_price_override_error(source: Any) -> None:
    with pytest.raises(
        PriceOverrideError, match=r"^price overrides: (expected a TOML/YAML file path|the file path)"
    ):
        load_overrides(source)


@pytest.mark.parametrize("providers", ["openai", 5, [1]])
def test_providers_must_be_a_list_of_sdk_names(providers: Any) -> None:
    with pytest.raises(ConfigError, match="provider") as raised:
        tokentrail.instrument(
            providers=providers, tracer_provider=TracerProvider(), meter_provider=MeterProvider()
        )
    assert "\n" not in str(raised.value)
    assert tokentrail.instrumented() == []


def test_a_long_path_is_cut_at_its_start_keeping_the_files_name(tmp_path: Path) -> None:
    folder = tmp_path / ("deeply-nested-folder-" * 6)
    folder.mkdir()
    path = folder / "budgets.toml"
    path.write_text("[[budget]\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    one_line(message)
    assert "budgets.toml'" in message and len(shown_path(path)) == 80 and shown_path(path) in message
