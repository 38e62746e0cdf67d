"""Settings, from ``instrument()`` arguments first and environment variables second.

Bad values are the user's to fix, so they fail here, at ``instrument()``, with a message that
names the setting and the accepted values; nothing is validated later on the hot path. A value
given as an ``instrument()`` argument is named by the argument (``stream_usage='maybe'``), one
read from the environment by the variable (``TOKENTRAIL_STREAM_USAGE='maybe'``); a value of the
wrong type is a :class:`ConfigError` too, never an ``AttributeError`` from deep inside.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._safety import shown
from .registry import PROVIDERS, Option, ProviderEntry
from .semconv import ATTRIBUTION_KEYS, LATEST_EXPERIMENTAL, STABILITY_OPT_IN

__all__ = ["ConfigError", "ContentCapture", "Settings"]

ENV_CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_PRICES = "TOKENTRAIL_PRICES"
ENV_PROVIDER_HOSTS = "TOKENTRAIL_PROVIDER_HOSTS"
ENV_STREAM_USAGE = "TOKENTRAIL_STREAM_USAGE"
ENV_METRIC_ATTRIBUTES = "TOKENTRAIL_METRIC_ATTRIBUTES"
ENV_METRIC_VALUE_LIMIT = "TOKENTRAIL_METRIC_VALUE_LIMIT"
ENV_BAGGAGE = "TOKENTRAIL_BAGGAGE"
ENV_LEDGER = "TOKENTRAIL_LEDGER"
ENV_LOG_CALLS = "TOKENTRAIL_LOG_CALLS"

# Attribution keys that label metrics unless configured otherwise: bounded by nature (a few
# agents, tasks and phases), unlike pipeline runs, users or sessions, which are per-request ids.
DEFAULT_METRIC_ATTRIBUTES = ("agent", "task", "phase")
DEFAULT_METRIC_VALUE_LIMIT = 100


class ConfigError(ValueError):
    """A setting has a value tokentrail cannot use; the message says which and what to use."""


@dataclass(frozen=True, slots=True)
class ContentCapture:
    """Where prompts and completions go. Both off by default: content is private."""

    span: bool = False
    event: bool = False

    @property
    def enabled(self) -> bool:
        return self.span or self.event

    @classmethod
    def parse(cls, value: str | bool | None, name: str = ENV_CAPTURE) -> ContentCapture:
        if value is None or value is False:
            return cls()
        if value is True:
            return cls(span=True)
        mode = value.strip().upper() if isinstance(value, str) else None
        modes = {
            "": cls(),
            "NO_CONTENT": cls(),
            "FALSE": cls(),
            "SPAN_ONLY": cls(span=True),
            # Older instrumentations took a boolean: true meant "on the span".
            "TRUE": cls(span=True),
            "EVENT_ONLY": cls(event=True),
            "SPAN_AND_EVENT": cls(span=True, event=True),
        }
        if mode not in modes:
            raise ConfigError(
                f"{name}={shown(value)} is not a capture mode; use NO_CONTENT, SPAN_ONLY, "
                "EVENT_ONLY or SPAN_AND_EVENT (or True / False)"
            )
        return modes[mode]


_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_.\-]*$")


def parse_provider_hosts(
    value: str | Mapping[str, str] | None, name: str = ENV_PROVIDER_HOSTS
) -> dict[str, str]:
    """``host[:port]=provider`` pairs (comma-separated in the environment) -> mapping."""
    if value is None or (isinstance(value, str | Mapping) and not value):
        return {}
    if isinstance(value, Mapping):
        pairs: Iterable[tuple[Any, Any]] = value.items()
    elif not isinstance(value, str):
        raise ConfigError(
            f"{name}={shown(value)}: use a mapping {{'host[:port]': 'provider'}} or a string "
            "'host[:port]=provider,...' (e.g. 127.0.0.1:8765=openai)"
        )
    else:
        pairs = []
        for item in value.split(","):
            if not item.strip():
                continue
            host, sep, provider = item.partition("=")
            if not sep:
                raise ConfigError(
                    f"{name}: {shown(item.strip())} is not host[:port]=provider (e.g. 127.0.0.1:8765=openai)"
                )
            pairs.append((host, provider))
    hosts: dict[str, str] = {}
    for host, provider in pairs:
        if not isinstance(host, str) or not host.strip():
            raise ConfigError(f"{name}: host {shown(host)} must be a non-empty string")
        if not isinstance(provider, str) or not _PROVIDER_NAME.match(provider.strip()):
            raise ConfigError(
                f"{name}: provider {shown(provider)} for {shown(host)} must be a gen_ai.provider.name "
                "such as openai, azure.ai.openai, x_ai, openrouter"
            )
        hosts[host.strip().lower()] = provider.strip()
    return hosts


@dataclass(frozen=True)
class Settings:
    """Everything ``instrument()`` was told, resolved and validated once."""

    content: ContentCapture = ContentCapture()
    provider_hosts: Mapping[str, str] = field(default_factory=dict)
    inject_stream_usage: bool = True
    prices: Any = None  # path or list of entries; parsed by pricing.load_overrides
    metric_attributes: tuple[str, ...] = DEFAULT_METRIC_ATTRIBUTES
    """Attribution keys allowed on metrics."""
    metric_value_limit: int = DEFAULT_METRIC_VALUE_LIMIT
    """Distinct values per key on metrics; more fold into ``_other``."""
    baggage: bool = False
    """Read attribution from incoming OpenTelemetry baggage and write it to outgoing baggage."""
    provider_options: Mapping[str, str] = field(default_factory=dict)
    """Each provider's own options (``registry.ProviderEntry.options``), by ``instrument()``
    keyword (``anthropic_native_spans``); read with :meth:`option`."""
    ledger: Path | None = None
    """The local ledger file every call is written to; ``None``: no ledger."""
    log_calls: bool = False
    """One JSON log record per call through the ``tokentrail.calls`` logger."""
    latest_experimental: bool = False
    """``OTEL_SEMCONV_STABILITY_OPT_IN`` names ``gen_ai_latest_experimental``: the GenAI conventions'
    pending usage metrics in place of ``gen_ai.client.token.usage`` and the token parts counter."""

    def option(self, provider: str, name: str) -> str:
        """The value of a provider's option (its default when not set)."""
        return self.provider_options.get(f"{provider}_{name}") or _option(provider, name).default

    @classmethod
    def resolve(
        cls,
        *,
        capture_content: str | bool | None = None,
        provider_hosts: str | Mapping[str, str] | None = None,
        stream_usage: str | bool | None = None,
        prices: str | Path | Iterable[Mapping[str, Any]] | None = None,
        metric_attributes: Iterable[str] | str | None = None,
        metric_value_limit: int | str | None = None,
        baggage: bool | str | None = None,
        ledger: str | os.PathLike[str] | bool | None = None,
        log_calls: bool | str | None = None,
        environ: Mapping[str, str] | None = None,
        **provider_options: Any,
    ) -> Settings:
        """Validate every setting; ``provider_options``: the providers' own (``anthropic_native_spans``)."""
        env = os.environ if environ is None else environ

        def given(argument: Any, argument_name: str, variable: str, default: Any = None) -> tuple[Any, str]:
            """The value to use and the name to blame for it: the argument, else the variable."""
            if argument is not None:
                return argument, argument_name
            return env.get(variable, default), variable

        content = ContentCapture.parse(*given(capture_content, "capture_content", ENV_CAPTURE))
        hosts = parse_provider_hosts(*given(provider_hosts, "provider_hosts", ENV_PROVIDER_HOSTS))
        raw_stream, stream_name = given(stream_usage, "stream_usage", ENV_STREAM_USAGE, "inject")
        if isinstance(raw_stream, bool):
            inject = raw_stream
        elif isinstance(raw_stream, str) and raw_stream.strip().lower() in ("inject", "on", "true", "1"):
            inject = True
        elif isinstance(raw_stream, str) and raw_stream.strip().lower() in ("off", "false", "0"):
            inject = False
        else:
            raise ConfigError(f"{stream_name}={shown(raw_stream)}: use 'inject' (default) or 'off'")
        price_source = prices if prices is not None else (env.get(ENV_PRICES) or None)
        if price_source is not None:
            _check_price_source(price_source, "prices" if prices is not None else ENV_PRICES)
        ledger_value, ledger_name = given(ledger, "ledger", ENV_LEDGER)
        return cls(
            content=content,
            provider_hosts=hosts,
            inject_stream_usage=inject,
            prices=price_source,
            metric_attributes=_metric_attributes(
                *given(metric_attributes, "metric_attributes", ENV_METRIC_ATTRIBUTES)
            ),
            metric_value_limit=_positive_int(
                *given(metric_value_limit, "metric_value_limit", ENV_METRIC_VALUE_LIMIT),
                DEFAULT_METRIC_VALUE_LIMIT,
            ),
            baggage=_flag(*given(baggage, "baggage", ENV_BAGGAGE)),
            provider_options=_provider_options(provider_options, env),
            ledger=ledger_location(ledger_value, env, name=ledger_name),
            log_calls=_flag(*given(log_calls, "log_calls", ENV_LOG_CALLS)),
            latest_experimental=LATEST_EXPERIMENTAL
            in {word.strip() for word in env.get(STABILITY_OPT_IN, "").split(",")},
        )


