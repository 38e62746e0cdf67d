"""Debian's Chromium for the browser tests: installed with apt-get when missing (CI starts from a
fresh machine), launched headless through Playwright's API pointed at that binary. Nothing is
downloaded by Playwright itself (never ``playwright install``).

Skips only off Debian (no apt-get). On Debian a failed install FAILS the test: a skipped browser
test would let an untested dashboard pass CI."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (root in CI), no GPU, and nothing Chromium would fetch on its own (component updates,
# sync, field trials): the only requests are the page's.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium_path() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.skip("the browser tests need Debian's chromium (apt-get not found)")

    def install() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            capture_output=True,
            text=True,
            timeout=900,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )

    done = install()
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600)
        done = install()
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(f"cannot install Debian's chromium: {done.stderr.strip()[-400:]}")
    return CHROMIUM


@contextmanager
def browser_context(profile: Path, **options: Any) -> Iterator[Any]:
    """A headless Chromium context with a fresh profile directory."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(executable),
            headless=True,
            args=list(FLAGS),
            **options,
        )
        try:
            yield context
        finally:
            context.close()
