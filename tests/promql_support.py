"""What the dashboards and alert rules ask Prometheus for: the series selectors of a PromQL
expression, and the series names tokentrail's metrics have in Prometheus.

The names are derived, not listed: every instrument tokentrail creates (recorded by a meter provider
that only notes what is created, in a fresh process) is a metric named in ``tokentrail.semconv``,
and ``tokentrail.ledger.prometheus.prometheus_name`` applies the Prometheus exporters' naming rules
to its name, unit and kind.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from functools import cache

from tokentrail import semconv as sc
from tokentrail.ledger.prometheus import prometheus_name

SCOPE_LABEL = "otel_scope_name"
SCOPE = "tokentrail"

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
# Aggregations, which may come before their ``by (...)`` clause rather than their argument.
_KEYWORDS |= {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk"}
_KEYWORDS |= {"quantile", "count_values", "limitk", "limit_ratio"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<braces>\{)
    | (?P<range>\[[^\]]*\])
    | (?P<variable>\$\{[^}]+\}|\$\w+|\[\[\w+\]\])
    | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<open>\()
    | (?P<close>\))
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
_MATCHER = re.compile(
    r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)\s*,?"""
)


@dataclass
class Selector:
    """One vector selector: ``name{label op "value", ...}``; ``name`` is None for ``{__name__=~...}``."""

    name: str | None
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)


def _braces(text: str, start: int) -> int:
    """The index just past the ``}`` closing the ``{`` at ``start`` (strings may hold braces)."""
    index = start + 1
    while index < len(text):
        char = text[index]
        if char in "\"'`":
            end = text.index(char, index + 1)
            while char != "`" and text[end - 1] == "\\":
                end = text.index(char, end + 1)
            index = end + 1
            continue
        if char == "}":
            return index + 1
        index += 1
    raise ValueError(f"unclosed {{ in {text!r}")


def _matchers(body: str) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    position = 0
    body = body.strip()
    while position < len(body):
        match = _MATCHER.match(body, position)
        if match is None:
            raise ValueError(f"cannot read the label matchers {body!r}")
        quoted = match.group(3)
        value = json.loads(quoted) if quoted[0] == '"' else quoted[1:-1]
        found[match.group(1)] = (match.group(2), value)
        position = match.end()
    return found


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of a PromQL expression (Grafana ``$variables`` left as they are)."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:  # whitespace
            position += 1
            continue
        kind = match.lastgroup
        if kind == "braces":
            end = _braces(expr, match.start())
            tokens.append(("braces", expr[match.start() + 1 : end - 1]))
            position = end
            continue
        tokens.append((kind, match.group()))
        position = match.end()
    found: list[Selector] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in _LABEL_LISTS and following[0] == "open":
            index += 2
            while tokens[index][0] != "close":
                index += 1
        elif kind == "ident" and (following[0] == "open" or text in _KEYWORDS):
            pass  # a function, an aggregation or an operator
        elif kind == "ident":
            matchers = _matchers(following[1]) if following[0] == "braces" else {}
            found.append(Selector(text, matchers))
            index += following[0] == "braces"
        elif kind == "braces":
            found.append(Selector(None, _matchers(text)))
        index += 1
    return found


_INSTRUMENTS = textwrap.dedent(
    """
    import inspect, json, sys
    from opentelemetry.metrics import NoOpMeter, NoOpMeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    import tokentrail

    created = []
    KINDS = ("counter", "up_down_counter", "histogram", "gauge", "observable_counter",
             "observable_up_down_counter", "observable_gauge")

    class Meter(NoOpMeter):
        pass

    def noting(kind):
        original = getattr(NoOpMeter, f"create_{kind}")

        def create(self, *args, **kwargs):
            bound = inspect.signature(original).bind(self, *args, **kwargs).arguments
            created.append(
                {"kind": kind, "name": bound["name"], "unit": bound.get("unit", ""), "scope": self.name}
            )
            return original(self, *args, **kwargs)

        return create

    for kind in KINDS:
        setattr(Meter, f"create_{kind}", noting(kind))

    class Provider(NoOpMeterProvider):
        def get_meter(self, name, version=None, schema_url=None, attributes=None):
            return Meter(name, version=version, schema_url=schema_url)

    tokentrail.instrument(tracer_provider=TracerProvider(), meter_provider=Provider(), ledger=sys.argv[1])
    tokentrail.flush()
    tokentrail.uninstrument()
    print(json.dumps(created))
    """
)


@cache
def tokentrail_instruments() -> tuple[dict[str, str], ...]:
    """(kind, name, unit, scope) of every instrument ``tokentrail.instrument()`` creates, ledger on."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-c", _INSTRUMENTS, f"{folder}/ledger.sqlite"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def semconv_metric_names() -> set[str]:
    return {
        value for name, value in vars(sc).items() if name.startswith("METRIC_") and isinstance(value, str)
    }


@cache
def tokentrail_series_names() -> frozenset[str]:
    """Every series name tokentrail's metrics have in Prometheus."""
    names: set[str] = set()
    for instrument in tokentrail_instruments():
        kind, name, unit = instrument["kind"], instrument["name"], instrument["unit"]
        if "counter" in kind and "up_down" not in kind:
            names.add(prometheus_name(name, unit, counter=True))
        elif kind == "histogram":
            names |= {prometheus_name(name, unit, suffix=s) for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(prometheus_name(name, unit))
    return frozenset(names)


# --- what the shipped files ask for ------------------------------------------------------------------------


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of a Grafana dashboard."""
    found: list[tuple[str, str]] = []

    def panels(items: list[dict]) -> None:
        for panel in items:
            for target in panel.get("targets", []):
                if "expr" in target:
                    found.append((f"{panel.get('title')} [{target.get('refId')}]", target["expr"]))
            panels(panel.get("panels", []))

    panels(dashboard.get("panels", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query.get("query", "") if isinstance(query, dict) else query
            match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", text, flags=re.S)
            found.append((f"variable {variable['name']}", match.group(1) if match else text))
    return found


def unscoped(expr: str) -> list[str]:
    """The selectors of tokentrail's metrics in ``expr`` that lack ``otel_scope_name="tokentrail"``,
    and the selectors naming a series tokentrail does not emit (as ``?name``)."""
    problems = []
    for selector in selectors(expr):
        if selector.name not in tokentrail_series_names():
            problems.append(f"?{selector.name or selector.matchers}")
        elif selector.matchers.get(SCOPE_LABEL) != ("=", SCOPE):
            problems.append(selector.name)
    return problems


def rule_expressions(rules: dict) -> list[tuple[str, str]]:
    """(rule name, PromQL) of every recording and alerting rule of a Prometheus rules file."""
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]
