"""``tokentrail estimate``: a request's input tokens and worst-case cost, before sending it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import runtime
from .._safety import shown_path
from ..estimation import estimate
from ._common import CliError, resolve_provider

HELP = "estimate a request's input tokens and cost before sending it"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("estimate", help=HELP, description=HELP + ".")
    parser.add_argument("--model", required=True, help="model id, e.g. gpt-4o-mini")
    parser.add_argument(
        "--provider",
        help="openai (exact), anthropic, gemini, ... (approximate); default: the provider whose price "
        "catalogue lists the model, when only one does",
    )
    parser.add_argument(
        "--messages",
        required=True,
        metavar="FILE",
        help="JSON file: a list of chat messages, or a request body",
    )
    parser.add_argument("--tools", metavar="FILE", help="JSON file: the request's tool definitions")
    parser.add_argument("--max-tokens", type=int, help="the request's max_tokens (the output cap)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")


def _read_json(path: str, what: str) -> Any:
    named = shown_path(path)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"--{what} {named}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError as exc:
        raise CliError(
            f"--{what} {named}: not UTF-8 text ({exc.reason} at byte {exc.start}); give a JSON file"
        ) from None
    except json.JSONDecodeError as exc:
        raise CliError(f"--{what} {named}: not JSON ({exc})") from None
    except RecursionError:
        raise CliError(f"--{what} {named}: not JSON tokentrail can read (nested too deeply)") from None


def run(args: argparse.Namespace) -> int:

    messages = _read_json(args.messages, "messages")
    tools = _read_json(args.tools, "tools") if args.tools else None
    system = None
    if isinstance(messages, dict):  # a whole request body
        tools = tools if tools is not None else messages.get("tools")
        system = messages.get("system")
        if args.max_tokens is None and isinstance(messages.get("max_tokens"), int):
            args.max_tokens = messages["max_tokens"]
        messages = messages.get("messages", messages.get("contents"))
    if args.max_tokens is not None and args.max_tokens <= 0:
        raise CliError("--max-tokens must be a positive integer")
    pricer = runtime.pricer()
    found = estimate(
        provider=resolve_provider(args.provider, args.model, pricer),
        model=args.model,
        messages=messages,
        max_tokens=args.max_tokens,
        tools=tools,
        system=system,
        pricer=pricer,
    )
    if args.format == "json":
        print(json.dumps(found.as_dict(), indent=2))
        return 0

    def usd(value: float | None) -> str:
        return "unknown (no price)" if value is None else f"${value:.6f}"

    tokens = "unknown" if found.input_tokens is None else f"{found.input_tokens:,}"
    print(f"model              {found.provider} {found.model}")
    print(f"input tokens       {tokens} ({'exact' if found.exact else 'estimate'})")
    print(f"output cap         {found.max_output_tokens:,} tokens")
    print(f"worst-case cost    {usd(found.worst_case_usd)}")
    print(f"expected cost      {usd(found.expected_usd)}")
    print(f"note               {found.note}")
    return 0
