"""The fake model itself: what it "generates" and how it counts tokens, for any wire format.

Everything is a pure function of the request, so a streamed and a non-streamed call with the same
body get the same answer and the same usage, and tests can compute the expected numbers by hand:

* text costs ``ceil(words * 4 / 3)`` tokens (whitespace-separated words; roughly what BPE
  tokenizers give for English);
* the answer is ``chunks`` words cycled from :data:`ANSWER_WORDS`, one token and one stream chunk
  each; a token limit cuts it short (the finish reason then says so);
* prompts longer than 1024 tokens hit the prompt cache for the largest multiple of 128 below their
  length (OpenAI caches prefixes in 128-token steps from 1024 on), shorter ones not at all;
* reasoning models think for a budget set by the reasoning effort (:data:`REASONING_TOKENS`),
  spent before the visible answer and charged against the same token limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ANSWER_WORDS",
    "CACHE_MINIMUM",
    "CACHE_STEP",
    "REASONING_TOKENS",
    "Generation",
    "answer_pieces",
    "cached_tokens",
    "count_tokens",
    "generate",
    "is_reasoning_model",
    "reasoning_tokens",
]

ANSWER_WORDS = (
    "This", "is", "a", "fake", "answer", "from", "the", "tokentrail", "test", "server,",
    "and", "every", "word", "of", "it", "is", "one", "token.",
)  # fmt: skip

CACHE_MINIMUM = 1024
CACHE_STEP = 128

REASONING_TOKENS = {
    "none": 0,
    "minimal": 0,
    "low": 64,
    "medium": 192,
    "high": 512,
    "xhigh": 1024,
    "max": 2048,
}
"""Reasoning tokens per reasoning effort; an absent or unknown effort counts as ``medium``."""

# Families that think before answering. Matched after any ``vendor/`` prefix (OpenRouter's
# names), so "openai/o3-mini" reasons too.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5", "grok-3-mini", "grok-4", "deepseek-reasoner", "deepseek-r1")
# Members of those families that do not reason.
_NON_REASONING_MARKERS = ("non-reasoning", "gpt-5-chat")


def count_tokens(text: str) -> int:
    """Tokens in ``text``: ``ceil(words * 4 / 3)``, so 0 only for blank text."""
    return math.ceil(len(text.split()) * 4 / 3)


def answer_pieces(count: int) -> list[str]:
    """The first ``count`` answer words, each but the first with its leading space (as streamed)."""
    words = [ANSWER_WORDS[i % len(ANSWER_WORDS)] for i in range(count)]
    return [word if i == 0 else f" {word}" for i, word in enumerate(words)]


def cached_tokens(prompt_tokens: int) -> int:
    """Prompt tokens served from the cache: the largest multiple of 128 below the prompt, from 1024 on."""
    cached = (prompt_tokens - 1) // CACHE_STEP * CACHE_STEP
    return cached if cached >= CACHE_MINIMUM else 0


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` spends reasoning tokens (o-series, gpt-5, grok reasoning, deepseek-reasoner)."""
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(_REASONING_PREFIXES) and not any(m in name for m in _NON_REASONING_MARKERS)


def reasoning_tokens(model: str, effort: object) -> int:
    """The reasoning budget of one call: 0 for non-reasoning models, else by effort."""
    if not is_reasoning_model(model):
        return 0
    return REASONING_TOKENS.get(effort if isinstance(effort, str) else "medium", REASONING_TOKENS["medium"])


@dataclass(frozen=True)
class Generation:
    """What the fake model produced for one call."""

    pieces: list[str]
    """The visible answer, one piece per token and per stream chunk."""
    reasoning_tokens: int
    truncated: bool
    """True when the token limit cut the answer short."""

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def visible_tokens(self) -> int:
        return len(self.pieces)


def generate(chunks: int, reasoning: int, limit: int | None) -> Generation:
    """Spend ``reasoning`` tokens, then answer ``chunks`` words, all within ``limit`` tokens if given."""
    if limit is None:
        return Generation(answer_pieces(chunks), reasoning, truncated=False)
    limit = max(limit, 0)
    # Reasoning comes first, as with real reasoning models: a small limit can leave no room for
    # the answer at all (an empty answer with finish reason "length").
    spent = min(reasoning, limit)
    visible = min(chunks, limit - spent)
    return Generation(answer_pieces(visible), spent, truncated=visible < chunks or spent < reasoning)
