"""Install and remove tokentrail: the code behind ``tokentrail.instrument()``.

Which SDKs exist and how to patch them comes from :mod:`tokentrail.registry`; only SDKs that are
installed are patched, and each one only once the application imports it (some take hundreds of
milliseconds to import). Patching is idempotent, and ``uninstrument()`` undoes everything
``instrument()`` did: the patches, the drains on the OpenTelemetry providers, the runtime.
Importing tokentrail does none of it.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wrapt
from opentelemetry import metrics, trace

from . import _fork, _safety, _waits, lifecycle, registry
from . import budgets as _budgets
from . import ledger as _ledger
from ._otel_defaults import ensure_providers
from .config import ENV_PRICES, ConfigError, Settings
from .lifecycle import Sink, Telemetry
from .pricing import PriceOverrideError, Pricer, load_overrides
from .providers._contract import PatchSet
from .run_summary import RunSummary

if TYPE_CHECKING:
    from opentelemetry._logs import LoggerProvider

_lock = threading.RLock()
_fork.renew_locks(sys.modules[__name__], "_lock")  # instrument() may run on any thread
_installed: dict[str, PatchSet] = {}
_pending: set[str] = set()  # wanted, waiting for the application to import the SDK
_hooked: set[str] = set()  # post-import hooks registered (they cannot be unregistered)


def instrument(
    *,
    providers: Iterable[str] | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    logger_provider: LoggerProvider | None = None,
    prices: str | Path | Iterable[Mapping[str, Any]] | None = None,
    capture_content: str | bool | None = None,
    provider_hosts: str | Mapping[str, str] | None = None,
    stream_usage: str | bool | None = None,
    metric_attributes: Iterable[str] | str | None = None,
    metric_value_limit: int | None = None,
    baggage: bool | None = None,
    ledger: str | os.PathLike[str] | bool | None = None,
    log_calls: bool | None = None,
    budgets: str | Path | Iterable[Any] | None = None,
    sinks: Iterable[Sink] = (),
    setup_otel: bool = False,
    **provider_options: str,
) -> list[str]:
    """Instrument every installed LLM SDK tokentrail supports. Returns the SDKs instrumented.

    Spans, metrics and the content event go to the given providers, else to the global ones: the
    application's, whenever it sets them up (before or after this call: the API's proxies bind to
    them then), or those ``opentelemetry-instrument`` sets up. tokentrail never installs global
    providers unless asked: ``setup_otel=True`` sets up an SDK from the standard ``OTEL_*``
    variables where none is set (see ``tokentrail._otel_defaults``).

    ``metric_attributes`` lists the attribution keys allowed on metrics (default agent, task,
    phase), each with at most ``metric_value_limit`` distinct values (default 100; more fold into
    ``_other``). ``baggage=True`` reads attribution from incoming OpenTelemetry baggage and writes
    it to outgoing baggage. ``ledger`` is where every call is recorded locally (default
    ``TOKENTRAIL_LEDGER``, else ``$XDG_DATA_HOME/tokentrail/ledger.sqlite``; ``False`` or ``"off"``
    disables it; not added while ``OTEL_TRACES_EXPORTER=tokentrail`` writes the ledger from spans).
    ``log_calls=True`` (``TOKENTRAIL_LOG_CALLS``) logs one JSON record per call to the
    ``tokentrail.calls`` logger. ``budgets`` (a TOML file of ``[[budget]]`` tables, or a list of
    ``tokentrail.budget`` objects or mappings; default ``TOKENTRAIL_BUDGETS``) apply to every call
    whose attribution matches.

    Providers' own options are keywords named ``<provider>_<option>`` (the README's provider
    table lists them), such as ``anthropic_native_spans="keep"`` (``off`` by default): whether the
    anthropic SDK still makes its own span for the calls tokentrail instruments.

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
        ledger=ledger,
        log_calls=log_calls,
        **provider_options,
    )
    _waits.configure()
    _fork.install()  # from now on a fork leaves nothing of ours half-done in the child
    try:
        overrides = load_overrides(settings.prices) if settings.prices is not None else []
    except PriceOverrideError as exc:  # from the environment: say which variable to fix
        if prices is None and os.environ.get(ENV_PRICES):
            raise PriceOverrideError(f"{ENV_PRICES}: {exc}") from None
        raise
    budget_source = budgets if budgets is not None else os.environ.get("TOKENTRAIL_BUDGETS") or None
    try:
        configured_budgets = _budgets.load(budget_source) if budget_source is not None else ()
    except ConfigError as exc:
        if budgets is None:  # from the environment: say which variable to fix
            raise ConfigError(f"TOKENTRAIL_BUDGETS: {exc}") from None
        raise
    if isinstance(providers, str) or not (providers is None or isinstance(providers, Iterable)):
        raise ConfigError(f"providers={providers!r}: give a list of SDK names, such as ['openai']")
    known = [entry.name for entry in registry.PROVIDERS]
    wanted = known if providers is None else list(providers)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(f"unknown provider(s) {unknown}; tokentrail instruments {sorted(known)}")

    if setup_otel:
        ensure_providers()

    pricer = Pricer(overrides)
    _summary._context_window = pricer.context_window
    telemetry = Telemetry(
        settings,
        pricer,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        sinks=[_summary, *sinks, *_ledger_sinks(settings, tracer_provider, meter_provider)],
    )
    _print_summary_at_exit()
    _budgets.configure(configured_budgets)
    _budgets.read_spend_with(_ledger.spend)  # shared budgets read the ledger
    with _lock:
        lifecycle.set_active(telemetry)
        done = [name for name in wanted if _enable(name)]
    # Load the price catalogue off the calling thread: start-up stays fast and the first call
    # does not pay for it. It imports genai-prices (and httpx, pydantic): a fork waits for it.
    if os.environ.get("TOKENTRAIL_WARM_PRICES", "1") != "0":
        warm = threading.Thread(target=_warm, args=(pricer,), name="tokentrail-prices", daemon=True)
        _fork.finish_before_fork(warm)
        warm.start()
    return done


