"""The provider contract: what one provider module supplies, whatever the SDK.

A provider module (``providers/openai.py``, ...) is registered once in :mod:`tokentrail.registry`
and supplies:

* ``patches() -> PatchSet | None``: what to patch in its SDK (None when the SDK is missing). Two
  kinds of patch point exist, each with its mechanics written once:

  - a generated client's request choke point (``_stainless``: every endpoint of a Stainless SDK
    goes through one ``request`` method; ``_speakeasy``: Speakeasy's ``BaseSDK.do_request``;
    ``_fern``: Fern's ``HttpClient.request`` / ``.stream``). The module supplies an adapter whose
    ``plan(...)`` reads the request;
  - class-level methods (``_patch``: google-genai, ...). The module supplies, per method, a
    reader whose ``request(instance, args, kwargs, settings)`` reads the request.

  Either reader returns a :class:`Plan` for an LLM call, :data:`NOT_RECORDED` for a request it
  knows is not one (a listing, an upload, a token count), or None for a request it does not know:
  those are counted (``tokentrail.client.unrecognised_calls``), so a billed call that tokentrail
  misses shows. A reader works from the request alone and the settings
  (``settings.option(provider, name)`` for the provider's own options).
* for each kind of response, an :class:`Endpoint`: a pure response reader that returns the normal
  :class:`~tokentrail.records.ResponseInfo` (its ``usage`` a :class:`~tokentrail.usage.Usage`),
  and a fresh :class:`~tokentrail.providers._stream.StreamState` per streamed call.
* its host-to-provider mapping, through the one locator (:mod:`._locate`).

Readers are pure functions of SDK objects: no OpenTelemetry, no lifecycle, no I/O. The shared
mechanics start the call (:mod:`tokentrail.lifecycle`), run the SDK, and end the call with what
the readers read, off the calling thread where they can.

A framework layer (LangChain, LiteLLM, an agent SDK) reports calls through the same records: it
reads a :class:`~tokentrail.records.RequestInfo` and a ``ResponseInfo`` with the same kind of pure
readers, wraps each model call in a :class:`~tokentrail.providers._framework.ModelCall` (the one
layering mechanism: an instrumented SDK call inside is the one counted, named by the framework;
otherwise the framework's own report is), and its ``patches()`` returns a :class:`PatchSet` like
any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from ..records import RequestInfo, ResponseInfo
from ._stream import StreamState

__all__ = ["NOT_RECORDED", "Endpoint", "NotRecorded", "PatchSet", "Plan", "StreamState", "http_status_error"]


class Endpoint(Protocol):
    """How to read one kind of LLM response; stateless."""

    def response(self, result: Any, request: RequestInfo) -> ResponseInfo:
        """What a non-streamed call returned (called off the calling thread)."""
        ...

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> StreamState:
        """A fresh accumulator for one streamed call. ``hide_usage_chunk``: tokentrail asked for a
        usage chunk the application did not, and the state keeps it from the application."""
        ...


@dataclass(slots=True)
class Plan:
    """What a request reader decided about one SDK request: an LLM call, and how to read it."""

    request: RequestInfo
    endpoint: Endpoint
    options: Any = None
    """Choke points only: the request options to send instead of the caller's (e.g. with
    ``stream_options.include_usage`` added, on a copy)."""
    hide_usage_chunk: bool = False
    """True when we asked for a usage chunk the application did not: keep it from the app."""


class NotRecorded:
    """The type of :data:`NOT_RECORDED`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_RECORDED"


NOT_RECORDED = NotRecorded()
"""A request reader's answer for a request it knows and that is not an LLM call to record."""


class PatchSet(Protocol):
    """What ``patches()`` returns: installed by ``instrument()``, removed by ``uninstrument()``."""

    def install(self) -> None: ...

    def remove(self) -> None: ...

    @property
    def installed(self) -> bool: ...


@cache
def http_status_error(status: int) -> type[Exception]:
    """An exception type named after an HTTP status, for a call whose response came back with an
    error status that the SDK turns into its own error only after the patched method returns (the
    generated SDKs' choke points return the response; the endpoint's method raises). Its
    ``error.type`` is then the status (``429``), as OpenTelemetry's HTTP conventions name a failed
    response."""
    return type(str(status), (Exception,), {"__qualname__": str(status), "__module__": __name__})
