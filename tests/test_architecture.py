"""The shape of the code: the provider contract and registry, the one-way layers, nothing at import.

These tests hold the rules of docs/architecture.md: a provider is one module plus one registry
entry plus one entry point; the import graph only points down; importing tokentrail changes nothing.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import tokentrail
from tokentrail import instrumentation, registry
from tokentrail import semconv as sc
from tokentrail.testing import fake_server

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tokentrail"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# What the fake provider server speaks for each provider (tokentrail.testing.<module>): a new SDK
# provider needs its wire format there, so that its tests drive the real SDK over HTTP. A framework
# (LangChain, LiteLLM, CrewAI, the OpenAI Agents SDK, PydanticAI) runs over the SDKs' or providers' own
# wire formats: None.
WIRE_FORMATS = {
    "openai": "_openai_wire",
    "anthropic": "_anthropic_wire",
    "google_genai": "_gemini_wire",
    "groq": "_groq_wire",
    "bedrock": "_bedrock_wire",
    "mistral": "_mistral_wire",
    "cohere": "_cohere_wire",
    "together": "_together_wire",
    "ollama": "_ollama_wire",
    "langchain": None,
    "litellm": None,
    "crewai": None,
    "openai_agents": None,
    "pydantic_ai": None,
}


# --- a provider is one module, one registry entry, one entry point --------------------------------


@pytest.mark.parametrize("entry", registry.PROVIDERS, ids=lambda e: e.name)
def test_what_a_new_provider_needs(entry: registry.ProviderEntry) -> None:
    # 1. One module: importable without side effects, with the contract's patches().
    module = importlib.import_module(entry.implementation)
    assert entry.implementation == f"tokentrail.providers.{entry.name}"
    assert callable(module.patches), f"{entry.implementation} must define patches() -> PatchSet | None"
    assert not inspect.signature(module.patches).parameters
    # 2. One registry entry (this one), from which the instrumentor class is derived.
    instrumentor = getattr(instrumentation, entry.instrumentor)
    assert instrumentor().instrumentation_dependencies() == (entry.requirement,)
    # 3. One entry point for opentelemetry-instrument, and its floor in instruments-any.
    entry_points = PYPROJECT["project"]["entry-points"]["opentelemetry_instrumentor"]
    assert entry_points[f"tokentrail_{entry.name}"] == f"tokentrail.instrumentation:{entry.instrumentor}"
    floors = {Requirement(r).name: str(Requirement(r).specifier) for r in _instruments_any()}
    assert floors[entry.distribution] == f">={entry.floor}"
    # 4. Its tests, and its wire format in the fake server.
    assert (ROOT / "tests" / f"test_{entry.name}.py").exists(), f"tests/test_{entry.name}.py"
    assert entry.name in WIRE_FORMATS, f"add {entry.name}'s fake-server wire format to WIRE_FORMATS"
    if WIRE_FORMATS[entry.name] is not None:  # the server answers in it (it routes to the module)
        assert inspect.ismodule(vars(fake_server).get(WIRE_FORMATS[entry.name]))


def test_registry_entry_points_and_instruments_any_name_the_same_providers() -> None:
    names = {entry.name for entry in registry.PROVIDERS}
    entry_points = PYPROJECT["project"]["entry-points"]["opentelemetry_instrumentor"]
    assert {name.removeprefix("tokentrail_") for name in entry_points} == names
    assert {Requirement(r).name for r in _instruments_any()} == {e.distribution for e in registry.PROVIDERS}
    assert set(instrumentation.__all__) == {entry.instrumentor for entry in registry.PROVIDERS}
    assert set(WIRE_FORMATS) == names


def test_the_readme_table_of_providers_is_the_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- providers-table -->\n(.*?)<!-- /providers-table -->", readme, re.S)
    assert block is not None, "README.md lost its <!-- providers-table --> markers"
    assert block.group(1) == registry.readme_table(), "run: python -m tokentrail.registry"


def test_provider_options_belong_to_their_provider() -> None:
    # The core settings have no provider's field: options come from the registry, by keyword
    # <provider>_<option> and variable TOKENTRAIL_<PROVIDER>_<OPTION>.
    from tokentrail.config import ConfigError, Settings

    fields = set(Settings.__dataclass_fields__)
    for entry in registry.PROVIDERS:
        assert not any(f.startswith(entry.name + "_") for f in fields), fields
        for option in entry.options:
            assert Settings.resolve(environ={}).option(entry.name, option.name) == option.default
            for value, _ in option.choices:
                chosen = Settings.resolve(environ={entry.variable(option): value})
                assert chosen.option(entry.name, option.name) == value
                given = Settings.resolve(environ={}, **{entry.setting(option): value})
                assert given.option(entry.name, option.name) == value
    with pytest.raises(ConfigError, match="anthropic_native_spans"):
        tokentrail.instrument(anthropic_native_span="keep", setup_otel=False)


def _instruments_any() -> list[str]:
    return PYPROJECT["project"]["optional-dependencies"]["instruments-any"]


# --- the layers -----------------------------------------------------------------------------------


def test_import_linter_layers_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


# Modules that need an optional extra: imported where they are used, so that tokentrail works
# without the extra (``tokentrail serve`` and its dashboard need fastapi).
OPTIONAL_EXTRA_MODULES = {"tokentrail.ledger.api", "tokentrail.dashboard.app"}
# Modules imported at their first use to keep them out of `import tokentrail; instrument()` (start-up
# within 40 ms, issue 19), each where it is used, in a layer above it (lint-imports checks those
# imports too): the ledger's queries, needed only when a shared budget reads the ledger; the pre-flight
# estimate, needed only when a budget reserves a call's cost or the application asks for one.
DEFERRED_FOR_START_UP = {"tokentrail.ledger.query", "tokentrail.estimation", "tokentrail"}


def test_no_function_local_import_of_a_tokentrail_module() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        # The module's dotted name; a package's __init__ counts as a module inside the package.
        package = ".".join(("tokentrail", *path.relative_to(SRC).with_suffix("").parts))
        tree = ast.parse(path.read_text(), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                for module in _tokentrail_imports(node, package):
                    if module not in OPTIONAL_EXTRA_MODULES | DEFERRED_FOR_START_UP:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}")
    assert not found, "import these at the top of the module (or move the code down a layer):\n" + "\n".join(
        found
    )


def _tokentrail_imports(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "tokentrail"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        return [node.module] if (node.module or "").split(".")[0] == "tokentrail" else []
    base = package.split(".")[: -node.level]
    module = ".".join([*base, node.module] if node.module else base)
    return [module if node.module else f"{module}.{node.names[0].name}"]


# --- nothing happens at import --------------------------------------------------------------------

_IMPORT_ONLY = """
import sys, threading
before = set(threading.enumerate())
import tokentrail
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