_summary = RunSummary()
_summary_registered = False


def summary(format: str = "text") -> Any:
    """Tokens and cost per agent and in total since start-up (or the last ``reset_summary()``).

    ``format="text"`` gives a printable table, ``"json"`` a JSON string and ``"dict"`` the dict
    itself: per-agent usage, totals, cost breakdown by agent and model, and efficiency metrics
    (average tokens per agent, most expensive agent, context-window utilisation, input/output ratio).
    """
    lifecycle.RECORDER.flush()  # calls are added to the summary off the calling thread
    if format == "text":
        return _summary.render()
    if format == "json":
        return _summary.to_json()
    if format == "dict":
        return _summary.as_dict()
    raise ValueError(f"summary(format={format!r}): use 'text', 'json' or 'dict'")


def reset_summary() -> None:
    """Start the run summary afresh."""
    _summary.reset()


def _print_summary_at_exit() -> None:
    global _summary_registered
    if _summary_registered or os.environ.get("TOKENTRAIL_SUMMARY", "").strip().lower() not in (
        "1",
        "true",
        "on",
    ):
        return
    _summary_registered = True
    atexit.register(lambda: print(summary(), file=sys.stderr))


def _ledger_sinks(settings: Settings, tracer_provider: Any, meter_provider: Any) -> list[Sink]:
    """The local ledger's writer and the call log, as configured (each off the calling thread)."""
    return _ledger.sinks_for(settings, tracer_provider=tracer_provider, meter_provider=meter_provider)


def _enable(name: str) -> bool:
    """Patch the SDK now if it is imported, or as soon as it is; False if it is not installed."""
    if name in _installed or name in _pending:
        return True
    module = registry.entry(name).sdk_module
    try:
        if importlib.util.find_spec(module) is None:
            return False
    except (ImportError, ValueError):  # a namespace parent (google) missing or broken
        return False
    if module in sys.modules:
        return _install(name)
    _pending.add(name)
    if name not in _hooked:
        _hooked.add(name)
        wrapt.register_post_import_hook(functools.partial(_on_import, name), module)
    return True


def _on_import(name: str, _module: Any) -> None:
    with _lock:
        if name in _pending:
            _pending.discard(name)
            _install(name)