def _check_price_source(value: Any, name: str) -> None:
    """A price override file path or a list of entries (their content is checked by pricing)."""
    if isinstance(value, str) and not value.strip():
        raise ConfigError(f"{name}={shown(value)}: name a TOML or YAML price override file")
    if isinstance(value, bytes | Mapping) or not isinstance(value, str | os.PathLike | Iterable):
        raise ConfigError(
            f"{name}={shown(value)}: use the path of a TOML or YAML price override file, "
            "or a list of price entries (mappings)"
        )


_LEDGER_OFF = ("off", "false", "0", "no", "none")


def default_ledger_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/tokentrail/ledger.sqlite`` (``~/.local/share/tokentrail/ledger.sqlite``)."""
    env = os.environ if environ is None else environ
    data_home = env.get("XDG_DATA_HOME", "").strip()
    if data_home:
        base = Path(data_home).expanduser()
    else:
        home = env.get("HOME", "").strip()
        base = (Path(home) if home else Path.home()) / ".local" / "share"
    return base / "tokentrail" / "ledger.sqlite"


def ledger_location(
    value: str | os.PathLike[str] | bool | None,
    environ: Mapping[str, str] | None = None,
    *,
    name: str = ENV_LEDGER,
) -> Path | None:
    """Where the ledger goes: a path, the per-user default (unset, empty or ``True``), or ``None``
    for ``off`` / ``False``. ``name`` is the setting blamed in the error for a bad value."""
    if value is None or value is True:
        return default_ledger_path(environ)
    if value is False:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return default_ledger_path(environ)
        if text.lower() in _LEDGER_OFF:
            return None
        value = text
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{name}={shown(value)}: use a file path, or off to disable the ledger")
    # Path.is_dir() answers False for a path no file can have; the ledger would fail later, off-thread.
    if "\0" in os.fsdecode(value):
        raise ConfigError(f"{name}={shown(os.fsdecode(value))}: a file path cannot contain a NUL character")
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # ~user of no such user
        raise ConfigError(
            f"{name}={shown(os.fsdecode(value))}: cannot expand '~' in this path: no such user"
        ) from None
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long for the file system, a loop of links
        raise ConfigError(
            f"{name}={shown(os.fsdecode(value))}: {exc.strerror or 'not a usable path'}; "
            "use another file path"
        ) from None
    if is_dir:
        raise ConfigError(
            f"{name}={shown(os.fsdecode(value))} is a directory: name the ledger file, e.g. "
            f"{shown(str(path / 'ledger.sqlite'))}"
        )
    return path


def _metric_attributes(
    value: Iterable[str] | str | None, name: str = ENV_METRIC_ATTRIBUTES
) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_METRIC_ATTRIBUTES
    if isinstance(value, str):
        keys = [k.strip() for k in value.split(",")]
    elif isinstance(value, Iterable) and not isinstance(value, bytes):
        keys = list(value)
    else:
        keys = [value]  # type: ignore[list-item]  # reported below, like any other non-key
    keys = [k for k in keys if k != ""]
    for key in keys:
        if not isinstance(key, str) or (key not in ATTRIBUTION_KEYS and not key.startswith("label:")):
            raise ConfigError(
                f"{name}: {shown(key)} is not an attribution key; use some of "
                f"{', '.join(ATTRIBUTION_KEYS)} or label:<name>"
            )
    return tuple(keys)


def _positive_int(value: int | str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    number = 0
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:  # not a whole number, or more digits than Python converts
            number = 0
    elif isinstance(value, float) and value.is_integer():  # 100.0, not 1.5 (silently 1) or inf
        number = int(value)
    if number < 1:
        raise ConfigError(f"{name}={shown(value)}: use a whole number of at least 1")
    return number


def _option(provider: str, name: str) -> Option:
    for option in next(p for p in PROVIDERS if p.name == provider).options:
        if option.name == name:
            return option
    raise KeyError(f"{provider} has no option {name!r}")


def _provider_options(given: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Each provider option from its keyword, else its variable, else its default; a keyword no
    provider declares is a ConfigError naming the ones that exist."""
    declared: dict[str, tuple[ProviderEntry, Option]] = {
        provider.setting(option): (provider, option) for provider in PROVIDERS for option in provider.options
    }
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; provider options are {', '.join(sorted(declared))}"
        )
    values: dict[str, str] = {}
    for setting, (provider, option) in declared.items():
        value, name = given.get(setting), setting
        if value is None:
            value, name = env.get(provider.variable(option)), provider.variable(option)
        values[setting] = _choice(value, name, option)
    return values


def _choice(value: Any, name: str, option: Option) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return option.default
    chosen = value.strip().lower() if isinstance(value, str) else None
    if chosen not in {value for value, _ in option.choices}:
        described = " or ".join(
            f"{value!r} ({'default: ' if index == 0 else ''}{meaning})"
            for index, (value, meaning) in enumerate(option.choices)
        )
        raise ConfigError(f"{name}={shown(value)}: use {described}")
    return chosen


def _flag(value: bool | str | None, name: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    lowered = value.strip().lower() if isinstance(value, str) else None
    if lowered in ("1", "true", "on", "yes"):
        return True
    if lowered in ("", "0", "false", "off", "no"):
        return False
    raise ConfigError(f"{name}={shown(value)}: use true or false")
