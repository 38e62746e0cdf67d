"""The providers' way to :func:`tokentrail.estimation.input_tokens`, which loads on first use.

A provider's request carries an input estimate (a closure) that only a budget ever calls, before
the call, to reserve its cost. The estimation module (tokenizer tables, its dataclasses) is
2 ms of ``import tokentrail; instrument()``: it loads when the first estimate is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["input_tokens"]


def input_tokens(*args: Any, **kwargs: Any) -> Sequence[Any]:
    """:func:`tokentrail.estimation.input_tokens` itself (same arguments, same result)."""
    from ..estimation import input_tokens as count

    return count(*args, **kwargs)
