"""``tokentrail prices``: the price card a model is priced with, and override-file checks."""

from __future__ import annotations

import argparse
import sys
import time

from ..pricing import PriceOverrideError, Pricer, load_overrides
from ._common import CliError, resolve_provider


def run(args: argparse.Namespace) -> int:
    try:
        overrides = load_overrides(args.check or args.prices) if (args.check or args.prices) else []
    except PriceOverrideError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        print(f"{args.check}: {len(overrides)} price entr{'y' if len(overrides) == 1 else 'ies'}, all valid")
        return 0
    if not args.model:
        print("error: name a model (tokentrail prices gpt-4o-mini) or use --check FILE", file=sys.stderr)
        return 2
    pricer = Pricer(overrides)
    try:
        provider = resolve_provider(args.provider, args.model, pricer)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    card = pricer.card(provider, args.model, time.time())
    if card is None:
        print(
            f"error: no price known for {args.model!r} at provider {provider!r}; "
            "add it to a price override file (see README, 'Prices')",
            file=sys.stderr,
        )
        return 1
    print(f"{args.model} ({provider}) priced as {card.model_id}, from {card.source}")
    for line in card.lines:
        name = line.usage_field or "per request"
        unit = "per 1M" if line.per == 1_000_000 else f"per {int(line.per):,}"
        tiers = "".join(f"; above {start:,} input tokens: ${price:g}" for start, price in line.tiers)
        print(f"  {name:<24} ${line.base:g} {unit}{tiers}")
    return 0
