"""Install and remove tokentrail: the code behind ``tokentrail.instrument()``.

Only SDKs that are installed are patched; a missing SDK is simply skipped. Patching is
idempotent, and ``uninstrument()`` restores the SDKs' own methods.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace

from . import _safety, lifecycle
from .config import Settings
from .lifecycle import Sink, Telemetry
from .pricing import Pricer, load_overrides
from .providers import _stainless

log = logging.getLogger("tokentrail")


# Provider modules: name -> factory of its patch set (None when its SDK is not installed).
def _openai() -> _stainless.Instrumentation | None:
    from .providers import openai

    return openai.instrumentation()


PROVIDERS: dict[str, Callable[[], Any]] = {"openai": _openai}

_lock = threading.RLock()
_installed: dict[str, Any] = {}


def instrument(
    *,
    providers: Iterable[str] | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    prices: str | Path | Iterable[Mapping[str, Any]] | None = None,
    capture_content: str | bool | None = None,
    provider_hosts: str | Mapping[str, str] | None = None,
    stream_usage: str | bool | None = None,
    metric_attributes: Iterable[str] | str | None = None,
    metric_value_limit: int | None = None,
    baggage: bool | None = None,
    sinks: Iterable[Sink] = (),
    setup_otel: bool | None = None,
) -> list[str]:
    """Instrument every installed LLM SDK tokentrail supports. Returns the SDKs instrumented.

    ``metric_attributes`` lists the attribution keys allowed on metrics (default agent, task,
    phase), each with at most ``metric_value_limit`` distinct values (default 100; more fold into
    ``_other``). ``baggage=True`` reads attribution from incoming OpenTelemetry baggage and writes
    it to outgoing baggage.

    Calling it again replaces the settings; SDK methods are patched only once.
    Bad settings raise :class:`tokentrail.ConfigError` / :class:`tokentrail.PriceOverrideError`
    here, before anything is patched.
    """
    settings = Settings.resolve(
        capture_content=capture_content,
        provider_hosts=provider_hosts,
        stream_usage=stream_usage,
        prices=prices,
        metric_attributes=metric_attributes,
        metric_value_limit=metric_value_limit,
        baggage=baggage,
    )
    overrides = load_overrides(settings.prices) if settings.prices is not None else []
    wanted = list(PROVIDERS) if providers is None else list(providers)
    unknown = [name for name in wanted if name not in PROVIDERS]
    if unknown:
        raise ValueError(f"unknown provider(s) {unknown}; tokentrail instruments {sorted(PROVIDERS)}")

    if setup_otel or (setup_otel is None and tracer_provider is None and meter_provider is None):
        from ._otel_defaults import ensure_providers

        ensure_providers()

    pricer = Pricer(overrides)
    telemetry = Telemetry(
        settings, pricer, tracer_provider=tracer_provider, meter_provider=meter_provider, sinks=sinks
    )
    with _lock:
        lifecycle.set_active(telemetry)
        done = []
        for name in wanted:
            patch = _installed.get(name)
            if patch is None:
                try:
                    patch = PROVIDERS[name]()
                except Exception as exc:
                    _safety.internal_error(f"instrument.{name}", exc)
                    continue
                if patch is None:
                    continue
                patch.install()
                _installed[name] = patch
            done.append(name)
    # Load the price catalogue off the calling thread: start-up stays fast and the first call
    # does not pay for it.
    if os.environ.get("TOKENTRAIL_WARM_PRICES", "1") != "0":
        threading.Thread(target=_warm, args=(pricer,), name="tokentrail-prices", daemon=True).start()
    return done


def _warm(pricer: Pricer) -> None:
    try:
        pricer.warm()
    except Exception as exc:
        _safety.internal_error("pricing.warm", exc)


def uninstrument() -> None:
    """Restore every SDK method tokentrail patched and stop recording."""
    with _lock:
        for patch in _installed.values():
            patch.remove()
        _installed.clear()
        lifecycle.set_active(None)


def instrumented() -> list[str]:
    """The SDKs currently instrumented."""
    with _lock:
        return list(_installed)


def add_sink(sink: Sink) -> None:
    """Send every finished call's :class:`~tokentrail.records.CallRecord` to ``sink`` too."""
    telemetry = lifecycle.active()
    if telemetry is None:
        raise RuntimeError("call tokentrail.instrument() before adding sinks")
    telemetry.sinks.append(sink)


def active_telemetry() -> Telemetry | None:
    return lifecycle.active()
