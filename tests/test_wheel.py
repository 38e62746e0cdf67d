"""The package as a user gets it from PyPI: pyproject's metadata, the README as PyPI renders it, and
the real wheel, built with ``pip wheel --no-deps`` and installed with no extras into a fresh venv
(its dependencies from the package index, through pip's cache), where it must import, instrument,
and have pulled in exactly what it declares: the OTLP/HTTP exporter, never grpcio.

The build and the install take about a minute with a warm pip cache (once per session: every test
of the installed wheel shares it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from prometheus_support import prometheus_bin_dir
from promql_support import dashboard_queries, rule_expressions, unscoped

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
STACK_SOURCE = ROOT / "collector-config"
# What a venv holds before anything is installed into it.
VENV_SEED = {"pip", "setuptools", "wheel"}


# --- metadata ----------------------------------------------------------------------------------------------


def test_classifiers_are_real_and_name_the_python_versions_tested():
    trove = pytest.importorskip("trove_classifiers", reason="trove-classifiers is in the test extra")
    classifiers = PROJECT["classifiers"]
    unknown = [c for c in classifiers if c not in trove.classifiers]
    assert not unknown, f"not trove classifiers (PyPI would refuse the upload): {unknown}"
    assert "Typing :: Typed" in classifiers and (ROOT / "src" / "tokentrail" / "py.typed").exists()
    versions = {
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    # The interpreter running this suite is a tested version; every listed one is installable.
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in versions
    admitted = SpecifierSet(PROJECT["requires-python"])
    assert all(f"{version}.0" in admitted for version in versions), versions


def test_project_urls_and_readme_links_work_on_pypi():
    urls = PROJECT["urls"]
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    repository = urls["Repository"].rstrip("/")
    readme = (ROOT / PROJECT["readme"]).read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r'(?:src|href)="([^"]+)"', readme)
    assert links
    # PyPI shows the README alone: a relative link or an in-page anchor goes nowhere there.
    relative = [link for link in links if not link.startswith(("https://", "http://", "mailto:"))]
    assert not relative, f"use absolute URLs ({repository}/blob/main/PATH): {relative}"
    # Links into the repository name files that exist.
    for link in links:
        for prefix in (f"{repository}/blob/main/", f"{repository}/tree/main/"):
            if link.startswith(prefix):
                path = link.removeprefix(prefix).split("#")[0]
                assert (ROOT / path).exists(), f"{link}: no {path} in the repository"


def test_grpc_is_an_extra_and_the_test_extra_can_run_the_grpc_tests():
    requirements = [Requirement(r) for r in PROJECT["dependencies"]]
    names = {canonicalize_name(r.name) for r in requirements}
    assert "opentelemetry-exporter-otlp-proto-http" in names
    assert not names & {"opentelemetry-exporter-otlp", "opentelemetry-exporter-otlp-proto-grpc", "grpcio"}
    extras = PROJECT["optional-dependencies"]
    grpc = {canonicalize_name(Requirement(r).name) for r in extras["grpc"]}
    assert grpc == {"opentelemetry-exporter-otlp-proto-grpc"}
    assert grpc <= {canonicalize_name(Requirement(r).name) for r in extras["test"]}


# --- the built wheel, installed with no extras -------------------------------------------------------------


def _ignored(_folder: str, names: list[str]) -> set[str]:
    generated = {".git", ".cache", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}
    return {n for n in names if n in generated or n.startswith(".venv") or n.endswith(".egg-info")}


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, a fresh venv's python with it installed, no extras)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # A copy of the tree, so the build's own files (build/, *.egg-info) never land in the checkout.
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=_ignored)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp / "dist"), str(source)])
    (wheel,) = (tmp / "dist").glob("tokentrail-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "--disable-pip-version-check", "install", "--quiet", str(wheel)])
    return wheel, python


def _site_packages(python: Path) -> Path:
    done = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    return Path(done.stdout.strip())


def test_the_wheel_holds_the_package_and_its_typing_marker(wheel_venv):
    wheel, _ = wheel_venv
    names = zipfile.ZipFile(wheel).namelist()
    assert "tokentrail/py.typed" in names and "tokentrail/__main__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "collector-config/"))]
    # The whole collector-config/ is package data, byte for byte.
    archive = zipfile.ZipFile(wheel)
    for path in STACK_SOURCE.rglob("*"):
        if path.is_file():
            packaged = f"tokentrail/_stack/{path.relative_to(STACK_SOURCE).as_posix()}"
            assert archive.read(packaged) == path.read_bytes(), packaged
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Classifier: Typing :: Typed" in text and "Project-URL: Repository, https://" in text
    assert "Provides-Extra: grpc" in text


def test_a_plain_install_pulls_in_what_it_declares_and_no_grpc(wheel_venv):
    _, python = wheel_venv
    site = _site_packages(python)
    installed = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions(path=[str(site)])}
    assert "grpcio" not in installed and "opentelemetry-exporter-otlp-proto-grpc" not in installed
    assert "opentelemetry-exporter-otlp-proto-http" in installed

    # The closure of tokentrail's requirements (no extras), read from the installed metadata.
    environment = {"extra": ""}
    wanted: set[str] = set()
    todo = ["tokentrail"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in wanted:
            continue
        wanted.add(name)
        assert name in installed, f"{name} is required but not installed"
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                todo.append(requirement.name)
    assert set(installed) - VENV_SEED == wanted


def test_the_installed_wheel_imports_and_instruments(wheel_venv, tmp_path):
    _, python = wheel_venv
    script = textwrap.dedent(
        """
        import importlib.util, sys
        import tokentrail
        tokentrail.instrument()
        assert tokentrail.instrumented() == []  # no SDK in this venv: nothing to patch, no error
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        assert importlib.util.find_spec("grpc") is None
        assert not [m for m in sys.modules if m == "grpc" or m.startswith("grpc.")]
        tokentrail.uninstrument()
        print("OK", tokentrail.__version__)
        """
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TOKENTRAIL_LEDGER": str(tmp_path / "l.sqlite")}
    done = _run([str(python), "-c", script], env=env, cwd=tmp_path)
    assert done.stdout.split() == ["OK", PROJECT["version"]], done.stderr
    script_version = _run([str(python.parent / "tokentrail"), "--version"], env=env, cwd=tmp_path)
    assert script_version.stdout.strip() == f"tokentrail {PROJECT['version']}"
    module_help = _run([str(python), "-m", "tokentrail", "--help"], env=env, cwd=tmp_path)
    assert module_help.stdout.startswith("usage: tokentrail")


# --- tokentrail stack init, from the installed wheel -------------------------------------------------------


def test_stack_init_writes_the_whole_stack_from_the_installed_wheel(wheel_venv, tmp_path):
    _, python = wheel_venv
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TOKENTRAIL_LEDGER": "off"}
    target = tmp_path / "stack"
    done = _run([str(python.parent / "tokentrail"), "stack", "init", str(target)], env=env, cwd=tmp_path)
    expected = sorted(p.relative_to(STACK_SOURCE) for p in STACK_SOURCE.rglob("*") if p.is_file())
    written = sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())
    assert written == expected, done.stdout
    for relative in expected:
        assert (target / relative).read_bytes() == (STACK_SOURCE / relative).read_bytes(), relative
    # What the stack needs is there: collector, compose, Prometheus config and rules, Grafana.
    kinds = {"otelcol.yaml", "docker-compose.yml", "prometheus.yml", "alerts.yml"}
    assert kinds <= {p.name for p in written}
    assert {"provisioning", "dashboards"} <= {p.parts[1] for p in written if p.parts[0] == "grafana"}
    # Everything the compose file mounts exists in the written directory.
    compose = yaml.safe_load((target / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            assert (target / volume.split(":", 1)[0]).exists(), volume

    # A second init would overwrite the user's edits: refused in one line, unless --force.
    again = subprocess.run(
        [str(python.parent / "tokentrail"), "stack", "init", str(target)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "--force" in again.stderr
    (target / "alerts.yml").write_text("edited")
    _run([str(python), "-m", "tokentrail", "stack", "init", str(target), "--force"], env=env, cwd=tmp_path)
    assert (target / "alerts.yml").read_bytes() == (STACK_SOURCE / "alerts.yml").read_bytes()


def test_promtool_accepts_the_written_stack_and_its_queries_are_tokentrail_s(wheel_venv, tmp_path):
    _, python = wheel_venv
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TOKENTRAIL_LEDGER": "off"}
    target = tmp_path / "stack"
    _run([str(python.parent / "tokentrail"), "stack", "init", str(target)], env=env, cwd=tmp_path)
    promtool = str(prometheus_bin_dir() / "promtool")
    config = yaml.safe_load((target / "prometheus.yml").read_text())
    for argv in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", *config["rule_files"]],
        ["test", "rules", "alerts.test.yml"],
    ):
        done = subprocess.run([promtool, *argv], cwd=target, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"promtool {' '.join(argv)}: {done.stdout}{done.stderr}"
    # Every dashboard query names only series tokentrail emits, in tokentrail's scope.
    dashboards = sorted((target / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for dashboard in dashboards:
        for where, expr in dashboard_queries(json.loads(dashboard.read_text())):
            assert not unscoped(expr), f"{dashboard.name}, {where}: {unscoped(expr)}"
    rules = [yaml.safe_load((target / name).read_text()) for name in config["rule_files"]]
    assert all(rule_expressions(r) for r in rules)
