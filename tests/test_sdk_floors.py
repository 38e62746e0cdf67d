"""The oldest SDK versions tokentrail claims are stated once: pyproject's ``instruments-any``.

``scripts/test`` installs exactly those floors in ``.venv-oldest-sdks`` and runs the SDK tests there;
``opentelemetry-instrument`` reads each instrumentor's own requirement. They must say the same.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tokentrail import instrumentation, registry

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_each_instrumentor_requires_the_floor_pyproject_claims():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    claimed = {(r := Requirement(line)).name: r.specifier for line in extras["instruments-any"]}
    declared = {
        (r := Requirement(cls.requirement)).name: r.specifier
        for cls in (getattr(instrumentation, entry.instrumentor) for entry in registry.PROVIDERS)
    }
    assert declared == claimed
    # Floors only: the oldest-SDK run installs each one as "==", so each must be a single ">=".
    assert all([spec.operator for spec in specifier] == [">="] for specifier in claimed.values())
