"""Where a client's requests go: ``gen_ai.provider.name``, ``server.address`` and ``server.port``.

One rule for every provider: the user's ``provider_hosts`` override (``host:port`` first, then
``host``) wins; otherwise the provider module's own rule decides from the client's kind and the
host (the openai SDK: by host, since every OpenAI-compatible service uses it; the anthropic SDK: by
client class; google-genai: by Vertex mode). Worked out once per client kind and base URL: turning
an SDK's URL object into a string costs more than the rest of reading a request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Located", "Locator", "provider_for_host", "server_of"]

Located = tuple[str, str | None, int | None]
"""(gen_ai.provider.name, server.address, server.port)."""

_DEFAULT_PORTS = {"https": 443, "http": 80}

# Host suffix -> gen_ai.provider.name. Longest match wins.
_HOSTS: tuple[tuple[str, str], ...] = (
    ("api.openai.com", "openai"),
    ("openai.azure.com", "azure.ai.openai"),
    ("services.ai.azure.com", "azure.ai.openai"),
    ("cognitiveservices.azure.com", "azure.ai.openai"),
    ("api.x.ai", "x_ai"),
    ("openrouter.ai", "openrouter"),
    ("api.deepseek.com", "deepseek"),
    ("api.groq.com", "groq"),
    ("api.together.xyz", "together"),
    ("api.together.ai", "together"),
    ("api.fireworks.ai", "fireworks"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cerebras.ai", "cerebras"),
    ("api.moonshot.ai", "moonshot_ai"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("api.anthropic.com", "anthropic"),
)
# Local servers are recognised by their default ports on a loopback or private host.
_LOCAL_PORTS = {11434: "ollama", 1234: "lm_studio", 8000: "vllm"}
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal")


def server_of(url: str) -> tuple[str | None, int | None]:
    """(lower-cased host, port) of ``url``; the scheme's default port when none is given."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower() or None
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a malformed port: report the host alone
        port = None
    return host, port


def provider_for_host(host: str | None, port: int | None) -> str | None:
    """The provider a known API host (or a local server's default port) belongs to, else None."""
    host = host or ""
    best = ""
    provider = None
    for suffix, name in _HOSTS:
        if (host == suffix or host.endswith("." + suffix)) and len(suffix) > len(best):
            best, provider = suffix, name
    if provider is None and port in _LOCAL_PORTS and (host in _LOOPBACK or host.endswith(".local")):
        provider = _LOCAL_PORTS[port]  # type: ignore[index]
    return provider


def locate(url: str, overrides: Mapping[str, str] | None, default: str) -> Located:
    """Where ``url`` points: the override for its host if any, else ``default``."""
    address, port = server_of(url)
    if overrides:
        for key in (f"{address}:{port}", address):
            if key in overrides:
                return overrides[key], address, port
    return default, address, port


class Locator:
    """Locates a provider module's clients, cached per (client kind, base URL).

    ``rule(kind, host, port)`` is the module's own rule for a client of that kind (its class, a
    mode flag) and host. A base URL given as an object (httpx's ``URL``) is keyed by identity and
    kept alive, so its id cannot be reused; a string by value. The cache is emptied past 256 entries
    (an application making a client per request) and when the overrides change."""

    def __init__(self, rule: Callable[[Hashable, str | None, int | None], str]) -> None:
        self._rule = rule
        self._cache: dict[tuple[Hashable, Any], tuple[Any, Located]] = {}
        self._overrides: Mapping[str, str] | None = None

    def __call__(self, kind: Hashable, base_url: Any, overrides: Mapping[str, str]) -> Located:
        if overrides is not self._overrides:
            self._cache = {}
            self._overrides = overrides
        by_value = isinstance(base_url, str)
        key = (kind, base_url if by_value else id(base_url))
        cached = self._cache.get(key)
        if cached is not None and (by_value or cached[0] is base_url):
            return cached[1]
        url = base_url if by_value else str(base_url)
        host, port = server_of(url)
        located = locate(url, overrides, self._rule(kind, host, port))
        if len(self._cache) >= 256:
            self._cache = {}
        self._cache[key] = (base_url, located)
        return located
