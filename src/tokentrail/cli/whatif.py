"""``tokentrail whatif``: the selected calls' exact token mix priced at other models' prices,
side by side with what they cost. ``--model`` / ``--provider`` name the candidates (filter the
calls by model with ``--where model=...``)."""

from __future__ import annotations

import argparse

from ..insights.whatif import CAVEATS, CandidateUnpriced, calls_with_usage, reprice
from ..pricing import genai_provider_id
from ._common import CliError, add_ledger_argument, add_output_arguments, filters_from, open_output
from ._source import add_source_arguments, reading_source
from ._tables import render_rows

HELP = "price the selected calls' token mix at other models (what-if)"
COLUMNS = ("candidate", "priced_as", "cost_usd", "difference_usd", "ratio")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("whatif", help=HELP, description=HELP + ".")
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="MODEL",
        help="a candidate model (repeat for several; PROVIDER:MODEL also works)",
    )
    parser.add_argument(
        "--provider",
        action="append",
        default=[],
        help="the candidates' provider (gen_ai.provider.name: openai, anthropic, gcp.gemini, ...): "
        "once for all, or once per --model",
    )
    add_ledger_argument(parser)
    parser.add_argument("--since", metavar="WHEN", help="calls from this time: 2026-11-01, 7d, 24h")
    parser.add_argument("--until", metavar="WHEN", help="calls up to this time (exclusive)")
    parser.add_argument("--pipeline", metavar="ID", help="only calls of this pipeline")
    parser.add_argument(
        "--where",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="only calls whose KEY (model, provider, agent, user, label:KEY, ...) is VALUE; repeatable",
    )
    add_source_arguments(parser)
    add_output_arguments(parser)


def candidates_from(models: list[str], providers: list[str]) -> list[tuple[str, str]]:
    if providers and len(providers) not in (1, len(models)):
        raise CliError(f"--provider: give one for every --model, or one for all ({len(models)} models)")
    found = []
    for index, model in enumerate(models):
        prefix, sep, rest = model.partition(":")
        if sep and genai_provider_id(prefix) is not None:
            found.append((prefix, rest))
        elif providers:
            found.append((providers[0] if len(providers) == 1 else providers[index], model))
        else:
            raise CliError(
                f"--model {model}: name its provider with --provider (openai, anthropic, gcp.gemini, ...) "
                f"or as PROVIDER:MODEL, e.g. openai:{model}"
            )
    return found


def run(args: argparse.Namespace) -> int:
    candidates = candidates_from(args.model, args.provider)
    filters = filters_from(argparse.Namespace(**{**vars(args), "model": None, "provider": None}))
    with reading_source(args) as source:
        try:
            found = reprice(calls_with_usage(source, filters), candidates)
        except CandidateUnpriced as exc:
            raise CliError(str(exc)) from None
        name = source.name
    data = {"filters": filters.describe(), **found.as_dict()}
    mix = found.mix
    rows = [["actual", "-", found.actual_usd, 0.0, 1.0]]
    for c in found.candidates:
        cost = c.cost_of_priced_calls_usd
        ratio = cost / found.actual_usd if found.actual_usd else None
        rows.append([f"{c.provider}:{c.model}", c.priced_model, cost, cost - found.actual_usd, ratio])
    heading = [
        f"tokentrail whatif · {name}",
        f"{mix.calls:,} calls with usage: uncached input {mix.uncached_input:,}, cache read "
        f"{mix.cache_read:,}, "
        f"cache write {mix.cache_write:,}, output {mix.output:,}, reasoning {mix.reasoning:,}",
    ]
    notes = list(CAVEATS)
    if found.unpriced_calls:
        notes.insert(0, f"{found.unpriced_calls:,} calls had no known price: left out of the comparison")
    with open_output(args, newline="" if args.format == "csv" else None) as (out, _):
        render_rows(args.format, out, data=data, columns=COLUMNS, rows=rows, heading=heading, notes=notes)
    return 0