wrapped = [
    f"{cls.__name__}.{name}"
    for cls in (TracerProvider, MeterProvider)
    for name in ("shutdown", "force_flush")
    if hasattr(getattr(cls, name), "__wrapped__")
]
started = [t.name for t in threading.enumerate() if t not in before]
print(wrapped, started, "openai" in sys.modules)
"""


def test_import_tokentrail_patches_nothing_and_starts_no_thread() -> None:
    done = subprocess.run([sys.executable, "-c", _IMPORT_ONLY], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "[]", "False"]


_INSTRUMENT_AND_BACK = """
import tokentrail, openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.metrics import MeterProvider
from openai._base_client import SyncAPIClient

def state():
    return [hasattr(getattr(c, n), "__wrapped__") for c in (TracerProvider, MeterProvider, SyncAPIClient)
            for n in (("shutdown", "force_flush") if c is not SyncAPIClient else ("request",))]

tracer_provider, meter_provider = TracerProvider(), MeterProvider()
tokentrail.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, ledger=False)
during = state()
tokentrail.uninstrument()
print(all(during), any(state()))
"""


def test_instrument_does_it_all_and_uninstrument_undoes_it_all() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INSTRUMENT_AND_BACK],
        capture_output=True,
        text=True,
        timeout=60,
        env={"TOKENTRAIL_WARM_PRICES": "0", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


# --- an endpoint tokentrail does not know is counted, never dropped silently ---------------------


def test_an_unrecognised_endpoint_is_counted_and_logged_once(recorded, caplog) -> None:
    from conftest import http_module
    from openai_wire import FakeOpenAI

    httpx = http_module()
    image = {"created": 1, "data": [{"url": "https://example.invalid/a.png"}]}

    def extra(path: str, body: dict) -> object:
        if path.endswith("/files"):
            return httpx.Response(200, json={"object": "list", "data": [], "has_more": False})
        return httpx.Response(200, json=image) if path.endswith("/images/generations") else None

    client = FakeOpenAI(extra=extra).client()
    with caplog.at_level("DEBUG", logger="tokentrail"):
        for _ in range(3):
            client.images.generate(model="gpt-image-1", prompt="a lighthouse")
        client.files.list()  # a listing: known, not an LLM call, not counted
    assert recorded.spans() == [] and recorded.calls == []
    points = recorded.points(sc.METRIC_UNRECOGNISED_CALLS)
    assert [(p.attributes, p.value) for p in points] == [
        ({sc.SDK_NAME: "openai", sc.SDK_ENDPOINT: "POST /images/generations"}, 3)
    ]
    logged = [r for r in caplog.records if "/images/generations" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelname == "DEBUG"
