"""The run summary: tokens and cost per agent and in total, for the process that just ran.

A sink that aggregates as calls finish (a few counters per call, so memory stays flat however
long the process runs) and reports on request: ``tokentrail.summary()`` returns it as text or as
a dict, and ``TOKENTRAIL_SUMMARY=1`` prints it when the interpreter exits.

Context-window utilisation compares the largest input sent to each model with the model's
context window from the price catalogue (genai-prices keeps both), not a hand-written table.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from . import _fork
from .records import CallRecord
from .totals import Totals

__all__ = ["RunSummary"]

UNATTRIBUTED = "(no agent)"


class RunSummary:
    """Aggregates every finished call; thread-safe. Installed by ``instrument()``."""

    def __init__(self, context_window: Any = None) -> None:
        self._lock = threading.Lock()
        _fork.renew_locks(self, "_lock")  # summary() is read on the application's threads
        self._context_window = context_window  # (provider, model) -> int | None
        self.reset()

    def reset(self) -> None:
        with self._lock:
            # One Totals per (agent, model): a call adds to one, and the per-agent, per-model and
            # overall figures are their sums, made when the summary is read (rarely), not per call.
            self._groups: dict[tuple[str, tuple[str, str]], Totals] = {}
            self._largest_input: dict[tuple[str, str], int] = {}

    def __call__(self, call: CallRecord) -> None:
        agent = call.attribution.get("agent", UNATTRIBUTED)
        model = (call.provider, call.response_model or call.request_model or "?")
        cost = call.cost.total if call.cost is not None else None
        failed = call.error_type is not None
        with self._lock:
            totals = self._groups.get((agent, model))
            if totals is None:
                totals = self._groups[(agent, model)] = Totals()
            totals.add_call(call.usage, cost, failed=failed)
            if call.usage is not None and call.usage.input_tokens > self._largest_input.get(model, -1):
                self._largest_input[model] = call.usage.input_tokens

    def as_dict(self) -> dict[str, Any]:
        """The summary in the shape a program can consume (see the README for the schema)."""
        by_agent: dict[str, Totals] = {}
        by_model: dict[tuple[str, str], Totals] = {}
        overall = Totals()
        with self._lock:
            for (agent, model), totals in self._groups.items():
                for into in (
                    by_agent.setdefault(agent, Totals()),
                    by_model.setdefault(model, Totals()),
                    overall,
                ):
                    into.add(totals)
            largest = dict(self._largest_input)
        agents = {name: totals.summary() for name, totals in by_agent.items()}
        models = {f"{p} {m}": totals.summary() for (p, m), totals in by_model.items()}
        total = overall.summary()
        attributed = [name for name in agents if name != UNATTRIBUTED]
        agent_tokens = [agents[n]["input_tokens"] + agents[n]["output_tokens"] for n in attributed]
        most_expensive = max(attributed, key=lambda n: agents[n]["cost_usd"], default=None)
        utilisation = {}
        for (provider, model), input_tokens in sorted(largest.items()):
            window = self._context_window(provider, model) if self._context_window else None
            utilisation[f"{provider} {model}"] = {
                "largest_input_tokens": input_tokens,
                "context_window": window,
                "utilisation": (input_tokens / window) if window else None,
            }
        return {
            "agents": agents,
            "totals": total,
            "cost_breakdown": {
                "by_agent": {name: data["cost_usd"] for name, data in agents.items()},
                "by_model": {name: data["cost_usd"] for name, data in models.items()},
            },
            "efficiency": {
                "average_tokens_per_agent": (sum(agent_tokens) / len(agent_tokens)) if agent_tokens else None,
                "most_expensive_agent": most_expensive,
                "context_window_utilisation": utilisation,
                "input_output_ratio": (
                    total["input_tokens"] / total["output_tokens"] if total["output_tokens"] else None
                ),
            },
        }

    def render(self) -> str:
        data = self.as_dict()
        lines = ["tokentrail run summary"]
        header = (
            f"  {'agent':<24}{'calls':>7}{'input':>11}{'output':>10}{'cache read':>12}"
            f"{'cache write':>13}{'cost USD':>12}"
        )
        rule = "  " + "-" * (len(header) - 2)
        lines += [header, rule]

        def row(name: str, values: dict[str, Any]) -> str:
            return (
                f"  {name[:24]:<24}{values['calls']:>7}{values['input_tokens']:>11,}"
                f"{values['output_tokens']:>10,}{values['cache_read_tokens']:>12,}"
                f"{values['cache_write_tokens']:>13,}{values['cost_usd']:>12.6f}"
            )

        for name, values in sorted(data["agents"].items(), key=lambda item: -item[1]["cost_usd"]):
            lines.append(row(name, values))
        lines += [rule, row("total", data["totals"])]
        efficiency = data["efficiency"]
        if efficiency["average_tokens_per_agent"] is not None:
            lines.append(f"  average tokens per agent: {efficiency['average_tokens_per_agent']:,.0f}")
        if efficiency["most_expensive_agent"] is not None:
            lines.append(f"  most expensive agent: {efficiency['most_expensive_agent']}")
        if efficiency["input_output_ratio"] is not None:
            lines.append(f"  input/output ratio: {efficiency['input_output_ratio']:.2f}")
        for model, window in efficiency["context_window_utilisation"].items():
            if window["utilisation"] is not None:
                lines.append(
                    f"  context window, {model}: largest input {window['largest_input_tokens']:,} of "
                    f"{window['context_window']:,} ({window['utilisation']:.1%})"
                )
        if data["totals"]["unpriced_calls"]:
            lines.append(f"  unpriced calls (cost not included): {data['totals']['unpriced_calls']}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)
