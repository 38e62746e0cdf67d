"""The dashboard's JSON endpoints fuzzed against their own OpenAPI description, as
``tests/test_serve_fuzz.py`` does for the rest of the API: no 5xx, every status code and body as
documented, invalid input rejected with a 4xx naming the parameter. Bounded by
``TOKENTRAIL_FUZZ_EXAMPLES`` (default 40 per operation here: the advice prices every call)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ledger_data import fill, random_records

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from tokentrail.dashboard.app import create_dashboard_app  # noqa: E402

EXAMPLES = int(os.environ.get("TOKENTRAIL_FUZZ_EXAMPLES", "40"))
OPERATIONS = {"/v1/dashboard", "/v1/dashboard/calls", "/v1/forecast", "/v1/whatif", "/v1/advice"}

_FILES = tempfile.TemporaryDirectory(prefix="tokentrail-dashboard-fuzz-")
LEDGER = Path(_FILES.name) / "ledger.sqlite"
BUDGETS = Path(_FILES.name) / "budgets.toml"
full = schemathesis.openapi.from_asgi("/openapi.json", create_dashboard_app(LEDGER, BUDGETS))
schema = full.include(path_regex="^/v1/(dashboard|forecast|whatif|advice)")


@pytest.fixture(scope="module")
def filled_ledger() -> Any:
    if not LEDGER.exists():
        fill(LEDGER, random_records(300, seed=41, days=10))
        BUDGETS.write_text('[[budget]]\nname = "daily"\nusd = 5.0\nwindow = "1d"\n', encoding="utf-8")
    before = LEDGER.stat().st_mtime_ns, LEDGER.stat().st_size
    yield LEDGER
    assert (LEDGER.stat().st_mtime_ns, LEDGER.stat().st_size) == before  # read-only, fuzzed or not


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_dashboard_api_answers_only_what_it_documents(case: Any, filled_ledger: Path) -> None:
    # Not "every schema-valid request succeeds": a time can match the documented forms and not be a
    # date (2026-02-30), a candidate can be well formed and not in the price catalogue. Both are a
    # documented 422 saying what to fix (see the test below); every other check applies.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def test_every_dashboard_operation_documents_its_failures() -> None:
    paths = full.raw_schema["paths"]
    assert set(paths) >= OPERATIONS
    for path in OPERATIONS:
        assert set(paths[path]["get"]["responses"]) == {"200", "422", "503"}, path


@pytest.mark.parametrize(
    ("path", "query", "words"),
    [
        ("/v1/dashboard", {"since": "last tuesday"}, "since: 'last tuesday' is not a time"),
        ("/v1/dashboard", {"stack": "colour"}, "stack 'colour': use one of model, provider, agent, pipeline"),
        ("/v1/dashboard", {"since": "1d", "until": "2d"}, "since '1d' is after until '2d'"),
        ("/v1/whatif", {"candidate": ["gpt-4o-mini"]}, "candidate 'gpt-4o-mini': use PROVIDER:MODEL"),
        (
            "/v1/whatif",
            {"candidate": ["openai:nope-model-x"]},
            "no price for 'nope-model-x' at provider 'openai'",
        ),
    ],
)
def test_bad_settings_are_a_422_saying_what_to_fix(filled_ledger: Path, path: str, query: dict, words: str):
    case = full[path]["GET"].Case(query=query)
    response = case.call()
    case.validate_response(response)
    assert response.status_code == 422
    assert words in response.json()["detail"]