def instrument_provider(
    name: str,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> bool:
    """Instrument one SDK, joining the active instrumentation when it records to the same providers
    (what each ``opentelemetry-instrument`` instrumentor does: one shared runtime, not one each)."""
    with _lock:
        telemetry = lifecycle.active()
        if telemetry is not None and telemetry.providers[:2] == (tracer_provider, meter_provider):
            return _enable(name)
    return name in instrument(
        providers=[name], tracer_provider=tracer_provider, meter_provider=meter_provider
    )


def _supported(name: str) -> bool:
    """False (with a warning naming the SDK and the floor) for an SDK older than tokentrail supports:
    its calls are left alone rather than read wrong."""
    entry = registry.entry(name)
    try:
        installed = _installed_version(entry.distribution)
        if _at_least(installed, entry.floor):
            return True
    except (PackageNotFoundError, ValueError):
        return True  # not installed as a distribution (vendored, a source tree): nothing to compare
    _safety.warn_once(
        ("floor", name),
        "tokentrail: %s %s is older than tokentrail supports (%s); its calls are not instrumented. "
        "Upgrade it: pip install -U '%s'",
        entry.distribution,
        installed,
        entry.requirement,
        entry.requirement.replace(" ", ""),
    )
    return False


def _installed_version(name: str) -> str:
    """The installed version of distribution ``name``, from its metadata's header.

    Not ``importlib.metadata.version()``: that parses the whole METADATA file as an e-mail message
    (the SDK's README included), 2.5 ms for openai's here, at every ``instrument()``; the header
    line is read in 0.1 ms."""
    for line in (distribution(name).read_text("METADATA") or "").splitlines():
        if line.startswith("Version:"):
            return line[len("Version:") :].strip()
        if not line:  # the end of the header
            break
    raise PackageNotFoundError(name)


_RELEASE = re.compile(r"\d+(\.\d+)*")


def _at_least(installed: str, floor: str) -> bool:
    """``installed >= floor`` as PEP 440 orders them. Plain releases (``3.63.0``) compare as numbers;
    anything else (a pre-release, a local version) through ``packaging``, imported only then: it
    takes about 4 ms to import, which instrument() need not pay for the usual case."""
    if _RELEASE.fullmatch(installed) and _RELEASE.fullmatch(floor):
        have = [int(part) for part in installed.split(".")]
        want = [int(part) for part in floor.split(".")]
        width = max(len(have), len(want))
        return have + [0] * (width - len(have)) >= want + [0] * (width - len(want))
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed) >= Version(floor)
    except InvalidVersion as exc:
        raise ValueError(installed) from exc


def _install(name: str) -> bool:
    """Import the provider module (only now: it imports its SDK) and install its patches."""
    if not _supported(name):
        return False
    try:
        patch = importlib.import_module(registry.entry(name).implementation).patches()
        if patch is None:
            return False
        patch.install()
    except Exception as exc:
        _safety.internal_error(f"instrument.{name}", exc)
        return False
    _installed[name] = patch
    return True


def _warm(pricer: Pricer) -> None:
    try:
        pricer.warm()
    except Exception as exc:
        _safety.internal_error("pricing.warm", exc)


def uninstrument(providers: Iterable[str] | None = None) -> None:
    """Restore the SDK methods tokentrail patched and stop recording.

    ``providers`` (names as in ``instrument()``) removes those alone; the others stay instrumented,
    until the last one goes."""
    lifecycle.RECORDER.flush()
    with _lock:
        names = list(_installed) + list(_pending) if providers is None else list(providers)
        for name in names:
            patch = _installed.pop(name, None)
            if patch is not None:
                patch.remove()
            _pending.discard(name)
        if _installed or _pending:
            return
        lifecycle.set_active(None)
    _budgets.configure(())
    try:
        _ledger.close()  # flush and close the ledger writer, if one was opened
    except Exception as exc:  # a ledger problem is counted and logged, never raised
        _safety.internal_error("ledger.close", exc)


def flush() -> None:
    """Finish every call that has ended: its span, metrics, sinks and ledger row.

    tokentrail finishes calls off the application's threads (within about 0.1 s), so call this
    before reading spans, metrics, your sinks' records or the ledger in-process (tests, a report
    at the end of a script). It also runs at exit.
    """
    lifecycle.RECORDER.flush()
    try:
        _ledger.flush()
    except Exception as exc:
        _safety.internal_error("ledger.flush", exc)


def instrumented() -> list[str]:
    """The SDKs currently instrumented, including installed ones not imported yet (they are
    patched the moment the application imports them)."""
    with _lock:
        return [
            entry.name for entry in registry.PROVIDERS if entry.name in _installed or entry.name in _pending
        ]


def add_sink(sink: Sink) -> None:
    """Send every finished call's :class:`~tokentrail.records.CallRecord` to ``sink`` too.

    Sinks run on tokentrail's recorder thread, in the order calls ended; ``tokentrail.flush()``
    hands them every call that has ended so far. An exception in a sink is logged once and
    swallowed."""
    lifecycle.add_sink(sink)
