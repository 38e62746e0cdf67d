"""instrument()'s check of an SDK's version against tokentrail's floor (``_setup._supported``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest

from tokentrail import _setup


@pytest.mark.parametrize(
    ("installed", "floor", "expected"),
    [
        ("3.63.0", "1.40", True),
        ("1.40", "1.40.0", True),
        ("1.39.9", "1.40", False),
        ("0.4.7", "0.4.7", True),
        ("0.4.10", "0.4.7", True),  # numbers, not text: 10 > 7
        ("1.37.3", "1.37.24", False),
        ("1.40.0rc1", "1.40", False),  # a pre-release comes before its release (packaging decides)
        ("1.41.0.dev0", "1.40", True),
        ("1.40.0+local", "1.40", True),
    ],
)
def test_a_version_is_compared_with_the_floor_as_pep_440_orders_them(installed, floor, expected):
    assert _setup._at_least(installed, floor) is expected


def test_a_version_that_is_not_pep_440_is_not_compared():
    with pytest.raises(ValueError):
        _setup._at_least("not-a-version", "1.0")


def test_the_installed_version_is_the_metadatas():
    assert _setup._installed_version("opentelemetry-api") == version("opentelemetry-api")
    assert _setup._installed_version("openai") == version("openai")
    with pytest.raises(PackageNotFoundError):
        _setup._installed_version("no-such-distribution-tokentrail-test")
