"""``tokentrail serve`` fuzzed against its own OpenAPI description.

schemathesis reads ``/openapi.json`` from the app itself and calls it in-process (ASGI, no
network) with valid and deliberately invalid requests, over a ledger of realistic calls and a
budgets file. Every answer must be documented: no 5xx, a status code the operation lists, a body
matching the schema given for that code, and invalid input rejected with a 4xx (schemathesis'
default checks, among them ``not_a_server_error``, ``status_code_conformance``,
``response_schema_conformance`` and ``negative_data_rejection``).

The run is bounded: ``TOKENTRAIL_FUZZ_EXAMPLES`` examples per operation (default 150, about 15 s
for the whole file on one core); set it higher for a deeper run.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ledger_data import expected_totals, fill, random_records, raw_rows

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from tokentrail.ledger.api import create_app  # noqa: E402
from tokentrail.ledger.query import BY_KEYS  # noqa: E402

EXAMPLES = int(os.environ.get("TOKENTRAIL_FUZZ_EXAMPLES", "150"))
OPERATIONS = {
    "/v1/usage",
    "/v1/pipelines/{pipeline}/usage",
    "/v1/agents/{agent}/usage",
    "/v1/roles/{role}/usage",
    "/v1/trend",
    "/v1/pipelines/{pipeline}/budget",
    "/v1/budgets",
    "/healthz",
}
BUDGETS_TOML = """
[[budget]]
name = "pip_a daily"
usd = 2.5
window = "day"
timezone = "Europe/Paris"
scope = { pipeline = "pip_a" }

[[budget]]
name = "QA hourly"
usd = 0.4
window = "1h"
scope = { agent = "QA" }

