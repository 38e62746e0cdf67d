"""``server.address`` and ``server.port`` of a client's base URL: one rule for every provider."""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"https": 443, "http": 80}


def server_of(url: str) -> tuple[str | None, int | None]:
    """(lower-cased host, port) of ``url``; the scheme's default port when none is given."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower() or None
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a malformed port: report the host alone
        port = None
    return host, port