[[budget]]
name = "everything, one run"
usd = 100
mode = "warn"
"""

# schemathesis builds its tests when this module is collected (its fixture-based lazy loader does not
# work with pytest 9), so the app is made now over paths the fixture below fills before any request.
_FILES = tempfile.TemporaryDirectory(prefix="tokentrail-fuzz-")
LEDGER = Path(_FILES.name) / "ledger.sqlite"
BUDGETS = Path(_FILES.name) / "budgets.toml"
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(LEDGER, BUDGETS))


@pytest.fixture(scope="module")
def filled_ledger() -> Any:
    if not LEDGER.exists():
        fill(LEDGER, random_records(400, seed=21))
        BUDGETS.write_text(BUDGETS_TOML, encoding="utf-8")
    before = LEDGER.stat().st_mtime_ns, LEDGER.stat().st_size
    yield LEDGER
    assert (LEDGER.stat().st_mtime_ns, LEDGER.stat().st_size) == before  # read-only, fuzzed or not


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_answers_only_what_it_documents(case: Any, filled_ledger: Path) -> None:
    case.call_and_validate()


def spec_of(app_schema: Any) -> dict[str, Any]:
    return app_schema.raw_schema


def test_every_operation_documents_its_failures() -> None:
    """The fuzz test can hold each operation to its answers only if they are all written down."""
    paths = spec_of(schema)["paths"]
    assert set(paths) == OPERATIONS
    documented = {path: set(operations["get"]["responses"]) for path, operations in paths.items()}
    with_parameters = OPERATIONS - {"/v1/budgets", "/healthz"}
    assert {path: documented[path] for path in with_parameters} == {
        path: {"200", "422", "503"} for path in with_parameters
    }
    assert documented["/v1/budgets"] == {"200", "404", "503"}
    assert documented["/healthz"] == {"200", "503"}
    by = next(p for p in paths["/v1/usage"]["get"]["parameters"] if p["name"] == "by")
    assert by["schema"]["items"]["anyOf"][0]["enum"] == list(BY_KEYS)


def call(app_schema: Any, path: str, query: dict[str, Any] | None = None, **path_parameters: str) -> Any:
    """Call one operation with these parameters and hold the answer to the schema (5xx allowed)."""
    case = app_schema[path]["GET"].Case(path_parameters=path_parameters or None, query=query)
    response = case.call()
    case.validate_response(response, excluded_checks=[not_a_server_error])
    return response


BUDGET = "/v1/pipelines/{pipeline}/budget"
PIP_A = {"pipeline": "pip_a"}
# (path, path parameters, query, the parameter the answer must name, words the message must hold)
BAD_PARAMETERS = [
    (BUDGET, PIP_A, {"budget_usd": "1e-320"}, "budget_usd", "greater than or equal to 0.000001"),
    (BUDGET, PIP_A, {"budget_usd": "inf"}, "budget_usd", "finite number"),
    (BUDGET, PIP_A, {"budget_usd": "nan"}, "budget_usd", "finite number"),
    (BUDGET, PIP_A, {"budget_usd": "-1"}, "budget_usd", "greater than or equal to 0.000001"),
    (BUDGET, PIP_A, {"budget_usd": "ten"}, "budget_usd", "valid number"),
    (BUDGET, PIP_A, {}, "budget_usd", "required"),
    ("/v1/usage", {}, {"days": "0"}, "days", "greater than or equal to 1"),
    ("/v1/usage", {}, {"days": "1.5"}, "days", "integer"),
    ("/v1/usage", {}, {"days": "9" * 30}, "days", "less than or equal to 36500"),
    ("/v1/trend", {}, {"days": "3651"}, "days", "less than or equal to 3650"),
    ("/v1/agents/{agent}/usage", {"agent": "QA"}, {"days": "-7"}, "days", "greater than or equal to 1"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "path_parameters", "query", "parameter", "words"), BAD_PARAMETERS)
def test_bad_parameters_are_a_documented_422_naming_the_parameter(
    filled_ledger: Path, path: str, path_parameters: dict, query: dict, parameter: str, words: str
) -> None:
    response = call(schema, path, query, **path_parameters)
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["query", parameter]
    assert words in problem["msg"]


@pytest.mark.parametrize("key", ["", "colour", "label:Team", "day;drop table calls"])
def test_unknown_breakdown_keys_are_a_documented_422_listing_the_keys(filled_ledger: Path, key: str) -> None:
    for path, path_parameters in (
        ("/v1/usage", {}),
        ("/v1/pipelines/{pipeline}/usage", {"pipeline": "pip_a"}),
    ):
        response = call(schema, path, {"by": ["agent", key]}, **path_parameters)
        assert response.status_code == 422
        assert response.json()["detail"] == (
            f"unknown --by key {key!r}: use one of {', '.join(BY_KEYS)}, or label:KEY"
        )


def test_the_smallest_budget_is_answered_in_full(filled_ledger: Path) -> None:
    spent = expected_totals([row for row in raw_rows(LEDGER) if row["pipeline"] == "pip_a"])["cost_usd"]
    response = call(schema, BUDGET, {"budget_usd": "0.000001"}, **PIP_A)
    assert response.status_code == 200
    body = response.json()
    assert body["percent_used"] == pytest.approx(spent / 1e-6 * 100, rel=1e-12)
    assert (body["remaining_usd"], body["over_budget"]) == (0.0, True)


def test_without_a_budgets_file_budgets_are_a_documented_404(filled_ledger: Path) -> None:
    bare = schemathesis.openapi.from_asgi("/openapi.json", create_app(LEDGER))
    response = call(bare, "/v1/budgets")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "no budgets configured: start serve with --budgets FILE or TOKENTRAIL_BUDGETS"
    }


VALID_CALLS = [
    ("/v1/usage", {}, {"by": ["agent"]}),
    ("/v1/pipelines/{pipeline}/usage", {"pipeline": "pip_a"}, {}),
    ("/v1/agents/{agent}/usage", {"agent": "QA"}, {}),
    ("/v1/roles/{role}/usage", {"role": "lead"}, {}),
    ("/v1/trend", {}, {"days": 3}),
    (BUDGET, PIP_A, {"budget_usd": 5}),
    ("/v1/budgets", {}, {}),
    ("/healthz", {}, {}),
]


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ("missing", "no ledger at"),
        ("not sqlite", "cannot open the ledger at"),
        ("sqlite without the tables", "cannot read the ledger at"),
    ],
)
def test_an_unreadable_ledger_is_a_documented_503_saying_why(
    tmp_path: Path, broken: str, reason: str
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    if broken == "not sqlite":
        ledger.write_bytes(b"this is not a database\n" * 200)
    elif broken == "sqlite without the tables":
        from tokentrail.ledger._schema import SCHEMA_VERSION

        connection = sqlite3.connect(ledger)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.close()
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(BUDGETS_TOML, encoding="utf-8")
    app_schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(ledger, budgets))
    answers = {}
    for path, path_parameters, query in VALID_CALLS:
        response = call(app_schema, path, query, **path_parameters)
        body = response.json()
        answers[path] = response.status_code, body["detail"].startswith(reason) if "detail" in body else body
    expected: dict[str, Any] = {path: (503, True) for path, _, _ in VALID_CALLS}
    if broken == "missing":  # budgets over a ledger not made yet: nothing spent, which is an answer
        spent = [(status["name"], status["spent_usd"]) for status in answers["/v1/budgets"][1]]
        assert spent == [("pip_a daily", 0.0), ("QA hourly", 0.0), ("everything, one run", 0.0)]
        expected["/v1/budgets"] = answers["/v1/budgets"]
    assert answers == expected
